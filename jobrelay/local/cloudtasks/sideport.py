"""The emulator's HTTP port: the Cloud Tasks REST API (rest.py), `GET /certs` and `GET /healthz`.

`/certs` answers in the format of https://www.googleapis.com/oauth2/v1/certs, so a service verifies
the emulator's tokens with google-auth by pointing `certs_url` here. Everything else goes to the
REST face. This module only moves bytes: it reads at most `rest.MAX_REQUEST_BYTES` of a body (with
Content-Length or chunked), and a bigger one is refused before it is read.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from jobrelay.local.cloudtasks import rest
from jobrelay.local.oidc import LocalSigner

log = logging.getLogger("jobrelay.cloudtasks.http")


class _TooLarge(Exception):
    pass


def serve_sideport(host: str, port: int, signer: LocalSigner, api: rest.RestApi | None = None) -> ThreadingHTTPServer:
    """Serve on a daemon thread; stop with `.shutdown()`. Without `api` only /certs and /healthz answer."""
    certs = json.dumps(signer.certs()).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in one buffered write (flushed after each request) with Nagle off:
        # otherwise the body waits for the client's delayed ACK of the headers, ~40 ms a request.
        disable_nagle_algorithm = True
        wbufsize = 64 * 1024

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/certs":
                self._answer(rest.Reply(200, certs, (("Content-Type", "application/json; charset=UTF-8"),
                                                     ("Cache-Control", "public, max-age=3600"))))  # fmt: skip
            elif path == "/healthz":
                self._answer(rest.Reply(200, b"ok\n", (("Content-Type", "text/plain"),)))
            else:
                self._api()

        def do_POST(self) -> None:
            self._api()

        do_PATCH = do_DELETE = do_PUT = do_POST

        def _api(self) -> None:
            if api is None:
                self._answer(rest.Reply(404, b"not found\n", (("Content-Type", "text/plain"),)))
                return
            try:
                body = self._body()
            except _TooLarge:
                self.close_connection = True  # the rest of the body is never read
                self._answer(rest.too_large())
                return
            except ValueError:
                self.close_connection = True
                self._answer(rest.error_reply(400, "INVALID_ARGUMENT", "Malformed request body framing."))
                return
            self._answer(api.handle(self.command, self.path, body))

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                return self._chunked()
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError("negative Content-Length")
            if length > rest.MAX_REQUEST_BYTES:
                raise _TooLarge
            return self.rfile.read(length)

        def _chunked(self) -> bytes:
            parts: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline(64).split(b";", 1)[0].strip() or b"x", 16)
                if size == 0:
                    while self.rfile.readline(1024).strip():  # trailers
                        pass
                    return b"".join(parts)
                total += size
                if total > rest.MAX_REQUEST_BYTES:
                    raise _TooLarge
                parts.append(self.rfile.read(size))
                self.rfile.readline(8)

        def _answer(self, reply: rest.Reply) -> None:
            self.send_response(reply.status)
            for key, value in reply.headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(reply.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug(format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="cloudtasks-http", daemon=True).start()
    return server
