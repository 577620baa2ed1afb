#!/usr/bin/env python3
"""Gateway throughput behind Kafka: how fast one gateway, then two, drain a backlog.

1. A Kafka-protocol broker on loopback (the tests' broker: target/tools/bin/tansu, or
   $SLUICE_KAFKA_BROKER) with a topic of `--partitions` partitions.
2. A sidecar Sluice takes `sluice loadgen` traffic for `--load-seconds` and produces it to the
   topic; the script waits until the sidecar's spool is empty (everything acknowledged by Kafka).
3. For 1 and then 2 gateways (a fresh consumer group each, reading from the earliest offset):
   start a counting sink (`sluice sink`) and the gateways, and time until the sink has every
   span. Throughput = spans / seconds from the gateways' start to the last span.

Everything runs on this one machine, so the gateways share its cores with the broker and the
sink: the numbers show the cost per span and whether a second gateway takes a share, not what
two machines would do.

    python3 benches/kafka_gateways.py [--profile debug|release] [--partitions 4]
        [--load-seconds 15] [--spans-per-request 50]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(admin_port, name, label):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5).read().decode()
    except OSError:
        return 0.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_ready(admin_port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/-/ready", timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"sluice on admin port {admin_port} not ready")


def start_sluice(sluice, config_text, workdir, name):
    config = os.path.join(workdir, f"{name}.toml")
    with open(config, "w") as f:
        f.write(config_text)
    admin = free_port()
    log = open(os.path.join(workdir, f"{name}.log"), "w")
    proc = subprocess.Popen(
        [sluice, "run", config, f"--storage.path={os.path.join(workdir, name)}",
         f"--server.http.listen-addr=127.0.0.1:{admin}"],
        stdout=subprocess.DEVNULL, stderr=log)
    wait_ready(admin)
    return proc, admin


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="debug")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--load-seconds", type=int, default=15)
    ap.add_argument("--spans-per-request", type=int, default=50)
    args = ap.parse_args()
    sluice = os.path.join(ROOT, "target", args.profile, "sluice")
    broker_bin = os.environ.get("SLUICE_KAFKA_BROKER", os.path.join(os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo")), "bin", "tansu"))
    work = tempfile.mkdtemp(prefix="sluice-kafka-bench-")
    procs = []
    try:
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        procs.append(subprocess.Popen(
            [broker_bin, "broker", "--cluster-id=bench", f"--listener-url={url}",
             f"--advertised-listener-url={url}", "--storage-engine=sqlite://tansu.db"],
            cwd=work, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "broker.log"), "w")))
        time.sleep(2)
        subprocess.run([broker_bin, "topic", "create", "otlp_spans", f"--partitions={args.partitions}",
                        f"--broker={url}"], check=True, cwd=work, stdout=subprocess.DEVNULL)
        brokers = f"127.0.0.1:{port}"

        grpc = free_port()
        sidecar, sidecar_admin = start_sluice(sluice, f"""
[receivers.otlp]
type = "otlp"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:{grpc}"
[processors.batch]
type = "batch"
[exporters.kafka]
type = "kafka"
brokers = ["{brokers}"]
[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["otlp"]
processors = ["batch"]
exporters = ["kafka"]
""", work, "sidecar")
        procs.append(sidecar)
        load = subprocess.run(
            [sluice, "loadgen", f"--endpoint=http://127.0.0.1:{grpc}", f"--duration={args.load_seconds}s",
             f"--spans-per-request={args.spans_per_request}", "--concurrency=4", "--json"],
            check=True, capture_output=True, text=True)
        report = json.loads(load.stdout.strip().splitlines()[-1])
        acked = int(report["spans_accepted"])
        # Wait until Kafka acknowledged every span the sidecar took.
        deadline = time.time() + 600
        while metric(sidecar_admin, "sluice_exporter_sent_items_total", 'component_id="exporters.kafka"') < acked:
            if time.time() > deadline:
                sys.exit("sidecar did not drain into Kafka")
            time.sleep(0.5)
        produced = int(metric(sidecar_admin, "sluice_exporter_sent_items_total", 'component_id="exporters.kafka"'))
        print(f"backlog: {produced} spans in Kafka ({args.partitions} partitions), "
              f"{args.spans_per_request} spans/request, one trace per span (one record per span)")

        for gateways in (1, 2):
            sink_grpc = free_port()
            sink = subprocess.Popen([sluice, "sink", f"--grpc=127.0.0.1:{sink_grpc}",
                                     f"--http=127.0.0.1:{free_port()}", "--report-every=1s", "--json"],
                                    stdout=subprocess.PIPE, text=True)
            procs.append(sink)
            started = time.time()
            members = []
            for g in range(gateways):
                proc, admin = start_sluice(sluice, f"""
[receivers.kafka]
type = "kafka"
brokers = ["{brokers}"]
group_id = "bench-{gateways}"
initial_offset = "earliest"
[processors.batch]
type = "batch"
[exporters.sink]
type = "otlp"
endpoint = "http://127.0.0.1:{sink_grpc}"
compression = "none"
[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["kafka"]
processors = ["batch"]
exporters = ["sink"]
""", work, f"gw{gateways}-{g}")
                procs.append(proc)
                members.append(admin)
            done = None
            while done is None and time.time() - started < 900:
                line = sink.stdout.readline()
                if not line:
                    break
                if int(json.loads(line)["items"]) >= produced:
                    done = time.time()
            if done is None:
                sys.exit(f"{gateways} gateway(s) did not deliver {produced} spans")
            shares = [int(metric(a, "sluice_receiver_accepted_items_total", 'component_id="receivers.kafka"'))
                      for a in members]
            seconds = done - started
            print(f"{gateways} gateway(s): {produced} spans in {seconds:.1f} s = {produced / seconds:,.0f} spans/s "
                  f"(including start and group join); per gateway {shares}")
            for p in procs[-(gateways + 1):]:
                p.terminate()
            for p in procs[-(gateways + 1):]:
                p.wait(timeout=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


if __name__ == "__main__":
    main()
