"""`jobrelay dev ...`: run the local stack, reload its services, seed its Firestore, sign users in.

`dev up` keeps the API on one port across restarts (remembered in `{state_dir}/dev.json`), so URLs
in a browser or a `.env` file stay right; `dev reload` restarts the services with new code while the
emulators, and so the local data, keep running. `dev token` signs a user in through the stack's
Firebase Auth emulator with the claims asked for.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jobrelay.connection import ConfigError
from jobrelay.infra_files import load_infra
from jobrelay.settings import ENV_NAMES

if TYPE_CHECKING:
    from jobrelay.local.stack import Stack

app = typer.Typer(
    help="The local stack: emulators, API, worker, dead-letter service and pool on this machine.",
    no_args_is_help=True,
)

StateDir = Annotated[Path, typer.Option(envvar="JOBRELAY_STATE_DIR", help="where local.json, dev.json and logs/ are")]
RELOAD_REQUEST = "reload.request"
SERVICE_NAMES = ("api", "worker", "deadletter", "muscle")


def remembered_api_port(state_dir: Path, requested: int | None) -> int:
    """The API port for this state dir: the one asked for, else the one used last, else a new free one."""
    from jobrelay.local import procs

    memory = state_dir / "dev.json"
    try:
        saved = json.loads(memory.read_text()) if memory.exists() else {}
    except ValueError:
        saved = {}  # a damaged file only costs the remembered port
    port = requested or saved.get("api_port")
    if not isinstance(port, int) or not 0 < port < 65536:
        port = procs.free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    memory.write_text(json.dumps({**saved, "api_port": port}, indent=2) + "\n")
    return port


def _log_to_files(logs: Path) -> None:
    """The stack's own JSON log goes to logs/stack.log; a person sees warnings as plain lines."""
    from jobrelay import logging as jlog

    jlog.setup("stack")
    logs.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(logs / "stack.log")
    to_file.setFormatter(jlog.CloudLoggingFormatter("stack"))
    to_person = logging.StreamHandler(sys.stderr)
    to_person.setLevel(logging.WARNING)
    to_person.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logging.getLogger().handlers[:] = [to_file, to_person]


def summary(stack: Stack, seconds: float) -> list[str]:
    """What `dev up` prints: "ready" first, then one line per service and emulator."""
    cwd = Path.cwd()

    def rel(p: Path) -> str:
        return str(p.relative_to(cwd)) if p.is_relative_to(cwd) else str(p)

    lines = [
        f"ready in {seconds:.1f}s: envs {', '.join(stack.options.envs)}; state in {rel(stack.state_dir / 'local.json')}"
    ]
    for name, svc in stack.services.items():
        pid = svc.proc.pid if svc.proc is not None else "-"
        lines.append(f"  {name:<11} {stack.url(name):<24} pid {pid:<8} log {rel(stack.logs / f'{name}.log')}")
    for name, proc in stack.emulators.items():
        address = f"127.0.0.1:{stack.ports[name]}"
        lines.append(f"  {name:<11} {address:<24} pid {proc.pid:<8} log {rel(stack.logs / f'{name}.log')}")
    lines.append("Ctrl-C stops everything; `jobrelay dev reload` restarts the services with new code, keeping data.")
    return lines


@app.command()
def up(
    state_dir: StateDir = Path(".jobrelay"),
    envs: Annotated[str, typer.Option(envvar="JOBRELAY_ENVS", help="envs to serve, comma separated")] = ",".join(
        ENV_NAMES
    ),
    tick_seconds: Annotated[
        float, typer.Option(envvar="JOBRELAY_TICK_SECONDS", help="how often the local Cloud Scheduler ticks")
    ] = 5.0,
    job_modules: Annotated[
        str | None,
        typer.Option(
            envvar="JOBRELAY_JOB_MODULES",
            help="modules that declare job types, comma separated (default: jobs); the current directory is "
            "on the services' import path, so your own package imports",
        ),
    ] = None,
    api_port: Annotated[
        int | None,
        typer.Option(
            envvar="JOBRELAY_API_PORT",
            min=1,
            max=65535,
            help="the API's port (default: the one used last with this state dir, else a free one)",
        ),
    ] = None,
) -> None:
    """Start the local stack and keep it running until Ctrl-C or SIGTERM."""
    from jobrelay.local.stack import Stack, StackError, StackOptions, wait_forever

    state_dir = state_dir.resolve()
    _log_to_files(state_dir / "logs")
    stack = Stack(
        StackOptions(
            state_dir=state_dir,
            envs=tuple(e.strip() for e in envs.split(",")),
            tick_seconds=tick_seconds,
            job_modules=job_modules,
            pythonpath=(Path.cwd(),),
            api_port=remembered_api_port(state_dir, api_port),
        )
    )
    started = time.monotonic()
    try:
        stack.start()
    except StackError as exc:
        raise ConfigError(str(exc)) from exc
    (state_dir / RELOAD_REQUEST).unlink(missing_ok=True)
    typer.echo("\n".join(summary(stack, time.monotonic() - started)))

    def reload_requested() -> bool:
        request = state_dir / RELOAD_REQUEST
        if not request.exists():
            return False
        request.unlink(missing_ok=True)
        return True

    wait_forever(stack, reload_when=reload_requested, on_reload=lambda: typer.echo("reloaded the services"))


@app.command()
def reload(
    state_dir: StateDir = Path(".jobrelay"),
    timeout: Annotated[float, typer.Option(help="seconds to wait for the services to be back")] = 120.0,
) -> None:
    """Restart the running stack's services (API, worker, pool...) with new code; emulators and data stay."""
    state = _local_state(state_dir)
    before = int(state.get("reloads", 0))
    request = state_dir / RELOAD_REQUEST
    request.write_text(str(os.getpid()))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            now = json.loads((state_dir / "local.json").read_text())
        except (OSError, ValueError):
            continue
        if int(now.get("reloads", 0)) > before:
            problems = now.get("reload_problems") or []
            if problems:
                typer.echo("\n".join(f"error: {p}" for p in problems), err=True)
                raise typer.Exit(7)
            pids = ", ".join(f"{name} {pid}" for name, pid in now["pids"].items() if name in SERVICE_NAMES)
            typer.echo(f"reloaded: api {now['api']}; {pids}")
            return
    request.unlink(missing_ok=True)
    raise ConfigError(f"no `jobrelay dev up` using {state_dir} answered within {timeout:g}s; is it running?")


@app.command()
def seed(
    file: Annotated[Path, typer.Argument(help="JSON or YAML: collection -> document id -> fields")],
    env: Annotated[str, typer.Option(envvar="JOBRELAY_ENV", help="dev, stg or prod")] = "dev",
    state_dir: StateDir = Path(".jobrelay"),
) -> None:
    """Load documents into the local Firestore of one env (your app's collections, never jobrelay's)."""
    from jobrelay.local import seed as seeding

    state = _local_state(state_dir)
    envs = state.get("envs") or {}
    if env not in envs:
        raise ConfigError(f"env {env!r} is not served by the running stack (it serves {', '.join(envs)})")
    data = seeding.load(file)
    seeding.write(data, str(state["firestore"]), str(envs[env]["project"]))
    per = ", ".join(f"{c} ({len(d)})" for c, d in data.docs.items())
    typer.echo(f"seeded {data.count} documents into {env} ({envs[env]['project']}): {per}")


def _local_state(state_dir: Path) -> dict[str, Any]:
    path = state_dir / "local.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} not found: start the local stack first (`jobrelay dev up`)") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not the local stack's state file")
    return data


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
