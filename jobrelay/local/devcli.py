"""`jobrelay dev ...`: run the local stack and mint tokens it accepts."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from jobrelay.settings import ENV_NAMES, load_infra

app = typer.Typer(
    help="The local stack: emulators, API, worker, dead-letter service and pool on this machine.",
    no_args_is_help=True,
)


@app.command()
def up(
    state_dir: Annotated[Path, typer.Option(envvar="JOBRELAY_STATE_DIR", help="where local.json and logs go")] = Path(
        ".jobrelay"
    ),
    envs: Annotated[str, typer.Option(envvar="JOBRELAY_ENVS", help="envs to serve, comma separated")] = ",".join(
        ENV_NAMES
    ),
    tick_seconds: Annotated[
        float, typer.Option(envvar="JOBRELAY_TICK_SECONDS", help="how often the local Cloud Scheduler ticks")
    ] = 5.0,
) -> None:
    """Start the local stack and keep it running until Ctrl-C or SIGTERM."""
    from jobrelay import logging as jlog
    from jobrelay.local.stack import Stack, StackOptions, wait_forever

    jlog.setup("stack")
    stack = Stack(
        StackOptions(
            state_dir=state_dir.resolve(),
            envs=tuple(e.strip() for e in envs.split(",")),
            tick_seconds=tick_seconds,
        )
    )
    stack.start()
    logging.getLogger("jobrelay.local").info("ready: %s", state_dir / "local.json")
    typer.echo(json.dumps({"api": stack.url("api"), "state": str(state_dir / "local.json")}))
    wait_forever(stack)


@app.command()
def token(
    env: Annotated[str, typer.Option(envvar="JOBRELAY_ENV", help="dev, stg or prod")] = "dev",
    uid: Annotated[
        str, typer.Option(envvar=["JOBRELAY_LOCAL_USER", "JOBRELAY_UID"], help="the user id (token subject)")
    ] = "alice",
    admin: Annotated[bool, typer.Option("--admin", help="give the user the admin claim")] = False,
    role: Annotated[list[str] | None, typer.Option("--role", help="add a role claim (repeatable)")] = None,
    lifetime: Annotated[int, typer.Option(help="seconds the token lives")] = 3600,
) -> None:
    """Print a Firebase ID token the local stack (and only it) accepts."""
    from jobrelay.local.tokens import emulator_id_token

    infra = load_infra()
    if env not in infra.environments:
        raise typer.BadParameter(f"unknown env {env!r}; one of {', '.join(infra.environments)}", param_hint="--env")
    typer.echo(emulator_id_token(infra.env(env).project, uid, admin=admin, roles=role or (), lifetime_seconds=lifetime))
