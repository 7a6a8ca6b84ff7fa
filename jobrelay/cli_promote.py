"""`jobrelay promote ID --to ENV`: run a job's, a schedule's or a pipeline's spec in the next env.

Each env's API writes only its own env, so the CLI makes the crossing (docs/adr/0019) with the
operator's credentials for each env: it reads the spec from the source env's API (`--env`), submits
it to the target env's API (`--to`) as the operator there, then records the link on the source. The
direction is checked here first (dev -> stg -> prod, one step at a time) and again by both APIs.
Registered on the `jobrelay` app by jobrelay.cli; no import of it here, so no cycle.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any

import typer

from jobrelay import cli_render as render
from jobrelay.connection import ConfigError, Connection
from jobrelay.errors import Unprocessable
from jobrelay.promotion import KINDS, check_direction

HELP = "\n\n".join(
    [
        "Promote a job (or a schedule's spec, or a pipeline) from --env to the next env: dev -> stg, stg -> prod.",
        "The new job (or pipeline) runs in the target env as you, with promoted_from; the source records promoted_to. "
        "Promoting the same spec again answers the first one. Skipping an env (dev -> prod) is refused.",
        "Credentials for the target env: --local-user signs in to it too (local stack); otherwise give --to-token "
        "(a Firebase ID token of its project) or --to-impersonate (its operator service account), and --to-api "
        "when its API is elsewhere (the cloud: one API per env).",
    ]
)


def _target(connection: Connection, to: str, api: str | None, token: str | None, impersonate: str | None) -> Any:
    if connection.token and not token:
        raise ConfigError(
            f"--token is an ID token of {connection.env}'s project only: pass --to-token (JOBRELAY_TO_TOKEN) "
            f"for {to}, or sign in with --local-user on the local stack"
        )
    target = dataclasses.replace(
        connection,
        env=to,
        api=api or connection.api,
        token=token,
        impersonate=impersonate or connection.impersonate,
    )
    return target.client()


def promote(
    ctx: typer.Context,
    ident: Annotated[str, typer.Argument(metavar="ID", help="the job id (or schedule name, pipeline id)")],
    to: Annotated[str, typer.Option("--to", help="the next env: stg from dev, prod from stg")],
    kind: Annotated[str, typer.Option(help="job, schedule or pipeline")] = "job",
    to_api: Annotated[
        str | None, typer.Option(envvar="JOBRELAY_TO_API", show_default=False, help="the target env's API URL")
    ] = None,
    to_token: Annotated[
        str | None,
        typer.Option(envvar="JOBRELAY_TO_TOKEN", show_default=False, help="a Firebase ID token of the target env"),
    ] = None,
    to_impersonate: Annotated[
        str | None,
        typer.Option(envvar="JOBRELAY_TO_IMPERSONATE_SA", show_default=False, help="the target env's operator SA"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show the spec; change nothing")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="follow the new job until it ends")] = False,
    json_out: Annotated[bool, typer.Option("--json", envvar="JOBRELAY_JSON", help="print JSON")] = False,
) -> None:
    connection = ctx.find_object(Connection)
    if connection is None:
        raise ConfigError("internal: connection settings missing")
    if kind not in KINDS:
        raise ConfigError(f"unknown --kind {kind!r}: one of {', '.join(KINDS)}")
    try:
        check_direction(connection.env, to)
    except Unprocessable as exc:
        raise ConfigError(exc.message) from exc
    source = connection.client()
    found = source.promotion_source(kind, ident, to)
    if dry_run:
        if json_out:
            render.print_json(found)
        else:
            render.console().print(f"would promote {connection.env} {kind} {ident} to {to} with this spec:")
            render.console().print(json.dumps(found["spec"], indent=2, sort_keys=True), markup=False)
        return
    target = _target(connection, to, to_api, to_token, to_impersonate)
    made = target.promote(found["from"], found["spec"])
    links = source.record_promotion(kind, ident, to, made.id)
    # A pipeline (or a schedule that starts one) is promoted as a pipeline: its answer has steps.
    made_kind = "pipeline" if "steps" in made.job else "job"
    if json_out:
        render.print_json({made_kind: made.job, "created": made.created, "source": links})
    else:
        again = "" if made.created else f" (promoted before: the first {made_kind})"
        render.console().print(f"promoted {connection.env} {kind} {ident} -> {to} {made_kind} {made.id}{again}")
    if watch:
        ended = target.wait_pipeline(made.id) if made_kind == "pipeline" else target.wait(made.id)
        if not json_out:
            render.console().print(f"{to} {made_kind} {made.id}: {ended['status']}")
        if ended["status"] != "succeeded":
            raise typer.Exit(1 if ended["status"] in ("dead_lettered", "failed") else 2)


def register(app: typer.Typer, epilog: str) -> None:
    """Add `promote` to the `jobrelay` command."""
    app.command("promote", help=HELP, epilog=epilog)(promote)
