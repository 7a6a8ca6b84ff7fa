"""What every `jobrelay` command shares: exit codes, the --json flag, usage problems, the API client.

The commands live in `jobrelay.cli` (jobs, and the app itself), `jobrelay.cli_ops` (dead letters,
queues, stats, access) and the feature modules that register their own sub-commands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import RenderableType

from jobrelay import cli_render as render
from jobrelay.client import JobrelayClient
from jobrelay.connection import Connection

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


class Problem(Exception):
    """A usage or configuration problem the CLI finds itself (exit 4)."""


JsonOut = Annotated[
    bool, typer.Option("--json", envvar="JOBRELAY_JSON", help="print machine-readable JSON instead of tables")
]


def show(body: dict[str, Any], json_out: bool, view: Callable[[dict[str, Any]], RenderableType]) -> None:
    if json_out:
        render.print_json(body)
    else:
        render.console().print(view(body))


def client_of(ctx: typer.Context) -> JobrelayClient:
    connection = ctx.find_object(Connection)
    if connection is None:  # only when a command is invoked without the app's callback
        raise Problem("internal: connection settings missing")
    return connection.client()
