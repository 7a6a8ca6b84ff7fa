"""The `jobrelay` command: operators' CLI over the HTTP API, and the local stack (`jobrelay dev ...`).

Settings that hold across calls (env, API URL, credentials, output format, watch and list limits)
are flags with a `JOBRELAY_*` variable each, as functions-framework does; what a call acts on (job
type, payload, job ids, redrive selectors, `--yes`) is never read from the environment, so a stale
variable cannot choose which jobs a command touches. Exit codes are listed in `EXIT_CODES`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

# typer bundles its own click (typer._click): its Context and UsageError are what the parser raises.
from typer._click.core import Context as ClickContext
from typer._click.exceptions import UsageError
from typer.core import TyperGroup

from jobrelay import cli_flow, cli_ops, cli_promote
from jobrelay import cli_render as render
from jobrelay.cli_common import (
    AUTH,
    EXIT_CODES,
    INTERRUPTED,
    JOB_FAILED,
    OUTCOMES,
    REFUSED,
    UNAVAILABLE,
    USAGE,
    WATCH_TIMEOUT,
    JsonOut,
    Problem,
    client_of,
    show,
)
from jobrelay.cli_pipeline import app as pipeline_app
from jobrelay.client import ClientError, JobrelayClient, WaitTimeout
from jobrelay.connection import ConfigError, Connection
from jobrelay.local.devcli import app as dev_app
from jobrelay.settings import ENV_NAMES

APP_HELP = "\n\n".join(
    [
        "jobrelay: batch jobs for Firebase apps on Google Cloud.",
        "Submit, follow and cancel jobs; inspect and redrive dead letters; queue depths and stats. "
        "Every option also reads the JOBRELAY_* variable shown with it.",
        "Credentials, first found wins: --token; --local-user (local stack only); Google credentials for the API URL "
        "(GOOGLE_APPLICATION_CREDENTIALS naming a service account key, or the metadata server), or --impersonate SA "
        "with Application Default Credentials.",
    ]
)


class _Cli(TyperGroup):
    """Exit 4 on usage errors (click's 2 means "cancelled" here); API errors and problems printed plainly."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: ClickContext | None = None, **extra: Any
    ) -> ClickContext:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except UsageError as exc:
            exc.exit_code = USAGE  # click's default (2) would read as "cancelled"
            raise

    def invoke(self, ctx: ClickContext) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:  # a sub-command's arguments
            exc.exit_code = USAGE
            raise
        except (Problem, ConfigError) as exc:
            render.console(stderr=True).print(render.t(f"error: {exc}", "red"))
            raise typer.Exit(USAGE) from exc
        except ClientError as exc:
            _report(exc)
            code = AUTH if exc.auth else UNAVAILABLE if exc.status == 0 or exc.status >= 500 else REFUSED
            raise typer.Exit(code) from exc


def _report(exc: ClientError) -> None:
    err = render.console(stderr=True)
    where = f"HTTP {exc.status}, {exc.code}" if exc.status else exc.code
    err.print(render.t(f"error: {exc.message} ({where})", "red"))
    if isinstance(exc.details, list):
        for d in exc.details[:10]:
            if isinstance(d, dict) and "field" in d:
                err.print(render.t(f"  {d['field']}: {d.get('problem')}"))
    elif exc.details and exc.code not in ("http_error",):
        err.print(render.t(f"  details: {render.short(exc.details, 300)}", "dim"))


