"""`jobrelay pipeline ...`: submit a pipeline from a YAML or JSON file, follow it step by step, cancel, retry.

Registered on the main CLI (`jobrelay.cli`) as a sub-command group; it shares the main command's
connection options (`--env`, `--api`, credentials), error handling and exit codes (docs/cli.md):
`watch` exits 0 when the pipeline succeeded, 1 failed, 2 cancelled, 3 when --timeout passed first.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from jobrelay import cli_render as render
from jobrelay.cli_common import INTERRUPTED, OUTCOMES, WATCH_TIMEOUT, JsonOut, client_of
from jobrelay.client import JobrelayClient, WaitTimeout
from jobrelay.connection import ConfigError

STATUS_STYLES = {"running": "cyan", "succeeded": "green", "failed": "red", "cancelled": "yellow"}

app = typer.Typer(
    help="Pipelines: many jobs as one unit (steps with `after`, fan-out, retry). See docs/pipelines.md.",
    no_args_is_help=True,
)

PipelineId = Annotated[str, typer.Argument(help="the pipeline's id")]
Timeout = Annotated[
    float, typer.Option(envvar="JOBRELAY_WATCH_TIMEOUT", help="give up after this many seconds, exit 3 (0: never)")
]


def read_spec(path: Path) -> dict[str, Any]:
    """A pipeline body from a YAML or JSON file ('-': stdin); JSON is YAML, so one parser reads both."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read pipeline file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"pipeline file {path} is not valid YAML or JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f'pipeline file {path} must hold one pipeline: {{"name", "steps": {{...}}}}')
    return data


def _status(value: Any) -> Text:
    return render.t(value, STATUS_STYLES.get(str(value), ""))


def view(p: dict[str, Any]) -> RenderableType:
    """A pipeline at a glance: its status and counts, then one row per step in order."""
    head = render.t(f"pipeline {p.get('id')} ({p.get('name')}): ")
    head.append_text(_status(p.get("status")))
    if p.get("cancel_requested") and p.get("status") == "running":
        head.append(" (cancel requested)", style="yellow")
    counts = p.get("counts") or {}
    done = sum(v for k, v in counts.items() if k in ("succeeded", "dead_lettered", "cancelled", "skipped"))
    head.append(f"  {done}/{counts.get('total', 0)} steps ended", style="dim")
    table = Table(show_edge=False, header_style="bold")
    for col in ("step", "status", "after", "attempt", "children", "started", "took", "job"):
        table.add_column(col, no_wrap=col in ("step", "job"))
    for name, step in (p.get("steps") or {}).items():
        start, end = render.parse_time(step.get("started_at")), render.parse_time(step.get("finished_at"))
        took = render.seconds((end - start).total_seconds()) if start and end else ""
        table.add_row(
            render.t(name),
            render.status_text(step.get("status")),
            render.t(", ".join(step.get("after") or []) or "-", "dim"),
            render.t(step.get("attempt") or ""),
            render.t(step.get("children") if step.get("children") is not None else ""),
            render.t(render.when(step.get("started_at")) if start else ""),
            render.t(took),
            render.t(step.get("job_id"), "dim"),
        )
    return Group(head, table)


def _follow(client: JobrelayClient, pipeline_id: str, timeout: float, interval: float, json_out: bool) -> int:
    out = render.console(stderr=json_out)
    last: dict[str, Any] = {"id": pipeline_id}
    try:
        with Live(render.t(f"pipeline {pipeline_id}: ..."), console=out, refresh_per_second=4, transient=False) as live:

            def update(p: dict[str, Any]) -> None:
                last.update(p)
                live.update(view(p))

            final = client.wait_pipeline(pipeline_id, timeout or None, interval=interval, on_update=update)
    except KeyboardInterrupt:
        out.print(render.t(f"stopped watching; pipeline {pipeline_id} goes on", "yellow"))
        return INTERRUPTED
    except WaitTimeout as exc:
        still = f"pipeline {pipeline_id} still {exc.job.get('status')} after {timeout:g}s; it goes on"
        out.print(render.t(still, "yellow"))
        if json_out:
            render.print_json(exc.job)
        return WATCH_TIMEOUT
    if json_out:
        render.print_json(final)
    return OUTCOMES.get(str(final.get("status")), 1)


