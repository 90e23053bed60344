#!/usr/bin/env python3
"""weft's HTTP/2 and gRPC benchmarks (bench/h2.sh): writes bench/RESULTS-h2.md.

In one run, on one machine, in the house style of bench/run.py (every proxy
in front of the same upstream, one worker each, the same load generator,
ratios within one run; CPU per request from /proc utime+stime of all the
proxy's processes; RSS):

1. gRPC unary through one proxy: h2load with gRPC framing against a gRPC
   echo server, direct and through weft, HAProxy (`proto h2` both sides)
   and nginx (`grpc_pass`). Two upstreams: grpc++'s generic API
   (bench/h2/grpc_echo_server.cc), which on 2 cores saturates its core
   before a proxy does, and the same answers straight on libnghttp2
   (bench/h2/h2_echo_server.cc), so that the proxy is the bound. Every RPC
   must succeed: h2load's counts, and one call by hand with python3-grpcio
   through each proxy that checks the echo.
2. HTTP/2 clients (h2load, h2c prior knowledge) to an HTTP/1.1 upstream
   (nginx `return 200`), and HTTP/2 end to end (nginx `listen ... http2`
   upstream; weft `protocol: http2`, HAProxy `proto h2`; nginx only speaks
   HTTP/2 upstream through `grpc_pass`, so its row is grpc_pass).
3. The mesh path for gRPC at a fixed rate (bench/h2/grpc_rate_client.cc,
   open loop): client -> sidecar -> mTLS HTTP/2 -> sidecar -> server
   (`weft server` + two `weft proxy --server` sidecars), against the same
   call direct and against a pair of HAProxy instances doing the same (TLS
   1.3, client certificates both ways, h2 by ALPN between them).
4. Memory: HTTP/2 streams held open (HEADERS without END_STREAM, the
   upstream holds the request) and idle HTTP/2 connections after one
   request each: bytes per stream and per connection from the proxy's RSS
   and Private_Dirty.

Layout on 2 cores: the proxy (or both sidecars) on core 0; upstreams and
load generators on core 1. The targets of a table run side by side and take
turns in interleaved rounds. A proxy that dies during a run is restarted and
the table says so. This machine is shared and noisy: read the ratios within
one run.
"""
import argparse
import datetime
import json
import multiprocessing
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _import_h2():
    """python3-h2, not this file: a script's directory comes first on
    sys.path, where `h2` would name bench/h2.py."""
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
    try:
        import h2.config  # noqa: F401
        import h2.connection  # noqa: F401
        import h2.events  # noqa: F401
        import h2.settings  # noqa: F401 - holder_main
        return sys.modules["h2"]
    except ImportError:
        return None  # only the memory benchmark needs it
    finally:
        sys.path[:] = saved


h2lib = _import_h2()
sys.path.insert(0, HERE)
import run as common  # noqa: E402
GRPC_PATH = "/weft.bench.Echo/Unary"


_GIVEN = set()


def free_port():
    """A free port never handed out before in this run. Every proxy here
    binds with SO_REUSEPORT, so two of them given the same port (one asked
    before the other had bound it) would both listen and split the load
    between them without an error."""
    while True:
        p = common.free_port()
        if p not in _GIVEN:
            _GIVEN.add(p)
            return p


def sh(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def grpc_message(payload):
    """One gRPC length-prefixed message: not compressed, 4-byte big-endian length."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def start(args, cpus=None, stdout=subprocess.DEVNULL):
    if cpus:
        args = ["taskset", "-c", cpus] + args
    s = common.Server.__new__(common.Server)
    s.p = subprocess.Popen(args, stdout=stdout, stderr=subprocess.DEVNULL, text=True)
    return s


# ---- the proxies ----

def weft_config(tmp, name, port, backend, protocol="http1", timeouts="", max_idle=0, h2_streams=0):
    """max_idle: the cluster's max_idle_per_endpoint (HTTP/1.1 upstreams;
    0: its default, 1024 per worker, as nginx's `keepalive 1024`)."""
    conf = os.path.join(tmp, f"weft-{name}.yaml")
    idle = f"    max_idle_per_endpoint: {max_idle}\n" if max_idle else ""
    if h2_streams:  # the listener's SETTINGS_MAX_CONCURRENT_STREAMS (default 1024)
        timeouts += f"    http2: {{max_concurrent_streams: {h2_streams}}}\n"
    open(conf, "w").write(f"""workers: 1
listeners:
  - name: bench
    address: 127.0.0.1:{port}
{timeouts}    routes: [{{match: {{prefix: /}}, cluster: be}}]
clusters:
  - name: be
    protocol: {protocol}
{idle}    endpoints: [127.0.0.1:{backend}]
""")
    return conf


def weft(a, tmp, name, port, backend, protocol="http1", cpus=None, timeouts="", max_idle=0, h2_streams=0):
    conf = weft_config(tmp, name, port, backend, protocol, timeouts, max_idle, h2_streams)
    return start([a.weft, "proxy", "--config", conf, "--log-level", "warn"], cpus)


def haproxy(tmp, name, port, backend, fe_h2, be_h2, cpus=None, maxconn=4096, timeout="30s", h2_streams=0):
    conf = os.path.join(tmp, f"haproxy-{name}.cfg")
    tune = f"  tune.h2.max-concurrent-streams {h2_streams}\n" if h2_streams else ""
    open(conf, "w").write(f"""global
  nbthread 1
  maxconn {maxconn}
{tune}defaults
  mode http
  timeout connect 1s
  timeout client {timeout}
  timeout server {timeout}
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend f
  bind 127.0.0.1:{port}{" proto h2" if fe_h2 else ""}
  default_backend b
backend b
  server s1 127.0.0.1:{backend}{" proto h2" if be_h2 else ""}
""")
    return start([common.tool("haproxy"), "-f", conf, "-db"], cpus)


def nginx_proxy(tmp, name, port, backend, mode, cpus=None, conns=4096, extra="", h2_streams=0):
    """mode: "http1" (proxy_pass, HTTP/1.1 keep-alive upstream) or "grpc"
    (grpc_pass: nginx's only way to speak HTTP/2 to an upstream)."""
    conf = os.path.join(tmp, f"nginx-{name}.conf")
    if mode == "grpc":
        loc = "grpc_pass grpc://be; grpc_set_header X-Forwarded-For $remote_addr;"
    else:
        loc = ('proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; '
               "proxy_set_header X-Forwarded-For $remote_addr;")
    streams = f" http2_max_concurrent_streams {h2_streams};" if h2_streams else ""
    open(conf, "w").write(f"""daemon off; worker_processes 1; pid {tmp}/nginx-{name}.pid;
worker_rlimit_nofile {conns * 2 + 100};
error_log {tmp}/nginx-{name}.err; events {{ worker_connections {conns}; }}
http {{ access_log off; keepalive_requests 1000000; {common.NGINX_PATHS.format(t=tmp)}
  upstream be {{ server 127.0.0.1:{backend}; keepalive 1024; keepalive_requests 1000000; }}
  server {{ listen 127.0.0.1:{port} http2 reuseport backlog=4096;{streams}
    location / {{ {loc} {extra} }} }} }}
""")
    return start([common.tool("nginx"), "-e", f"{tmp}/nginx-{name}.err", "-c", conf, "-p", tmp], cpus)


def nginx_backend(tmp, h1_port, h2_port, cpus):
    """nginx `return 200 "ok"` on two ports: HTTP/1.1 and HTTP/2 (prior knowledge)."""
    conf = os.path.join(tmp, "backend.conf")
    open(conf, "w").write(f"""daemon off; master_process off; worker_processes 1; pid {tmp}/backend.pid;
worker_rlimit_nofile 8192;
error_log {tmp}/backend.err; events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000; {common.NGINX_PATHS.format(t=tmp)}
  server {{ listen 127.0.0.1:{h1_port} reuseport backlog=4096; listen 127.0.0.1:{h2_port} http2 reuseport backlog=4096;
    location / {{ return 200 "ok"; }} }} }}
""")
    return start([common.tool("nginx"), "-e", f"{tmp}/backend.err", "-c", conf, "-p", tmp], cpus)


def grpc_server(a, cpus, kind="grpc++"):
    """The gRPC echo upstream: "grpc++" (bench/h2/grpc_echo_server.cc) or
    "nghttp2" (bench/h2/h2_echo_server.cc, the same answers for far less CPU)."""
    if kind == "grpc++":
        args = [a.grpc_server, "--port", "0", "--threads", str(a.server_threads)]
    else:
        args = [a.h2_echo_server, "--port", "0"]
    s = start(args, cpus, stdout=subprocess.PIPE)
    line = s.p.stdout.readline()
    if not line.startswith("listening"):
        sys.exit(f"bench: the gRPC echo server did not start: {line!r}")
    return s, int(line.split()[1].rsplit(":", 1)[1])


# ---- checks and load ----

def grpc_check(port, name):
    """One unary call by hand (python3-grpcio): the echo must come back whole."""
    import grpc
    payload = f"weft-bench check through {name}".encode() + os.urandom(1000)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_unary(GRPC_PATH, request_serializer=None, response_deserializer=None)
        got = call(payload, timeout=10)
    if got != payload:
        sys.exit(f"bench: gRPC echo through {name} came back wrong ({len(got)} bytes)")
    return True


def parse_h2load(out):
    def num(pat, cast=float):
        m = re.search(pat, out)
        return cast(m.group(1)) if m else None

    def dur_ms(s):
        m = re.match(r"([\d.]+)(us|ms|s)", s)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v

    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out)
    if not m:
        sys.exit(f"bench: h2load output not understood:\n{out[-2000:]}")
    total, started, done, ok, failed, errored, timeout = map(int, m.groups())
    s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    c2, c3, c4, c5 = map(int, s.groups())
    t = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
    return {"rps": num(r"finished in [\d.]+m?s, ([\d.]+) req/s"), "succeeded": ok, "done": done,
            "errors": failed + errored + timeout + c3 + c4 + c5,
            "status_2xx": c2, "mean_ms": dur_ms(t.group(3)), "max_ms": dur_ms(t.group(2))}


