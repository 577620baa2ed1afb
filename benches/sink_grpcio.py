#!/usr/bin/env python3
"""An OTLP/gRPC traces sink on grpcio (gRPC C-core): counts spans and answers OK.

An independent HTTP/2 and gRPC implementation on the receiving side, with C-core's flow-control
(64 KiB initial windows grown by BDP probing) instead of the window sizes Sluice's own receiver
advertises. Prints `{"unix_ms": ..., "items": ...}` every `--report-every` seconds, the format
`benches/delivered.py` reads from `sluice sink --json`.

    .venv/bin/python benches/sink_grpcio.py --listen 127.0.0.1:5317
"""

import argparse
import json
import threading
import time
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

lock = threading.Lock()
total = 0


def export(request, context):
    global total
    spans = 0
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            spans += len(ss.spans)
    with lock:
        total += spans
    return trace_service_pb2.ExportTraceServiceResponse()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="127.0.0.1:5317")
    p.add_argument("--report-every", type=float, default=0.1)
    p.add_argument("--workers", type=int, default=8)
    args = p.parse_args()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.workers),
        options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
    )
    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                export,
                request_deserializer=trace_service_pb2.ExportTraceServiceRequest.FromString,
                response_serializer=trace_service_pb2.ExportTraceServiceResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(args.listen)
    server.start()
    try:
        while True:
            time.sleep(args.report_every)
            with lock:
                n = total
            print(json.dumps({"unix_ms": int(time.time() * 1000), "items": n}), flush=True)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
