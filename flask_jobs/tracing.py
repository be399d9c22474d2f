"""OpenTelemetry tracing, when the ``opentelemetry-api`` package is installed (extra ``otel``).

The trace of the code that sends a task (a web request, say) goes on in the worker: the sender's
span context travels in the message headers (W3C ``traceparent``, through the configured
propagator), a ``publish`` span (kind PRODUCER) covers the send, and the worker runs the task in
a ``process`` span (kind CONSUMER) that continues the trace. Names and attributes follow
OpenTelemetry's messaging conventions (``messaging.system``, ``messaging.operation.type``,
``messaging.destination.name``, ``messaging.message.id``).

Without the package, or with no tracer provider configured (the API's default), this costs
one check per send and per run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

_api: Any = None  # the opentelemetry modules once found, False when not installed

SYSTEM = "redis"


def _otel() -> Any:
    global _api
    if _api is None:
        try:
            import opentelemetry.context as context
            import opentelemetry.propagate as propagate
            import opentelemetry.trace as trace
        except ImportError:
            _api = False
        else:
            _api = (trace, propagate, context)
    return _api


def on() -> bool:
    """Whether OpenTelemetry is installed and a tracer provider is set (then sends and runs
    get spans; with the API's default provider they would be no-ops, so they are skipped)."""
    api = _api if _api is not None else _otel()
    if not api:
        return False
    provider = api[0].get_tracer_provider()
    return not isinstance(provider, (api[0].ProxyTracerProvider, api[0].NoOpTracerProvider))


def inject(headers: dict[str, Any] | None) -> dict[str, Any] | None:
    """``headers`` with the current span context added (unchanged when there is no active
    span, or OpenTelemetry is not installed)."""
    api = _otel()
    if not api:
        return headers
    trace, propagate, _ = api
    if not trace.get_current_span().get_span_context().is_valid:
        return headers
    carrier: dict[str, Any] = dict(headers or {})
    propagate.inject(carrier)
    return carrier


@contextlib.contextmanager
def publish_span(name: str, queue: str) -> Iterator[Any]:
    """A PRODUCER span around sending one task; yields it (None without OpenTelemetry) for
    :func:`set_message_id`."""
    api = _otel()
    if not api:
        yield None
        return
    trace = api[0]
    tracer = trace.get_tracer("flask_jobs")
    with tracer.start_as_current_span(
            f"publish {queue}", kind=trace.SpanKind.PRODUCER,
            attributes={"messaging.system": SYSTEM, "messaging.operation.type": "publish",
                        "messaging.destination.name": queue,
                        "flask_jobs.task.name": name}) as span:
        yield span


def set_message_id(span: Any, task_id: str) -> None:
    """Name the task id on a publish span (known once its message is built in the span)."""
    if span is not None:
        span.set_attribute("messaging.message.id", task_id)


@contextlib.contextmanager
def process_span(name: str, queue: str, task_id: str,
                 headers: dict[str, Any] | None) -> Iterator[Any]:
    """A CONSUMER span around running one task, continuing the sender's trace from
    ``headers``; yields the span (None without OpenTelemetry) for :func:`record_outcome`."""
    api = _otel()
    if not api:
        yield None
        return
    trace, propagate, context = api
    parent = propagate.extract(headers or {})
    token = context.attach(parent)
    try:
        tracer = trace.get_tracer("flask_jobs")
        with tracer.start_as_current_span(
                f"process {queue}", kind=trace.SpanKind.CONSUMER,
                attributes={"messaging.system": SYSTEM, "messaging.operation.type": "process",
                            "messaging.destination.name": queue,
                            "messaging.message.id": task_id,
                            "flask_jobs.task.name": name}) as span:
            yield span
    finally:
        context.detach(token)


def record_outcome(span: Any, state: str, exception: BaseException | None) -> None:
    """Mark ``span`` with the run's final state (an error status for a failure)."""
    if span is None:
        return
    trace = _otel()[0]
    span.set_attribute("flask_jobs.task.state", state)
    if state == "FAILURE":
        if exception is not None:
            span.record_exception(exception)
        span.set_status(trace.Status(trace.StatusCode.ERROR, str(exception or state)))
