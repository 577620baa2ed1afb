#!/usr/bin/env python3
"""Delivered throughput: load generator -> collector -> counting sink, on one box.

Counts what ARRIVES at the sink, not what the load generator got acknowledged. Per run:

* steady rate: spans that arrived at the sink per second between `--warmup` seconds after the
  load started and the moment it stopped;
* drain: how long after the load stopped until everything acknowledged had arrived, and how
  much acknowledged data had still not arrived `--drain-limit` seconds after the stop;
* CPU seconds of the collector per 100k delivered spans, over the whole run including the drain;
* peak RSS of the collector (VmHWM);
* the load generator's and the sink's CPU per 100k delivered (`harness_cpu_per_100k` in the
  JSON lines): they share the box, so they bound what any collector can reach on it;
* the box's idle and steal shares while the load ran (`box_idle`, `box_steal`), and with each
  table the CPU's model: CPU seconds per item compare only on one CPU (RESULTS, "Session 12").

With `--timeline`, every half second of each run also goes to stderr: the box's idle share,
the items appended to Sluice's spool, read back from memory or from disk, and arrived at the
sink — where an exporter falls behind (benches/RESULTS.md, "Session 11").

Usage (from the repository root, after `cargo build --release -p sluice`):

    python3 benches/delivered.py --rounds 3 --seconds 15 [--cases rotel,interval,always,none]
        [--rate 0] [--spans-per-request 100] [--concurrency 16] [--sink sluice|grpcio|grpc-js]
    python3 benches/delivered.py --signal metrics --cases interval   # remote-write to the sink
    python3 benches/delivered.py --signal logs --cases interval      # Loki push to the sink
    python3 benches/delivered.py --cases interval,interval+attributes # with a processor of
                                                                      # benches/processors/

"Spans" below means items of the signal sent: spans, data points (samples) or log records.

Collectors run one after another, interleaved per round, each against a fresh sink; the table
gives medians over rounds and, for Sluice, the median of the per-round ratios to rotel.
"""

import argparse
import glob
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "target", "release", "sluice"))
SINK_GRPC = "127.0.0.1:5317"
SINK_PUSH = "127.0.0.1:5319"

# The exporter each signal goes to: OTLP passthrough (Tempo), remote-write (Mimir), Loki.
ADMIN = "127.0.0.1:12399"

EXPORTERS = {
    "traces": f'type = "otlp"\nendpoint = "http://{SINK_GRPC}"\ncompression = "none"',
    "metrics": f'type = "prometheus_remote_write"\nurl = "http://{SINK_PUSH}/api/v1/write"',
    "logs": f'type = "loki"\nurl = "http://{SINK_PUSH}/loki/api/v1/push"',
}
# Logs to Loki's native OTLP endpoint (Loki >= 3.0) instead of its push API: case `:lokiotlp`.
LOKI_OTLP = f'type = "loki"\nurl = "http://{SINK_PUSH}/otlp/v1/logs"\nencoding = "otlp"'


def rotel_binary():
    found = glob.glob(os.path.join(ROOT, ".venv/lib/python3*/site-packages/rotel/rotel-agent"))
    if not found:
        subprocess.run([sys.executable, "-m", "venv", os.path.join(ROOT, ".venv")], check=True)
        subprocess.run([os.path.join(ROOT, ".venv/bin/pip"), "install", "-q", "rotel"], check=True)
        found = glob.glob(os.path.join(ROOT, ".venv/lib/python3*/site-packages/rotel/rotel-agent"))
    return found[0]


def python_with_grpcio():
    """The venv's Python, with grpcio and the OTLP protobuf classes installed."""
    venv_python = os.path.join(ROOT, ".venv", "bin", "python")
    check = [venv_python, "-c", "import grpc, opentelemetry.proto.collector.trace.v1"]
    if not os.path.exists(venv_python) or subprocess.run(check, capture_output=True).returncode:
        rotel_binary()  # creates the venv
        subprocess.run([os.path.join(ROOT, ".venv/bin/pip"), "install", "-q",
                        "-r", os.path.join(ROOT, "collector/tests/python/requirements.txt")], check=True)
    return venv_python


