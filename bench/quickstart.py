"""The quickstart's call path, measured (bench/quickstart.sh).

frontend -> reviews as `weft up` runs it: the caller's request enters the
frontend's sidecar (an upstream port), crosses to the reviews sidecar over
mutual TLS and reaches the reviews demo app. The caller is the open-loop
rate client (bench/mesh/rate_client.cc) at a fixed rate, standing in for the
frontend app; the same client against the reviews app directly is the
baseline. A server and an agent run the control plane as in the quickstart
(certificates from the agent, config over its local socket).

Reported, median of interleaved rounds: latency p50/p99 direct and through
the mesh, each sidecar's CPU per 1000 requests/s (vCPU), and each sidecar's
memory idle and under load: RSS, PSS (shared library pages divided among
the processes mapping them) and Private_Dirty (what the process alone wrote).

Layout on 2 cores: both sidecars on core 0; the client, the app and the
control plane on core 1 (PIN_PROXY / PIN_LOAD to change).
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as common  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def smaps(pid, key):
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(pid):
    return {"rss_kb": common.rss_kb([pid]), "pss_kb": smaps(pid, "Pss"), "dirty_kb": smaps(pid, "Private_Dirty")}


def put(url, body, token=""):
    # JSON, said so: urllib's default type (a form) is refused with 415.
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Consul-Token"] = token  # the agent's token, for writes to it
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def rate_run(client, port, rate, secs, cpus, sidecars):
    """One open-loop run; CPU and peak memory of each sidecar during it."""
    peak = {n: {"rss_kb": 0, "pss_kb": 0, "dirty_kb": 0} for n in sidecars}
    stop = threading.Event()

    def sample():
        while not stop.wait(0.5):
            for n, pid in sidecars.items():
                m = memory(pid)
                for k in m:
                    peak[n][k] = max(peak[n][k], m[k])

    t = threading.Thread(target=sample)
    t.start()
    before = {n: common.cpu_seconds([pid]) for n, pid in sidecars.items()}
    start = time.time()
    out = subprocess.run(["taskset", "-c", cpus, client, f"127.0.0.1:{port}", str(rate), str(secs), "8", "/reviews/1"],
                         capture_output=True, text=True, timeout=secs + 60)
    wall = time.time() - start
    stop.set()
    t.join()
    res = json.loads(out.stdout.strip().splitlines()[-1])
    # CPU over the whole run (warm-up second included) per 1000 requests/s.
    res["vcpu_per_krps"] = {n: (common.cpu_seconds([pid]) - before[n]) / wall / (rate / 1000)
                            for n, pid in sidecars.items()}
    res["peak"] = peak
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weft", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS-quickstart.md"))
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    pin_proxy = os.environ.get("PIN_PROXY", "0")
    pin_load = os.environ.get("PIN_LOAD", "1")
    client = os.path.join(a.build, "bench", "weft_rate_client")
    tmp = tempfile.mkdtemp(prefix="weft-bench-qs-")
    procs = []

    def start(args, cpus):
        s = common.Server(args, cpus)
        procs.append(s)
        return s

    try:
        http, grpc, agent_http = common.free_port(), common.free_port(), common.free_port()
        start([a.weft, "server", "--dev", "--data-dir", f"{tmp}/server", "--http", f"127.0.0.1:{http}",
               "--grpc", f"127.0.0.1:{grpc}"], pin_load)
        common.wait_http(f"http://127.0.0.1:{http}/ready")
        start([a.weft, "agent", "--server", f"127.0.0.1:{grpc}", "--node", "bench", "--data-dir", f"{tmp}/agent",
               "--http", f"127.0.0.1:{agent_http}", "--dns", "127.0.0.1:0"], pin_load)
        common.wait_http(f"http://127.0.0.1:{agent_http}/ready")
        app, rv_in, fe_in, fe_up = (common.free_port() for _ in range(4))
        start([a.weft, "demo-app", "--name", "reviews", "--listen", f"127.0.0.1:{app}"], pin_load)
        reg = f"http://127.0.0.1:{agent_http}/v1/agent/service/register"
        agent_token = open(f"{tmp}/agent/agent-token").read().strip()
        put(reg, {"Name": "reviews", "ID": "reviews-1", "Port": app, "Address": "127.0.0.1"}, agent_token)
        put(reg, {"Name": "reviews-sidecar", "ID": "reviews-sidecar", "Kind": "connect-proxy", "Port": rv_in,
                  "Address": "127.0.0.1",
                  "Proxy": {"DestinationServiceName": "reviews", "DestinationServiceID": "reviews-1",
                            "LocalServicePort": app}}, agent_token)
        put(reg, {"Name": "frontend-sidecar", "ID": "frontend-sidecar", "Kind": "connect-proxy", "Port": fe_in,
                  "Address": "127.0.0.1",
                  "Proxy": {"DestinationServiceName": "frontend",
                            "Upstreams": [{"DestinationName": "reviews", "LocalBindPort": fe_up}]}}, agent_token)
        adm_rv, adm_fe = common.free_port(), common.free_port()
        sock = f"unix:{tmp}/agent/weft.sock"
        rv = start([a.weft, "proxy", "--agent", sock, "--service", "reviews", "--admin", f"127.0.0.1:{adm_rv}",
                    "--workers", "1"], pin_proxy)
        fe = start([a.weft, "proxy", "--agent", sock, "--service", "frontend", "--admin", f"127.0.0.1:{adm_fe}",
                    "--workers", "1"], pin_proxy)
        common.wait_http(f"http://127.0.0.1:{adm_rv}/ready")
        common.wait_http(f"http://127.0.0.1:{adm_fe}/ready")
        common.wait_http(f"http://127.0.0.1:{fe_up}/reviews/1")
        with urllib.request.urlopen(f"http://127.0.0.1:{fe_up}/reviews/1", timeout=5) as r:
            caller = json.loads(r.read()).get("caller", "")
        if "spiffe://" not in caller:
            sys.exit(f"bench: the mesh call did not arrive over mTLS (caller {caller!r})")
        sidecars = {"frontend sidecar": fe.p.pid, "reviews sidecar": rv.p.pid}
        time.sleep(2)
        idle = {n: memory(pid) for n, pid in sidecars.items()}

        direct, mesh = [], []
        for r in range(a.rounds):
            direct.append(rate_run(client, app, a.rate, a.seconds, pin_load, {}))
            mesh.append(rate_run(client, fe_up, a.rate, a.seconds, pin_load, sidecars))
            print(f"round {r + 1}: direct p50 {direct[-1]['p50_us']} p99 {direct[-1]['p99_us']} µs; "
                  f"mesh p50 {mesh[-1]['p50_us']} p99 {mesh[-1]['p99_us']} µs; vCPU/1000 rps "
                  + ", ".join(f"{n} {v:.4f}" for n, v in mesh[-1]["vcpu_per_krps"].items()), flush=True)
        after = {n: memory(pid) for n, pid in sidecars.items()}
    finally:
        for s in reversed(procs):
            s.stop()

    med = lambda runs, k: statistics.median(r[k] for r in runs)  # noqa: E731
    errors = sum(r["errors"] for r in direct + mesh)
    lines = [
        "# The quickstart's path: frontend -> reviews through two sidecars",
        "",
        f"Command: `bash bench/quickstart.sh` ({datetime.date.today().isoformat()}, {common.cpu_model()}, "
        f"{os.cpu_count()} cores; sidecars on core {pin_proxy}, client, app and control plane on core {pin_load}; "
        "one worker per sidecar, as `weft up` runs them).",
        "",
        f"Open-loop client (bench/mesh/rate_client.cc) at {a.rate} requests/s for {a.seconds} s over 8 keep-alive "
        f"connections, `GET /reviews/1`, median of {a.rounds} interleaved rounds. Mesh: client -> frontend "
        "sidecar (upstream port) -> mTLS -> reviews sidecar -> `weft demo-app`; direct: client -> the same app. "
        f"Failed requests in all rounds: {errors}.",
        "",
        "| path | p50 µs | p99 µs | p99.9 µs |",
        "|---|---|---|---|",
        f"| direct | {med(direct, 'p50_us'):.0f} | {med(direct, 'p99_us'):.0f} | {med(direct, 'p999_us'):.0f} |",
        f"| mesh (two sidecars, mTLS) | {med(mesh, 'p50_us'):.0f} | {med(mesh, 'p99_us'):.0f} | "
        f"{med(mesh, 'p999_us'):.0f} |",
        f"| **added by the mesh** | **+{med(mesh, 'p50_us') - med(direct, 'p50_us'):.0f}** | "
        f"**+{med(mesh, 'p99_us') - med(direct, 'p99_us'):.0f}** | |",
        "",
        "| sidecar | vCPU per 1000 req/s (target ≤ 0.05) | RSS idle / under load MB (target ≤ 10) | "
        "PSS idle / load MB | Private_Dirty idle / load MB |",
        "|---|---|---|---|---|",
    ]
    for n in sidecars:
        v = statistics.median(r["vcpu_per_krps"][n] for r in mesh)
        pk = {k: max(r["peak"][n][k] for r in mesh) for k in ("rss_kb", "pss_kb", "dirty_kb")}
        lines.append(f"| {n} | {v:.4f} | {idle[n]['rss_kb'] / 1024:.1f} / {pk['rss_kb'] / 1024:.1f} | "
                     f"{idle[n]['pss_kb'] / 1024:.1f} / {pk['pss_kb'] / 1024:.1f} | "
                     f"{idle[n]['dirty_kb'] / 1024:.1f} / {pk['dirty_kb'] / 1024:.1f} |")
    lines += ["", f"After the runs: " + ", ".join(
        f"{n} RSS {after[n]['rss_kb'] / 1024:.1f} MB, Private_Dirty {after[n]['dirty_kb'] / 1024:.1f} MB"
        for n in sidecars) + "."]
    summary = lines[2:]  # the command line and the tables
    common.write_with_notes(lines, a.out, os.path.join(HERE, "NOTES-quickstart.md"))
    common.write_block(os.path.join(HERE, "RESULTS.md"), "quickstart", "\n".join(summary))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
