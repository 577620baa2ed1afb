"""Send spans, logs and metrics carrying personal data and noise through the OpenTelemetry
Python SDK (OTLP/gRPC), for the processor tests.

Usage: processors_send.py ENDPOINT RUN_ID
Prints one JSON line with the trace id of the kept span.
"""
import json
import logging
import sys

from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

endpoint, run_id = sys.argv[1], sys.argv[2]
resource = Resource.create({"service.name": "shop", "service.instance.id": run_id, "host.name": "build-7"})

tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
tracer = tracer_provider.get_tracer("shop.tracer")

with tracer.start_as_current_span("GET /health"):
    pass
with tracer.start_as_current_span("checkout", attributes={
    "user.email": "ann@example.com",
    "user.id": "u-42",
    "payment.note": "card 4111 1111 1111 1111 charged",
    "http.url": "https://shop.example/cart/checkout",
    "internal.debug": "drop me",
}) as span:
    span.set_status(Status(StatusCode.ERROR, "declined"))
    trace_id = format(span.get_span_context().trace_id, "032x")

logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True)))
log = logging.getLogger(f"shop.{run_id}")
log.setLevel(logging.DEBUG)
log.propagate = False
log.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=logger_provider))
log.debug("cache warmed")
log.error("payment failed for ann@example.com with key sk_live_abcdefghijklmnop1234")

meter_provider = MeterProvider(
    resource=resource,
    metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True), export_interval_millis=60_000)],
)
meter = meter_provider.get_meter("shop.meter")
meter.create_counter("shop.orders").add(3, {"env": "prod"})
meter.create_counter("shop.noise").add(1)

tracer_provider.shutdown()
logger_provider.shutdown()
meter_provider.shutdown()
print(json.dumps({"trace_id": trace_id}))
