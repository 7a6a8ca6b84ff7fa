"""`python -m services.deadletter`: the dead-letter service under gunicorn (Pub/Sub pushes here)."""

from __future__ import annotations

from jobrelay.serve import serve
from services.deadletter import main as deadletter_main


def main() -> None:
    # As many threads as Cloud Run sends requests at once (concurrency 40 in terraform run.tf).
    serve(deadletter_main.app, threads=40)


if __name__ == "__main__":
    main()
