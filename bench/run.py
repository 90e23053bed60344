#!/usr/bin/env python3
"""weft's macro benchmark: weft, nginx and HAProxy side by side.

Every proxy sits in front of the same backend (nginx answering `return 200`),
with the same worker count and the same load generator (wrk, HTTP/1.1
keep-alive, 32 connections). For each it reports requests/s, latency p50 and
p99, proxy CPU time per request (utime+stime from /proc of every process of
the proxy) and RSS idle and under load, then the ratios against HAProxy and
nginx. Absolute numbers drift on a shared machine; the ratios within one run
are the figures to read.
"""
import argparse
import datetime
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HZ = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"port {port} never opened")


def wait_http(url, timeout=30):
    """Polls url until it answers 200; exits the benchmark when it never does."""
    import urllib.request
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    sys.exit(f"bench: {url} never answered 200")


def tool(name):
    p = shutil.which(name) or (os.path.exists(f"/usr/sbin/{name}") and f"/usr/sbin/{name}")
    if not p:
        sys.exit(f"bench: {name} is required (scripts/deps.sh)")
    return p


def pids_of(root):
    """root and all its descendants."""
    out = [root]
    try:
        for line in subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout.splitlines():
            pid, ppid = map(int, line.split())
            if ppid in out:
                out.append(pid)
    except Exception:
        pass
    return out


def cpu_seconds(pids):
    total = 0
    for p in pids:
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])  # utime, stime
        except OSError:
            pass
    return total / HZ


