#!/usr/bin/env python3
"""Gateway throughput behind Kafka: how fast one gateway, then two, drain a backlog.

1. A Kafka-protocol broker on loopback (the tests' broker, ~/.cargo/bin/tansu or
   $SLUICE_KAFKA_BROKER) with a topic of `--partitions` partitions.
2. A sidecar Sluice takes `sluice loadgen` traffic for `--load-seconds` and produces it to the
   topic; the script waits until the sidecar's exporter counted every acknowledged span as sent
   (Kafka acknowledged it).
3. For each entry of `--gateways` (1 and then 2 by default; a fresh consumer group each, reading from the earliest offset):
   start a counting sink (`sluice sink`) and the gateways, and follow the sink's cumulative
   count. **Steady rate** = spans delivered between the moments the sink passed 10 % and 90 %
   of the backlog, divided by the time between them (start-up and group join excluded; the
   tail excluded). The run fails unless the sink ends with at least every acknowledged span;
   more than that is reported as duplicates.

Everything runs on this one machine, so the gateways share its cores with the broker and the
sink: the numbers show the cost per span and whether a second gateway takes a share, not what
two machines would do. CPU seconds of each process over the drain are printed so the shares
can be read.

    python3 benches/kafka_gateways.py [--sluice PATH] [--partitions 4] [--load-seconds 15]
        [--spans-per-request 50] [--gateways 1,2,1,2]   # runs, in this order
        [--unkeyed]   # records packed up to max_message_bytes instead of one per trace
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
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


def cpu_seconds(pid):
    """User + system CPU seconds of a live process (from /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


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


def crossing(samples, target):
    """The time the cumulative count passed `target`, interpolated between two reports."""
    previous = None
    for t, n in samples:
        if n >= target:
            if previous is None or n == previous[1]:
                return t
            t0, n0 = previous
            return t0 + (t - t0) * (target - n0) / (n - n0)
        previous = (t, n)
    return None


def sink_count(line):
    """The cumulative count of a `sluice sink --json` report line; None for other lines."""
    try:
        return int(json.loads(line)["items"])
    except (ValueError, KeyError, TypeError):
        return None


def drain(sluice, brokers, work, run, gateways, backlog, procs, broker_pid):
    sink_grpc = free_port()
    sink = subprocess.Popen([sluice, "sink", f"--grpc=127.0.0.1:{sink_grpc}",
                             f"--http=127.0.0.1:{free_port()}", "--report-every=250ms", "--json"],
                            stdout=subprocess.PIPE, text=True)
    procs.append(sink)
    members = []
    for g in range(gateways):
        proc, admin = start_sluice(sluice, f"""
[receivers.kafka]
type = "kafka"
brokers = ["{brokers}"]
group_id = "bench-run{run}"
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
""", work, f"run{run}-gw{g}")
        procs.append(proc)
        members.append((proc, admin))
    watched = [("broker", broker_pid), ("sink", sink.pid)] + [(f"gateway{i}", p.pid) for i, (p, _) in enumerate(members)]
    cpu_start = {name: cpu_seconds(pid) for name, pid in watched}
    started = time.time()
    samples = []
    while time.time() - started < 900:
        line = sink.stdout.readline()
        if not line:
            break
        count = sink_count(line)
        if count is None:
            continue
        samples.append((time.time(), count))
        if count >= backlog:
            break
    if not samples or samples[-1][1] < backlog:
        got = samples[-1][1] if samples else 0
        sys.exit(f"{gateways} gateway(s): the sink has {got} of {backlog} acknowledged spans after 900 s")
    done = samples[-1][0]
    cpu = {name: cpu_seconds(pid) - cpu_start[name] for name, pid in watched}
    # Anything beyond the backlog within a few seconds is a duplicate.
    settle = time.time() + 3
    while time.time() < settle:
        count = sink_count(sink.stdout.readline())
        if count is not None:
            samples.append((time.time(), count))
    delivered = samples[-1][1]
    t10, t90 = crossing(samples, 0.1 * backlog), crossing(samples, 0.9 * backlog)
    steady = 0.8 * backlog / (t90 - t10) if t90 and t10 and t90 > t10 else float("nan")
    shares = [int(metric(a, "sluice_receiver_accepted_items_total", 'component_id="receivers.kafka"'))
              for _, a in members]
    elapsed = done - started
    cpu_text = ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items())
    gateway_cpu = sum(seconds for name, seconds in cpu.items() if name.startswith("gateway"))
    print(f"{gateways} gateway(s): steady {steady:,.0f} spans/s (10 %→90 % of the backlog in {t90 - t10:.1f} s); "
          f"all {backlog} in {elapsed:.1f} s from start = {backlog / elapsed:,.0f} spans/s; "
          f"delivered {delivered} (duplicates {delivered - backlog}); per gateway {shares}; "
          f"CPU s over the drain: {cpu_text}; gateways {gateway_cpu / backlog * 1e5:.2f} CPU-s per 100k spans")
    for p in [sink] + [p for p, _ in members]:
        p.terminate()
    for p in [sink] + [p for p, _ in members]:
        p.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", default=os.path.join(ROOT, "target", "release", "sluice"))
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--load-seconds", type=int, default=15)
    ap.add_argument("--spans-per-request", type=int, default=50)
    ap.add_argument("--gateways", default="1,2")
    ap.add_argument("--unkeyed", action="store_true",
                    help="sidecar packs spans into records up to max_message_bytes instead of one record per trace")
    args = ap.parse_args()
    sluice = args.sluice
    broker_bin = os.environ.get("SLUICE_KAFKA_BROKER", os.path.join(os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo")), "bin", "tansu"))
    work = tempfile.mkdtemp(prefix="sluice-kafka-bench-")
    print(f"load average at start: {os.getloadavg()[0]:.1f}; work dir {work}")
    procs = []
    try:
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        broker = subprocess.Popen(
            [broker_bin, "broker", "--cluster-id=bench", f"--listener-url={url}",
             f"--advertised-listener-url={url}", "--storage-engine=sqlite://tansu.db", "--silent"],
            cwd=work, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "broker.log"), "w"))
        procs.append(broker)
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
{"partition = { traces_by_id = false }" if args.unkeyed else ""}
[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["otlp"]
processors = ["batch"]
exporters = ["kafka"]
""", work, "sidecar")
        procs.append(sidecar)
        produce_start = time.time()
        load = subprocess.run(
            [sluice, "loadgen", f"--endpoint=http://127.0.0.1:{grpc}", f"--duration={args.load_seconds}s",
             f"--spans-per-request={args.spans_per_request}", "--concurrency=4", "--json"],
            check=True, capture_output=True, text=True)
        report = json.loads(load.stdout.strip().splitlines()[-1])
        acked = int(report["spans_accepted"])
        sent = lambda: metric(sidecar_admin, "sluice_exporter_sent_items_total", 'component_id="exporters.kafka"')
        deadline = time.time() + 900
        while sent() < acked:
            if time.time() > deadline:
                sys.exit(f"sidecar did not drain into Kafka: {sent():.0f} of {acked}")
            time.sleep(0.5)
        produced = int(sent())
        produce_seconds = time.time() - produce_start
        print(f"backlog: {acked} spans acknowledged by the sidecar, {produced} acknowledged by Kafka "
              f"({args.partitions} partitions) in {produce_seconds:.1f} s = {produced / produce_seconds:,.0f} spans/s "
              f"into Kafka; {args.spans_per_request} spans/request, one trace per span, "
              + ("records packed up to max_message_bytes (unkeyed)" if args.unkeyed else "one record per trace (keyed by trace id)"))
        sidecar.terminate()
        sidecar.wait(timeout=30)

        # Each run is a fresh consumer group, so it reads the whole backlog from the start.
        for run, gateways in enumerate(int(g) for g in args.gateways.split(",")):
            drain(sluice, brokers, work, run, gateways, acked, procs, broker.pid)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


if __name__ == "__main__":
    main()
