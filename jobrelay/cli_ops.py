"""Operators' commands: dead letters (list, show, redrive), queue depths, stats, and access management.

Each needs the admin claim in the env (`--admin` with `--local-user` on the local stack). `jobrelay.cli`
registers them on the `jobrelay` app.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Annotated, Any

import typer

from jobrelay import cli_flow
from jobrelay import cli_render as render
from jobrelay import cli_render_ops as render_ops
from jobrelay.cli_common import EXIT_CODES, JsonOut, Problem, client_of, show
from jobrelay.client import JobrelayClient
from jobrelay.connection import Connection
from jobrelay.settings import ENV_NAMES

REDRIVE_HELP = "\n\n".join(
    [
        "Run dead jobs again, each as a new attempt; choose them with exactly one of --job, --fingerprint, --all.",
        "A fingerprint with no open dead letter is refused (exit 6), never read as --all.",
        "--dry-run only says what would happen. Without --yes, on a terminal the command shows the dry run and "
        "asks; with stdin not a terminal it refuses (exit 4): a script must say --yes.",
    ]
)

dlq = typer.Typer(
    help="Dead letters: jobs that failed for good. Operators only (admin claim).",
    no_args_is_help=True,
    epilog=EXIT_CODES,
)
access_app = typer.Typer(
    help="Who may do what in an env: the admin claim and roles of Firebase users. Operators only; every change "
    "is recorded in the env's access_log. A user's new claims reach jobrelay when their ID token refreshes.",
    no_args_is_help=True,
    epilog=EXIT_CODES,
)


@dlq.command("list", epilog=EXIT_CODES)
def dlq_list(
    ctx: typer.Context,
    fingerprint: Annotated[str | None, typer.Option(help="only this error group, with its jobs")] = None,
    json_out: JsonOut = False,
) -> None:
    """Open dead letters grouped by error fingerprint, biggest group first."""
    body = client_of(ctx).dead_letters(fingerprint)
    if json_out:
        render.print_json(body)
        return
    out = render.console()
    if not body.get("groups"):
        out.print(render.t(f"no open dead letters{' with fingerprint ' + fingerprint if fingerprint else ''}"))
        return
    out.print(render_ops.groups_table(body["groups"]))
    if fingerprint:
        out.print(render_ops.dead_letters_table(body.get("dead_letters", [])))
    out.print(render.t(f"{body.get('total', 0)} open dead letters in {len(body['groups'])} groups", "dim"))


@dlq.command("show", epilog=EXIT_CODES)
def dlqshow(
    ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="the dead job")], json_out: JsonOut = False
) -> None:
    """One dead letter: error, stack, fingerprint, and the job as it is now."""
    show(client_of(ctx).dead_letter(job_id), json_out, render_ops.dead_letter_detail)


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
    client = client_of(ctx)
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
        out.print(render_ops.redrive_table(preview))
        would = sum(1 for r in preview.get("results", []) if r.get("outcome") == "would_redrive")
        if not would:
            out.print("nothing to redrive")
            return
        if not typer.confirm(f"redrive {would} job{'s' if would != 1 else ''} in env {client.env}?", default=False):
            out.print("not redriven")
            return
    show(client.redrive(**selector, dry_run=dry_run), json_out, render_ops.redrive_table)


def _seconds(value: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = value.strip().lower()
    try:
        return int(float(text[:-1]) * units[text[-1]]) if text and text[-1] in units else int(text)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r} is not a duration: seconds, or a number with s, m, h or d", param_hint="--window"
        ) from exc


def queues(ctx: typer.Context, json_out: JsonOut = False) -> None:
    """Each class's queue in the env: state, depth, oldest task, pool backlog. Operators only."""
    body = client_of(ctx).queues()
    show(body, json_out, render_ops.queues_table)
    if not json_out:
        cli_flow.print_paused(body)


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
    body = client_of(ctx).stats(seconds)
    show(body, json_out, render_ops.stats_view)
    if not json_out:
        cli_flow.print_paused(body)


# -- access management ---------------------------------------------------------------------------

AccessEnv = Annotated[
    str | None, typer.Option("--env", show_default=False, help="the env whose users change (default: the global --env)")
]


def _access_client(ctx: typer.Context, env: str | None) -> JobrelayClient:
    """A client of `env` (default: the global --env), signed in for that env, not the global one."""
    if env is None:
        return client_of(ctx)
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
        out.print(f"{email} in {client.env}: nothing to change ({render_ops.grants(after)})")
        return
    change = f"{render_ops.grants(before)} -> {render_ops.grants(after)}"
    out.print(f"{email} in {client.env}: {change}  (access_log {body['log_id']})")
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
    out.print(render_ops.access_table(users))


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
    render.console().print(render_ops.access_log_table(entries))
