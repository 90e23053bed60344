#!/usr/bin/env python3
"""The cost of tracing on the request path: CPU per request through one
weft worker with tracing off, at 1 % head sampling and at 100 %, in
interleaved rounds (the order rotates), HAProxy for reference, in front of
the same nginx backend. As `make bench` lays it out on 2 cores: the proxy
pinned to core 0; the backend, wrk and the collector on core 1. The
collector takes OTLP/HTTP exports and throws them away (what weft spends
encoding and sending them is weft's CPU, counted). Requests arrive without
trace context, so the rate alone decides. Writes bench/RESULTS-tracing.md.

    /usr/bin/python3 bench/tracing.py --weft build/weft [--rounds 3] [--duration 10]
"""
import argparse
import datetime
import http.server
import os
import re
import subprocess
import sys
import tempfile
import threading
import types
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def collector():
    """An OTLP/HTTP sink on core 1 (a thread of this process, pinned there
    with the rest of it): reads each export whole, answers 200, counts."""
    counts = {"requests": 0, "bytes": 0}

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            n = int(self.headers.get("content-length", "0"))
            self.rfile.read(n)
            counts["requests"] += 1
            counts["bytes"] += n
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, counts


def span_stats(admin_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for m in re.finditer(r'^weft_tracing_spans_total\{result="(\w+)"\} (\d+)', text, re.M):
        out[m.group(1)] = int(m.group(2))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weft", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS-tracing.md"))
    args = ap.parse_args()
    if (os.cpu_count() or 1) < 2:
        sys.exit("bench: needs 2 cores")
    os.sched_setaffinity(0, {1})  # the collector thread: core 1, with wrk and the backend
    a = types.SimpleNamespace(connections=32, wrk_threads=1, wrk_cpus="1", duration=args.duration)
    srv, counts = collector()
    otlp = f"http://127.0.0.1:{srv.server_address[1]}"
    variants = {"off": None, "1%": 0.01, "100%": 1.0}
    res = {k: [] for k in list(variants) + ["haproxy"]}
    spans = {k: [] for k in variants}
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
                        top = f"admin: {{address: 127.0.0.1:{admin}}}\n"
                        if variants[name] is not None:
                            top += f"tracing: {{sampling: {variants[name]}, otlp: '{otlp}'}}\n"
                        s = bench.weft(args.weft, tmp, port, bp, 1, "0", top=top)
                    try:
                        r = bench.measure(name, s, port, a)
                        if name in variants and variants[name] is not None:
                            spans[name].append(span_stats(admin))
                    finally:
                        s.stop()
                    res[name].append(r)
                    bench.print_round(rnd, name, r)
        finally:
            backend.stop()
            srv.shutdown()

    def med(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]

    rows = {k: {"rps": med([x["rps"] for x in v]), "cpu": med([x["cpu_us"] for x in v]),
                "p99": med([x["p99"] for x in v])} for k, v in res.items()}
    off = rows["off"]["cpu"]
    lines = [
        "# Tracing cost",
        "",
        f"Run: `/usr/bin/python3 bench/tracing.py --weft build/weft --rounds {args.rounds} "
        f"--duration {args.duration}`, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} cores.",
        "One weft worker pinned to core 0; nginx (`return 200`), wrk (32 connections, keep-alive) and "
        "the OTLP collector on core 1. Requests carry no trace context: the sampling rate decides. "
        "Spans go out as OTLP/protobuf in batches (off the request path: weft's CPU includes the "
        "exporter thread). Medians of the rounds; the order of the variants rotates each round.",
        "",
        "| target | req/s | p99 ms | CPU µs/req | CPU/req vs off | spans exported | dropped | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k in list(variants) + ["haproxy"]:
        r = rows[k]
        sp = spans.get(k) or []
        tot = {f: sum(x.get(f, 0) for x in sp) for f in ("exported", "dropped", "failed")}
        spans_cols = (f"{tot['exported']} | {tot['dropped']} | {tot['failed']}" if sp else "- | - | -")
        lines.append(f"| {'weft, tracing ' + k if k in variants else k} | {r['rps']:.0f} | {r['p99']} | "
                     f"{r['cpu']:.2f} | {r['cpu'] / off:.3f} | {spans_cols} |")
    lines += ["", "Targets: ≤ 1.03× at 1 %, ≤ 1.3× at 100 % (CPU per request against tracing off).",
              f"Collector: {counts['requests']} exports, {counts['bytes'] / 1e6:.1f} MB in all.", ""]
    text = "\n".join(lines)
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