def rss_kb(pids):
    total = 0
    for p in pids:
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def private_kb(pids):
    """Memory the processes alone have written (Private_Dirty: heap, stacks,
    data). RSS also counts library pages that every process using those
    libraries shares; so does USS (Private_Clean + Private_Dirty) whenever the
    process under test happens to be the only one mapping a library (one weft
    process maps libgrpc's pages privately until a second one starts), which
    made USS swing by megabytes with what else was running."""
    total = 0
    for p in pids:
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Private_Dirty:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def parse_wrk(out):
    def dur(s):
        m = re.match(r"([\d.]+)(us|ms|s)", s)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = dur(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = dur(re.search(r"\s99%\s+(\S+)", out).group(1))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors = sum(map(int, m.groups()))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    return rps, total, p50, p99, errors


class Server:
    def __init__(self, args, cpus=None):
        if cpus:
            args = ["taskset", "-c", cpus] + args
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()


NGINX_PATHS = ("client_body_temp_path {t}/cb; proxy_temp_path {t}/pt; fastcgi_temp_path {t}/ft; "
               "uwsgi_temp_path {t}/ut; scgi_temp_path {t}/st;")


def nginx_backend(tmp, port, cpus, workers=1):
    conf = os.path.join(tmp, "backend.conf")
    master = "on" if workers > 1 else "off"
    open(conf, "w").write(f"""daemon off; master_process {master}; worker_processes {workers}; pid {tmp}/backend.pid;
error_log {tmp}/backend.err; events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000; {NGINX_PATHS.format(t=tmp)}
  server {{ listen 127.0.0.1:{port} reuseport backlog=4096; location / {{ return 200 "ok"; }} }} }}
""")
    return Server([tool("nginx"), "-e", f"{tmp}/backend.err", "-c", conf, "-p", tmp], cpus)


def nginx_proxy(tmp, port, backend, workers, cpus):
    conf = os.path.join(tmp, "nginx-proxy.conf")
    open(conf, "w").write(f"""daemon off; worker_processes {workers}; pid {tmp}/proxy.pid;
error_log {tmp}/proxy.err; events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000; {NGINX_PATHS.format(t=tmp)}
  upstream be {{ server 127.0.0.1:{backend}; keepalive 64; keepalive_requests 1000000; }}
  server {{ listen 127.0.0.1:{port} reuseport backlog=4096;
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr; }} }} }}
""")
    return Server([tool("nginx"), "-e", f"{tmp}/proxy.err", "-c", conf, "-p", tmp], cpus)


def haproxy(tmp, port, backend, workers, cpus):
    conf = os.path.join(tmp, "haproxy.cfg")
    open(conf, "w").write(f"""global
  nbthread {workers}
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend f
  bind 127.0.0.1:{port}
  default_backend b
backend b
  server s1 127.0.0.1:{backend}
""")
    return Server([tool("haproxy"), "-f", conf, "-db"], cpus)


def weft(weft_bin, tmp, port, backend, workers, cpus, backends=(), lb="", protocol="", top="", extra=()):
    """weft in front of `backend` (or every port of `backends`), balanced by
    `lb` (default: the proxy's), speaking `protocol` upstream (default:
    HTTP/1.1); `top`: more top-level config (YAML lines: admin, tracing);
    `extra`: more flags for `weft proxy`."""
    conf = os.path.join(tmp, f"weft-{port}.yaml")
    eps = ", ".join(f"127.0.0.1:{p}" for p in (backends or [backend]))
    policy = f"    lb: {lb}\n" if lb else ""
    if protocol:
        policy += f"    protocol: {protocol}\n"
    open(conf, "w").write(f"""{top}workers: {workers}
listeners:
  - name: bench
    address: 127.0.0.1:{port}
    routes: [{{match: {{prefix: /}}, cluster: be}}]
clusters:
  - name: be
{policy}    endpoints: [{eps}]
""")
    return Server([weft_bin, "proxy", "--config", conf, "--log-level", "warn", *extra], cpus)


def run_wrk(port, duration, conns, threads, cpus):
    args = [tool("wrk"), f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency", f"http://127.0.0.1:{port}/"]
    if cpus:
        args = ["taskset", "-c", cpus] + args
    return subprocess.run(args, capture_output=True, text=True).stdout


def measure(name, server, port, a):
    wait_port(port)
    time.sleep(0.3)
    pids = pids_of(server.p.pid) if server else []
    # warm up: connections and pools
    run_wrk(port, 1, a.connections, a.wrk_threads, a.wrk_cpus)
    idle = rss_kb(pids)
    idle_private = private_kb(pids)
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kb(pids))
            time.sleep(0.1)

    t = threading.Thread(target=sample)
    t.start()
    c0 = cpu_seconds(pids)
    out = run_wrk(port, a.duration, a.connections, a.wrk_threads, a.wrk_cpus)
    c1 = cpu_seconds(pids)
    stop.set()
    t.join()
    rps, total, p50, p99, errors = parse_wrk(out)
    cpu_us = (c1 - c0) / total * 1e6 if total and server else 0.0
    return {"name": name, "rps": rps, "p50": p50, "p99": p99, "cpu_us": cpu_us, "idle_kb": idle, "idle_private_kb": idle_private,
            "load_kb": peak[0], "errors": errors}


def print_round(rnd, name, r):
    """One line per measurement of a benchmark in rounds (ab.py, tracing.py)."""
    print(f"round {rnd} {name}: {r['rps']:.0f} req/s, p99 {r['p99']} ms, "
          f"{r['cpu_us']:.2f} us CPU/req", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weft", required=True)
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", "10")))
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md"))
    ap.add_argument("--layout", default="small", choices=["small", "scaling"],
                    help="small: the 2-core machine; scaling: >= 16 cores, proxy on cores 0..N-1, "
                         "backend (4 workers) on 8-11, wrk (4 threads) on 12-15")
    a = ap.parse_args()
    ncpu = os.cpu_count()
    a.wrk_threads = 1
    backend_workers = 1
    if a.layout == "scaling":
        if ncpu < 16:
            sys.exit("bench: --layout scaling needs 16 cores")
        a.wrk_threads = 4
        backend_workers = 4
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in [int(x) for x in a.workers.split(",")]:
            if a.layout == "scaling":
                proxy_cpus = f"0-{workers - 1}"
                a.wrk_cpus = "12-15"
                backend_cpus = "8-11"
            else:
                # One worker on the 2-core machine: the proxy gets core 0 to
                # itself, the backend and wrk share core 1. With more workers
                # nothing is pinned.
                pin = workers == 1 and ncpu >= 2
                proxy_cpus = "0" if pin else None
                a.wrk_cpus = "1" if pin else None
                backend_cpus = "1" if pin else None
            backend_port = free_port()
            backend = nginx_backend(tmp, backend_port, backend_cpus, backend_workers)
            wait_port(backend_port)
            rows = [measure("direct", None, backend_port, a)]
            for name, make in (("weft", lambda p: weft(a.weft, tmp, p, backend_port, workers, proxy_cpus)),
                               ("nginx", lambda p: nginx_proxy(tmp, p, backend_port, workers, proxy_cpus)),
                               ("haproxy", lambda p: haproxy(tmp, p, backend_port, workers, proxy_cpus))):
                port = free_port()
                s = make(port)
                try:
                    rows.append(measure(name, s, port, a))
                finally:
                    s.stop()
                print(f"workers={workers} {rows[-1]}", flush=True)
            backend.stop()
            results[workers] = rows
    write_results(a, results)


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def write_results(a, results):
    cpu = cpu_model()
    lines = ["# weft benchmark results", "",
             f"Run: `make bench` (bench/run.sh → bench/run.py), {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.",
             f"Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}.",
             f"Load: wrk ({a.wrk_threads} thread(s)), HTTP/1.1 keep-alive, {a.connections} connections, "
             f"{a.duration}s per run after a 1s warm-up.",
             ("Backend: nginx `return 200 \"ok\"` (1 worker). With 1 proxy worker the proxy is pinned to core 0 and "
              "backend + wrk to core 1; with 2 workers nothing is pinned (everything shares 2 cores)."
              if a.layout == "small" else
              "Backend: nginx `return 200 \"ok\"` (4 workers, cores 8-11); wrk on cores 12-15; "
              "the proxy under test on cores 0..N-1 for N workers."),
             "CPU/req: proxy utime+stime over the run divided by requests. RSS: all proxy processes; "
             "private: the pages they alone have written (Private_Dirty: heap, stacks, data), without the "
             "library pages RSS counts.",
             "This machine is shared and noisy: read the ratios, not the absolute numbers.", ""]
    for workers, rows in results.items():
        lines += [f"## {workers} worker{'s' if workers > 1 else ''}", "",
                  "| target | req/s | p50 ms | p99 ms | CPU µs/req | RSS idle MB | private idle MB | RSS load MB | errors |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['name']} | {r['rps']:.0f} | {r['p50']:.3f} | {r['p99']:.3f} | "
                         f"{r['cpu_us']:.2f} | {r['idle_kb'] / 1024:.1f} | {r.get('idle_private_kb', 0) / 1024:.1f} | "
                         f"{r['load_kb'] / 1024:.1f} | {r['errors']} |")
        by = {r["name"]: r for r in rows}
        lines += ["", "| weft vs | req/s ratio | CPU/req ratio | p99 ratio | RSS idle ratio | private idle ratio |",
                  "|---|---:|---:|---:|---:|---:|"]
        for other in ("haproxy", "nginx"):
            o, w = by[other], by["weft"]
            lines.append(f"| {other} | {w['rps'] / o['rps']:.2f} | {w['cpu_us'] / o['cpu_us']:.2f} | "
                         f"{w['p99'] / o['p99']:.2f} | {w['idle_kb'] / max(o['idle_kb'], 1):.2f} | "
                         f"{w['idle_private_kb'] / max(o['idle_private_kb'], 1):.2f} |")
        lines.append("")
    lines += ["req/s ratio > 1 and CPU/req ratio < 1 mean weft is ahead.", ""]
    lines += ["## Other benchmarks", "",
              "- Mesh TLS and authorization: bench/RESULTS-mtls.md (`bash bench/mtls.sh`):",
              "  handshakes through one worker against `openssl speed` and `openssl s_server`,",
              "  bulk through one mTLS hop, open-loop latency of the mesh path against direct",
              "  and one plaintext hop, authorization with 100 rules.",
              "- Control plane: bench/RESULTS-control.md (`bash bench/control.sh`), on 16 cores",
              "  bench/RESULTS-control-16core.md.",
              "- Agent lookups (DNS, HTTP): bench/RESULTS-agent.md (`bash bench/agent.sh`).",
              "- HTTP/2 and gRPC against HAProxy and nginx, the mesh path for gRPC, memory per",
              "  HTTP/2 stream and connection: bench/RESULTS-h2.md (`make bench-h2`); at its",
              "  end, gRPC through three endpoints with the default balancer (ewma) against",
              "  round robin (`/usr/bin/python3 bench/h2.py --weft build/weft --build build --only lb`).",
              "- Bad instances (a slow one, a failing one, a failing cluster, a latency tail",
              "  with and without hedging) against HAProxy and nginx:",
              "  bench/RESULTS-resilience.md (`/usr/bin/python3 bench/resilience.py --weft build/weft`).",
              "- A change to the request path, two binaries side by side:",
              "  `python3 bench/ab.py --old OLD/weft --new build/weft` (bench/NOTES.md).",
              "- Multi-core data plane scaling: bench/RESULTS-scaling.md; mTLS handshakes",
              "  against workers on 16 cores: bench/RESULTS-handshakes-16core.md.",
              "- The quickstart's path (frontend -> reviews through two mTLS sidecars):",
              "  bench/RESULTS-quickstart.md (`bash bench/quickstart.sh`); its summary:", ""]
    # The summary that bench/quickstart.sh keeps here survives this rewrite.
    lines += [read_block(a.out, "quickstart") or "(run `bash bench/quickstart.sh`)", ""]
    write_with_notes(lines, a.out, os.path.join(os.path.dirname(a.out), "NOTES.md"))


def read_block(path, name):
    """The block between <!-- NAME --> and <!-- /NAME --> in path, markers included."""
    try:
        text = open(path).read()
    except OSError:
        return ""
    start, end = text.find(f"<!-- {name} -->"), text.find(f"<!-- /{name} -->")
    if start < 0 or end < 0:
        return ""
    return text[start:end + len(f"<!-- /{name} -->")]


def write_block(path, name, body):
    """Replaces (or appends under "Other benchmarks") the block NAME in path."""
    text = open(path).read()
    block = f"<!-- {name} -->\n{body}\n<!-- /{name} -->"
    old = read_block(path, name)
    if old:
        text = text.replace(old, block)
    else:
        anchor = "## Where the time goes"
        i = text.find(anchor)
        text = text[:i] + block + "\n\n" + text[i:] if i >= 0 else text + "\n" + block + "\n"
    open(path, "w").write(text)


def write_with_notes(lines, out, notes):
    """Writes a results file: the generated lines, then the hand-written notes."""
    if os.path.exists(notes):
        lines.append(open(notes).read())
    open(out, "w").write("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
