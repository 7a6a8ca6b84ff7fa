"""`python -m services.worker`: the worker under gunicorn, handing running jobs back on SIGTERM."""

from __future__ import annotations

import flask

from jobrelay.serve import serve
from services.worker import main as worker_main


def app() -> flask.Flask:
    """A Flask app that sends every path to the functions-framework function, as it would."""
    flask_app = flask.Flask("jobrelay-worker")

    def entry(path: str = "") -> flask.Response:
        return worker_main.worker(flask.request)

    flask_app.add_url_rule("/", "root", entry, methods=["GET", "POST"])
    flask_app.add_url_rule("/<path:path>", "any", entry, methods=["GET", "POST"])
    return flask_app


if __name__ == "__main__":
    serve(app(), on_sigterm=worker_main.runner.begin_shutdown, threads=64)
