"""A scrape target served by the official Prometheus Python client (prometheus_client), which
answers OpenMetrics when the Accept header asks for it. Fixed values, so two scrapers see the
same numbers; every request's User-Agent and answered Content-Type go to LOG, one per line.

usage: om_target.py PORT LOG
"""

import sys
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client import make_wsgi_app

port, log_path = int(sys.argv[1]), sys.argv[2]
registry = CollectorRegistry()
requests = Counter("om_requests", "Requests.", ["method", "path"], registry=registry)
requests.labels("get", '/a,b="c"\\d').inc(3)
requests.labels("post", "/x").inc(1.5)
Gauge("om_temperature_celsius", "Temperature.", registry=registry).set(21.5)
latency = Histogram("om_latency_seconds", "Latency.", buckets=[0.1, 0.5], registry=registry)
for v in (0.05, 0.3, 2.0):
    latency.observe(v)
size = Summary("om_size_bytes", "Sizes.", registry=registry)
size.observe(10)
size.observe(20)
Info("om_build", "Build.", registry=registry).info({"version": "1.2.3"})
Enum("om_state", "State.", states=["starting", "running"], registry=registry).state("running")

app = make_wsgi_app(registry)
lock = threading.Lock()


def logged(environ, start_response):
    def start(status, headers, exc_info=None):
        content_type = dict((k.lower(), v) for k, v in headers).get("content-type", "")
        with lock, open(log_path, "a") as log:
            log.write(f"{environ.get('HTTP_USER_AGENT', '')}\t{content_type}\n")
        return start_response(status, headers, exc_info)

    return app(environ, start)


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


make_server("127.0.0.1", port, logged, handler_class=Quiet).serve_forever()
