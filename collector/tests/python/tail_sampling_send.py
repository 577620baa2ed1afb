"""Send traces for the tail sampling test through the OpenTelemetry Python SDK (OTLP/gRPC):
one trace with an error in a child span, one slow trace (2 s, from explicit timestamps) and
20 fast, successful traces. Every span is exported on its own (SimpleSpanProcessor), so a
trace's spans arrive in separate requests.

Usage: tail_sampling_send.py ENDPOINT RUN_ID
Prints one JSON line: {"error": trace_id, "slow": trace_id, "fast": [trace_id, ...]}.
"""
import json
import sys
import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

endpoint, run_id = sys.argv[1], sys.argv[2]
provider = TracerProvider(resource=Resource.create({"service.name": "sampler", "service.instance.id": run_id}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
tracer = provider.get_tracer("sampling.test")


def hex_id(span):
    return format(span.get_span_context().trace_id, "032x")


with tracer.start_as_current_span("checkout") as root:
    with tracer.start_as_current_span("charge card") as child:
        child.set_status(Status(StatusCode.ERROR, "declined"))
    error_id = hex_id(root)

now = time.time_ns()
slow = tracer.start_span("report", start_time=now - 2_000_000_000)
with trace.use_span(slow, end_on_exit=False):
    step = tracer.start_span("query", start_time=now - 1_900_000_000)
    step.end(end_time=now - 100_000_000)
slow.end(end_time=now)
slow_id = hex_id(slow)

fast = []
for i in range(20):
    with tracer.start_as_current_span(f"fast {i}") as span:
        fast.append(hex_id(span))

provider.shutdown()
print(json.dumps({"error": error_id, "slow": slow_id, "fast": fast}))
