#!/usr/bin/env python3
"""Soak and disk-full runs: does Sluice stay flat for an hour with a flapping backend, and does
it refuse cleanly (and lose nothing it acknowledged) when its disk fills?

Soak (`soak`): `sluice loadgen` (traces, gRPC) at a fixed rate -> Sluice (OTLP exporter, default
spool) -> `sluice sink`, which is SIGKILLed every `--flap-every` seconds and restarted
`--down` seconds later. Every `--sample-every` seconds a CSV row records Sluice's RSS
(/proc/PID/status VmRSS), open file descriptors (/proc/PID/fd), threads, the spool's bytes on
disk and Sluice's own accepted/sent counters.

Disk-full (`diskfull`): the same load with Sluice's storage on a small tmpfs. A filler file
takes all but `--free-mib` of it and the sink is down, so the spool hits ENOSPC; the run
records the status codes the load generator got, checks the admin port still answers, then
deletes the filler and starts the sink, and checks that everything acknowledged arrived.
Needs root (mount).

Usage (from the repository root, after `cargo build --release -p sluice`):

    python3 benches/soak.py soak --rate 150000 --minutes 60 --csv benches/soak/soak.csv
    python3 benches/soak.py diskfull --rate 150000
    python3 benches/soak.py report benches/soak/soak.csv    # per-10-minute table and text plot

`SLUICE_BIN` picks another binary (default target/release/sluice).
"""

import argparse
import csv
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from delivered import SINK_GRPC, SINK_PUSH, SLUICE, wait_port  # noqa: E402

ADMIN = "127.0.0.1:12398"
OTLP = "127.0.0.1:4317"


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def metric_sums(names):
    """Sums over all label sets of the named metrics on Sluice's /metrics (None if it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://{ADMIN}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    sums = {n: 0.0 for n in names}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in sums:
            try:
                sums[name] += float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return sums


class FlappingSink:
    """`sluice sink --json`, restartable; counts what every incarnation reported."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.incarnations = 0
        self.proc = None
        self.log_path = None
        self.finished_total = 0  # last report of every killed incarnation

    def start(self):
        self.incarnations += 1
        self.log_path = os.path.join(self.workdir, f"sink-{self.incarnations}.log")
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [SLUICE, "sink", "--grpc", SINK_GRPC, "--http", "127.0.0.1:5318", "--push", SINK_PUSH,
             "--report-every", "100ms", "--json"], stdout=log, stderr=subprocess.DEVNULL)
        log.close()
        wait_port(int(SINK_GRPC.rsplit(":", 1)[1]))

    def current(self):
        last = 0
        if self.log_path:
            with open(self.log_path) as f:
                for line in f:
                    if line.startswith("{"):
                        try:
                            last = json.loads(line)["items"]
                        except (ValueError, KeyError):
                            pass
        return last

    def total(self):
        return self.finished_total + (self.current() if self.proc else 0)

    def kill(self):
        """SIGKILL, as a crashing backend: what it received in its last <100 ms report interval
        is not counted, so the sink's total is a lower bound."""
        if self.proc:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.finished_total += self.current()
            self.proc = None

    def up(self):
        return self.proc is not None


def sluice_config(path, max_bytes=None):
    spool = f"max_bytes = {max_bytes}\n" if max_bytes else ""
    with open(path, "w") as f:
        f.write(f"""
[receivers.otlp]
type = "otlp"
[receivers.otlp.grpc]
endpoint = "{OTLP}"
[exporters.sink]
type = "otlp"
endpoint = "http://{SINK_GRPC}"
compression = "none"
[[pipelines]]
name = "traces"
signals = ["traces"]
receivers = ["otlp"]
exporters = ["sink"]
[pipelines.spool]
{spool}""")


def start_sluice(workdir, data, max_bytes=None):
    config = os.path.join(workdir, "sluice.toml")
    sluice_config(config, max_bytes)
    log = open(os.path.join(workdir, "sluice.log"), "w")
    proc = subprocess.Popen(
        [SLUICE, "run", config, "--storage.path", data, "--server.http.listen-addr", ADMIN,
         "--shutdown.timeout", "5s", "--log.level", "warn"], stdout=log, stderr=log)
    log.close()
    wait_port(int(OTLP.rsplit(":", 1)[1]))
    return proc


