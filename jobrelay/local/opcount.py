"""Count the billable Google operations a process makes, by intercepting its gRPC channels.

Used by the budget test and the benchmarks: `with counting() as ops:` patches `grpc.insecure_channel`
(which the Firestore client uses for its emulator and our Cloud Tasks client for ours), so every
client created inside is counted. Firestore reads count documents returned (at least one per
query), writes count the writes of each commit (and, in `per_document`, the writes each document
took: what shows a hot document); Cloud Tasks counts API calls by method; Pub/Sub counts published
messages.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc

# List prices used to express the cost per million jobs (USD), as the team's reference notes
# (shared/reference/gcp-semantics.md, from Google's pricing pages) give them; read on PRICES_AS_OF.
PRICES_AS_OF = "2026-11-25"
PRICES = {
    "firestore.read": 0.06 / 100_000,
    "firestore.write": 0.18 / 100_000,
    "firestore.delete": 0.02 / 100_000,
    "tasks.CreateTask": 0.40 / 1_000_000,
    "tasks.dispatch": 0.40 / 1_000_000,
}


class OpCounter:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.per_document: Counter[str] = Counter()  # document path -> writes
        self._lock = threading.Lock()

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def wrote(self, document: str) -> None:
        with self._lock:
            self.per_document[document] += 1

    def documents(self) -> Counter[str]:
        with self._lock:
            return Counter(self.per_document)

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)

    def cost(self, counts: Counter[str] | None = None) -> float:
        c = counts if counts is not None else self.snapshot()
        return sum(PRICES.get(k, 0.0) * v for k, v in c.items())


def _has(msg: Any, name: str) -> bool:
    """Field presence on a proto-plus or a raw protobuf message."""
    has_field = getattr(type(msg), "HasField", None)
    if has_field is not None and not hasattr(type(msg), "pb"):
        return bool(msg.HasField(name))
    return name in msg


def _document_of(write: Any) -> str:
    """The path of the document a Firestore `Write` changes (database prefix cut)."""
    if _has(write, "update"):
        name = str(write.update.name)
    elif _has(write, "delete"):
        name = str(write.delete)
    elif _has(write, "transform"):
        name = str(write.transform.document)
    else:
        name = "?"
    return name.split("/documents/", 1)[-1]


class _Interceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, counter: OpCounter) -> None:
        self.counter = counter

    def _count_request(self, method: str, request: Any) -> None:
        service, _, name = method.rpartition("/")
        if service.endswith("firestore.v1.Firestore"):
            if name == "Commit":
                for w in request.writes:
                    self.counter.add("firestore.delete" if _has(w, "delete") else "firestore.write")
                    self.counter.wrote(_document_of(w))
            elif name == "BatchGetDocuments":
                self.counter.add("firestore.read", len(request.documents))
            elif name in ("GetDocument", "RunAggregationQuery"):
                self.counter.add("firestore.read")
            else:
                self.counter.add(f"firestore.{name}.calls")
        elif service.endswith("tasks.v2.CloudTasks"):
            self.counter.add(f"tasks.{name}")
        elif service.endswith("pubsub.v1.Publisher") and name == "Publish":
            self.counter.add("pubsub.publish", len(request.messages))
        else:
            self.counter.add(f"{service.rsplit('.', 1)[-1]}.{name}")

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self._count_request(details.method, request)
        return continuation(details, request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        if details.method.endswith("Firestore/RunQuery"):
            response = continuation(details, request)
            return _CountingStream(response, self.counter)
        self._count_request(details.method, request)
        return continuation(details, request)


class _CountingStream:
    """Counts query results as they stream (one read minimum, as Firestore bills)."""

    def __init__(self, inner: Any, counter: OpCounter) -> None:
        self._inner = inner
        self._counter = counter
        self._docs = 0
        self._done = False

    def __iter__(self) -> _CountingStream:
        return self

    def __next__(self) -> Any:
        try:
            item = next(self._inner)
        except StopIteration:
            self._finish()
            raise
        if _has(item, "document"):
            self._docs += 1
        return item

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._counter.add("firestore.read", max(1, self._docs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextlib.contextmanager
def counting() -> Iterator[OpCounter]:
    """Count the operations of every client whose channel is created inside the block."""
    counter = OpCounter()
    original = grpc.insecure_channel

    def patched(target: str, options: Any = None, compression: Any = None) -> grpc.Channel:
        channel = original(target, options=options, compression=compression)
        return grpc.intercept_channel(channel, _Interceptor(counter))

    grpc.insecure_channel = patched
    try:
        yield counter
    finally:
        grpc.insecure_channel = original
