"""One JSON line per event, in the shape Cloud Logging parses from a Cloud Run container's stdout.

`severity` and `message` are Cloud Logging's own keys; the trace goes in
`logging.googleapis.com/trace` (`projects/PROJECT/traces/TRACE_ID`) with its span, so one job's
lines from the API, the worker, the dead-letter service and the pool are one trace in Cloud Console.
The job's labels (env, job_id, type, class, attempt) ride on a context variable set around the work.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

# The default is never mutated: labels() always sets a new dict.
_labels: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("jobrelay_labels", default={})  # noqa: B039
_trace: contextvars.ContextVar[tuple[str, str, str] | None] = contextvars.ContextVar("jobrelay_trace", default=None)

SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


@contextlib.contextmanager
def labels(**values: Any) -> Iterator[None]:
    """Every log line inside carries these labels (on top of any already set)."""
    merged = {**_labels.get(), **{k: str(v) for k, v in values.items() if v is not None}}
    token = _labels.set(merged)
    try:
        yield
    finally:
        _labels.reset(token)


@contextlib.contextmanager
def trace(project: str, trace_id: str | None, span_id: str | None = None) -> Iterator[None]:
    """Every log line inside belongs to this Cloud Trace trace."""
    if not trace_id:
        yield
        return
    token = _trace.set((project, trace_id, span_id or ""))
    try:
        yield
    finally:
        _trace.reset(token)


def current_span_id() -> str | None:
    """The span the current log lines belong to (the next hop's parent)."""
    tr = _trace.get()
    return tr[2] or None if tr is not None else None


class CloudLoggingFormatter(logging.Formatter):
    """Formats records as the JSON lines Cloud Logging's agent turns into structured entries."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "logger": record.name,
            "component": self.component,
        }
        lbl = {"component": self.component, **_labels.get()}
        extra = getattr(record, "labels", None)
        if isinstance(extra, dict):
            lbl.update({k: str(v) for k, v in extra.items()})
        entry["logging.googleapis.com/labels"] = lbl
        for key in ("duration_seconds", "outcome", "status"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        tr = _trace.get()
        if tr is not None:
            project, trace_id, span_id = tr
            entry["logging.googleapis.com/trace"] = f"projects/{project}/traces/{trace_id}"
            if span_id:
                entry["logging.googleapis.com/spanId"] = span_id
            entry["logging.googleapis.com/trace_sampled"] = True
        if record.exc_info:
            entry["stack_trace"] = "".join(traceback.format_exception(*record.exc_info))
        entry["logging.googleapis.com/sourceLocation"] = {
            "file": record.pathname,
            "line": record.lineno,
            "function": record.funcName,
        }
        return json.dumps(entry, default=str)


def setup(component: str, level: str | None = None) -> None:
    """Send every log record of this process to stdout as Cloud Logging JSON."""
    # No line names its thread or multiprocessing process: spare every record looking them up.
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudLoggingFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("JOBRELAY_LOG_LEVEL", "INFO"))
    for noisy in ("urllib3", "google.auth", "google.api_core", "grpc", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