def h2load(a, port, secs, path="/", data=None, grpc=False):
    args = [common.tool("h2load"), "-t", "1", "-c", str(a.clients), "-m", str(a.streams), "-D", str(secs)]
    if grpc:
        args += ["-d", data, "-H", "content-type: application/grpc", "-H", "te: trailers"]
    args.append(f"http://127.0.0.1:{port}{path}")
    if a.load_cpus:
        args = ["taskset", "-c", a.load_cpus] + args
    r = sh(args, timeout=secs + 60)
    res = parse_h2load(r.stdout)
    if not res["done"]:
        tail = "\n".join(line for line in r.stdout.splitlines() if line.startswith(("requests:", "finished")))
        print(f"bench: h2load to port {port} did nothing: {tail} {r.stderr[-300:]}", flush=True)
    return res


def runq_wait_seconds(pids):
    """Time the processes' threads spent runnable but waiting for a CPU
    (/proc/PID/task/TID/schedstat, second field): on a shared machine, what
    other work on the proxy's core took from it."""
    total = 0
    for p in pids:
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                total += int(open(f"/proc/{p}/task/{tid}/schedstat").read().split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def run_table(a, targets, path="/", data=None, grpc=False, check=None):
    """Every target (name, make(port) -> Server or None for direct, port for
    direct) started at once, then a.rounds interleaved h2load runs of
    a.duration seconds each: a slow patch of the shared machine hits every
    target alike. Per target: medians of the rounds; per pair, the median of
    the per-round ratios."""
    live, makers = [], {}
    try:
        for name, make in targets:
            if callable(make):
                port = free_port()
                srv = make(port)
                makers[name] = make
                live.append([name, srv, port])
            else:
                live.append([name, None, make])
        info = {}
        for name, srv, port in live:
            common.wait_port(port)
            if check:
                check(port, name)
            h2load(a, port, 1, path, data, grpc)  # warm-up: connections and pools
            pids = common.pids_of(srv.p.pid) if srv else []
            info[name] = {"pids": pids, "idle_kb": common.rss_kb(pids), "idle_private_kb": common.private_kb(pids),
                          "runs": [], "crashes": []}
        todo = [(rnd, i) for rnd in range(a.rounds) for i in range(len(live))]
        retried = set()
        while todo:
            rnd, i = todo.pop(0)
            name, srv, port = live[i]
            pids = info[name]["pids"]
            peak = [0]
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    peak[0] = max(peak[0], common.rss_kb(pids))
                    time.sleep(0.1)

            th = threading.Thread(target=sample)
            th.start()
            c0, w0, t0 = common.cpu_seconds(pids), runq_wait_seconds(pids), time.time()
            r = h2load(a, port, a.duration, path, data, grpc)
            c1, w1, t1 = common.cpu_seconds(pids), runq_wait_seconds(pids), time.time()
            stop.set()
            th.join()
            if srv:
                time.sleep(0.3)
            if srv and srv.p.poll() is not None:
                # The proxy died, during the run or as h2load closed its
                # connections at the end: say so and start it again. The
                # run counts when the proxy was still there for the CPU
                # reading after it; otherwise the round is run again once.
                code = srv.p.returncode
                valid = r["done"] > 0 and c1 > c0
                info[name]["crashes"].append(f"round {rnd + 1}: exit {code}"
                                             + (f" (signal {-code})" if code < 0 else "")
                                             + ("" if valid else ", run lost"))
                print(f"  round {rnd + 1} {name}: the proxy DIED (exit {code}); restarted", flush=True)
                srv = makers[name](port)
                live[i][1] = srv
                common.wait_port(port)
                h2load(a, port, 1, path, data, grpc)
                info[name]["pids"] = common.pids_of(srv.p.pid)
                if not valid:
                    if (rnd, i) not in retried:
                        retried.add((rnd, i))
                        todo.insert(0, (rnd, i))
                    continue
            r.update({"cpu_us": (c1 - c0) / r["done"] * 1e6 if r["done"] and srv else 0.0,
                      "busy": (c1 - c0) / (t1 - t0) if srv else 0.0,
                      "wait": (w1 - w0) / (t1 - t0) if srv else 0.0, "load_kb": peak[0]})
            info[name]["runs"].append(r)
            print(f"  round {rnd + 1} {name}: {r['rps']:.0f} req/s, {r['cpu_us']:.2f} µs CPU/req, core busy "
                  f"{r['busy'] * 100:.0f}%, waiting for CPU {r['wait'] * 100:.0f}%, errors {r['errors']}",
                  flush=True)
    finally:
        for _, srv, _ in live:
            if srv:
                srv.stop()
    rows = []
    for name, _, _ in live:
        i, runs = info[name], info[name]["runs"]
        if not runs:  # every run lost to a crash
            runs = [{"rps": 0.0, "cpu_us": 0.0, "busy": 0.0, "wait": 0.0, "mean_ms": 0.0, "load_kb": 0, "errors": 0,
                     "done": 0}]
        rows.append({"name": name, "idle_kb": i["idle_kb"], "idle_private_kb": i["idle_private_kb"],
                     "load_kb": max(x["load_kb"] for x in runs), "errors": sum(x["errors"] for x in runs),
                     "done": sum(x["done"] for x in runs), "runs": runs, "crashes": i["crashes"],
                     **{k: statistics.median(x[k] for x in runs) for k in ("rps", "cpu_us", "busy", "wait", "mean_ms")}})
    return rows


# ---- 1. gRPC unary ----

def bench_grpc(a, tmp, kind):
    print(f"gRPC unary through one proxy, {kind} echo server", flush=True)
    srv, gport = grpc_server(a, a.load_cpus, kind)
    data = os.path.join(tmp, "grpc.msg")
    with open(data, "wb") as f:
        f.write(grpc_message(b"x" * a.payload))
    try:
        common.wait_port(gport)
        rows = run_table(a, [
            ("direct", gport),
            ("weft", lambda p: weft(a, tmp, "grpc", p, gport, "http2", a.proxy_cpus)),
            ("haproxy", lambda p: haproxy(tmp, "grpc", p, gport, True, True, a.proxy_cpus)),
            ("nginx", lambda p: nginx_proxy(tmp, "grpc", p, gport, "grpc", a.proxy_cpus)),
        ], GRPC_PATH, data, True, check=grpc_check)
        # What the server itself spends per RPC (it shares its core with h2load).
        pids = common.pids_of(srv.p.pid)
        c0 = common.cpu_seconds(pids)
        r = h2load(a, gport, 2, GRPC_PATH, data, True)
        server_us = (common.cpu_seconds(pids) - c0) / max(r["done"], 1) * 1e6
    finally:
        srv.stop()
    return rows, server_us


# ---- 1b. the default balancer with several endpoints ----

def bench_grpc_lb(a, tmp):
    """gRPC unary through weft to three nghttp2 echo servers, the default
    balancer (ewma) against round robin, in interleaved rounds (`--only lb`;
    issue: the new default must not cost more than 3 %)."""
    print("gRPC unary through weft to three endpoints: ewma against round_robin", flush=True)
    servers = [grpc_server(a, a.load_cpus, "nghttp2") for _ in range(3)]
    data = os.path.join(tmp, "grpc.msg")
    with open(data, "wb") as f:
        f.write(grpc_message(b"x" * a.payload))

    def make(lb):
        return lambda port: common.weft(a.weft, tmp, port, None, 1, a.proxy_cpus,
                                        backends=[p for _, p in servers], lb=lb, protocol="http2")

    try:
        for _, p in servers:
            common.wait_port(p)
        rows = run_table(a, [("weft, ewma (the default)", make("ewma")),
                             ("weft, round_robin", make("round_robin"))], GRPC_PATH, data, True, check=grpc_check)
    finally:
        for s, _ in servers:
            s.stop()
    return rows


def write_lb(a, rows):
    """Replaces the balancer section of the results file (the rest stays)."""
    head = "## gRPC with three endpoints: the default balancer against round robin"
    lines = [head, "",
             f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
             f"`/usr/bin/python3 bench/h2.py --weft build/weft --build build --only lb --rounds {a.rounds}` ({a.rounds} interleaved rounds of "
             f"{a.duration} s, h2load {a.clients} connections x {a.streams} streams, gRPC unary with "
             f"{a.payload}-byte messages, three libnghttp2 echo servers on core 1, weft on core 0, one worker).", "",
             "| balancer | requests/s (median) | CPU µs per request (median) | errors | rounds (requests/s) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['rps']:.0f} | {r['cpu_us']:.2f} | {r['errors']} | "
                     + ", ".join(f"{x['rps']:.0f}" for x in r["runs"]) + " |")
    ewma, rr = rows[0], rows[1]
    lines += ["", f"ewma / round_robin: {ewma['rps'] / max(rr['rps'], 1):.3f}x requests/s, "
                  f"{ewma['cpu_us'] / max(rr['cpu_us'], 1e-9):.3f}x CPU per request (target: no worse than 3 %)."]
    old = open(a.out).read() if os.path.exists(a.out) else ""
    if head in old:
        start_at = old.index(head)
        nxt = old.find("\n## ", start_at + len(head))
        old = old[:start_at].rstrip("\n") + ("\n\n" + old[nxt + 1:] if nxt >= 0 else "")
    with open(a.out, "w") as f:
        f.write(old.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


# ---- 2. HTTP/2 to HTTP/1.1 and HTTP/2 end to end ----

def bench_h2(a, tmp):
    h1, h2 = free_port(), free_port()
    be = nginx_backend(tmp, h1, h2, a.load_cpus)
    try:
        common.wait_port(h1)
        common.wait_port(h2)
        print("h2c client -> HTTP/1.1 upstream", flush=True)
        to_h1 = run_table(a, [
            ("direct (h2 to nginx)", h2),
            ("weft", lambda p: weft(a, tmp, "h2h1", p, h1, "http1", a.proxy_cpus)),
            ("haproxy", lambda p: haproxy(tmp, "h2h1", p, h1, True, False, a.proxy_cpus)),
            ("nginx", lambda p: nginx_proxy(tmp, "h2h1", p, h1, "http1", a.proxy_cpus)),
        ])
        print("HTTP/2 end to end", flush=True)
        to_h2 = run_table(a, [
            ("direct (h2 to nginx)", h2),
            ("weft", lambda p: weft(a, tmp, "h2h2", p, h2, "http2", a.proxy_cpus)),
            ("haproxy", lambda p: haproxy(tmp, "h2h2", p, h2, True, True, a.proxy_cpus)),
            ("nginx (grpc_pass)", lambda p: nginx_proxy(tmp, "h2h2", p, h2, "grpc", a.proxy_cpus)),
        ])
    finally:
        be.stop()
    return to_h1, to_h2


# ---- 3. The mesh path at a fixed rate ----

def make_certs(tmp):
    """A CA and two leaves (P-256) for the HAProxy pair, in HAProxy's PEM shape (cert + key)."""
    sys.path.insert(0, HERE)
    import mtls
    ca_key, ca_pem, _, _ = mtls.make_ca(tmp)
    pems = {}
    for name in ("hap-client", "hap-server"):
        key, pem = mtls.leaf(tmp, name, f"spiffe://weft.local/ns/default/sa/{name}", ca_pem, ca_key)
        both = os.path.join(tmp, f"{name}-both.pem")
        open(both, "w").write(open(pem).read() + open(key).read())
        pems[name] = both
    return ca_key, ca_pem, pems


def haproxy_pair(tmp, up, b_in, gport, ca_pem, pems, cpus):
    """Client side: h2c in, TLS 1.3 + client certificate + ALPN h2 out.
    Server side: TLS 1.3 requiring a client certificate, ALPN h2, h2c to the app."""
    base = """global
  nbthread 1
  maxconn 4096
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
"""
    ca, cli, srv = ca_pem, pems["hap-client"], pems["hap-server"]
    open(f"{tmp}/hap-a.cfg", "w").write(base + f"""frontend f
  bind 127.0.0.1:{up} proto h2
  default_backend b
backend b
  server s1 127.0.0.1:{b_in} ssl crt {cli} ca-file {ca} verify required alpn h2
""")
    open(f"{tmp}/hap-b.cfg", "w").write(base + f"""frontend f
  bind 127.0.0.1:{b_in} ssl crt {srv} ca-file {ca} verify required alpn h2
  default_backend b
backend b
  server s1 127.0.0.1:{gport} proto h2
""")
    b = start([common.tool("haproxy"), "-f", f"{tmp}/hap-b.cfg", "-db"], cpus)
    a_ = start([common.tool("haproxy"), "-f", f"{tmp}/hap-a.cfg", "-db"], cpus)
    return a_, b


def put(url, body):
    import urllib.request
    # JSON, said so: urllib's default type (a form) is refused with 415.
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def weft_mesh(a, tmp, gport, ca_pem, ca_key, cpus, procs):
    http_port, grpc_port = free_port(), free_port()
    srv = start([a.weft, "server", "--dev", "--http", f"127.0.0.1:{http_port}", "--grpc", f"127.0.0.1:{grpc_port}",
                 "--ca-cert", ca_pem, "--ca-key", ca_key, "--log-level", "warn"], a.load_cpus)
    procs.append(srv)
    common.wait_port(http_port)
    url = f"http://127.0.0.1:{http_port}"
    # The app's port speaks gRPC: its sidecar talks HTTP/2 to it.
    r = sh([a.weft, "apply", "-f", "-", "--server", url], timeout=30,
           input="kind: Service\nmetadata: {name: app, namespace: default}\n"
                 f"spec:\n  ports: [{{port: {gport}, protocol: grpc}}]\n")
    if r.returncode != 0:
        sys.exit(f"bench: weft apply failed: {r.stderr}")
    api = f"{url}/v1/catalog/register"
    b_in, up = free_port(), free_port()
    put(api, {"Node": "n-app", "Address": "127.0.0.1", "Service": {"Service": "app", "ID": "app-1", "Port": gport}})
    put(api, {"Node": "n-app", "Address": "127.0.0.1", "Service": {
        "Service": "app-sidecar", "ID": "app-sc", "Kind": "connect-proxy", "Port": b_in,
        "Proxy": {"DestinationServiceName": "app", "LocalServicePort": gport}}})
    put(api, {"Node": "n-cli", "Address": "127.0.0.1", "Service": {
        "Service": "bench-sidecar", "ID": "bench-sc", "Kind": "connect-proxy", "Port": free_port(),
        "Proxy": {"DestinationServiceName": "bench", "LocalServicePort": gport,
                  "Upstreams": [{"DestinationName": "app", "LocalBindPort": up}]}}})
    sides = []
    for svc in ("app", "bench"):
        p = start([a.weft, "proxy", "--server", f"127.0.0.1:{grpc_port}", "--service", svc,
                   "--workers", "1", "--admin", "127.0.0.1:0", "--log-level", "warn"], cpus, stdout=subprocess.PIPE)
        procs.append(p)
        line = p.p.stdout.readline()  # weft proxy listening admin=ADDR ...
        m = re.search(r"admin=(\S+)", line)
        if not m:
            sys.exit(f"bench: sidecar for {svc} did not start: {line!r}")
        p.admin = m.group(1)
        sides.append(p)
    side_b, side_a = sides
    common.wait_port(up, timeout=30)
    return side_a, side_b, up


def weft_stat(admin, name):
    """Sum of one metric over all its label sets, from a proxy's /stats."""
    import urllib.request
    with urllib.request.urlopen(f"http://{admin}/stats", timeout=10) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.split("{")[0].split(" ")[0] == name)


def rate_run(a, port, pids_a, pids_b):
    ca, cb = common.cpu_seconds(pids_a), common.cpu_seconds(pids_b)
    args = [a.rate_client, f"127.0.0.1:{port}", str(a.rate), str(a.rate_seconds), str(a.rate_connections),
            GRPC_PATH, a.rate_msg]
    if a.load_cpus:
        args = ["taskset", "-c", a.load_cpus] + args
    out = sh(args, timeout=a.rate_seconds + 60)
    try:
        res = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        sys.exit(f"bench: rate client output not understood: {out.stdout[-500:]} {out.stderr[-500:]}")
    # CPU over the whole run (warm-up second included) per call due in it.
    sent = a.rate * a.rate_seconds
    res["cpu_a_us"] = (common.cpu_seconds(pids_a) - ca) * 1e6 / sent if pids_a else 0.0
    res["cpu_b_us"] = (common.cpu_seconds(pids_b) - cb) * 1e6 / sent if pids_b else 0.0
    return res


def bench_mesh(a, tmp):
    print(f"mesh path at {a.rate} RPC/s", flush=True)
    procs = []
    try:
        ca_key, ca_pem, pems = make_certs(tmp)
        srv, gport = grpc_server(a, a.load_cpus)
        procs.append(srv)
        a.rate_msg = os.path.join(tmp, "rate.msg")
        with open(a.rate_msg, "wb") as f:
            f.write(grpc_message(b"x" * a.payload))
        side_a, side_b, up = weft_mesh(a, tmp, gport, ca_pem, ca_key, a.proxy_cpus, procs)
        hup, hb_in = free_port(), free_port()
        ha, hb = haproxy_pair(tmp, hup, hb_in, gport, ca_pem, pems, a.proxy_cpus)
        procs += [ha, hb]
        common.wait_port(hup)
        deadline = time.time() + 30
        while True:
            try:
                grpc_check(up, "the weft mesh")
                break
            except Exception:  # noqa: BLE001 - the sidecars are still getting their config
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        grpc_check(hup, "the HAProxy pair")
        paths = [("direct", gport, [], []),
                 ("weft: sidecar -> mTLS h2 -> sidecar", up, common.pids_of(side_a.p.pid),
                  common.pids_of(side_b.p.pid)),
                 ("HAProxy pair: h2 -> TLS 1.3 h2 -> h2", hup, common.pids_of(ha.p.pid), common.pids_of(hb.p.pid))]
        # Warm both paths' pooled connections, then interleaved rounds.
        for _, port, _, _ in paths:
            sh([a.rate_client, f"127.0.0.1:{port}", "500", "1", "2", GRPC_PATH, a.rate_msg], timeout=30)
        res = {name: [] for name, _, _, _ in paths}
        for rnd in range(a.rounds):
            for name, port, pa, pb in paths:
                r = rate_run(a, port, pa, pb)
                res[name].append(r)
                print(f"  round {rnd + 1} {name}: p50 {r['p50_us']:.0f} µs p99 {r['p99_us']:.0f} µs, "
                      f"CPU {r['cpu_a_us']:.1f} + {r['cpu_b_us']:.1f} µs/RPC, errors {r['errors']}", flush=True)
        rss = {name: (common.rss_kb(pa), common.private_kb(pa), common.rss_kb(pb), common.private_kb(pb))
               for name, _, pa, pb in paths[1:]}
        # What the sidecars did: HTTP/2 connections, mTLS handshakes.
        checks = {
            "client sidecar: upstream HTTP/2 connections": weft_stat(side_a.admin, "weft_cluster_upstream_cx_http2_total"),
            "client sidecar: upstream mTLS handshakes": weft_stat(side_a.admin, "weft_cluster_upstream_mtls_handshakes_total"),
            "server sidecar: inbound mTLS handshakes": weft_stat(side_b.admin, "weft_listener_mtls_handshakes_total"),
            "server sidecar: HTTP/2 connections to the app": weft_stat(side_b.admin, "weft_cluster_upstream_cx_http2_total"),
        }
        print(f"  {checks}", flush=True)
    finally:
        for p in reversed(procs):
            p.stop()
    return res, rss, checks


# ---- 4. Memory: held streams, idle connections ----

def holder_main(port_value, count, ready):
    """An upstream that takes requests and never answers them: HTTP/1.1, or
    HTTP/2 when the connection starts with the preface (streams allowed:
    100,000 per connection). `count` is the requests whose head arrived."""
    import asyncio
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def bump():
        with count.get_lock():
            count.value += 1

    async def handle(reader, writer):
        first = await reader.read(65536)
        if first.startswith(b"PRI * HTTP/2.0"):
            conn = h2lib.connection.H2Connection(h2lib.config.H2Configuration(client_side=False))
            conn.initiate_connection()
            conn.update_settings({h2lib.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100000})
            data = first
            while data:
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2lib.events.RequestReceived):
                        bump()
                    elif isinstance(ev, h2lib.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                out = conn.data_to_send()
                if out:
                    writer.write(out)
                data = await reader.read(65536)
        else:
            head, data = b"", first
            while data:
                if head is not None:
                    head += data
                    if b"\r\n\r\n" in head:
                        head = None
                        bump()
                data = await reader.read(65536)
        writer.close()

    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=8192)
        port_value.value = srv.sockets[0].getsockname()[1]
        ready.set()
        await srv.serve_forever()

    asyncio.run(main())


