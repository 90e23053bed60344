#!/usr/bin/env python3
"""The cost of a tap on the request path: CPU per request through one weft
worker with no tap session; with one open that matches every request
(polled every 250 ms, as `weft tap` does) at the default budget of 100
events a second, and at a budget no load reaches (every request copied
out); with one open whose filter matches nothing; and, in the same process
as the first, once the session has closed (10 s after its last poll).
HAProxy for reference, in front of the same nginx backend. As `make bench`
lays it out on 2 cores: the proxy pinned to core 0; the backend, wrk and the
poller on core 1. Interleaved rounds (the order rotates). Writes
bench/RESULTS-tap.md.

    /usr/bin/python3 bench/tap.py --weft build/weft [--rounds 3] [--duration 10]
"""
import argparse
import datetime
import json
import os
import sys
import tempfile
import threading
import time
import types
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


class Poller:
    """A tap session kept open: polls the sidecar's /tap every 250 ms."""

    def __init__(self, admin, query=""):
        self.url = f"http://127.0.0.1:{admin}/tap?id=bench{query}"
        self.events = 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.poll()
        self.t.start()

    def poll(self):
        with urllib.request.urlopen(self.url, timeout=10) as r:
            self.events += len(json.loads(r.read())["events"])

    def run(self):
        while not self.stop.wait(0.25):
            self.poll()

    def close(self):
        self.stop.set()
        self.t.join()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weft", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS-tap.md"))
    args = ap.parse_args()
    if (os.cpu_count() or 1) < 2:
        sys.exit("bench: needs 2 cores")
    os.sched_setaffinity(0, {1})  # the poller: core 1, with wrk and the backend
    a = types.SimpleNamespace(connections=32, wrk_threads=1, wrk_cpus="1", duration=args.duration)
    # name -> (weft flags, tap query or None)
    variants = {
        "no tap, then closed": ([], None),
        "tap open, 100/s": ([], ""),
        "tap open, no budget (10^5/s)": (["--tap-rate", "100000"], ""),
        "tap open, matching nothing": ([], "&route=none"),
    }
    res = {k: [] for k in list(variants) + ["tap closed again", "haproxy"]}
    events = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        bp = bench.free_port()
        backend = bench.nginx_backend(tmp, bp, "1", 1)
        bench.wait_port(bp)
        try:
            for rnd in range(args.rounds):
                names = list(variants)
                names = names[rnd % len(names):] + names[:rnd % len(names)]
                for name in names + ["haproxy"]:
                    port = bench.free_port()
                    admin = bench.free_port()
                    if name == "haproxy":
                        s = bench.haproxy(tmp, port, bp, 1, "0")
                    else:
                        flags, query = variants[name]
                        s = bench.weft(args.weft, tmp, port, bp, 1, "0",
                                       top=f"admin: {{address: 127.0.0.1:{admin}}}\n", extra=flags)
                    try:
                        if name == "haproxy" or variants[name][1] is None:
                            r = bench.measure(name, s, port, a)
                            if name != "haproxy":
                                # The same process after a session opened and closed.
                                bench.wait_port(admin)
                                p = Poller(admin)
                                time.sleep(1)
                                p.close()
                                time.sleep(11)
                                r2 = bench.measure("tap closed again", s, port, a)
                                res["tap closed again"].append(r2)
                                bench.print_round(rnd, "tap closed again", r2)
                        else:
                            bench.wait_port(admin)
                            p = Poller(admin, variants[name][1])
                            try:
                                r = bench.measure(name, s, port, a)
                            finally:
                                p.close()
                            events[name].append(p.events)
                    finally:
                        s.stop()
                    res[name].append(r)
                    bench.print_round(rnd, name, r)
        finally:
            backend.stop()

    def med(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]

    rows = {k: {"rps": med([x["rps"] for x in v]), "cpu": med([x["cpu_us"] for x in v]),
                "p99": med([x["p99"] for x in v])} for k, v in res.items()}
    base = rows["no tap, then closed"]["cpu"]
    # Paired within each round (the machine's noise moves a whole round).
    paired = {k: med([x["cpu_us"] / b["cpu_us"] for x, b in zip(v, res["no tap, then closed"])])
              for k, v in res.items()}
    lines = [
        "# Tap cost",
        "",
        f"Run: `/usr/bin/python3 bench/tap.py --weft build/weft --rounds {args.rounds} "
        f"--duration {args.duration}`, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} cores.",
        "One weft worker pinned to core 0; nginx (`return 200`), wrk (32 connections, keep-alive) and "
        "the tap poller (every 250 ms, as `weft tap` polls) on core 1. Medians of the rounds; the "
        "order of the variants rotates each round. \"Tap closed again\" is the first variant's "
        "process, measured again after a session was opened, polled for a second and left to "
        "close (10 s).",
        "",
        "| target | req/s | p99 ms | CPU µs/req | CPU/req vs no tap | same, per round (median) | events per run |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for k in ["no tap, then closed", "tap closed again", "tap open, matching nothing",
              "tap open, 100/s", "tap open, no budget (10^5/s)", "haproxy"]:
        r = rows[k]
        ev = f"{med(events[k]):,}" if events.get(k) else "-"
        label = "weft, " + k if k != "haproxy" else k
        lines.append(f"| {label} | {r['rps']:.0f} | {r['p99']} | {r['cpu']:.2f} | "
                     f"{r['cpu'] / base:.3f} | {paired[k]:.3f} | {ev} |")
    lines += ["", "The test (tests/integration/test_tap.py, slow) holds a tap open at its default "
              "budget to ≤ 1.25× and a closed one to ≤ 1.15× CPU per request, loose bounds for a "
              "shared machine around these figures.", ""]
    text = "\n".join(lines)
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
