"""Run the Cloud Tasks emulator: `jobrelay-cloudtasks-emulator` or `python -m jobrelay.local.cloudtasks`.

gRPC on `--host-port` (default 127.0.0.1:8123), REST plus /certs and /healthz on `--http-port`
(default 8124). Every flag has an environment variable (shown in `--help`). Queues come from
`--queues queues.yaml` (any team), from `--config infra/classes.yaml --projects p1,p2` (one queue
per jobrelay job class in each project), from API calls, or, with `--create-queues-on-demand`, from
the first task created in them. SIGTERM or SIGINT stops dispatching, stops the servers and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from jobrelay.local.cloudtasks.config import QueueSettings, settings_for_class
from jobrelay.local.cloudtasks.dispatch import HttpDispatcher
from jobrelay.local.cloudtasks.engine import Engine
from jobrelay.local.cloudtasks.names import QueueName
from jobrelay.local.cloudtasks.queuefile import QueueFileError, load_queue_file
from jobrelay.local.cloudtasks.rest import DEFAULT_FUNCTIONS_URL, RestApi
from jobrelay.local.cloudtasks.server import serve
from jobrelay.local.cloudtasks.service import CloudTasksService
from jobrelay.local.cloudtasks.sideport import serve_sideport
from jobrelay.local.oidc import LocalSigner

log = logging.getLogger("jobrelay.cloudtasks")

# flag, environment variable, default, type, help
_FLAGS: tuple[tuple[str, str, str | None, type, str], ...] = (
    ("--host-port", "JOBRELAY_CLOUDTASKS_HOST_PORT", "127.0.0.1:8123", str, "gRPC address to listen on"),
    ("--http-port", "JOBRELAY_CLOUDTASKS_HTTP_PORT", "8124", int,
     "HTTP port: the REST API, GET /certs and GET /healthz (0: none)"),
    ("--queues", "JOBRELAY_CLOUDTASKS_QUEUES", None, str, "YAML file of queues to create at start"),
    ("--create-queues-on-demand", "JOBRELAY_CLOUDTASKS_CREATE_QUEUES_ON_DEMAND", "false", bool,
     "a task created in a missing queue creates it with the defaults"),
    ("--functions-url", "JOBRELAY_CLOUDTASKS_FUNCTIONS_URL", DEFAULT_FUNCTIONS_URL, str,
     "base URL for firebase-admin tasks with an empty url: BASE/PROJECT/LOCATION/QUEUE"),
    ("--config", "JOBRELAY_CLOUDTASKS_CONFIG", None, str, "classes.yaml: pre-create one queue per class"),
    ("--projects", "JOBRELAY_CLOUDTASKS_PROJECTS", "", str, "comma-separated projects for --config/--queues"),
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


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    prog = "python -m jobrelay.local.cloudtasks" if sys.argv[0].endswith("__main__.py") else None
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    for flag, env, default, kind, text in _FLAGS:
        value = os.environ.get(env, default)
        if kind is bool:
            on = _truthy(value or "")
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=on, help=f"{text} (${env})")
            continue
        parser.add_argument(flag, type=kind, default=None if value is None else kind(value), help=f"{text} (${env})")
    args = parser.parse_args(argv)
    if args.config and not args.projects:
        parser.error("--config needs --projects (or JOBRELAY_CLOUDTASKS_PROJECTS)")
    return args


def preload(engine: Engine, config: Path, projects: Sequence[str], location: str) -> int:
    """Create every queue of every job class of `config` (one per shard) in every project; returns how many."""
    from jobrelay.infra_files import load_classes  # only needed with --config; pulls in pydantic

    classes = load_classes(config)
    created = 0
    for project in projects:
        for job_class in classes.values():
            for queue in job_class.queues:
                engine.create_queue(QueueName(project, location, queue), settings_for_class(job_class))
                created += 1
    return created


def _replace_with(settings: QueueSettings) -> Callable[[QueueSettings | None], QueueSettings]:
    return lambda _current: settings


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
    if args.queues:
        try:
            queues = load_queue_file(Path(args.queues), projects=projects, location=args.location)
        except QueueFileError as exc:
            log.error("%s", exc)
            return 2
        for name, settings in queues:
            engine.update_queue(name, _replace_with(settings))  # the file's settings win
        log.info("created %d queues from %s", len(queues), args.queues)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: shutting down", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    engine.start()
    service = CloudTasksService(engine, [args.location], create_queues=args.create_queues_on_demand)
    server = serve(service, args.host_port)
    host = args.host_port.rsplit(":", 1)[0].strip("[]")
    api = RestApi(service, functions_url=args.functions_url)
    side = serve_sideport(host, args.http_port, signer, api) if args.http_port else None
    rest_at = f"http://{host}:{args.http_port}" if args.http_port else "off"
    log.info("Cloud Tasks emulator: gRPC on %s, REST (and /certs, /healthz) on %s", args.host_port, rest_at)
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