def wait_port(port, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} never opened")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of the whole line (11 and 12 after the name).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Sink:
    """`sluice sink --json`: one line per 100 ms with the total items received."""

    def __init__(self, workdir, kind):
        self.log_path = os.path.join(workdir, "sink.log")
        self.log = open(self.log_path, "w")
        if kind == "grpc-js":
            command = ["node", os.path.join(ROOT, "benches", "sink_grpc_js.js"), SINK_GRPC]
            node_modules = os.path.join(ROOT, "benches", ".node")
            if not os.path.isdir(os.path.join(node_modules, "node_modules", "@grpc", "grpc-js")):
                subprocess.run(["npm", "install", "--silent", "--prefix", node_modules, "@grpc/grpc-js@1"], check=True)
            os.environ["NODE_PATH"] = os.path.join(node_modules, "node_modules")
        elif kind == "grpcio":
            command = [python_with_grpcio(), os.path.join(ROOT, "benches", "sink_grpcio.py"),
                       "--listen", SINK_GRPC]
        else:
            command = [SLUICE, "sink", "--grpc", SINK_GRPC, "--http", "127.0.0.1:5318",
                       "--push", SINK_PUSH, "--report-every", "100ms", "--json"]
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.DEVNULL)
        wait_port(5317)

    def samples(self):
        out = []
        with open(self.log_path) as f:
            for line in f:
                if line.startswith("{"):
                    try:
                        d = json.loads(line)
                        out.append((d["unix_ms"] / 1000.0, d["items"]))
                    except (ValueError, KeyError):
                        pass
        return out

    def count(self):
        time.sleep(0.15)
        s = self.samples()
        return s[-1][1] if s else 0

    def count_at(self, t):
        """Items received by time t (the last sample at or before it)."""
        best = None
        for ts, n in self.samples():
            if ts <= t:
                best = (ts, n)
        return best

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        self.log.close()


def sluice_config(path, case, signal):
    """`case` is an fsync level, optionally with `:novalidate` (intake validation off),
    `:nocompress` (spool compression off), `:memoryN` (an N MiB spool memory tail) or
    `:lokiotlp` (logs to Loki's native OTLP endpoint), and `+PROCESSOR` (the processor of
    `benches/processors/PROCESSOR.toml` in the pipeline)."""
    case, _, processor = case.partition("+")
    fsync, _, option = case.partition(":")
    exporter = EXPORTERS[signal]
    if option == "lokiotlp":
        if signal != "logs":
            sys.exit(f"case {case!r}: `:lokiotlp` is for --signal logs")
        exporter = LOKI_OTLP
    validation = "[receivers.otlp.validation]\nenabled = false" if option == "novalidate" else ""
    spool_compression = 'compression = "none"' if option == "nocompress" else ""
    if option.startswith("memory"):
        spool_compression = f'memory_bytes = "{option.removeprefix("memory")}MiB"'
    processors, processor_config = "", ""
    if processor:
        processors = 'processors = ["under_test"]'
        with open(os.path.join(ROOT, "benches", "processors", f"{processor}.toml")) as f:
            processor_config = f.read()
    with open(path, "w") as f:
        f.write(f"""
[receivers.otlp]
type = "otlp"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:4317"
{validation}
[exporters.sink]
{exporter}
[[pipelines]]
name = "{signal}"
signals = ["{signal}"]
receivers = ["otlp"]
exporters = ["sink"]
{processors}
[pipelines.spool]
fsync = "{fsync}"
{spool_compression}
{processor_config}
""")


def sluice_metrics():
    """Sluice's own /metrics text; empty when nothing answers (rotel has no such page)."""
    try:
        with urllib.request.urlopen(f"http://{ADMIN}/metrics", timeout=2) as r:
            return r.read().decode()
    except OSError:
        return ""