class H2Client:
    """A raw HTTP/2 client connection (python3-h2, prior knowledge)."""

    def __init__(self, port):
        if h2lib is None:
            sys.exit("bench: python3-h2 is required for the memory benchmark (scripts/deps.sh)")
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = h2lib.connection.H2Connection(h2lib.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.settings = False
        self.ended = set()
        self.pump_until(lambda: self.settings)

    def pump(self, timeout):
        ev_ = h2lib.events
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, BlockingIOError):
            return
        if not data:
            raise ConnectionError("closed by the proxy")
        for ev in self.conn.receive_data(data):
            if isinstance(ev, ev_.RemoteSettingsChanged):
                self.settings = True
            elif isinstance(ev, (ev_.StreamEnded, ev_.StreamReset)):
                self.ended.add(ev.stream_id)
            elif isinstance(ev, ev_.DataReceived):
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def pump_until(self, cond, timeout=10):
        end = time.time() + timeout
        while not cond():
            if time.time() > end:
                raise TimeoutError("no answer from the proxy")
            self.pump(0.5)

    def max_streams(self):
        return self.conn.remote_settings.max_concurrent_streams

    def open(self, n, end_stream, body=b""):
        """n requests: GET with END_STREAM, or POST left open (HEADERS
        without END_STREAM, then `body` as DATA without END_STREAM)."""
        ids, out = [], b""
        for _ in range(n):
            sid = self.conn.get_next_available_stream_id()
            self.conn.send_headers(sid, [(":method", "POST" if not end_stream else "GET"), (":scheme", "http"),
                                         (":authority", f"127.0.0.1:{self.port}"), (":path", "/hold"),
                                         ("content-type", "application/octet-stream")], end_stream=end_stream)
            if body and not end_stream:
                self.conn.send_data(sid, body, end_stream=False)
            ids.append(sid)
            out += self.conn.data_to_send()
            if len(out) > 32768:
                self.sock.sendall(out)
                out = b""
        self.sock.sendall(out + self.conn.data_to_send())
        return ids


