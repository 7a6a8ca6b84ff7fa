"""The `jobrelay` command: operators' CLI over the HTTP API, and the local stack (`jobrelay dev ...`).

Settings that hold across calls (env, API URL, credentials, output format, watch and list limits)
are flags with a `JOBRELAY_*` variable each, as functions-framework does; what a call acts on (job
type, payload, job ids, redrive selectors, `--yes`) is never read from the environment, so a stale
variable cannot choose which jobs a command touches. Exit codes are listed in `EXIT_CODES`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import RenderableType

# typer bundles its own click (typer._click): its Context and UsageError are what the parser raises.
from typer._click.core import Context as ClickContext
from typer._click.exceptions import UsageError
from typer.core import TyperGroup

from jobrelay import cli_flow
from jobrelay import cli_render as render
from jobrelay.client import ClientError, JobrelayClient, WaitTimeout
from jobrelay.connection import ConfigError, Connection
from jobrelay.local.devcli import app as dev_app
from jobrelay.settings import ENV_NAMES

OK, JOB_FAILED, JOB_CANCELLED, WATCH_TIMEOUT, USAGE, AUTH, REFUSED, UNAVAILABLE = 0, 1, 2, 3, 4, 5, 6, 7
INTERRUPTED = 130
OUTCOMES = {
    "succeeded": OK,
    "dead_lettered": JOB_FAILED,
    "failed": JOB_FAILED,
    "cancelled": JOB_CANCELLED,
    "skipped": JOB_CANCELLED,
}
EXIT_CODES = "\n".join(
    [
        "Exit codes:",
        "0  done (watch: the job succeeded)",
        "1  the job dead-lettered or failed",
        "2  the job was cancelled or skipped",
        "3  watch --timeout passed first (the job goes on)",
        "4  usage or configuration error (bad flag, bad JSON, no API URL)",
        "5  not signed in or not allowed (HTTP 401/403, no credentials)",
        "6  the API refused the request (other 4xx: not found, invalid, conflict, quota)",
        "7  the API is unreachable or failing (network error, 5xx)",
        "130  interrupted",
    ]
)
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
REDRIVE_HELP = "\n\n".join(
    [
        "Run dead jobs again, each as a new attempt; choose them with exactly one of --job, --fingerprint, --all.",
        "A fingerprint with no open dead letter is refused (exit 6), never read as --all.",
        "--dry-run only says what would happen. Without --yes, on a terminal the command shows the dry run and "
        "asks; with stdin not a terminal it refuses (exit 4): a script must say --yes.",
    ]
)


class Problem(Exception):
    """A usage or configuration problem the CLI finds itself (exit 4)."""


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
dlq = typer.Typer(
    help="Dead letters: jobs that failed for good. Operators only (admin claim).",
    no_args_is_help=True,
    epilog=EXIT_CODES,
)
app.add_typer(dlq, name="dlq")
access_app = typer.Typer(
    help="Who may do what in an env: the admin claim and roles of Firebase users. Operators only; every change "
    "is recorded in the env's access_log. A user's new claims reach jobrelay when their ID token refreshes.",
    no_args_is_help=True,
    epilog=EXIT_CODES,
)
app.add_typer(access_app, name="access")

JsonOut = Annotated[
    bool, typer.Option("--json", envvar="JOBRELAY_JSON", help="print machine-readable JSON instead of tables")
]


def _show(body: dict[str, Any], json_out: bool, view: Callable[[dict[str, Any]], RenderableType]) -> None:
    if json_out:
        render.print_json(body)
    else:
        render.console().print(view(body))


def _client(ctx: typer.Context) -> JobrelayClient:
    connection = ctx.find_object(Connection)
    if connection is None:  # only when a command is invoked without the app's callback
        raise Problem("internal: connection settings missing")
    return connection.client()


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
        jobs = _client(ctx).batch(batch)
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
    client = _client(ctx)
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
    raise typer.Exit(_follow(_client(ctx), job_id, timeout, interval, json_out))


@app.command(epilog=EXIT_CODES)
def status(
    ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="the job")], json_out: JsonOut = False
) -> None:
    """One job: status, attempts, progress, times, result or error with fingerprint, log tail."""
    _show(_client(ctx).get(job_id), json_out, render.job_summary)


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
    jobs = list(_client(ctx).iter_jobs(status=status, job_type=job_type, owner=owner, limit=limit))
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


# -- operators ---------------------------------------------------------------------------------


@dlq.command("list", epilog=EXIT_CODES)
def dlq_list(
    ctx: typer.Context,
    fingerprint: Annotated[str | None, typer.Option(help="only this error group, with its jobs")] = None,
    json_out: JsonOut = False,
) -> None:
    """Open dead letters grouped by error fingerprint, biggest group first."""
    body = _client(ctx).dead_letters(fingerprint)
    if json_out:
        render.print_json(body)
        return
    out = render.console()
    if not body.get("groups"):
        out.print(render.t(f"no open dead letters{' with fingerprint ' + fingerprint if fingerprint else ''}"))
        return
    out.print(render.groups_table(body["groups"]))
    if fingerprint:
        out.print(render.dead_letters_table(body.get("dead_letters", [])))
    out.print(render.t(f"{body.get('total', 0)} open dead letters in {len(body['groups'])} groups", "dim"))


@dlq.command("show", epilog=EXIT_CODES)
def dlq_show(
    ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="the dead job")], json_out: JsonOut = False
) -> None:
    """One dead letter: error, stack, fingerprint, and the job as it is now."""
    _show(_client(ctx).dead_letter(job_id), json_out, render.dead_letter_detail)


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


@dlq.command("redrive", help=REDRIVE_HELP, epilog=EXIT_CODES)
def dlq_redrive(
    ctx: typer.Context,
    job: Annotated[list[str] | None, typer.Option("--job", help="this dead job (repeatable)")] = None,
    fingerprint: Annotated[str | None, typer.Option(help="every open dead letter with this fingerprint")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every open dead letter of the env")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only say what would happen")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="no confirmation prompt")] = False,
    json_out: JsonOut = False,
) -> None:
    """Run dead jobs again (see REDRIVE_HELP for the confirmation rule)."""
    if sum([bool(job), fingerprint is not None, all_]) != 1:
        raise Problem("choose the dead letters with exactly one of --job JOB_ID (repeatable), --fingerprint F, --all")
    if fingerprint is not None and not fingerprint.strip():
        raise Problem("--fingerprint is empty: give the fingerprint `jobrelay dlq list` shows (--all means every one)")
    client = _client(ctx)
    selector: dict[str, Any] = (
        {"job_ids": job} if job else {"fingerprint": fingerprint} if fingerprint else {"all": True}
    )
    out = render.console()
    if not dry_run and not yes:
        if not stdin_is_terminal():
            raise Problem(
                "a redrive runs jobs again: pass --yes to confirm when stdin is not a terminal (--dry-run previews it)"
            )
        preview = client.redrive(**selector, dry_run=True)
        out.print(render.redrive_table(preview))
        would = sum(1 for r in preview.get("results", []) if r.get("outcome") == "would_redrive")
        if not would:
            out.print("nothing to redrive")
            return
        if not typer.confirm(f"redrive {would} job{'s' if would != 1 else ''} in env {client.env}?", default=False):
            out.print("not redriven")
            return
    _show(client.redrive(**selector, dry_run=dry_run), json_out, render.redrive_table)


def _seconds(value: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = value.strip().lower()
    try:
        return int(float(text[:-1]) * units[text[-1]]) if text and text[-1] in units else int(text)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r} is not a duration: seconds, or a number with s, m, h or d", param_hint="--window"
        ) from exc


@app.command(epilog=EXIT_CODES)
def queues(ctx: typer.Context, json_out: JsonOut = False) -> None:
    """Each class's queue in the env: state, depth, oldest task, pool backlog. Operators only."""
    body = _client(ctx).queues()
    _show(body, json_out, render.queues_table)
    if not json_out:
        cli_flow.print_paused(body)


