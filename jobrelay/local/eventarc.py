"""The local stack's Eventarc: each new job request in an env's Firestore emulator, delivered to the API.

In the cloud an Eventarc trigger on `google.cloud.firestore.document.v1.created` for `job_requests/{id}`
calls the API (terraform/modules/environment/eventarc.tf). Google ships no Eventarc emulator, so this
process plays it: a Firestore listener (`on_snapshot`) on each env's pending requests, and for each
request that appears, the CloudEvent Eventarc would send (jobrelay.cloudevents: binary content mode,
`application/protobuf` DocumentEventData, the same headers) with a Google-shaped OIDC token of the env's
`eventarc` service account (signed by the stack's key, which the API trusts locally).

Delivery is at least once, as Eventarc's: a call that fails (the API down, a 5xx, a 429) is tried
again with backoff for up to `GIVE_UP_SECONDS`, then dropped; the maintenance pass's sweep picks up
what was dropped. A restarted listener announces every request still pending again (the API answers
repeats without writing).

The listener watches a window of `WINDOW` pending requests (the query's limit), not all of them: the
Firestore emulator sends a listened query's whole result again on every change, so listening to
hundreds of pending requests costs seconds of CPU per hundred writes (measured: 1,000 changes with
500 pending, 16 s of this process and 10 s of the emulator; with a window of 20, 3 s and 3 s). A
request enters the window as the ones before it are decided; one seen before is not sent twice.

Run by the stack as a supervised service: `python -m jobrelay.local.eventarc`
with the stack's variables (JOBRELAY_ENVS, JOBRELAY_INFRA_DIR, JOBRELAY_API_URL, JOBRELAY_OIDC_KEY_FILE,
FIRESTORE_EMULATOR_HOST, PORT).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
from google.cloud import firestore

from jobrelay import clients, cloudevents
from jobrelay.infra_files import load_infra
from jobrelay.local.oidc import LocalSigner
from jobrelay.process_settings import RuntimeSettings
from jobrelay.requests import REQUESTS, RequestStatus
from jobrelay.settings import Infra

log = logging.getLogger("jobrelay.local.eventarc")

PATH = "/v1/events/job-requests"
DELIVERY_THREADS = 8
WINDOW = 16  # pending requests listened to at once (see above); at least DELIVERY_THREADS
GIVE_UP_SECONDS = 300.0
FIRST_BACKOFF, MAX_BACKOFF = 0.2, 5.0
TOKEN_LIFETIME = 3600


@dataclass
class Delivery:
    env: str
    path: str
    fields: dict[str, Any]
    create_time: Any
    update_time: Any
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    first: float = field(default_factory=time.monotonic)


class Relay:
    """Listeners on the envs' pending requests and the threads that deliver their events."""

    def __init__(self, infra: Infra, envs: tuple[str, ...], api_url: str, signer: LocalSigner) -> None:
        self.infra = infra
        self.envs = envs
        self.url = api_url.rstrip("/") + PATH
        self.audience = api_url.rstrip("/")
        self.signer = signer
        self.queue: queue.Queue[Delivery | None] = queue.Queue()
        self.watches: dict[str, Any] = {}
        self.delivered = 0
        self._tokens: dict[str, tuple[float, str]] = {}
        self._sent: dict[str, float] = {}  # requests delivered or being delivered (a window shifts back and forth)
        self._sent_lock = threading.Lock()
        self._local = threading.local()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Relay:
        for env in self.envs:
            self._listen(env)
        for i in range(DELIVERY_THREADS):
            t = threading.Thread(target=self._deliver_loop, name=f"eventarc-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        threading.Thread(target=self._watch_loop, name="eventarc-watch", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for watch in self.watches.values():
            watch.unsubscribe()
        for _ in self._threads:
            self.queue.put(None)

    # -- listening ---------------------------------------------------------------------------

    def _listen(self, env: str) -> None:
        db = clients.firestore_client(self.infra.env(env).project)
        pending = (
            db.collection(REQUESTS)
            .where(filter=firestore.FieldFilter("status", "==", RequestStatus.PENDING.value))
            .limit(WINDOW)
        )

        def on_snapshot(docs: Any, changes: Any, read_time: Any) -> None:
            for change in changes:
                if change.type.name != "ADDED":
                    continue  # leaving `pending` means jobrelay decided it (or the window moved)
                snap = change.document
                path = f"{REQUESTS}/{snap.id}"
                if not self._first(f"{env}/{path}"):
                    continue
                self.queue.put(Delivery(env, path, snap.to_dict() or {}, snap.create_time, snap.update_time))

        self.watches[env] = pending.on_snapshot(on_snapshot)
        log.info("listening to %s in %s (%s)", REQUESTS, env, self.infra.env(env).project)

    def _watch_loop(self) -> None:
        """A listener that stopped for good (its emulator restarted, say) is started again."""
        while not self._stop.wait(1.0):
            for env, watch in list(self.watches.items()):
                if not watch.is_active and not self._stop.is_set():
                    log.warning("the listener of %s stopped; listening again", env)
                    watch.unsubscribe()
                    self._listen(env)

    def _first(self, key: str) -> bool:
        """True the first time a request is seen (again after a delivery that was given up)."""
        with self._sent_lock:
            if key in self._sent:
                return False
            if len(self._sent) > 50_000:  # long decided: forget them
                cutoff = time.monotonic() - 3600
                self._sent = {k: t for k, t in self._sent.items() if t > cutoff}
            self._sent[key] = time.monotonic()
            return True

    def _forget(self, d: Delivery) -> None:
        with self._sent_lock:
            self._sent.pop(f"{d.env}/{d.path}", None)

    # -- delivering ----------------------------------------------------------------------------

    def _token(self, env: str) -> str:
        at, token = self._tokens.get(env, (0.0, ""))
        if time.monotonic() - at > TOKEN_LIFETIME - 300:
            email = self.infra.env(env).service_accounts.eventarc
            token = self.signer.mint(self.audience, email, lifetime_seconds=TOKEN_LIFETIME)
            self._tokens[env] = (time.monotonic(), token)
        return token

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _deliver_loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            self._deliver(item)

    def _deliver(self, d: Delivery) -> None:
        env = self.infra.env(d.env)
        headers, body = cloudevents.encode_event(
            event_id=d.event_id,
            project=env.project,
            path=d.path,
            fields=d.fields,
            create_time=d.create_time,
            update_time=d.update_time,
            location=env.region,
        )
        backoff = FIRST_BACKOFF
        while not self._stop.is_set():
            headers["Authorization"] = f"Bearer {self._token(d.env)}"
            try:
                r = self._session().post(self.url, data=body, headers=headers, timeout=30)
                status = r.status_code
            except requests.RequestException as exc:
                status, r = 0, None
                log.info("event %s for %s: %s; trying again", d.event_id, d.path, exc.__class__.__name__)
            if 200 <= status < 300:
                self.delivered += 1
                return
            if status and status != 429 and status < 500:
                log.error("event %s for %s refused: %d %s", d.event_id, d.path, status, r.text[:300] if r else "")
                self._forget(d)
                return
            waited = time.monotonic() - d.first
            if waited > GIVE_UP_SECONDS:
                log.error("event %s for %s dropped after %.0f s (the sweep finds it)", d.event_id, d.path, waited)
                self._forget(d)
                return
            self._stop.wait(backoff)
            backoff = min(MAX_BACKOFF, backoff * 2)


def main() -> None:
    from jobrelay import logging as jlog
    from jobrelay.wsgi import App, Request, Response, json_response, not_found

    jlog.setup("eventarc")
    settings = RuntimeSettings()
    key_file = os.environ.get("JOBRELAY_OIDC_KEY_FILE")
    relay = Relay(load_infra(settings.infra_dir), settings.env_names, settings.api_url, LocalSigner(key_file)).start()

    def health(request: Request) -> Response:
        if request.path == "/healthz":
            return json_response(200, {"status": "ok", "envs": list(relay.envs), "delivered": relay.delivered})
        return not_found(request)

    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server(os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"]), App(health), handler_class=Quiet)

    def on_sigterm(*_: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigterm)
    server.serve_forever(poll_interval=0.5)
    relay.stop()


if __name__ == "__main__":
    main()