@app.command("submit")
def submit(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="the pipeline as YAML or JSON ('-': stdin)")],
    idempotency_key: Annotated[
        str | None, typer.Option(help="a repeat with this key returns the first pipeline")
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", help="follow it; exit code from its outcome")] = False,
    watch_timeout: Timeout = 0,
    json_out: JsonOut = False,
) -> None:
    """Submit a pipeline (all valid, or nothing written) and print its id (the pipeline with --json)."""
    spec = read_spec(file)
    if idempotency_key is not None:
        spec["idempotency_key"] = idempotency_key
    client = client_of(ctx)
    submitted = client.submit_pipeline(spec)
    if not submitted.created:
        again = f"idempotency key {spec.get('idempotency_key')!r} was used before: this is that pipeline"
        render.console(stderr=True).print(render.t(again, "yellow"))
    if json_out and not watch:
        render.print_json(submitted.job)
    elif not json_out:
        typer.echo(submitted.id)
    if watch:
        raise typer.Exit(_follow(client, submitted.id, watch_timeout, 0.5, json_out))


@app.command("status")
def status(ctx: typer.Context, pipeline_id: PipelineId, json_out: JsonOut = False) -> None:
    """One pipeline: its status, and each step's status, attempt, children and times."""
    p = client_of(ctx).pipeline(pipeline_id)
    if json_out:
        render.print_json(p)
    else:
        render.console().print(view(p))


@app.command("watch")
def watch_pipeline(
    ctx: typer.Context,
    pipeline_id: PipelineId,
    timeout: Timeout = 0,
    interval: Annotated[float, typer.Option(envvar="JOBRELAY_WATCH_INTERVAL", help="seconds between polls")] = 0.5,
    json_out: JsonOut = False,
) -> None:
    """Follow a pipeline until it ends, each step's state live
    (exit 0 succeeded, 1 failed, 2 cancelled, 3 --timeout passed first)."""
    raise typer.Exit(_follow(client_of(ctx), pipeline_id, timeout, interval, json_out))


@app.command("list")
def list_pipelines(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="running, succeeded, failed or cancelled")] = None,
    owner: Annotated[str | None, typer.Option(help="only this user's (admins; others see their own)")] = None,
    limit: Annotated[int, typer.Option(envvar="JOBRELAY_LIST_LIMIT", min=1, help="at most this many")] = 20,
    json_out: JsonOut = False,
) -> None:
    """Pipelines, newest first."""
    found = list(client_of(ctx).iter_pipelines(status=status, owner=owner, limit=limit))
    if json_out:
        render.print_json({"pipelines": found})
        return
    table = Table(show_edge=False, header_style="bold")
    for col in ("id", "name", "status", "steps", "owner", "created"):
        table.add_column(col, no_wrap=col == "id")
    for p in found:
        counts = p.get("counts") or {}
        table.add_row(
            render.t(p.get("id")),
            render.t(p.get("name")),
            _status(p.get("status")),
            render.t(f"{counts.get('succeeded', 0)}/{counts.get('total', 0)} succeeded"),
            render.t(p.get("owner")),
            render.t(render.when(p.get("created_at"))),
        )
    render.console().print(table if found else render.t("no pipelines match"))


@app.command("cancel")
def cancel(ctx: typer.Context, pipeline_id: PipelineId, json_out: JsonOut = False) -> None:
    """Cancel every step that has not ended (running ones stop at their next check)."""
    p = client_of(ctx).cancel_pipeline(pipeline_id)
    if json_out:
        render.print_json(p)
    elif p.get("status") == "cancelled":
        typer.echo(f"pipeline {pipeline_id} cancelled")
    else:
        typer.echo(f"pipeline {pipeline_id}: cancel requested; running steps stop at their next check")


@app.command("retry")
def retry(ctx: typer.Context, pipeline_id: PipelineId, json_out: JsonOut = False) -> None:
    """Run a failed pipeline's failed steps again, and the steps skipped because of them."""
    p = client_of(ctx).retry_pipeline(pipeline_id)
    if json_out:
        render.print_json(p)
    else:
        typer.echo(f"pipeline {pipeline_id} is {p.get('status')} again (retry {p.get('retry_count')})")