@app.command(epilog=EXIT_CODES)
def stats(
    ctx: typer.Context,
    window: Annotated[
        str,
        typer.Option(
            envvar="JOBRELAY_STATS_WINDOW", help="recent window for failure rate and p50/p95: 3600, 15m, 1h, 7d"
        ),
    ] = "1h",
    json_out: JsonOut = False,
) -> None:
    """Counts by status and class, oldest queued job, failure rate, p50/p95 duration. Operators only."""
    seconds = _seconds(window)  # a bad --window is a usage error before any call
    body = _client(ctx).stats(seconds)
    _show(body, json_out, render.stats_view)
    if not json_out:
        cli_flow.print_paused(body)


# -- access management ---------------------------------------------------------------------------

AccessEnv = Annotated[
    str | None, typer.Option("--env", show_default=False, help="the env whose users change (default: the global --env)")
]


def _access_client(ctx: typer.Context, env: str | None) -> JobrelayClient:
    """A client of `env` (default: the global --env), signed in for that env, not the global one."""
    if env is None:
        return _client(ctx)
    if env not in ENV_NAMES:
        raise typer.BadParameter(f"unknown env {env!r}; one of {', '.join(ENV_NAMES)}", param_hint="--env")
    connection = ctx.find_object(Connection)
    if connection is None:
        raise Problem("internal: connection settings missing")
    return dataclasses.replace(connection, env=env).client()