def start_loadgen(workdir, rate, seconds, name="loadgen"):
    out = open(os.path.join(workdir, f"{name}.json"), "w")
    return subprocess.Popen(
        [SLUICE, "loadgen", "--endpoint", f"http://{OTLP}", "--signal", "traces",
         "--concurrency", "16", "--spans-per-request", "100", "--rate", str(rate),
         "--duration", f"{seconds}s", "--json"], stdout=out, stderr=subprocess.DEVNULL), out.name


def stop(proc, timeout=15):
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_delivered(sink, acked, limit):
    deadline = time.time() + limit
    while time.time() < deadline:
        if sink.total() >= acked:
            return True
        time.sleep(0.5)
    return sink.total() >= acked


COUNTERS = ["sluice_receiver_accepted_items_total", "sluice_exporter_sent_items_total",
            "sluice_receiver_refused_items_total", "sluice_exporter_retries_total"]


def soak(args):
    workdir = tempfile.mkdtemp(prefix="sluice-soak-")
    data = os.path.join(workdir, "data")
    sink = FlappingSink(workdir)
    sink.start()
    sluice = start_sluice(workdir, data)
    seconds = int(args.minutes * 60)
    load, load_out = start_loadgen(workdir, args.rate, seconds)
    start = time.time()
    next_kill = start + args.flap_every - args.down
    next_sample = start
    rows = []
    os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
    f = open(args.csv, "w", newline="")
    writer = csv.writer(f)
    writer.writerow(["t_s", "rss_mib", "fds", "threads", "spool_mib", "sink_up",
                     "accepted", "sent", "refused", "retries", "sink_received"])
    try:
        while load.poll() is None:
            now = time.time()
            if now >= next_kill:
                if sink.up():
                    sink.kill()
                    next_kill = now + args.down
                else:
                    sink.start()
                    next_kill = now + args.flap_every - args.down
            if now >= next_sample:
                m = metric_sums(COUNTERS) or {c: float("nan") for c in COUNTERS}
                row = [round(now - start), proc_status(sluice.pid, "VmRSS") / 1024,
                       open_fds(sluice.pid), proc_status(sluice.pid, "Threads"),
                       dir_bytes(data) / 2**20, int(sink.up())] + [m[c] for c in COUNTERS] + [sink.total()]
                writer.writerow([f"{v:.1f}" if isinstance(v, float) else v for v in row])
                f.flush()
                rows.append(row)
                next_sample += args.sample_every
            time.sleep(0.2)
        if not sink.up():
            sink.start()
        report = json.load(open(load_out))
        acked = report["spans_accepted"]
        # The sink's total misses what each killed incarnation received after its last
        # report, so completeness is judged on Sluice's own sent counter (items the backend
        # answered OK for); the sink's count is the independent lower bound beside it.
        deadline = time.time() + 120
        while time.time() < deadline:
            m = metric_sums(COUNTERS)
            if m and m["sluice_exporter_sent_items_total"] >= acked:
                break
            time.sleep(0.5)
        m = metric_sums(COUNTERS)
        delivered = bool(m) and m["sluice_exporter_sent_items_total"] >= acked
        summary = {
            "rate": args.rate, "minutes": args.minutes, "acked": acked,
            "acked_per_s": report["spans_per_second"], "loadgen_errors": report["errors"],
            "sink_received_lower_bound": sink.total(), "all_acked_sent": delivered,
            "sink_restarts": sink.incarnations - 1, "sluice_counters": m,
            "sluice_alive": sluice.poll() is None,
        }
        print(json.dumps(summary, indent=1))
        with open(args.csv + ".summary.json", "w") as s:
            json.dump(summary, s, indent=1)
    finally:
        f.close()
        stop(load)
        stop(sluice)
        sink.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def grpc_codes(report):
    return {k: v for k, v in report.get("errors", {}).items()}


