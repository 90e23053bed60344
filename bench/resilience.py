#!/usr/bin/env python3
"""Bad instances: weft, HAProxy and nginx in front of the same three
`weft demo-app` instances (2 ms each), under the same open-loop load, in one
run. Scenarios:

- healthy: all three answer in 2 ms;
- slow: one of them turned to +200 ms (its admin port, mid-run);
- failing: one answers 50 % 503;
- cluster down: all three answer 100 % 503 (how many requests reach the
  backends per client request: retry amplification).

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


def weft_proxy(weft_bin, tmp, port, backends, plain_retries=False):
    """weft with its defaults; `plain_retries`: 3 retries on any 5xx with
    the budget opened all the way (what a retry policy without a budget does)."""
    conf = os.path.join(tmp, "weft.yaml")
    eps = ", ".join(f"127.0.0.1:{b}" for b in backends)
    route = "{match: {prefix: /}, cluster: be}"
    budget = ""
    if plain_retries:
        route = "{match: {prefix: /}, cluster: be, retries: 3, retry_on: [5xx]}"
        budget = "    retry_budget: {percent: 100, min_per_second: 10000}\n"
    with open(conf, "w") as f:
        f.write(f"""workers: 1
listeners:
  - name: bench
    address: 127.0.0.1:{port}
    routes: [{route}]
clusters:
  - name: be
    endpoints: [{eps}]
{budget}""")
    return common.Server([weft_bin, "proxy", "--config", conf, "--log-level", "error"])


def haproxy(tmp, port, backends):
    conf = os.path.join(tmp, "haproxy.cfg")
    servers = "\n".join(f"  server s{i} 127.0.0.1:{b} check inter 1s observe layer7 error-limit 10 "
                        f"on-error mark-down" for i, b in enumerate(backends))
    with open(conf, "w") as f:
        f.write(f"""global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
  retries 3
  option redispatch 1
  retry-on all-retryable-errors
frontend f
  bind 127.0.0.1:{port}
  default_backend b
backend b
  balance leastconn
{servers}
""")
    return common.Server([common.tool("haproxy"), "-f", conf, "-db"])


def nginx(tmp, port, backends):
    conf = os.path.join(tmp, "nginx.conf")
    servers = " ".join(f"server 127.0.0.1:{b} max_fails=3 fail_timeout=10s;" for b in backends)
    with open(conf, "w") as f:
        f.write(f"""daemon off; worker_processes 1; pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err; events {{ worker_connections 4096; }}
http {{ access_log off; {common.NGINX_PATHS.format(t=tmp)}
  upstream be {{ least_conn; {servers} keepalive 64; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_next_upstream error timeout http_500 http_502 http_503 http_504; proxy_next_upstream_tries 3; }} }} }}
""")
    return common.Server([common.tool("nginx"), "-e", f"{tmp}/nginx.err", "-c", conf, "-p", tmp])


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
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS-resilience.md"))
    a = ap.parse_args()
    scenarios = {
        "healthy": lambda d: None,
        "slow": lambda d: d[2].behave(latency="202ms"),
        "failing": lambda d: d[2].behave(errorRate=0.5, errorStatus=503),
        "cluster down": lambda d: [x.behave(errorRate=1.0, errorStatus=503) for x in d],
    }
    results = {}
    tmp = tempfile.mkdtemp(prefix="weft-bench-res-")
    names = ["weft", "haproxy", "nginx"]
    for k, (scen, change) in enumerate(scenarios.items()):
        # Each scenario starts with another proxy: no one always runs first.
        order = names[k % 3:] + names[:k % 3]
        if scen == "cluster down":
            order.append("weft, 3 retries, no budget")
        for name in order:
            demos = [Demo(a.weft, f"r{i}") for i in range(3)]
            port = common.free_port()
            backends = [d.port for d in demos]
            proxy = {"weft": lambda: weft_proxy(a.weft, tmp, port, backends),
                     "weft, 3 retries, no budget": lambda: weft_proxy(a.weft, tmp, port, backends, True),
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
            ["weft", "haproxy", "nginx", "weft, 3 retries, no budget"].index(kv[0][1]))):
        lines.append(f"| {scen} | {name} | {r['success'] * 100:.2f}% | {r['p50']:.1f} | {r['p99']:.1f} | "
                     f"{r['amplification']:.2f} |")
    if ("slow", "weft") in results and ("healthy", "weft") in results:
        lines += ["", f"weft p99 with the slow instance / healthy: "
                      f"{results[('slow', 'weft')]['p99'] / max(results[('healthy', 'weft')]['p99'], 1e-9):.2f}x "
                      "(target 1.5x)."]
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
