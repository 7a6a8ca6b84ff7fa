"""Run the Cloud Tasks emulator: `python -m jobrelay.local.cloudtasks --host-port 127.0.0.1:PORT ...`.

Every flag has an environment variable (shown in `--help`). With `--config infra/classes.yaml
--projects p1,p2` one queue per job class is created in each project. SIGTERM or SIGINT stops
dispatching, stops the servers and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from jobrelay.local.cloudtasks.config import settings_for_class
from jobrelay.local.cloudtasks.dispatch import HttpDispatcher
from jobrelay.local.cloudtasks.engine import Engine
from jobrelay.local.cloudtasks.names import QueueName
from jobrelay.local.cloudtasks.server import serve
from jobrelay.local.cloudtasks.sideport import serve_sideport
from jobrelay.local.oidc import LocalSigner

log = logging.getLogger("jobrelay.cloudtasks")

# flag, environment variable, default, type, help
_FLAGS: tuple[tuple[str, str, str | None, type, str], ...] = (
    ("--host-port", "JOBRELAY_CLOUDTASKS_HOST_PORT", "127.0.0.1:8123", str, "gRPC address to listen on"),
    ("--http-port", "JOBRELAY_CLOUDTASKS_HTTP_PORT", None, int, "side port for GET /certs and /healthz"),
    ("--config", "JOBRELAY_CLOUDTASKS_CONFIG", None, str, "classes.yaml: pre-create one queue per class"),
    ("--projects", "JOBRELAY_CLOUDTASKS_PROJECTS", "", str, "comma-separated projects for --config"),
    ("--location", "JOBRELAY_CLOUDTASKS_LOCATION", "us-central1", str, "location of the pre-created queues"),
    ("--signing-key", "JOBRELAY_OIDC_KEY_FILE", None, str, "PEM key for OIDC tokens (created if absent)"),
    ("--name-reservation-seconds", "JOBRELAY_CLOUDTASKS_NAME_RESERVATION_SECONDS", "3600", float,
     "how long a finished or deleted task's name stays taken"),
    ("--queue-reservation-seconds", "JOBRELAY_CLOUDTASKS_QUEUE_RESERVATION_SECONDS", "604800", float,
     "how long a deleted queue's name stays taken (the real service: 7 days)"),
    ("--dispatch-workers", "JOBRELAY_CLOUDTASKS_DISPATCH_WORKERS", "64", int,
     "dispatch threads: the most attempts in flight at once"),
    ("--log-level", "JOBRELAY_CLOUDTASKS_LOG_LEVEL", "INFO", str, "logging level"),
)  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jobrelay.local.cloudtasks", description=__doc__.split("\n")[0])
    for flag, env, default, kind, text in _FLAGS:
        value = os.environ.get(env, default)
        parser.add_argument(flag, type=kind, default=None if value is None else kind(value), help=f"{text} (${env})")
    args = parser.parse_args(argv)
    if args.config and not args.projects:
        parser.error("--config needs --projects (or JOBRELAY_CLOUDTASKS_PROJECTS)")
    return args


def preload(engine: Engine, config: Path, projects: Sequence[str], location: str) -> int:
    """Create one queue per job class of `config` in every project; returns how many."""
    from jobrelay.settings import load_classes  # only needed with --config; pulls in pydantic

    classes = load_classes(config)
    for project in projects:
        for job_class in classes.values():
            engine.create_queue(QueueName(project, location, job_class.queue), settings_for_class(job_class))
    return len(projects) * len(classes)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    signer = LocalSigner(args.signing_key)
    dispatcher = HttpDispatcher(signer)
    engine = Engine(
        dispatcher.deliver,
        workers=args.dispatch_workers,
        name_reservation=args.name_reservation_seconds,
        queue_reservation=args.queue_reservation_seconds,
    )
    projects = [p.strip() for p in args.projects.split(",") if p.strip()]
    if args.config:
        count = preload(engine, Path(args.config), projects, args.location)
        log.info("created %d queues from %s in %s", count, args.config, ", ".join(projects))
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: shutting down", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    engine.start()
    server = serve(engine, args.host_port, locations=[args.location])
    host = args.host_port.rsplit(":", 1)[0].strip("[]")
    side = serve_sideport(host, args.http_port, signer) if args.http_port else None
    log.info("Cloud Tasks emulator: gRPC on %s, HTTP side port %s", args.host_port, args.http_port)
    stopping.wait()
    abandoned = engine.stop()
    server.stop(grace=2).wait()
    if side is not None:
        side.shutdown()
    dispatcher.close()
    log.info("stopped (%d attempts were in flight)", abandoned)
    return 0


if __name__ == "__main__":
    sys.exit(main())
