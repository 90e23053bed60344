#!/usr/bin/env python3
"""Bad instances: weft, HAProxy and nginx in front of the same three
`weft demo-app` instances (2 ms each), under the same open-loop load, in one
run. Scenarios:

- healthy: all three answer in 2 ms;
- slow: one of them turned to +200 ms (its admin port, mid-run);
- failing: one answers 50 % 503;
- cluster down: all three answer 100 % 503 (how many requests reach the
  backends per client request: retry amplification);
- tail: every instance gives 3 % of its requests +100 ms (a latency tail no
  balancer can steer around), with weft's hedging at p95 as an extra row.

Each proxy runs with the configuration its users would write for this:
weft with its defaults (ewma balancing, default retries); HAProxy with
`balance leastconn`, `observe layer7`, `retries 3`, `option redispatch` and
`retry-on all-retryable-errors`; nginx with `least_conn`, `max_fails=3` and
`proxy_next_upstream error timeout http_500 http_502 http_503 http_504`.

The load is open-loop (a request every 1/rate s whatever the answers do,
latency counted from when it was due, so a stall is not hidden) from
asyncio over keep-alive connections. Writes bench/RESULTS-resilience.md.
"""
import argparse
import asyncio
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as common  # noqa: E402


class Demo:
    def __init__(self, weft_bin, name):
        self.p = subprocess.Popen([weft_bin, "demo-app", "--name", name, "--listen", "127.0.0.1:0",
                                   "--admin", "127.0.0.1:0", "--latency", "2ms", "--log-level", "warn"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        fields = dict(f.split("=", 1) for f in self.p.stdout.readline().split()[3:])
        self.port = int(fields["http"].rsplit(":", 1)[1])
        self.admin = fields["admin"]

    def behave(self, **kw):
        req = urllib.request.Request(f"http://{self.admin}/behaviour", data=json.dumps(kw).encode(),
                                     method="PUT", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def stop(self):
        self.p.kill()
        self.p.wait()


def weft_proxy(weft_bin, tmp, port, backends, plain_retries=False, protocol="http1", hedge=None):
    """weft with its defaults; `plain_retries`: 3 retries on any 5xx with
    the budget opened all the way (what a retry policy without a budget does);
    `protocol: http2` for gRPC backends; `hedge`: the route's hedge delay
    (a duration, or p95)."""
    conf = os.path.join(tmp, f"weft-{protocol}.yaml")
    eps = ", ".join(f"127.0.0.1:{b}" for b in backends)
    route = "{match: {prefix: /}, cluster: be}"
    budget = ""
    if plain_retries:
        route = "{match: {prefix: /}, cluster: be, retries: 3, retry_on: [5xx]}"
        budget = "    retry_budget: {percent: 100, min_per_second: 10000}\n"
    if hedge:
        route = f"{{match: {{prefix: /}}, cluster: be, hedge: {{delay: {hedge}}}}}"
    with open(conf, "w") as f:
        f.write(f"""workers: 1
listeners:
  - name: bench
    address: 127.0.0.1:{port}
    routes: [{route}]
clusters:
  - name: be
    protocol: {protocol}
    endpoints: [{eps}]
{budget}""")
    return common.Server([weft_bin, "proxy", "--config", conf, "--log-level", "error"])


def haproxy(tmp, port, backends, h2=False):
    """`h2`: gRPC, HTTP/2 on both sides (`proto h2`)."""
    conf = os.path.join(tmp, "haproxy-h2.cfg" if h2 else "haproxy.cfg")
    proto = " proto h2" if h2 else ""
    check = "" if h2 else " check inter 1s"
    servers = "\n".join(f"  server s{i} 127.0.0.1:{b}{proto}{check} observe layer7 error-limit 10 "
                        f"on-error mark-down" for i, b in enumerate(backends))
    keepalive = "" if h2 else "  option http-keep-alive\n  http-reuse always\n"
    with open(conf, "w") as f:
        f.write(f"""global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
{keepalive}  retries 3
  option redispatch 1
  retry-on all-retryable-errors
frontend f
  bind 127.0.0.1:{port}{proto}
  default_backend b
backend b
  balance leastconn
{servers}
""")
    return common.Server([common.tool("haproxy"), "-f", conf, "-db"])


def nginx(tmp, port, backends, h2=False):
    """`h2`: gRPC, `listen ... http2` and `grpc_pass`."""
    name = "nginx-h2" if h2 else "nginx"
    conf = os.path.join(tmp, f"{name}.conf")
    servers = " ".join(f"server 127.0.0.1:{b} max_fails=3 fail_timeout=10s;" for b in backends)
    if h2:
        location = ("grpc_pass grpc://be; grpc_next_upstream error timeout; "
                    "grpc_next_upstream_tries 3;")
    else:
        location = ('proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; '
                    "proxy_next_upstream error timeout http_500 http_502 http_503 http_504; "
                    "proxy_next_upstream_tries 3;")
    with open(conf, "w") as f:
        f.write(f"""daemon off; worker_processes 1; pid {tmp}/{name}.pid;
error_log {tmp}/{name}.err; events {{ worker_connections 4096; }}
http {{ access_log off; {common.NGINX_PATHS.format(t=tmp)}
  upstream be {{ least_conn; {servers} keepalive 64; }}
  server {{ listen 127.0.0.1:{port}{" http2" if h2 else ""};
    location / {{ {location} }} }} }}
""")
    return common.Server([common.tool("nginx"), "-e", f"{tmp}/{name}.err", "-c", conf, "-p", tmp])


# --- gRPC: the same three proxies in front of three grpc++ echo servers
# (bench/h2/grpc_echo_server.cc; the slow one answers after --delay-ms),
# under bench/h2/grpc_rate_client.cc's open-loop load.

class EchoServer:
    def __init__(self, binary, delay_ms=0):
        self.p = subprocess.Popen([binary, "--threads", "1", "--delay-ms", str(delay_ms)],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.p.stdout.readline()
        assert line.startswith("listening"), line
        self.port = int(line.split(":")[-1])

    def stop(self):
        self.p.kill()
        self.p.wait()


def grpc_scenarios(a, tmp, results):
    """healthy and slow (+200 ms on one of three) for gRPC unary calls."""
    client = os.path.join(a.bench_bin, "weft_grpc_rate_client")
    server = os.path.join(a.bench_bin, "weft_grpc_echo_server")
    if not (os.path.exists(client) and os.path.exists(server)):
        sys.exit(f"bench/resilience.py: {client} and {server} are needed for the gRPC scenarios "
                 "(cmake --build build --target weft_grpc_rate_client weft_grpc_echo_server)")
    msg = os.path.join(tmp, "msg.bin")
    with open(msg, "wb") as f:
        payload = b"\x0a\x05hello"
        f.write(b"\x00" + len(payload).to_bytes(4, "big") + payload)
    names = ["weft", "haproxy", "nginx"]
    for k, (scen, delays) in enumerate({"healthy": (0, 0, 0), "slow": (0, 0, 200)}.items()):
        order = names[k % 3:] + names[:k % 3]
        for name in order:
            servers = [EchoServer(server, d) for d in delays]
            port = common.free_port()
            backends = [s.port for s in servers]
            proxy = {"weft": lambda: weft_proxy(a.weft, tmp, port, backends, protocol="http2"),
                     "haproxy": lambda: haproxy(tmp, port, backends, h2=True),
                     "nginx": lambda: nginx(tmp, port, backends, h2=True)}[name]()
            try:
                common.wait_port(port)
                time.sleep(0.5)
                out = subprocess.run([client, f"127.0.0.1:{port}", str(a.rate), str(a.seconds + 1), "4",
                                      "/bench.Echo/Call", msg], capture_output=True, text=True, timeout=120)
                j = json.loads(out.stdout.strip().splitlines()[-1])
                n = max(j["requests"], 1)
                r = {"n": j["requests"], "success": (j["requests"] - j["errors"]) / n,
                     "p50": j["p50_us"] / 1000, "p99": j["p99_us"] / 1000, "amplification": float("nan")}
                results[(f"gRPC {scen}", name)] = r
                print(f"gRPC {scen:8s} {name:8s} n={r['n']} success={r['success']:.4f} p50={r['p50']:.1f}ms "
                      f"p99={r['p99']:.1f}ms", flush=True)
            finally:
                proxy.stop()
                for s in servers:
                    s.stop()


async def one_request(port, pool, sched, out):
    loop = asyncio.get_running_loop()
    try:
        if pool:
            reader, writer = pool.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length, close = 0, False
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k.lower() == "content-length":
                length = int(v)
            elif k.lower() == "connection" and "close" in v.lower():
                close = True
        if length:
            await reader.readexactly(length)
        out.append((loop.time() - sched, status))
        if close:
            writer.close()
        else:
            pool.append((reader, writer))
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError):
        out.append((loop.time() - sched, 0))


async def open_loop(port, rate, secs, warm):
    """(latency s, status) of the requests due after `warm` seconds."""
    loop = asyncio.get_running_loop()
    pool, out, tasks = [], [], []
    start = loop.time()
    n = int(rate * (secs + warm))
    for i in range(n):
        sched = start + i / rate
        delay = sched - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append((i >= rate * warm, asyncio.ensure_future(one_request(port, pool, sched, out if i >= rate * warm else []))))
    await asyncio.gather(*(t for _, t in tasks))
    for r, w in pool:
        w.close()
    return out


def summarize(samples):
    lat = sorted(s[0] for s in samples)
    ok = sum(1 for s in samples if s[1] == 200)
    pct = lambda q: lat[min(int(len(lat) * q), len(lat) - 1)] * 1000 if lat else 0  # noqa: E731
    return {"n": len(samples), "success": ok / max(len(samples), 1), "p50": pct(0.5), "p99": pct(0.99)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weft", required=True)
    ap.add_argument("--rate", type=int, default=300, help="requests/s, open loop")
    ap.add_argument("--seconds", type=int, default=12)
    ap.add_argument("--warm", type=int, default=3)
    ap.add_argument("--bench-bin", default="build/bench", help="where weft_grpc_* were built")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS-resilience.md"))
    a = ap.parse_args()
    scenarios = {
        "healthy": lambda d: None,
        "slow": lambda d: d[2].behave(latency="202ms"),
        "failing": lambda d: d[2].behave(errorRate=0.5, errorStatus=503),
        "cluster down": lambda d: [x.behave(errorRate=1.0, errorStatus=503) for x in d],
        "tail": lambda d: [x.behave(tail="100ms", tailRate=0.03) for x in d],
    }
    results = {}
    tmp = tempfile.mkdtemp(prefix="weft-bench-res-")
    names = ["weft", "haproxy", "nginx"]
    for k, (scen, change) in enumerate(scenarios.items()):
        # Each scenario starts with another proxy: no one always runs first.
        order = names[k % 3:] + names[:k % 3]
        if scen == "cluster down":
            order.append("weft, 3 retries, no budget")
        if scen == "tail":
            order.append("weft, hedge at p95")
        for name in order:
            demos = [Demo(a.weft, f"r{i}") for i in range(3)]
            port = common.free_port()
            backends = [d.port for d in demos]
            proxy = {"weft": lambda: weft_proxy(a.weft, tmp, port, backends),
                     "weft, 3 retries, no budget": lambda: weft_proxy(a.weft, tmp, port, backends, True),
                     "weft, hedge at p95": lambda: weft_proxy(a.weft, tmp, port, backends, hedge="p95"),
                     "haproxy": lambda: haproxy(tmp, port, backends),
                     "nginx": lambda: nginx(tmp, port, backends)}[name]()
            try:
                common.wait_port(port)
                time.sleep(0.5)
                change(demos)  # from the start: every proxy meets the same bad instance
                before = sum(d.behave()["requests"] for d in demos)
                samples = asyncio.run(open_loop(port, a.rate, a.seconds, a.warm))
                reached = sum(d.behave()["requests"] for d in demos) - before
                r = summarize(samples)
                r["amplification"] = reached / max(a.rate * (a.seconds + a.warm), 1)
                results[(scen, name)] = r
                print(f"{scen:13s} {name:8s} n={r['n']} success={r['success']:.4f} p50={r['p50']:.1f}ms "
                      f"p99={r['p99']:.1f}ms backend/client={r['amplification']:.2f}", flush=True)
            finally:
                proxy.stop()
                for d in demos:
                    d.stop()
    grpc_scenarios(a, tmp, results)
    write(a, results)


def write(a, results):
    lines = ["# Bad instances: weft, HAProxy and nginx side by side", "",
             f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {common.cpu_model()} "
             f"({os.cpu_count()} cores), {platform.system()} {platform.release()}; "
             f"`/usr/bin/python3 bench/resilience.py --weft build/weft` (rate {a.rate}/s open loop, "
             f"{a.seconds} s measured after {a.warm} s). Three `weft demo-app` instances at 2 ms; every "
             "process shares the machine's cores (no pinning: the ratios within one run are what to read).", "",
             "Configurations: weft defaults (ewma balancing; one retry on a connect failure, a reset or a "
             "503, within the retry budget of 20 % of requests, or 10/s when more; outlier detection "
             "ejecting after 5 failures in a row, at most 10 % of the instances, at least one); "
             "HAProxy `balance leastconn`, servers `check observe layer7 error-limit 10 on-error mark-down`, "
             "`retries 3`, `option redispatch 1`, `retry-on all-retryable-errors`; nginx `least_conn`, "
             "`max_fails=3 fail_timeout=10s`, `proxy_next_upstream error timeout http_500 http_502 http_503 "
             "http_504`, `proxy_next_upstream_tries 3`.", "",
             "| scenario | proxy | success | p50 ms | p99 ms | requests at the backends per client request |",
             "|---|---|---|---|---|---|"]
    for (scen, name), r in sorted(results.items(), key=lambda kv: (list(dict.fromkeys(
            s for s, _ in results)).index(kv[0][0]),
            ["weft", "haproxy", "nginx", "weft, 3 retries, no budget", "weft, hedge at p95"].index(kv[0][1]))):
        amp = "-" if r["amplification"] != r["amplification"] else f"{r['amplification']:.2f}"  # NaN: not measured
        lines.append(f"| {scen} | {name} | {r['success'] * 100:.2f}% | {r['p50']:.1f} | {r['p99']:.1f} | {amp} |")
    if ("slow", "weft") in results and ("healthy", "weft") in results:
        lines += ["", f"weft p99 with the slow instance / healthy: "
                      f"{results[('slow', 'weft')]['p99'] / max(results[('healthy', 'weft')]['p99'], 1e-9):.2f}x "
                      "(target 1.5x)."]
    if ("tail", "weft, hedge at p95") in results and ("tail", "weft") in results:
        h, d = results[("tail", "weft, hedge at p95")], results[("tail", "weft")]
        lines += ["", f"Tail (every instance 3 % at +100 ms): weft's p99 {d['p99']:.1f} ms with its defaults, "
                      f"{h['p99']:.1f} ms with `hedge: {{delay: p95}}` on the route, for "
                      f"{(h['amplification'] - 1) * 100:.1f} % more requests at the backends (hedges come out of "
                      "the retry budget: at most 20 % more). HAProxy and nginx have no hedging."]
    if ("gRPC slow", "weft") in results and ("gRPC healthy", "weft") in results:
        lines += ["", f"gRPC: weft p99 with the slow instance / healthy: "
                      f"{results[('gRPC slow', 'weft')]['p99'] / max(results[('gRPC healthy', 'weft')]['p99'], 1e-9):.2f}x "
                      "(target 1.5x). gRPC rows: three grpc++ echo servers (bench/h2/grpc_echo_server.cc, the "
                      "slow one with --delay-ms 200), unary calls from bench/h2/grpc_rate_client.cc at the same "
                      "rate over 4 HTTP/2 connections; weft `protocol: http2`, HAProxy `proto h2` both sides "
                      "(leastconn, observe layer7), nginx `grpc_pass` (least_conn, `grpc_next_upstream error timeout`)."]
    # Sections measured elsewhere (consistent hashing, from a unit test) stay.
    kept = ""
    if os.path.exists(a.out):
        old = open(a.out).read()
        if "\n## Consistent hashing" in old:
            kept = old[old.index("\n## Consistent hashing"):]
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n" + kept)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
