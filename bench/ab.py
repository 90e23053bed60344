#!/usr/bin/env python3
"""A/B check of a change to the request path: two weft binaries (before and
after) and HAProxy for reference, in front of the same nginx backend, in
interleaved rounds (the order alternates), one worker pinned to core 0 and
the backend and wrk on core 1, as `make bench` does. Prints each round and
the medians. Single `make bench` runs swing by a third on a shared machine;
rounds of the two binaries side by side do not.

    python3 bench/ab.py --old OLD/weft --new build/weft [--rounds 3] [--duration 10]
    python3 bench/ab.py --old build/weft --old-lb round_robin --new build/weft --endpoints 3

--endpoints N puts N backends (nginx processes on core 1) behind the
cluster; --old-lb and --new-lb set its balancer for each side (default: the
proxy's, ewma), to weigh a balancer against another on the same binary.
HAProxy, the reference, always has the first backend only.
"""
import argparse
import os
import sys
import tempfile
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--endpoints", type=int, default=1)
    ap.add_argument("--old-lb", default="")
    ap.add_argument("--new-lb", default="")
    args = ap.parse_args()
    a = types.SimpleNamespace(connections=32, wrk_threads=1, wrk_cpus="1", duration=args.duration)
    bins = {"old": args.old, "new": args.new}
    lbs = {"old": args.old_lb, "new": args.new_lb}
    res = {k: [] for k in ("old", "new", "haproxy")}
    with tempfile.TemporaryDirectory() as tmp:
        ports, backends = [], []
        for i in range(args.endpoints):
            sub = os.path.join(tmp, f"be{i}")
            os.makedirs(sub)
            ports.append(bench.free_port())
            backends.append(bench.nginx_backend(sub, ports[-1], "1", 1))
            bench.wait_port(ports[-1])
        bp = ports[0]
        try:
            for rnd in range(args.rounds):
                order = ["old", "new"] if rnd % 2 == 0 else ["new", "old"]
                for name in order + ["haproxy"]:
                    port = bench.free_port()
                    s = (bench.haproxy(tmp, port, bp, 1, "0") if name == "haproxy"
                         else bench.weft(bins[name], tmp, port, None, 1, "0", backends=ports,
                                         lb=lbs[name]))
                    try:
                        r = bench.measure(name, s, port, a)
                    finally:
                        s.stop()
                    res[name].append(r)
                    bench.print_round(rnd, name, r)
        finally:
            for be in backends:
                be.stop()
    for k, v in res.items():
        rps = sorted(x["rps"] for x in v)
        cpu = sorted(x["cpu_us"] for x in v)
        print(f"{k}: median {rps[len(rps) // 2]:.0f} req/s, {cpu[len(cpu) // 2]:.2f} us CPU/req")


if __name__ == "__main__":
    main()