def metric_sum(text, name, label=""):
    """Sum of a metric's samples, over the series whose labels contain `label`."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and label in line)


def processor_dropped(case):
    """Items Sluice's processors dropped on purpose (filter, tail sampling): they never
    reach the sink, so they count as delivered for the arrival check."""
    if "+" not in case:
        return 0
    return int(metric_sum(sluice_metrics(), "sluice_processor_dropped_items_total"))


def disk_read_share(case):
    """The share of items the exporter read back from the spool's files rather than from
    memory (docs/spool.md, "Read path"): an exporter that keeps up reads none from disk."""
    if case.startswith("rotel"):
        return None
    text = sluice_metrics()
    memory = metric_sum(text, "sluice_spool_read_items_total", 'source="memory"')
    disk = metric_sum(text, "sluice_spool_read_items_total", 'source="disk"')
    return disk / (memory + disk) if memory + disk > 0 else None


def box_jiffies():
    """Jiffies of the whole box since boot: (all, idle + iowait, steal)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values), values[3] + values[4], values[7]


def cpu_model():
    """The box's CPU as the kernel names it: per-item CPU seconds compare only on one model."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    # A VM may name only the vendor ("AMD EPYC"): family and model tell the generation.
    return (f"{fields.get('model name', 'unknown CPU')} (family {fields.get('cpu family', '?')}, "
            f"model {fields.get('model', '?')}, {fields.get('cpu MHz', '?')} MHz)")


def print_timeline(case, sink, base, stop):
    """`--timeline`: one line per half second until `stop` is set (see the module docstring)."""
    print(f"timeline {case}: ms idle appended read_memory read_disk arrived", file=sys.stderr)
    start = time.time()
    total0, idle0, _ = box_jiffies()
    while not stop.wait(0.5):
        total1, idle1, _ = box_jiffies()
        text = sluice_metrics()
        # The sink's last report before the scrape (it reports every 100 ms).
        arrived = (sink.count_at(time.time()) or (0, base))[1] - base
        idle = (idle1 - idle0) * 100 // max(total1 - total0, 1)
        total0, idle0 = total1, idle1
        appended = metric_sum(text, "sluice_spool_appended_items_total")
        memory = metric_sum(text, "sluice_spool_read_items_total", 'source="memory"')
        disk = metric_sum(text, "sluice_spool_read_items_total", 'source="disk"')
        print(f"timeline {case}: {int((time.time() - start) * 1000)} {idle}% {appended:.0f} "
              f"{memory:.0f} {disk:.0f} {arrived}", file=sys.stderr, flush=True)


# `--binary NAME=PATH`: cases written `interval@NAME` run that Sluice binary (A/B of two builds).
BINARIES = {}


def collector_command(case, workdir, signal):
    case, _, alias = case.partition("@")
    binary = BINARIES[alias] if alias else SLUICE
    if case == "rotel":
        return [rotel_binary(), "start", "--otlp-grpc-endpoint", "127.0.0.1:4317",
                "--otlp-http-endpoint", "127.0.0.1:4319", "--exporter", "otlp",
                "--otlp-exporter-endpoint", f"http://{SINK_GRPC}",
                "--otlp-exporter-compression", "none"]
    config = os.path.join(workdir, f"sluice-{case.replace(':', '-')}.toml")
    sluice_config(config, case, signal)
    data = os.path.join(workdir, f"data-{case.replace(':', '-')}")
    shutil.rmtree(data, ignore_errors=True)
    return [binary, "run", config, "--storage.path", data,
            "--server.http.listen-addr", ADMIN, "--shutdown.timeout", "2s",
            "--log.level", "warn"]


def run_case(case, args, sink, workdir):
    log = open(os.path.join(workdir, f"{case.replace('@', '-')}.log"), "w")
    proc = subprocess.Popen(collector_command(case, workdir, args.signal), stdout=log, stderr=log)
    try:
        wait_port(4317)
        time.sleep(1.0)
        base = sink.count()
        cpu0 = cpu_seconds(proc.pid)
        sink_cpu0 = cpu_seconds(sink.proc.pid)
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if args.timeline:
            timeline_stop = threading.Event()
            timeline = threading.Thread(target=print_timeline, args=(case, sink, base, timeline_stop))
            timeline.start()
        start = time.time()
        box0 = box_jiffies()
        load = subprocess.run(
            [SLUICE, "loadgen", "--endpoint", "http://127.0.0.1:4317", "--signal", args.signal,
             "--concurrency", str(args.concurrency), "--spans-per-request",
             str(args.spans_per_request), "--rate", str(args.rate),
             "--duration", f"{args.seconds}s", "--json"],
            capture_output=True, text=True, check=True)
        stop = time.time()
        box1 = box_jiffies()
        report = json.loads(load.stdout)
        acked = report["spans_accepted"]
        # Drain: wait until everything acknowledged has arrived, or the limit.
        drained_at = None
        while time.time() < stop + args.drain_limit:
            if sink.count() - base + processor_dropped(case) >= acked:
                drained_at = time.time()
                break
            time.sleep(0.1)
        if args.timeline:
            timeline_stop.set()
            timeline.join()
        dropped = processor_dropped(case)
        read_from_disk = disk_read_share(case)
        arrived = sink.count() - base
        cpu1 = cpu_seconds(proc.pid)
        sink_cpu = cpu_seconds(sink.proc.pid) - sink_cpu0
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        loadgen_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
        rss = peak_rss_mib(proc.pid)
        w0 = sink.count_at(start + args.warmup)
        w1 = sink.count_at(stop)
        steady = (w1[1] - w0[1]) / (w1[0] - w0[0]) if w0 and w1 and w1[0] > w0[0] else 0.0
        return {
            "case": case,
            "acked_per_s": report["spans_per_second"],
            "delivered_per_s": steady,
            "offered": args.rate,
            "p50_ms": report["p50_ms"],
            "p99_ms": report["p99_ms"],
            "acked": acked,
            "not_arrived": max(acked - dropped - arrived, 0),
            "processor_dropped": dropped,
            "drain_s": (drained_at - stop) if drained_at else None,
            "cpu_per_100k": (cpu1 - cpu0) / max(arrived, 1) * 100_000,
            # The load generator's and the sink's CPU: on a 2-core box they bound the ratio too.
            "harness_cpu_per_100k": (sink_cpu + loadgen_cpu) / max(arrived, 1) * 100_000,
            "rss_mib": rss,
            "read_from_disk": read_from_disk,
            "errors": sum(report["errors"].values()),
            # While the load ran: the box's idle share, and the share the hypervisor gave to
            # other guests (steal), which slows everything on the box alike.
            "box_idle": (box1[1] - box0[1]) / max(box1[0] - box0[0], 1),
            "box_steal": (box1[2] - box0[2]) / max(box1[0] - box0[0], 1),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--drain-limit", type=float, default=10.0)
    p.add_argument("--rate", type=int, default=0, help="spans/s offered; 0 = as fast as acknowledged")
    p.add_argument("--spans-per-request", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--cases", default="rotel,interval,always,none",
                   help="rotel, and Sluice's fsync levels; `interval:novalidate` turns intake "
                        "validation off, `interval:nocompress` the spool's compression, "
                        "`interval:memory128` sets a 128 MiB spool memory tail, `interval:lokiotlp` "
                        "sends logs to Loki's native OTLP endpoint instead of its push API")
    p.add_argument("--signal", choices=["traces", "metrics", "logs"], default="traces",
                   help="traces go to the sink over OTLP; metrics by remote-write and logs by "
                        "Loki push (Sluice only: rotel is compared on traces)")
    p.add_argument("--sink", choices=["sluice", "grpcio", "grpc-js"], default="sluice",
                   help="the counting backend: `sluice sink`, or an independent one on gRPC C-core or grpc-js")
    p.add_argument("--jsonl", help="also append every run as a JSON line to this file")
    p.add_argument("--timeline", action="store_true",
                   help="print every half second of each run to stderr: box idle, items appended, "
                        "read from memory or disk, and arrived")
    p.add_argument("--binary", action="append", default=[], metavar="NAME=PATH",
                   help="another Sluice build; cases written `interval@NAME` run it (A/B runs)")
    args = p.parse_args()
    for spec in args.binary:
        name, _, path = spec.partition("=")
        BINARIES[name] = os.path.abspath(path)
    cases = args.cases.split(",")
    if args.signal != "traces" and "rotel" in cases:
        p.error("rotel is compared on traces only; pass --cases without rotel")
    workdir = tempfile.mkdtemp(prefix="sluice-delivered-")
    sink = None
    rows = []
    try:
        for r in range(args.rounds):
            for case in cases:
                # A fresh sink per run: a sink that has just taken another collector's traffic
                # (rotel's 8192-span requests) carries its state over and cost the next run
                # ~10 % (measured: Sluice 907k spans/s before a rotel run, 783k right after).
                if sink:
                    sink.stop()
                sink = Sink(workdir, args.sink)
                row = run_case(case, args, sink, workdir)
                row["round"] = r
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                if args.jsonl:
                    with open(args.jsonl, "a") as f:
                        f.write(json.dumps(row) + "\n")
    finally:
        if sink:
            sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    def med(case, key):
        vals = [x[key] for x in rows if x["case"] == case and x[key] is not None]
        return statistics.median(vals) if vals else float("nan")

    def disk_shares(mine):
        shares = [x.get("read_from_disk") for x in mine]
        return ", ".join("-" if v is None else f"{v:.0%}" for v in shares)

    load = f"{args.signal}, sink {args.sink}, rate {'unlimited' if args.rate == 0 else args.rate}, {args.spans_per_request} items/request, {args.concurrency} connections, {args.seconds} s"
    print(f"medians over {args.rounds} interleaved rounds ({load})")
    print(f"box: {cpu_model()}, {os.cpu_count()} CPUs; during the load, idle "
          f"{statistics.median(x['box_idle'] for x in rows):.0%} and steal "
          f"{statistics.median(x['box_steal'] for x in rows):.0%} (medians of all runs)")
    print("| collector | delivered items/s (steady) | × rotel (per-round ratios) | acked items/s | not arrived 10 s after stop | drain s | CPU s / 100k delivered | peak RSS MiB | p50 ms | p99 ms | read from disk (per round) | errors |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for case in cases:
        mine = [x for x in rows if x["case"] == case]
        ratio = ""
        if "rotel" in cases and case != "rotel":
            rot = [x for x in rows if x["case"] == "rotel"]
            rs = [a["delivered_per_s"] / b["delivered_per_s"] for a, b in zip(mine, rot) if b["delivered_per_s"] > 0]
            if rs:
                ratio = f"{statistics.median(rs):.2f} ({', '.join(f'{v:.2f}' for v in rs)})"
        label = case if case == "rotel" else f"sluice fsync={case.replace('+', ', processor ')}"
        print(f"| {label} | {med(case, 'delivered_per_s'):.0f} | {ratio} | {med(case, 'acked_per_s'):.0f} | "
              f"{max(x['not_arrived'] for x in mine)} | {med(case, 'drain_s'):.1f} | {med(case, 'cpu_per_100k'):.2f} | "
              f"{med(case, 'rss_mib'):.0f} | {med(case, 'p50_ms'):.2f} | {med(case, 'p99_ms'):.2f} | "
              f"{disk_shares(mine)} | {sum(x['errors'] for x in mine)} |")


if __name__ == "__main__":
    main()
