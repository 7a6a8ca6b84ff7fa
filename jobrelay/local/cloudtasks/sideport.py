"""The emulator's small HTTP side port: `GET /certs` (the OIDC signer's certificates) and `GET /healthz`.

`/certs` answers in the format of https://www.googleapis.com/oauth2/v1/certs, so a service verifies
the emulator's tokens with google-auth by pointing `certs_url` here.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from jobrelay.local.oidc import LocalSigner

log = logging.getLogger("jobrelay.cloudtasks.http")


def serve_sideport(host: str, port: int, signer: LocalSigner) -> ThreadingHTTPServer:
    """Serve /certs and /healthz on a daemon thread; stop with `.shutdown()`."""
    certs = json.dumps(signer.certs()).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/certs":
                self._answer(200, certs, "application/json; charset=UTF-8")
            elif path == "/healthz":
                self._answer(200, b"ok\n", "text/plain")
            else:
                self._answer(404, b"not found\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "public, max-age=3600")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug(format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="cloudtasks-http", daemon=True).start()
    return server
