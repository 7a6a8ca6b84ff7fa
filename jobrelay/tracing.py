"""One trace per job: the API starts it (or joins the caller's), the task and the pool message carry
it, and the worker's or pool's span continues it. Log lines carry the same trace id, so one job's
story is one Cloud Logging query and one Cloud Trace trace.

Export (`JOBRELAY_TRACE_EXPORT`): `cloud` sends spans to Cloud Trace (needs the `cloud` extra),
`console` prints them to stderr (local debugging), `none` (the default, and local) records nothing:
the trace id still flows through documents, tasks, messages and log lines.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sys
from collections.abc import Iterator
from typing import Any

from jobrelay import logging as jlog

log = logging.getLogger("jobrelay.tracing")
_tracer: Any = None


def setup(component: str, export: str) -> None:
    """Install the tracer provider for this process (once, at start-up)."""
    global _tracer
    if export == "none":
        _tracer = None
        return
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"jobrelay-{component}"}))
    if export == "cloud":
        try:
            from opentelemetry.exporter.cloud_trace import CloudTraceSpanExporter
        except ImportError as exc:  # optional dependency
            raise RuntimeError("JOBRELAY_TRACE_EXPORT=cloud needs: pip install 'jobrelay[cloud]'") from exc
        provider.add_span_processor(BatchSpanProcessor(CloudTraceSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("jobrelay")


def new_span_id() -> str:
    return secrets.token_hex(8)


@contextlib.contextmanager
def span(
    name: str,
    *,
    project: str,
    trace_id: str | None,
    parent_span_id: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> Iterator[str]:
    """A span of the job's trace (a child of the remote parent when given); yields its span id.

    Log lines inside carry the trace and this span, whether or not spans are exported.
    """
    if not trace_id:
        yield ""
        return
    if _tracer is None:
        span_id = new_span_id()
        with jlog.trace(project, trace_id, span_id):
            yield span_id
        return
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    # A remote parent carries our trace id into OpenTelemetry (for a new trace it stands for the client).
    parent = SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(parent_span_id or new_span_id(), 16),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    ctx = trace.set_span_in_context(NonRecordingSpan(parent))
    with _tracer.start_as_current_span(name, context=ctx, attributes=attributes or {}) as current:
        span_id = format(current.get_span_context().span_id, "016x")
        with jlog.trace(project, trace_id, span_id):
            yield span_id


def traceparent(trace_id: str, span_id: str) -> str:
    """The W3C header that carries the trace to the next hop."""
    return f"00-{trace_id}-{span_id}-01"
