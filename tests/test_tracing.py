"""OpenTelemetry: the trace of the code that sends a task goes on in the worker (spans joined
by trace id), recorded with the SDK's in-memory exporter and a real worker (threads)."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk")
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from flask_jobs.worker.main import BackgroundWorker  # noqa: E402
from tests.apps import basic  # noqa: E402
from tests.conftest import wait_for  # noqa: E402

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def provider():
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(tp)  # (once per process: the API refuses a second)
    yield tp


def test_a_request_trace_goes_on_in_the_worker(app, jobs_redis):
    EXPORTER.clear()
    tracer = trace.get_tracer("tests")
    with BackgroundWorker(app):
        with tracer.start_as_current_span("GET /report") as request_span:
            ok = basic.add.delay(2, 3)
            bad = basic.fail.delay("traced")
        assert ok.get(timeout=10) == 5
        bad.get(timeout=10, propagate=False)
        wait_for(lambda: len([s for s in EXPORTER.get_finished_spans()
                              if s.name == "process default"]) == 2, 10)
    spans = EXPORTER.get_finished_spans()
    trace_id = request_span.get_span_context().trace_id
    publish = [s for s in spans if s.name == "publish default"]
    process = [s for s in spans if s.name == "process default"]
    assert len(publish) == 2 and len(process) == 2
    # every span is in the request's trace; each run's parent is its publish span
    assert {s.context.trace_id for s in publish + process} == {trace_id}
    by_id = {s.attributes["messaging.message.id"]: s for s in process}
    assert by_id[ok.id].parent.span_id in {p.context.span_id for p in publish}
    assert by_id[ok.id].kind == trace.SpanKind.CONSUMER
    assert by_id[ok.id].attributes["messaging.operation.type"] == "process"
    assert by_id[ok.id].attributes["flask_jobs.task.name"] == "tests.apps.basic.add"
    assert by_id[bad.id].status.status_code == trace.StatusCode.ERROR
    assert any(e.name == "exception" for e in by_id[bad.id].events)


def test_no_active_span_adds_no_header(app, jobs_redis):
    from flask_jobs import tracing

    assert tracing.inject({"a": 1}) == {"a": 1}
    assert tracing.inject(None) is None
