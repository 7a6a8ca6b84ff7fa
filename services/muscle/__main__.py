"""`python -m services.muscle`: the Elastic Muscle pool process, one per VM.

Pulls heavy jobs from the subscriptions of the envs in JOBRELAY_ENVS (prod before stg before dev),
runs them with each env's own identity (JOBRELAY_IMPERSONATE=true in the cloud), and drains on
SIGTERM. Serves `GET /healthz` on PORT for the instance group's health check.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from jobrelay import clients, tracing
from jobrelay import logging as jlog
from jobrelay.deployment import Deployment
from jobrelay.pool import Lane, Pool

log = logging.getLogger("jobrelay.muscle")


def build() -> Pool:
    deployment = Deployment.from_env()
    tracing.setup("muscle", deployment.settings.trace_export)
    lanes = []
    for name in deployment.env_names:
        env = deployment.infra.env(name)
        subscriber = clients.subscriber_client(deployment.identity(name))
        lanes.append(
            Lane(
                env=env,
                subscriber=subscriber,
                subscription=subscriber.subscription_path(env.project, env.muscle_subscription),
            )
        )
    muscle = deployment.infra.muscle
    return Pool(
        deployment.runner(),
        lanes,
        total_slots=deployment.settings.muscle_total_slots or muscle.total_slots,
        grace_seconds=float(os.environ.get("JOBRELAY_DRAIN_GRACE_SECONDS", muscle.drain_grace_seconds)),
    )


def health_server(pool: Pool) -> ThreadingHTTPServer:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(pool.health()).encode()
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((os.environ.get("HOST", "0.0.0.0"), int(os.environ.get("PORT", "8080"))), Health)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


def main() -> None:
    jlog.setup("muscle")
    pool = build()
    server = health_server(pool)
    signal.signal(signal.SIGTERM, lambda *_: pool.stop())
    signal.signal(signal.SIGINT, lambda *_: pool.stop())
    try:
        pool.run()
    finally:
        server.shutdown()
    logging.shutdown()


if __name__ == "__main__":
    main()
