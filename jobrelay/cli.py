"""The `jobrelay` command: operators' CLI and the local stack (`jobrelay dev ...`)."""

from __future__ import annotations

import typer

from jobrelay.local.devcli import app as dev_app

app = typer.Typer(help="jobrelay: batch jobs for Firebase apps on Google Cloud.", no_args_is_help=True)
app.add_typer(dev_app, name="dev")


def main() -> None:
    app()
