"""`jobrelay dev ...`: run the local stack and sign users in through its Auth emulator."""

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
    email: Annotated[
        str | None, typer.Option(help="the user's email if it is created (default UID@example.com)")
    ] = None,
    state_dir: Annotated[
        Path, typer.Option(envvar="JOBRELAY_STATE_DIR", help="where the running stack's local.json is")
    ] = Path(".jobrelay"),
) -> None:
    """Sign UID in through the local stack's Auth emulator with these claims; print its ID token.

    The user is created if missing (verified email, password `jobrelay-local`); its custom claims are
    set to exactly --admin / --role. The token is the emulator's: only the local stack accepts it.
    """
    from jobrelay.local import authemu

    state_path = state_dir / "local.json"
    if not state_path.exists():
        raise typer.BadParameter(f"{state_path} not found: start the local stack first (`jobrelay dev up`)")
    local = json.loads(state_path.read_text())
    envs = local.get("envs") or {}
    if env not in envs:
        known = ", ".join(envs) or ", ".join(load_infra().environments)
        raise typer.BadParameter(f"unknown env {env!r}; the stack serves {known}", param_hint="--env")
    auth = local.get("auth") or {}
    if not isinstance(auth, dict) or not auth.get("host"):
        raise typer.BadParameter(f"{state_path} names no Auth emulator: restart the stack (`jobrelay dev up`)")
    try:
        signed = authemu.sign_in(auth["host"], envs[env]["project"], uid, admin=admin, roles=role or (), email=email)
    except authemu.AuthEmulatorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(5) from exc
    typer.echo(signed.id_token)
