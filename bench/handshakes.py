"""mTLS handshakes against the number of sidecar workers (a many-core machine).

One inbound sidecar (client certificate required) with N workers on cores
0..N-1, in front of `weft demo-app`; N `openssl s_time -new` clients (full
handshakes, each connection also fetches a page) on the upper half of the
cores. For each N: handshakes/s, the sidecar's CPU per handshake, and the
scaling against N times one worker. The control plane (server, dev mode,
the CA from --certs) is on the upper cores too.

Runs on a machine with nothing installed (it needs only Python and
bench/run.py beside it): pass
--bundle (bench/bundle.sh output holding weft and openssl) and --certs (a CA
and a client certificate made with bench/mtls.py's make_ca). Prints one JSON
document with the results, and writes it to --out when given.

  python3 bench/handshakes.py --bundle DIR --certs DIR [--workers 1,2,4,8] [--seconds 8] [--out FILE]
                              [--weft-name weft]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as common  # noqa: E402

def spawn(args, cores, log=None):
    return subprocess.Popen(args, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
                            preexec_fn=lambda: os.sched_setaffinity(0, cores))


def put(url, body):
    # JSON, said so: urllib's default type (a form) is refused with 415.
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--certs", required=True)
    ap.add_argument("--workers", default="1,2,4,8")
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--out")
    ap.add_argument("--weft-name", default="weft", help="the program in BUNDLE/bin to measure")
    a = ap.parse_args()
    weft = os.path.join(a.bundle, "bin", a.weft_name)
    openssl = os.path.join(a.bundle, "bin", "openssl")
    c = a.certs
    ncpu = os.cpu_count()
    upper = set(range(ncpu // 2, ncpu))
    tmp = f"/tmp/weft-hs-{os.getpid()}"
    os.makedirs(tmp, exist_ok=True)
    procs = []
    results = {"cpus": ncpu, "cpu_model": "", "weft": a.weft_name, "runs": []}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                results["cpu_model"] = line.split(":", 1)[1].strip()
                break
        http, grpc, app = common.free_port(), common.free_port(), common.free_port()
        procs.append(spawn([weft, "server", "--dev", "--data-dir", f"{tmp}/server", "--http", f"127.0.0.1:{http}",
                            "--grpc", f"127.0.0.1:{grpc}", "--ca-cert", f"{c}/ca.pem", "--ca-key", f"{c}/ca.key",
                            "--log-level", "warn"], upper))
        common.wait_http(f"http://127.0.0.1:{http}/ready")
        procs.append(spawn([weft, "demo-app", "--name", "app", "--listen", f"127.0.0.1:{app}"], upper))
        api = f"http://127.0.0.1:{http}/v1/catalog/register"
        put(api, {"Node": "n", "Address": "127.0.0.1", "Service": {"Service": "app", "ID": "app-1", "Port": app}})
        for n in [int(x) for x in a.workers.split(",")]:
            port, admin = common.free_port(), common.free_port()
            svc = f"app{n}"
            put(api, {"Node": "n", "Address": "127.0.0.1", "Service": {"Service": svc, "ID": f"{svc}-1", "Port": app}})
            put(api, {"Node": "n", "Address": "127.0.0.1", "Service": {
                "Service": f"{svc}-sidecar", "ID": f"{svc}-sc", "Kind": "connect-proxy", "Port": port,
                "Proxy": {"DestinationServiceName": svc, "LocalServicePort": app}}})
            side = spawn([weft, "proxy", "--server", f"127.0.0.1:{grpc}", "--service", svc, "--workers", str(n),
                          "--admin", f"127.0.0.1:{admin}", "--log-level", "warn"], set(range(n)))
            procs.append(side)
            common.wait_http(f"http://127.0.0.1:{admin}/ready")
            time.sleep(0.5)
            clients_cores = sorted(upper)
            before, t0 = common.cpu_seconds([side.pid]), time.time()
            clients = [spawn([openssl, "s_time", "-connect", f"127.0.0.1:{port}", "-tls1_3", "-new", "-time",
                              str(a.seconds), "-cert", f"{c}/client.pem", "-key", f"{c}/client.key",
                              "-CAfile", f"{c}/ca.pem", "-www", "/"], {clients_cores[i % len(clients_cores)]},
                             subprocess.PIPE) for i in range(n)]
            conns = 0
            outs = []
            for cl in clients:
                o, _ = cl.communicate(timeout=a.seconds + 60)
                o = o.decode(errors="replace") if isinstance(o, bytes) else o
                outs.append(o)
                m = re.findall(r"(\d+) connections in ([\d.]+) real seconds", o)
                conns += int(m[-1][0]) if m else 0
            wall = time.time() - t0
            cpu = common.cpu_seconds([side.pid]) - before
            side.terminate()
            side.wait(10)
            procs.remove(side)
            run = {"workers": n, "clients": n, "handshakes": conns, "seconds": a.seconds,
                   "rate": conns / a.seconds, "sidecar_cpu_s": cpu,
                   "cpu_us_per_handshake": cpu * 1e6 / max(conns, 1), "wall_s": wall}
            if conns == 0:
                run["client_output"] = outs[0][-400:]
            results["runs"].append(run)
            print(json.dumps(run), flush=True)
        base = results["runs"][0]["rate"] if results["runs"] else 0
        for r in results["runs"]:
            r["scaling"] = r["rate"] / (r["workers"] * base) if base else 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    doc = json.dumps(results, indent=1)
    if a.out:
        open(a.out, "w").write(doc)
    print(doc)


if __name__ == "__main__":
    main()