def _access_change(
    ctx: typer.Context, action: str, email: str, env: str | None, admin: bool, role: list[str] | None, json_out: bool
) -> None:
    if not admin and not role:
        raise Problem(f"say what to {action}: --admin and/or --role ROLE (repeatable)")
    client = _access_client(ctx, env)
    body = client.access_change(action, email, admin=admin, roles=role or ())
    if json_out:
        render.print_json(body)
        return
    before, after = body["before"], body["after"]
    out = render.console()
    if not body["changed"]:
        out.print(f"{email} in {client.env}: nothing to change ({render.grants(after)})")
        return
    out.print(
        f"{email} in {client.env}: {render.grants(before)} -> {render.grants(after)}  (access_log {body['log_id']})"
    )
    out.print(render.t(body["note"], "dim"))


@access_app.command("grant", epilog=EXIT_CODES)
def access_grant(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="the user's email (they signed in to the app once)")],
    env: AccessEnv = None,
    admin: Annotated[bool, typer.Option("--admin", help="make the user an operator (admin claim)")] = False,
    role: Annotated[list[str] | None, typer.Option("--role", help="give this role (repeatable)")] = None,
    json_out: JsonOut = False,
) -> None:
    """Give a user the admin claim and/or roles in the env's Firebase project."""
    _access_change(ctx, "grant", email, env, admin, role, json_out)


@access_app.command("revoke", epilog=EXIT_CODES)
def access_revoke(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="the user's email")],
    env: AccessEnv = None,
    admin: Annotated[bool, typer.Option("--admin", help="take the admin claim away")] = False,
    role: Annotated[list[str] | None, typer.Option("--role", help="take this role away (repeatable)")] = None,
    json_out: JsonOut = False,
) -> None:
    """Take the admin claim and/or roles from a user."""
    _access_change(ctx, "revoke", email, env, admin, role, json_out)


@access_app.command("list", epilog=EXIT_CODES)
def access_list(ctx: typer.Context, env: AccessEnv = None, json_out: JsonOut = False) -> None:
    """Every user of the env holding the admin claim or a role."""
    client = _access_client(ctx, env)
    users = list(client.access_users())
    if json_out:
        render.print_json({"env": client.env, "users": users})
        return
    out = render.console()
    if not users:
        out.print(f"nobody in {client.env} holds the admin claim or a role")
        return
    out.print(render.access_table(users))


@access_app.command("log", epilog=EXIT_CODES)
def access_log(
    ctx: typer.Context,
    env: AccessEnv = None,
    limit: Annotated[int, typer.Option(help="how many changes, newest first (up to 200)")] = 20,
    json_out: JsonOut = False,
) -> None:
    """The env's access changes, newest first: who, when, what, before and after."""
    client = _access_client(ctx, env)
    entries = client.access_log(limit)
    if json_out:
        render.print_json({"env": client.env, "entries": entries})
        return
    render.console().print(render.access_log_table(entries))


def main() -> None:
    app()