app = typer.Typer(
    cls=_Cli,
    epilog=EXIT_CODES,
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(dev_app, name="dev")
app.add_typer(cli_ops.dlq, name="dlq")
app.add_typer(cli_ops.access_app, name="access")
app.command(epilog=EXIT_CODES)(cli_ops.queues)
app.command(epilog=EXIT_CODES)(cli_ops.stats)
cli_promote.register(app, EXIT_CODES)
app.add_typer(pipeline_app, name="pipeline")


@app.callback(help=APP_HELP)
def _options(
    ctx: typer.Context,
    env: Annotated[str, typer.Option(envvar="JOBRELAY_ENV", help="dev, stg or prod")] = "dev",
    api: Annotated[
        str | None,
        typer.Option(
            envvar="JOBRELAY_API", show_default=False, help='API base URL (default: the "api" of STATE_DIR/local.json)'
        ),
    ] = None,
    state_dir: Annotated[
        Path, typer.Option(envvar="JOBRELAY_STATE_DIR", help="where the local stack's local.json is")
    ] = Path(".jobrelay"),
    token: Annotated[
        str | None,
        typer.Option(envvar="JOBRELAY_TOKEN", show_default=False, help="a Firebase ID token of the env's project"),
    ] = None,
    local_user: Annotated[
        str | None,
        typer.Option(envvar="JOBRELAY_LOCAL_USER", show_default=False, help="local stack only: sign in as this uid"),
    ] = None,
    admin: Annotated[
        bool, typer.Option("--admin", envvar="JOBRELAY_LOCAL_ADMIN", help="with --local-user: give the admin claim")
    ] = False,
    role: Annotated[
        list[str] | None,
        typer.Option(
            "--role",
            envvar="JOBRELAY_LOCAL_ROLES",
            show_default=False,
            help="with --local-user: a role claim (repeatable; the variable takes several, space separated)",
        ),
    ] = None,
    impersonate: Annotated[
        str | None,
        typer.Option(
            envvar="JOBRELAY_IMPERSONATE_SA",
            show_default=False,
            help="cloud: get the ID token by impersonating this operator service account",
        ),
    ] = None,
    http_timeout: Annotated[
        float, typer.Option(envvar="JOBRELAY_HTTP_TIMEOUT", help="seconds one API call may take")
    ] = 30.0,
) -> None:
    """Read the options shared by every command (also from JOBRELAY_* variables)."""
    if env not in ENV_NAMES:
        raise typer.BadParameter(f"unknown env {env!r}; one of {', '.join(ENV_NAMES)}", param_hint="--env")
    if (admin or role) and not local_user:
        raise typer.BadParameter(
            "--admin and --role shape a --local-user token; a real token carries its own claims",
            param_hint="--admin/--role",
        )
    ctx.obj = Connection(
        env=env,
        api=api,
        state_dir=state_dir,
        token=token,
        local_user=local_user,
        admin=admin,
        roles=tuple(role or ()),
        impersonate=impersonate,
        timeout=http_timeout,
    )


# -- jobs --------------------------------------------------------------------------------------


def _read(path: Path, what: str) -> Any:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise Problem(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    return _parse(text, f"{what} {path}")


def _parse(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Problem(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc


@app.command(epilog=EXIT_CODES)
def submit(
    ctx: typer.Context,
    job_type: Annotated[
        str | None, typer.Argument(metavar="TYPE", help="job type, e.g. echo", show_default=False)
    ] = None,
    payload: Annotated[str | None, typer.Option(help="payload as JSON text")] = None,
    payload_file: Annotated[Path | None, typer.Option(help="payload from a JSON file ('-': stdin)")] = None,
    job_class: Annotated[str | None, typer.Option("--class", help="job class A-D (default: the type's)")] = None,
    delay: Annotated[float | None, typer.Option(help="seconds to wait before the first run")] = None,
    run_at: Annotated[str | None, typer.Option(help="first run at this RFC 3339 time")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="a repeat with this key returns the first job")] = None,
    label: Annotated[list[str] | None, typer.Option(help="k=v label (repeatable)")] = None,
    depends_on: Annotated[list[str] | None, typer.Option(help="run after this job succeeds (repeatable)")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="attempts before dead-lettering")] = None,
    timeout: Annotated[int | None, typer.Option(help="seconds one attempt may run")] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            help="a whole spec as JSON (flags override its fields), or a "
            'list of specs / {"jobs": [...]} for one batch call'
        ),
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", help="follow the job; exit code from its outcome")] = False,
    watch_timeout: Annotated[
        float,
        typer.Option(envvar="JOBRELAY_WATCH_TIMEOUT", help="with --watch: give up after this many seconds (0: never)"),
    ] = 0,
    json_out: JsonOut = False,
) -> None:
    """Submit a job and print its id (the job with --json)."""
    base = _read(file, "spec file") if file else {}
    batch = base if isinstance(base, list) else base.get("jobs") if isinstance(base, dict) and "jobs" in base else None
    flags = {
        "type": job_type,
        "payload": payload,
        "payload_file": payload_file,
        "class": job_class,
        "delay": delay,
        "run_at": run_at,
        "idempotency_key": idempotency_key,
        "label": label,
        "depends_on": depends_on,
        "max_attempts": max_attempts,
        "timeout": timeout,
    }
    if batch is not None:
        used = [f"--{k.replace('_', '-')}" for k, v in flags.items() if v]
        if used or watch:
            raise Problem(f"a batch file takes no other spec flags nor --watch (got {', '.join(used or ['--watch'])})")
        jobs = client_of(ctx).batch(batch)
        if json_out:
            render.print_json({"jobs": jobs})
        else:
            typer.echo("\n".join(str(j["id"]) for j in jobs))
        return
    if not isinstance(base, dict):
        raise Problem(f"spec file {file} must hold a JSON object (one spec) or a list of specs")
    spec: dict[str, Any] = dict(base)
    if payload is not None and payload_file is not None:
        raise Problem("give --payload or --payload-file, not both")
    if payload is not None:
        spec["payload"] = _parse(payload, "--payload")
    elif payload_file is not None:
        spec["payload"] = _read(payload_file, "payload file")
    if delay is not None and run_at is not None:
        raise Problem("give --delay or --run-at, not both")
    for key, value in (
        ("type", job_type),
        ("class", job_class),
        ("delay_seconds", delay),
        ("run_at", run_at),
        ("idempotency_key", idempotency_key),
        ("max_attempts", max_attempts),
        ("timeout_seconds", timeout),
        ("depends_on", depends_on or None),
    ):
        if value is not None:
            spec[key] = value
    for item in label or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise Problem(f"--label {item!r} must be key=value")
        spec.setdefault("labels", {})[key] = value
    if not spec.get("type"):
        raise Problem(
            'give the job TYPE (e.g. `jobrelay submit echo --payload \'{"message": "hi"}\'`) '
            'or a --file whose spec has "type"'
        )
    client = client_of(ctx)
    submitted = client.submit(spec)
    if not submitted.created:
        render.console(stderr=True).print(
            render.t(
                f"idempotency key {spec.get('idempotency_key')!r} was used before: this is the earlier job", "yellow"
            )
        )
    if json_out and not watch:
        render.print_json(submitted.job)
    elif not json_out:
        typer.echo(submitted.id)
    if not watch:
        return
    raise typer.Exit(_follow(client, submitted.id, watch_timeout, 0.5, json_out))


def _follow(client: JobrelayClient, job_id: str, timeout: float, interval: float, json_out: bool) -> int:
    out = render.console(stderr=json_out)
    try:
        with render.Watch(out, job_id) as view:
            job = client.wait(job_id, timeout or None, interval=interval, on_update=view.update)
    except KeyboardInterrupt:
        out.print(render.t(f"stopped watching; job {job_id} goes on (jobrelay watch {job_id})", "yellow"))
        return INTERRUPTED
    except WaitTimeout as exc:
        out.print(
            render.t(
                f"job {job_id} still {exc.job.get('status')} after {timeout:g}s; it goes on (jobrelay watch {job_id})",
                "yellow",
            )
        )
        if json_out:
            render.print_json(exc.job)
        return WATCH_TIMEOUT
    out.print(render.outcome_line(job))
    if json_out:
        render.print_json(job)
    return OUTCOMES.get(str(job.get("status")), JOB_FAILED)


@app.command(epilog=EXIT_CODES)
def watch(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="the job to follow")],
    timeout: Annotated[
        float, typer.Option(envvar="JOBRELAY_WATCH_TIMEOUT", help="give up after this many seconds, exit 3 (0: never)")
    ] = 0,
    interval: Annotated[float, typer.Option(envvar="JOBRELAY_WATCH_INTERVAL", help="seconds between polls")] = 0.5,
    json_out: JsonOut = False,
) -> None:
    """Follow a job until it ends: a live progress bar, then its outcome
    (exit 0 succeeded, 1 dead-lettered, 2 cancelled or skipped, 3 --timeout passed first)."""
    raise typer.Exit(_follow(client_of(ctx), job_id, timeout, interval, json_out))


