"""`python -m services.deadletter`: the dead-letter service under gunicorn (Pub/Sub pushes here)."""

from __future__ import annotations

from jobrelay.serve import serve
from services.deadletter import main as deadletter_main


def main() -> None:
    serve(deadletter_main.app, threads=8)


if __name__ == "__main__":
    main()