def mem_sample(pids):
    return common.rss_kb(pids), common.private_kb(pids)


def held_streams(a, port, pids, count, body):
    """Streams held open through the proxy at `port`: one connection with as
    many as it allows, then a.streams_total over connections of that many
    each (connections opened first, measured apart)."""
    def wait_count(n, clients, timeout):
        deadline = time.time() + timeout
        while count.value < n and time.time() < deadline:
            for cc in clients[:4]:
                cc.pump(0.01)
            time.sleep(0.05)
        return count.value

    r = {}
    warm = H2Client(port)  # one held stream first: pools, buffers and timers exist from then on
    count.value = 0
    warm.open(1, False, body)
    wait_count(1, [warm], 10)
    time.sleep(0.3)
    base = mem_sample(pids)
    c = H2Client(port)
    limit = c.max_streams()
    n1 = min(a.streams_total, limit)
    count.value = 0
    c.open(n1, False, body)
    r["one_reached"] = wait_count(n1, [c], 20)
    time.sleep(0.5)
    one = mem_sample(pids)
    r["limit"], r["one_streams"] = limit, n1
    r["one"] = (one[0] - base[0], one[1] - base[1])
    per = max(1, min(limit, a.streams_total))
    nconn = max(1, a.streams_total // per)
    conns = [H2Client(port) for _ in range(nconn)]
    time.sleep(0.3)
    mid = mem_sample(pids)
    count.value = 0
    for cc in conns:
        cc.open(per, False, body)
    r["many_reached"] = wait_count(per * nconn, conns, 60)
    time.sleep(1)
    many = mem_sample(pids)
    r["many_conns"], r["many_per"] = nconn, per
    r["many"] = (many[0] - mid[0], many[1] - mid[1])
    r["many_base"], r["many_after"] = mid, many
    for cc in conns + [c, warm]:
        cc.sock.close()
    return r


def bench_memory(a, tmp):
    """Held streams and idle connections against weft, HAProxy and nginx."""
    print("memory: held HTTP/2 streams, idle HTTP/2 connections", flush=True)
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = multiprocessing.get_context("fork")
    port_value, count, ready = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Event()
    holder = ctx.Process(target=holder_main, args=(port_value, count, ready), daemon=True)
    holder.start()
    ready.wait(10)
    hport = port_value.value
    h1, h2p = free_port(), free_port()
    be = nginx_backend(tmp, h1, h2p, a.load_cpus)
    common.wait_port(h1)
    long = "    timeouts: {header_read: 10s, idle: 600s, request: 600s}\n"
    nginx_extra = ("proxy_request_buffering off; client_body_timeout 600s; proxy_read_timeout 600s; "
                   "proxy_send_timeout 600s;")
    # (proxy, upstream kind, make(port, upstream port), body sent after HEADERS)
    # Each proxy is told to allow a.streams_total streams on one connection
    # (weft's listener `http2: {max_concurrent_streams}`, HAProxy's
    # tune.h2.max-concurrent-streams, nginx's http2_max_concurrent_streams).
    n = a.streams_total
    maxconn = min(n + 500, 9500)  # HAProxy sizes its fd limit from it (hard limit here: 20,000)
    cases = [
        ("weft", "HTTP/2 (holds)", lambda p, b: weft(a, tmp, f"mem{p}", p, b, "http2", a.proxy_cpus, timeouts=long,
                                                     h2_streams=n), b""),
        ("haproxy", "HTTP/2 (holds)", lambda p, b: haproxy(tmp, f"mem{p}", p, b, True, True, a.proxy_cpus,
                                                           maxconn=maxconn, timeout="600s", h2_streams=n), b""),
        ("weft", "HTTP/1.1 (holds)", lambda p, b: weft(a, tmp, f"mem{p}", p, b, "http1", a.proxy_cpus,
                                                       timeouts=long, h2_streams=n), b"x"),
        ("haproxy", "HTTP/1.1 (holds)", lambda p, b: haproxy(tmp, f"mem{p}", p, b, True, False, a.proxy_cpus,
                                                             maxconn=maxconn, timeout="600s", h2_streams=n), b"x"),
        ("nginx", "HTTP/1.1 (holds)", lambda p, b: nginx_proxy(tmp, f"mem{p}", p, b, "http1", a.proxy_cpus,
                                                               conns=2 * n + 2000, extra=nginx_extra,
                                                               h2_streams=n), b"x"),
    ]
    streams, idle, headers_only = [], {}, {}
    try:
        for name, kind, make, body in cases:
            t_case = time.time()
            port = free_port()
            s = make(port, hport)
            try:
                common.wait_port(port)
                pids = common.pids_of(s.p.pid)
                if body:
                    # Does a request whose body has not started (HEADERS only)
                    # reach an HTTP/1.1 upstream?
                    c = H2Client(port)
                    count.value = 0
                    c.open(10, False)
                    end = time.time() + 3
                    while time.time() < end and count.value < 10:
                        c.pump(0.1)
                    headers_only[name] = count.value
                    c.sock.close()
                    time.sleep(0.5)
                r = held_streams(a, port, pids, count, body)
                r.update({"name": name, "kind": kind, "body": len(body)})
                streams.append(r)
                print(f"  {name} -> {kind}: {r['limit']} streams/connection allowed; {r['one_streams']} on one "
                      f"connection: +{r['one'][0]} kB RSS; {r['many_conns']}x{r['many_per']} streams, "
                      f"{r['many_reached']} reached the upstream: +{r['many'][0]} kB RSS, +{r['many'][1]} kB "
                      f"private ({time.time() - t_case:.0f}s)", flush=True)
            finally:
                s.stop()
            if name in idle or not body:
                continue  # idle connections: once per proxy, with the HTTP/1.1 upstream
            # Idle connections after one request each (upstream: nginx return 200, HTTP/1.1).
            port = free_port()
            s = make(port, h1)
            try:
                common.wait_port(port)
                pids = common.pids_of(s.p.pid)
                warm = H2Client(port)
                warm.open(1, True)
                warm.pump_until(lambda: warm.ended)
                time.sleep(0.3)
                base = mem_sample(pids)
                conns = []
                for _ in range(a.idle_conns):
                    cc = H2Client(port)
                    (sid,) = cc.open(1, True)
                    cc.pump_until(lambda: sid in cc.ended)
                    conns.append(cc)
                time.sleep(1)
                after = mem_sample(pids)
                idle[name] = {"delta": (after[0] - base[0], after[1] - base[1]), "base": base, "after": after}
                print(f"  {name}: {a.idle_conns} idle HTTP/2 connections: +{after[0] - base[0]} kB RSS, "
                      f"+{after[1] - base[1]} kB private ({time.time() - t_case:.0f}s)", flush=True)
                for cc in conns + [warm]:
                    cc.sock.close()
            finally:
                s.stop()
    finally:
        be.stop()
        holder.terminate()
        holder.join(5)
    return streams, idle, headers_only


# ---- results ----

def ratio_lines(rows, peers):
    """weft against each peer: the median over rounds of the ratio within
    the round (adjacent runs), and the ratio of the medians."""
    by = {r["name"]: r for r in rows}
    w = by["weft"]
    lines = ["| weft vs | req/s ratio | CPU/req ratio | per round: req/s, CPU/req |", "|---|---:|---:|---|"]
    for other in peers:
        o = by[other]
        rr = [x["rps"] / y["rps"] for x, y in zip(w["runs"], o["runs"]) if y["rps"]]
        cr = [x["cpu_us"] / y["cpu_us"] for x, y in zip(w["runs"], o["runs"]) if y["cpu_us"]]
        if not rr or not cr:
            lines.append(f"| {other} | - | - | (no complete round) |")
            continue
        lines.append(f"| {other} | **{statistics.median(rr):.2f}** | **{statistics.median(cr):.2f}** | "
                     + ", ".join(f"{x:.2f}/{y:.2f}" for x, y in zip(rr, cr)) + " |")
    crashed = [r for r in rows if r.get("crashes")]
    if crashed:
        lines += [""] + [f"**{r['name']} crashed during this table** ({'; '.join(r['crashes'])}): restarted "
                         "each time (a run it did not survive to the CPU reading is run again once); the figures "
                         "are from the complete runs." for r in crashed]
    return lines


def table(rows, unit="req"):
    lines = [f"| target | {unit}/s | mean ms | CPU µs/{unit} | proxy core busy | waiting for CPU | RSS idle MB | "
             f"private idle MB | RSS load MB | failed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        busy = f"{r['busy'] * 100:.0f}%" if r["busy"] else "-"
        wait = f"{r['wait'] * 100:.0f}%" if r["busy"] else "-"
        lines.append(f"| {r['name']} | {r['rps']:.0f} | {r['mean_ms']:.2f} | {r['cpu_us']:.2f} | {busy} | {wait} | "
                     f"{r['idle_kb'] / 1024:.1f} | {r['idle_private_kb'] / 1024:.1f} | {r['load_kb'] / 1024:.1f} | "
                     f"{r['errors']} of {r['done']} |")
    return lines


def write_results(a, grpc_runs, to_h1, to_h2, mesh, mem):
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = ["# weft HTTP/2 and gRPC benchmark results", "",
             f"Run: `make bench-h2` (bench/h2.sh → bench/h2.py), {now:%Y-%m-%d %H:%M} UTC.",
             f"Machine: {os.cpu_count()} cores ({common.cpu_model()}), {platform.system()} {platform.release()}, "
             "shared with other work: read the ratios within one run, not the absolute numbers.",
             f"Layout: the proxy under test (one worker: weft `workers: 1`, HAProxy `nbthread 1`, nginx "
             f"`worker_processes 1`) on core {a.proxy_cpus}; the upstream and the load generator on core "
             f"{a.load_cpus}.",
             f"Load: h2load (1 thread), {a.clients} connections × {a.streams} concurrent streams. All targets of a "
             f"table run side by side (idle but one) and take turns: {a.rounds} interleaved rounds of {a.duration}s "
             f"each ({a.rounds * a.duration}s per target) after a 1s warm-up each, so that a slow patch of the "
             "shared machine falls on every target alike; the table shows each target's median over the rounds, "
             "the ratios are the median of the per-round ratios (per round listed).",
             "CPU/req: the proxy's utime+stime over the run (all its processes) divided by the requests done. "
             "Proxy core busy: that CPU time over the run's wall time; waiting for CPU: the time its threads were "
             "runnable but another process had the core (/proc/PID/task/*/schedstat). Busy + waiting near 100% "
             "means the proxy was the bound (with other work on its core); busy + waiting well under 100% means "
             "it was waiting for the upstream side, and req/s then measures that side as much as the proxy. RSS: "
             "all the proxy's processes; private: Private_Dirty. failed: h2load's failed + errored + timeouts + "
             "non-2xx, of all requests done.", ""]
    if grpc_runs:
        lines += ["## 1. gRPC unary through one proxy", "",
                  f"h2load `-d` with one gRPC message ({a.payload}-byte payload), `content-type: application/grpc`, "
                  f"`te: trailers`, POST {GRPC_PATH}. weft: cluster `protocol: http2`; HAProxy: `proto h2` on the "
                  "bind and the server line; nginx: `listen ... http2` + `grpc_pass` (upstream keepalive 1024: "
                  "nginx carries one call per upstream connection at a time). Each proxy was checked first with a "
                  "python3-grpcio call whose echo must come back whole; failed counts h2load's "
                  "failed/errored/non-2xx responses.", ""]
    for kind, (rows, server_us) in grpc_runs.items():
        if kind == "grpc++":
            lines += ["### 1a. Upstream: grpc++ echo server (upstream-bound on this machine)", "",
                      f"bench/h2/grpc_echo_server.cc: grpc++'s generic async API, {a.server_threads} completion "
                      f"queue threads, on core {a.load_cpus} with h2load. It spends {server_us:.1f} µs CPU per RPC, "
                      "so with h2load beside it core 1 saturates before one proxy worker does (see the proxy core "
                      "busy column): on this 2-core machine req/s here is bound by the upstream side, and CPU per "
                      "RPC (at partial load) is the figure to compare.", ""]
        else:
            lines += ["### 1b. Upstream: nghttp2 echo server (proxy-bound)", "",
                      "bench/h2/h2_echo_server.cc: the same answers (:status 200, the request's gRPC message back, "
                      f"trailer grpc-status 0) straight on libnghttp2, {server_us:.1f} µs CPU per RPC, so that the "
                      "proxy's core is the one that saturates: req/s here is each proxy's capacity on one core.", ""]
        lines += table(rows, "RPC") + [""] + ratio_lines(rows, ("haproxy", "nginx")) + [""]
    if to_h1 is not None:
        lines += ["## 2a. HTTP/2 clients to an HTTP/1.1 upstream", "",
                  "h2load GET / (h2c, prior knowledge) through each proxy to nginx `return 200 \"ok\"` over "
                  "HTTP/1.1 keep-alive (as bench/run.py). direct: h2load to the same nginx's HTTP/2 port. weft's "
                  "cluster keeps up to 1024 idle upstream connections (its default `max_idle_per_endpoint`, as "
                  "nginx's `keepalive 1024`; HAProxy keeps any number).", ""]
        lines += table(to_h1) + [""] + ratio_lines(to_h1, ("haproxy", "nginx")) + [""]
        lines += ["## 2b. HTTP/2 end to end", "",
                  "h2load GET / (h2c) through each proxy to nginx `listen ... http2` `return 200 \"ok\"` (prior "
                  "knowledge). weft: cluster `protocol: http2`; HAProxy: `proto h2` on the server line. nginx "
                  "cannot proxy HTTP/2 to an upstream except with `grpc_pass`, which is what its row uses (one "
                  "request per upstream connection at a time).", ""]
        lines += table(to_h2) + [""] + ratio_lines(to_h2, ("haproxy", "nginx (grpc_pass)")) + [""]
    if mesh is not None:
        res, rss, checks = mesh
        names = list(res)

        def med(name, key):
            return statistics.median(x[key] for x in res[name])

        d = names[0]
        lines += ["## 3. The mesh path for gRPC at a fixed rate", "",
                  f"Open loop (bench/h2/grpc_rate_client.cc: call k due at k/RATE, latency from when it was due): "
                  f"{a.rate} RPC/s over {a.rate_connections} HTTP/2 connections for {a.rate_seconds}s (the first "
                  f"second is warm-up), median of {a.rounds} interleaved rounds. direct: client -> gRPC server. "
                  "weft: client -> sidecar (upstream port) -> mTLS, HTTP/2 by ALPN -> sidecar -> server (`weft "
                  "server` with the bench's CA, the app's Service port declared `grpc`, two `weft proxy --server` "
                  "sidecars, 1 worker each). HAProxy pair: client -> HAProxy (h2c in) -> TLS 1.3, client "
                  "certificates both ways, ALPN h2 -> HAProxy -> server (`proto h2`), `nbthread 1` each. Sidecars on "
                  f"core {a.proxy_cpus}, client and server on core {a.load_cpus}. CPU per RPC: each proxy's "
                  "utime+stime over the round divided by the calls sent in it.", "",
                  "| path | p50 µs | p90 µs | p99 µs | p99.9 µs | added p50 µs | added p99 µs | CPU µs/RPC client "
                  "side | CPU µs/RPC server side | errors |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for n in names:
            add50 = f"{med(n, 'p50_us') - med(d, 'p50_us'):+.0f}" if n != d else "-"
            add99 = f"{med(n, 'p99_us') - med(d, 'p99_us'):+.0f}" if n != d else "-"
            ca = f"{med(n, 'cpu_a_us'):.1f}" if n != d else "-"
            cb = f"{med(n, 'cpu_b_us'):.1f}" if n != d else "-"
            lines.append(f"| {n} | {med(n, 'p50_us'):.0f} | {med(n, 'p90_us'):.0f} | {med(n, 'p99_us'):.0f} | "
                         f"{med(n, 'p999_us'):.0f} | {add50} | {add99} | {ca} | {cb} | "
                         f"{sum(x['errors'] for x in res[n])} |")
        w, h = names[1], names[2]
        lines += ["", "| weft vs HAProxy pair | added p50 ratio | added p99 ratio | CPU/RPC ratio (both proxies) |",
                  "|---|---:|---:|---:|"]

        def added(n, k):
            return max(med(n, k) - med(d, k), 1e-9)

        lines.append(f"| | {added(w, 'p50_us') / added(h, 'p50_us'):.2f} | {added(w, 'p99_us') / added(h, 'p99_us'):.2f} | "
                     f"{(med(w, 'cpu_a_us') + med(w, 'cpu_b_us')) / (med(h, 'cpu_a_us') + med(h, 'cpu_b_us')):.2f} |")
        lines += ["", "The weft sidecars' own counters after the runs: " +
                  ", ".join(f"{k} {v:.0f}" for k, v in checks.items()) + "."]
        lines += ["", "RSS after the runs (MB; private = Private_Dirty): "
                  + "; ".join(f"{n}: client side {v[0] / 1024:.1f} ({v[1] / 1024:.1f}), server side "
                              f"{v[2] / 1024:.1f} ({v[3] / 1024:.1f})" for n, v in rss.items()) + ".", ""]
    if mem is not None:
        streams, idle, headers_only = mem
        lines += ["## 4. Memory: held HTTP/2 streams and idle HTTP/2 connections", "",
                  "A raw python3-h2 client; bytes are the growth of the proxy's VmRSS (and Private_Dirty, "
                  "/proc/PID/smaps_rollup) over its value after one warm-up request, divided by the count.", "",
                  "**Held streams.** Requests that never end: HEADERS without END_STREAM (a POST), to an upstream "
                  "that takes the request and never answers, so each stream stays open on both sides. Upstream "
                  "HTTP/2: weft `protocol: http2`, HAProxy `proto h2` (nginx has no HTTP/2 upstream but "
                  "`grpc_pass`; left out). Upstream HTTP/1.1: the client also sends one body byte (DATA without "
                  "END_STREAM), as a streaming upload would (the last column: of 10 HEADERS-only requests, how "
                  "many reached the HTTP/1.1 upstream within 3 s); nginx with `proxy_request_buffering off`, so "
                  "that it too forwards the request before its body ends. Each proxy is told to allow "
                  f"{a.streams_total:,} streams on one connection (SETTINGS_MAX_CONCURRENT_STREAMS: weft's listener "
                  "`http2: {max_concurrent_streams}`, HAProxy's `tune.h2.max-concurrent-streams`, nginx's "
                  "`http2_max_concurrent_streams`). The table has one connection with as many streams as the "
                  f"proxy allows, and {a.streams_total:,} streams over connections of that many each (the "
                  "connections opened first and measured apart, so the per-stream bytes are the streams alone; "
                  "with 10,000 allowed that is one connection again, after the first one's streams were closed).",
                  "",
                  "| proxy | upstream | streams/conn allowed | streams on 1 conn | RSS B/stream (1 conn) | streams "
                  "over N conns (reached upstream) | RSS B/stream | private B/stream | RSS before → after MB | "
                  "HEADERS-only reached HTTP/1.1 upstream |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in streams:
            n1 = max(r["one_streams"], 1)
            nm = max(r["many_conns"] * r["many_per"], 1)
            ho = f"{headers_only[r['name']]} of 10" if r["body"] else "-"
            lines.append(
                f"| {r['name']} | {r['kind']} | {r['limit']} | {r['one_streams']} ({r['one_reached']}) | "
                f"{r['one'][0] * 1024 / n1:.0f} | {r['many_conns']}×{r['many_per']} ({r['many_reached']}) | "
                f"{r['many'][0] * 1024 / nm:.0f} | {r['many'][1] * 1024 / nm:.0f} | "
                f"{r['many_base'][0] / 1024:.1f} → {r['many_after'][0] / 1024:.1f} | {ho} |")
        lines += ["", f"**Idle connections.** {a.idle_conns:,} HTTP/2 connections, each after one GET answered "
                  "(nginx `return 200` behind the proxy over HTTP/1.1), left open.", "",
                  "| proxy | RSS B/conn | private B/conn | RSS before → after MB |", "|---|---:|---:|---:|"]
        for name, r in idle.items():
            lines.append(f"| {name} | {r['delta'][0] * 1024 / a.idle_conns:.0f} | "
                         f"{r['delta'][1] * 1024 / a.idle_conns:.0f} | {r['base'][0] / 1024:.1f} → "
                         f"{r['after'][0] / 1024:.1f} |")
        lines.append("")
    lines += ["Ratios: req/s > 1 and CPU/req < 1 mean weft is ahead.", ""]
    # The balancer comparison (--only lb) is run apart: its section stays.
    head = "## gRPC with three endpoints: the default balancer against round robin"
    old = open(a.out).read() if os.path.exists(a.out) else ""
    if head in old:
        start_at = old.index(head)
        nxt = old.find("\n## ", start_at + len(head))
        lines += [""] + old[start_at:nxt if nxt >= 0 else len(old)].rstrip("\n").split("\n")
    common.write_with_notes(lines, a.out, os.path.join(HERE, "NOTES-h2.md"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weft", required=True)
    ap.add_argument("--build", required=True, help="build dir with bench/weft_grpc_echo_server and bench/weft_grpc_rate_client")
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", "3")),
                    help="seconds per h2load run; each target gets --rounds of them")
    ap.add_argument("--clients", type=int, default=16, help="h2load connections")
    ap.add_argument("--streams", type=int, default=10, help="h2load concurrent streams per connection")
    ap.add_argument("--payload", type=int, default=64, help="gRPC message payload bytes")
    ap.add_argument("--server-threads", type=int, default=2)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--rate-seconds", type=int, default=6)
    ap.add_argument("--rate-connections", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (h2load tables and the mesh path)")
    ap.add_argument("--streams-total", type=int, default=10000)
    ap.add_argument("--idle-conns", type=int, default=1000)
    ap.add_argument("--only", default="grpc,h2,mesh,memory",
                    help="sections, comma-separated; or lb alone (ewma against round robin, three endpoints)")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS-h2.md"))
    a = ap.parse_args()
    a.grpc_server = os.path.join(a.build, "bench", "weft_grpc_echo_server")
    a.rate_client = os.path.join(a.build, "bench", "weft_grpc_rate_client")
    a.h2_echo_server = os.path.join(a.build, "bench", "weft_h2_echo_server")
    for p in (a.weft, a.grpc_server, a.rate_client, a.h2_echo_server):
        if not os.access(p, os.X_OK):
            sys.exit(f"bench: {p} is missing (bash bench/h2.sh builds it)")
    pin = os.cpu_count() >= 2
    a.proxy_cpus = os.environ.get("PIN_PROXY", "0") if pin else None
    a.load_cpus = os.environ.get("PIN_LOAD", "1") if pin else None
    only = set(a.only.split(","))
    if "lb" in only and only != {"lb"}:
        sys.exit("bench: --only lb runs alone (it keeps its own section of the results file)")
    if only == {"lb"}:
        with tempfile.TemporaryDirectory(prefix="weft-h2-bench-") as tmp:
            os.chmod(tmp, 0o755)
            write_lb(a, bench_grpc_lb(a, tmp))
        return
    grpc_runs = {}
    to_h1 = to_h2 = mesh = mem = None
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="weft-h2-bench-") as tmp:
        os.chmod(tmp, 0o755)
        if "grpc" in only:
            for kind in ("grpc++", "nghttp2"):
                grpc_runs[kind] = bench_grpc(a, tmp, kind)
        if "h2" in only:
            to_h1, to_h2 = bench_h2(a, tmp)
        if "mesh" in only:
            mesh = bench_mesh(a, tmp)
        if "memory" in only:
            mem = bench_memory(a, tmp)
    print(f"done in {time.time() - t0:.0f}s")
    write_results(a, grpc_runs, to_h1, to_h2, mesh, mem)


if __name__ == "__main__":
    main()
