"""Send traces, metrics and logs through the official OpenTelemetry Python SDK.

Usage: otel_send.py grpc|http ENDPOINT RUN_ID
Prints one JSON line with the ids the Rust test then looks for at the backend.
"""
import json
import time
import logging
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import View, ExponentialBucketHistogramAggregation
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.trace import Status, StatusCode
from opentelemetry.metrics import Observation

protocol, endpoint, run_id = sys.argv[1], sys.argv[2], sys.argv[3]

if protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    span_exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    metric_exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True)
    log_exporter = OTLPLogExporter(endpoint=endpoint, insecure=True)
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    span_exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")
    metric_exporter = OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics")
    log_exporter = OTLPLogExporter(endpoint=f"{endpoint}/v1/logs")

resource = Resource.create({"service.name": "py-interop", "service.namespace": "awf", "service.instance.id": run_id})

tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
tracer = tracer_provider.get_tracer("interop.tracer", "1.2.3")

meter_provider = MeterProvider(
    resource=resource,
    metric_readers=[PeriodicExportingMetricReader(metric_exporter, export_interval_millis=60_000)],
    views=[View(instrument_name="interop.payload", aggregation=ExponentialBucketHistogramAggregation(max_size=160))],
)
meter = meter_provider.get_meter("interop.meter")

logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
py_logger = logging.getLogger(f"interop.{run_id}")
py_logger.setLevel(logging.DEBUG)
py_logger.propagate = False
py_logger.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=logger_provider))

with tracer.start_as_current_span("parent", attributes={"run.id": run_id, "awf.step": "plan"}) as parent:
    with tracer.start_as_current_span("child") as child:
        child.set_attribute("tokens", 1234)
        child.set_attribute("cost", 0.25)
        child.set_attribute("cached", True)
        child.set_attribute("agents", ["a", "b"])
        child.add_event("retry", {"attempt": 2})
        child.set_status(Status(StatusCode.ERROR, "agent failed"))
        py_logger.error("step failed for %s", run_id, extra={"run.id": run_id, "step": "plan"})
    py_logger.info("workflow continues", extra={"run.id": run_id})
    trace_id = format(parent.get_span_context().trace_id, "032x")
    parent_span_id = format(parent.get_span_context().span_id, "016x")
    child_span_id = format(child.get_span_context().span_id, "016x")

counter = meter.create_counter("interop.requests", unit="{request}", description="requests")
updown = meter.create_up_down_counter("interop.queue", unit="1")
hist = meter.create_histogram("interop.latency", unit="ms")
payload = meter.create_histogram("interop.payload", unit="By")
meter.create_observable_gauge("interop.temperature", callbacks=[lambda _: [Observation(21.5, {"run.id": run_id})]], unit="Cel")

# Two export rounds a little apart, so rate() over the exported series has something to see.
ok = True
for round_ in range(2):
    counter.add(5, {"run.id": run_id, "route": "/a"})
    updown.add(7, {"run.id": run_id})
    updown.add(-2, {"run.id": run_id})
    for v in (3, 12, 48, 250):
        hist.record(v, {"run.id": run_id})
    for v in (100, 200, 300):
        payload.record(v, {"run.id": run_id})
    ok = meter_provider.force_flush(10_000) and ok
    if round_ == 0:
        time.sleep(1.5)

tracer_provider.shutdown()
logger_provider.shutdown()
meter_provider.shutdown()
print(json.dumps({"trace_id": trace_id, "parent_span_id": parent_span_id, "child_span_id": child_span_id, "metrics_flushed": ok}))