def diskfull(args):
    workdir = tempfile.mkdtemp(prefix="sluice-diskfull-")
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.tmpfs_mib}m", "tmpfs", mnt], check=True)
    data = os.path.join(mnt, "data")
    filler = os.path.join(mnt, "filler")
    sink = FlappingSink(workdir)
    sluice = None
    log = []

    def note(msg, **kw):
        entry = {"t": round(time.time() - t0, 1), "event": msg, **kw}
        log.append(entry)
        print(json.dumps(entry), flush=True)

    t0 = time.time()
    try:
        sluice = start_sluice(workdir, data)
        st = os.statvfs(mnt)
        free = st.f_bavail * st.f_frsize
        size = free - args.free_mib * 2**20
        subprocess.run(["fallocate", "-l", str(size), filler], check=True)
        note("filled", tmpfs_mib=args.tmpfs_mib, free_mib=args.free_mib)
        # Sink down: everything acknowledged stays in the spool until the disk is full.
        load, load_out = start_loadgen(workdir, args.rate, args.full_seconds + args.after_seconds)
        deadline = time.time() + args.full_seconds
        admin_ok = admin_fail = 0
        while time.time() < deadline:
            ok = metric_sums(["sluice_receiver_refused_items_total"]) is not None
            admin_ok += ok
            admin_fail += not ok
            time.sleep(1)
        refused = metric_sums(["sluice_receiver_refused_items_total", "sluice_receiver_accepted_items_total"])
        note("disk full phase over", admin_answers=admin_ok, admin_failures=admin_fail,
             spool_mib=round(dir_bytes(data) / 2**20, 1), counters=refused,
             sluice_alive=sluice.poll() is None)
        with urllib.request.urlopen(f"http://{ADMIN}/metrics", timeout=5) as r:
            reasons = [line for line in r.read().decode().splitlines()
                       if line.startswith("sluice_receiver_refused_items_total")]
        note("refusal reasons", lines=reasons)
        os.remove(filler)
        sink.start()
        note("space returned and sink started")
        load.wait()
        report = json.load(open(load_out))
        acked = report["spans_accepted"]
        note("load stopped", acked=acked, errors=grpc_codes(report))
        arrived = wait_delivered(sink, acked, 180)
        note("drain", all_acked_arrived=arrived, sink_received=sink.total(), acked=acked,
             sluice_alive=sluice.poll() is None)
        with open(args.out, "w") as f:
            json.dump(log, f, indent=1)
    finally:
        stop(sluice)
        sink.kill()
        subprocess.run(["umount", mnt])
        shutil.rmtree(workdir, ignore_errors=True)


def report(args):
    rows = list(csv.DictReader(open(args.csv)))
    cols = ["rss_mib", "fds", "threads", "spool_mib"]
    window = args.window * 60
    print(f"| minutes | " + " | ".join(f"{c} min / median / max" for c in cols) + " |")
    print("|---|" + "---:|" * len(cols))
    last = max(float(r["t_s"]) for r in rows)
    w = 0
    while w * window <= last:
        part = [r for r in rows if w * window <= float(r["t_s"]) < (w + 1) * window]
        if part:
            cells = []
            for c in cols:
                v = [float(r[c]) for r in part]
                fmt = "{:.0f}" if c in ("fds", "threads") else "{:.1f}"
                cells.append(" / ".join(fmt.format(x) for x in (min(v), statistics.median(v), max(v))))
            print(f"| {w * args.window}–{(w + 1) * args.window} | " + " | ".join(cells) + " |")
        w += 1
    # Text plot: one line per `window`, a bar per metric scaled to the run's maximum.
    for c in ("rss_mib", "fds"):
        vals = [(float(r["t_s"]), float(r[c])) for r in rows]
        top = max(v for _, v in vals) or 1
        print(f"\n{c} (each row a {args.plot_every}-minute median; bar = value / max {top:.1f})")
        step = args.plot_every * 60
        t = 0
        while t <= last:
            part = [v for ts, v in vals if t <= ts < t + step]
            if part:
                m = statistics.median(part)
                print(f"{t / 60:5.0f} min {m:8.1f} " + "#" * int(50 * m / top))
            t += step


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("soak")
    s.add_argument("--rate", type=int, required=True, help="spans/s offered")
    s.add_argument("--minutes", type=float, default=60)
    s.add_argument("--flap-every", type=float, default=60, help="seconds between sink kills")
    s.add_argument("--down", type=float, default=15, help="seconds the sink stays down")
    s.add_argument("--sample-every", type=float, default=10)
    s.add_argument("--csv", default="benches/soak/soak.csv")
    d = sub.add_parser("diskfull")
    d.add_argument("--rate", type=int, required=True)
    d.add_argument("--tmpfs-mib", type=int, default=512)
    d.add_argument("--free-mib", type=int, default=48, help="space left beside the filler file")
    d.add_argument("--full-seconds", type=int, default=30, help="load against the full disk, sink down")
    d.add_argument("--after-seconds", type=int, default=30, help="load after space returns")
    d.add_argument("--out", default="benches/soak/diskfull.json")
    r = sub.add_parser("report")
    r.add_argument("csv")
    r.add_argument("--window", type=int, default=10, help="minutes per table row")
    r.add_argument("--plot-every", type=int, default=5)
    args = p.parse_args()
    {"soak": soak, "diskfull": diskfull, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