@app.command(epilog=EXIT_CODES)
def status(
    ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="the job")], json_out: JsonOut = False
) -> None:
    """One job: status, attempts, progress, times, result or error with fingerprint, log tail."""
    show(client_of(ctx).get(job_id), json_out, render.job_summary)


@app.command("list", epilog=EXIT_CODES)
def list_jobs(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="queued, running, retrying, succeeded, dead_lettered, ...")] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="only this job type")] = None,
    owner: Annotated[str | None, typer.Option(help="only this user's jobs (admins; others see their own)")] = None,
    limit: Annotated[int, typer.Option(envvar="JOBRELAY_LIST_LIMIT", min=1, help="at most this many jobs")] = 20,
    json_out: JsonOut = False,
) -> None:
    """Jobs, newest first, following pages up to --limit."""
    jobs = list(client_of(ctx).iter_jobs(status=status, job_type=job_type, owner=owner, limit=limit))
    if json_out:
        render.print_json({"jobs": jobs})
        return
    out = render.console()
    if not jobs:
        out.print("no jobs match")
        return
    out.print(render.jobs_table(jobs))
    out.print(render.t(f"{len(jobs)} jobs, newest first" + (" (--limit reached)" if len(jobs) == limit else ""), "dim"))


# cancel (one job or a filter's), pause, resume, types: jobrelay.cli_flow
cli_flow.register(app, EXIT_CODES)


def main() -> None:
    app()
