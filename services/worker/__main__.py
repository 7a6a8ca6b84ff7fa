"""`python -m services.worker`: the worker under gunicorn, handing running jobs back on SIGTERM."""

from __future__ import annotations

from jobrelay.serve import serve
from services.worker import main as worker_main


def main() -> None:
    serve(worker_main.app, on_sigterm=worker_main.runner.begin_shutdown, threads=64)


if __name__ == "__main__":
    main()
