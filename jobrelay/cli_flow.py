"""The flow-control commands of `jobrelay`: cancel (one job, or every job a filter selects), pause,
resume and types. Registered with the app by jobrelay.cli (`register(app)`); they talk to the API
through the same `JobrelayClient` and exit with the same codes.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from jobrelay import cli_render as render
from jobrelay.cli_common import JsonOut, client_of
from jobrelay.client import JobrelayClient
from jobrelay.connection import ConfigError

CANCEL_HELP = "\n\n".join(
    [
        "Cancel one job (JOB_ID), or every job a filter selects (--type, --status, --label, --owner, "
        "--created-before; at least one).",
        "A waiting job is cancelled at once; a running one is asked to stop at its next check. For a filter, "
        "--dry-run counts the jobs first; then --yes cancels them through one bulk operation, followed until "
        "it is done (--no-wait returns at once). Without --yes, on a terminal the command shows the count and "
        "asks; with stdin not a terminal it refuses (exit 4). Users cancel their own jobs, operators anyone's.",
    ]
)


def _labels(values: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not k=v", param_hint="--label")
        out[key] = value
    return out


def cancel(
    ctx: typer.Context,
    job_id: Annotated[str | None, typer.Argument(help="the job (or use a filter)", show_default=False)] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="jobs of this type")] = None,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="queued, retrying or running (repeatable; default all three)")
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--label", help="k=v label the jobs carry (repeatable)")] = None,
    owner: Annotated[str | None, typer.Option(help="jobs of this user (operators)")] = None,
    created_before: Annotated[str | None, typer.Option(help="jobs created before this RFC 3339 time")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only count what a filter selects")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="no confirmation prompt")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="do not follow the bulk operation")] = False,
    json_out: JsonOut = False,
) -> None:
    filter_: dict[str, Any] = {}
    if job_type is not None:
        filter_["type"] = job_type
    if status:
        filter_["status"] = status
    if label:
        filter_["labels"] = _labels(label)
    if owner is not None:
        filter_["owner"] = owner
    if created_before is not None:
        filter_["created_before"] = created_before
    client = client_of(ctx)
    if job_id is not None:
        if filter_ or dry_run:
            raise typer.BadParameter("give a JOB_ID or a filter, not both", param_hint="JOB_ID")
        _cancel_one(client, job_id, json_out)
        return
    if not filter_:
        raise typer.BadParameter(
            "say which jobs: a JOB_ID, or a filter (--type, --status, --label, --owner, --created-before); "
            "an empty filter never means every job",
            param_hint="JOB_ID",
        )
    out = render.console()
    if dry_run or not yes:
        preview = client.bulk_cancel(filter_, dry_run=True)
        if dry_run:
            _print(preview, json_out, f"{preview['count']} jobs match in env {client.env}: {_sample(preview)}")
            return
        if not sys.stdin.isatty():
            raise ConfigError(
                "a bulk cancel stops jobs: pass --yes when stdin is not a terminal (--dry-run counts them)"
            )
        if not preview["count"]:
            out.print("no jobs match")
            return
        if not typer.confirm(f"cancel {preview['count']} jobs in env {client.env}?", default=False):
            out.print("not cancelled")
            return
    body = client.bulk_cancel(filter_)
    op = body.get("operation")
    if op is None:
        _print(body, json_out, "no jobs match")
        return
    if not no_wait:
        op = client.wait_operation(op["id"], interval=0.5)
        body["operation"] = op
    _print(body, json_out, _op_line(op))


def _cancel_one(client: JobrelayClient, job_id: str, json_out: bool) -> None:
    job = client.cancel(job_id)
    if json_out:
        render.print_json(job)
    elif job.get("status") == "cancelled":
        typer.echo(f"job {job_id} cancelled")
    else:
        typer.echo(
            f"job {job_id} is {job.get('status')}: cancel requested; it stops at its next check "
            f"(jobrelay watch {job_id})"
        )


def _sample(preview: dict[str, Any]) -> str:
    ids = preview.get("sample") or []
    return ", ".join(ids) + (", ..." if preview.get("count", 0) > len(ids) else "") if ids else "none"


def _op_line(op: dict[str, Any]) -> str:
    return (
        f"operation {op['id']} {op['status']}: {op['processed']} of {op['matched']} processed, "
        f"{op['cancelled']} cancelled, {op['stop_requested']} asked to stop, {op['skipped']} skipped"
    )


def _print(body: dict[str, Any], json_out: bool, line: str) -> None:
    if json_out:
        render.print_json(body)
    else:
        render.console().print(line)


def pause(
    ctx: typer.Context,
    job_type: Annotated[str, typer.Argument(metavar="TYPE", help="the job type")],
    reason: Annotated[str, typer.Option(help="why (shown with the type and on its waiting jobs)")],
    json_out: JsonOut = False,
) -> None:
    """Pause a job type in the env: submits are still accepted; its jobs wait, using no attempts. Operators."""
    body = client_of(ctx).pause(job_type, reason)
    st = body["type_state"]
    line = f"{job_type} paused by {st.get('paused_by')} since {render.when(st.get('paused_at'))}: {st.get('reason')}"
    _print(body, json_out, line if body["changed"] else f"{job_type} was already paused: {line}")


def resume(
    ctx: typer.Context,
    job_type: Annotated[str, typer.Argument(metavar="TYPE", help="the job type")],
    json_out: JsonOut = False,
) -> None:
    """Resume a paused job type; the jobs that waited are dispatched, oldest first. Operators."""
    body = client_of(ctx).resume(job_type)
    op = body.get("operation")
    waiting = f"; {op['matched']} waiting jobs dispatched by operation {op['id']}" if op else ""
    _print(body, json_out, f"{job_type} {'resumed' if body['changed'] else 'was not paused'}{waiting}")


def types(ctx: typer.Context, json_out: JsonOut = False) -> None:
    """Every job type of the env: running or paused (since, by whom, why), its circuit breaker. Operators."""
    body = client_of(ctx).types()
    if json_out:
        render.print_json(body)
        return
    render.console().print(types_table(body.get("types", []), f"job types of env {body.get('env')}"))


def types_table(rows: list[dict[str, Any]], title: str | None = None) -> Table:
    table = Table(title=title, show_edge=False, header_style="bold")
    for name in ("type", "state", "since", "by", "reason", "waiting", "breaker"):
        table.add_column(name, no_wrap=name not in ("reason",), justify="right" if name == "waiting" else "left")
    for row in rows:
        b, cfg = row.get("breaker") or {}, row.get("breaker_config")
        state = ("breaker " + str(b.get("state", "open")).replace("_", "-")) if row.get("source") == "breaker" else None
        breaker = "-" if not cfg else f"{cfg['failure_rate']:.0%} of {cfg['window']}, {cfg['cool_down_seconds']:g}s"
        table.add_row(
            render.t(row.get("type")),
            render.t(state or ("paused" if row.get("paused") else "running"), "yellow" if row.get("paused") else ""),
            render.t(render.ago(row.get("paused_at")) if row.get("paused") else "-"),
            render.t(row.get("paused_by") if row.get("paused") else "-"),
            render.t(row.get("reason") if row.get("paused") else ""),
            render.t(row.get("waiting", 0)),
            render.t(breaker),
        )
    return table


def print_paused(body: dict[str, Any]) -> None:
    """Under `jobrelay stats` and `queues`: the paused types, if any."""
    if body.get("paused"):
        render.console().print(types_table(body["paused"], "paused job types"))


def register(app: typer.Typer, epilog: str) -> None:
    app.command(help=CANCEL_HELP, epilog=epilog)(cancel)
    app.command(epilog=epilog)(pause)
    app.command(epilog=epilog)(resume)
    app.command(epilog=epilog)(types)
