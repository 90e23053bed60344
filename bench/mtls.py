"""Mesh TLS and authorization benchmark (bench/mtls.sh): writes bench/RESULTS-mtls.md.

In one run, on one machine:
- TLS handshakes through one proxy worker (an inbound sidecar port, client
  certificate required), full and resumed, against `openssl speed ecdsap256`
  signs/s on the same machine; the client is `openssl s_time` (each
  connection also fetches one small page through the proxy);
- bulk throughput through one mTLS hop (client -> sidecar A -> mTLS ->
  sidecar B -> nginx serving a large file) against `openssl speed -evp
  aes-128-gcm` at 16 KB blocks;
- latency at a fixed rate (open loop, bench/mesh/rate_client.cc) and proxy
  CPU per request for: direct to nginx, one plaintext weft hop, and the mesh
  path (client -> sidecar -> mTLS -> sidecar -> nginx); interleaved rounds,
  the median kept;
- the cost of an authorization decision with 100 rules (Google Benchmark).

Layout on 2 cores: every proxy on core 0, nginx and the load generators on
core 1. On more cores (PIN_PROXY / PIN_LOAD), as given.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as common  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def sh(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def openssl_speed():
    o = sh([common.tool("openssl"), "speed", "-seconds", "3", "ecdsap256"]).stdout
    m = re.search(r"256 bits ecdsa \(nistp256\)\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)\s+([\d.]+)", o)
    sign, verify = float(m.group(1)), float(m.group(2))
    o = sh([common.tool("openssl"), "speed", "-seconds", "3", "-evp", "aes-128-gcm"]).stdout
    line = [l for l in o.splitlines() if l.lower().startswith("aes-128-gcm")][-1]
    gcm_16k = float(line.split()[-1].rstrip("k")) * 1000  # bytes/s at 16384-byte blocks
    return sign, verify, gcm_16k


def leaf(tmp, name, uri, ca_pem, ca_key):
    ossl = common.tool("openssl")
    key, csr, pem = f"{tmp}/{name}.key", f"{tmp}/{name}.csr", f"{tmp}/{name}.pem"
    sh([ossl, "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", key], check=True)
    sh([ossl, "req", "-new", "-key", key, "-subj", f"/CN={name}", "-out", csr], check=True)
    open(f"{tmp}/{name}.cnf", "w").write(f"subjectAltName=critical,URI:{uri}\n"
                                         "extendedKeyUsage=clientAuth,serverAuth\nbasicConstraints=critical,CA:FALSE\n")
    sh([ossl, "x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key, "-CAcreateserial", "-days", "1",
        "-extfile", f"{tmp}/{name}.cnf", "-out", pem], check=True)
    return key, pem


def make_ca(tmp):
    ossl = common.tool("openssl")
    ca_key, ca_pem = f"{tmp}/ca.key", f"{tmp}/ca.pem"
    sh([ossl, "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", ca_key], check=True)
    sh([ossl, "req", "-x509", "-new", "-key", ca_key, "-subj", "/CN=bench root", "-days", "2", "-out", ca_pem,
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
        "-addext", "subjectKeyIdentifier=hash"], check=True)
    key, pem = leaf(tmp, "client", "spiffe://weft.local/ns/default/sa/bench", ca_pem, ca_key)
    return ca_key, ca_pem, key, pem


def start_nginx(tmp, port, cpus, big):
    conf = f"{tmp}/nginx.conf"
    open(conf, "w").write(
        f"worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;\n"
        f"events {{ worker_connections 4096; }}\n"
        f"http {{ access_log off; keepalive_requests 1000000; {common.NGINX_PATHS.format(t=tmp)}\n"
        f"  server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"ok\"; }}\n"
        f"    location = /big {{ alias {big}; }} }} }}\n")
    return common.Server([common.tool("nginx"), "-c", conf], cpus)


def post(url, body):
    import urllib.request
    # JSON, said so: urllib's default type (a form) is refused with 415.
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def rate_run(client, port, rate, secs, cpus, proxies):
    before = common.cpu_seconds(proxies)
    out = sh(["taskset", "-c", cpus, client, f"127.0.0.1:{port}", str(rate), str(secs), "8"], timeout=secs + 60)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["cpu_us"] = (common.cpu_seconds(proxies) - before) * 1e6 / max(res["requests"], 1) if proxies else 0.0
    return res


def s_time(port, mode, secs, cpus, cert, key, ca):
    o = sh(["taskset", "-c", cpus, common.tool("openssl"), "s_time", "-connect", f"127.0.0.1:{port}", "-tls1_3",
            f"-{mode}", "-time", str(secs), "-cert", cert, "-key", key, "-CAfile", ca, "-www", "/"],
           timeout=secs + 60).stdout
    m = re.findall(r"(\d+) connections in ([\d.]+) real seconds", o)
    if not m:
        sys.exit(f"bench: s_time output not understood: {o[-500:]}")
    n, t = m[-1]
    return int(n), float(t), o


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weft", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS-mtls.md"))
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    pin_proxy = os.environ.get("PIN_PROXY", "0")
    pin_load = os.environ.get("PIN_LOAD", "1")
    client = os.path.join(a.build, "bench", "weft_rate_client")
    authz_bench = os.path.join(a.build, "bench", "weft_authz_bench")
    sign, verify, gcm = openssl_speed()
    print(f"openssl: ecdsa p256 {sign:.0f} sign/s {verify:.0f} verify/s; aes-128-gcm {gcm / 1e6:.0f} MB/s")
    tmp = tempfile.mkdtemp(prefix="weft-mtls-bench-")
    os.chmod(tmp, 0o755)  # nginx's workers read the bulk file
    procs = []
    try:
        ca_key, ca_pem, ckey, cpem = make_ca(tmp)
        big = f"{tmp}/big.bin"
        with open(big, "wb") as f:
            f.write(os.urandom(1 << 20) * 256)  # 256 MiB
        nport = common.free_port()
        procs.append(start_nginx(tmp, nport, pin_load, big))
        common.wait_port(nport)
        # The control plane (not measured), then two sidecars on core 0.
        http_port, grpc_port = common.free_port(), common.free_port()
        srv = common.Server([a.weft, "server", "--dev", "--http", f"127.0.0.1:{http_port}",
                             "--grpc", f"127.0.0.1:{grpc_port}", "--ca-cert", ca_pem, "--ca-key", ca_key,
                             "--log-level", "warn"], pin_load)
        procs.append(srv)
        common.wait_port(http_port)
        api = f"http://127.0.0.1:{http_port}/v1/catalog/register"
        b_in, up = common.free_port(), common.free_port()
        post(api, {"Node": "n-app", "Address": "127.0.0.1", "Service": {"Service": "app", "ID": "app-1", "Port": nport}})
        post(api, {"Node": "n-app", "Address": "127.0.0.1", "Service": {
            "Service": "app-sidecar", "ID": "app-sc", "Kind": "connect-proxy", "Port": b_in,
            "Proxy": {"DestinationServiceName": "app", "LocalServicePort": nport}}})
        post(api, {"Node": "n-cli", "Address": "127.0.0.1", "Service": {
            "Service": "bench-sidecar", "ID": "bench-sc", "Kind": "connect-proxy", "Port": common.free_port(),
            "Proxy": {"DestinationServiceName": "bench", "LocalServicePort": nport,
                      "Upstreams": [{"DestinationName": "app", "LocalBindPort": up}]}}})
        side_b = common.Server([a.weft, "proxy", "--server", f"127.0.0.1:{grpc_port}", "--service", "app",
                                "--workers", "1", "--admin", "127.0.0.1:0", "--log-level", "warn"], pin_proxy)
        side_a = common.Server([a.weft, "proxy", "--server", f"127.0.0.1:{grpc_port}", "--service", "bench",
                                "--workers", "1", "--admin", "127.0.0.1:0", "--log-level", "warn"], pin_proxy)
        procs += [side_b, side_a]
        # A second inbound sidecar with two workers: does CPU per handshake
        # grow when two threads handshake at once (OpenSSL 3.0's locks)?
        b2_in = common.free_port()
        post(api, {"Node": "n-app2", "Address": "127.0.0.1", "Service": {"Service": "app2", "ID": "app2-1", "Port": nport}})
        post(api, {"Node": "n-app2", "Address": "127.0.0.1", "Service": {
            "Service": "app2-sidecar", "ID": "app2-sc", "Kind": "connect-proxy", "Port": b2_in,
            "Proxy": {"DestinationServiceName": "app2", "LocalServicePort": nport}}})
        side_b2 = common.Server([a.weft, "proxy", "--server", f"127.0.0.1:{grpc_port}", "--service", "app2",
                                 "--workers", "2", "--admin", "127.0.0.1:0", "--log-level", "warn"])
        procs.append(side_b2)
        # One plaintext hop: a static weft proxy in front of the same nginx.
        hop = common.free_port()
        open(f"{tmp}/hop.yaml", "w").write(
            f"workers: 1\nlisteners:\n  - name: hop\n    address: 127.0.0.1:{hop}\n    protocol: http\n"
            f"    routes: [{{match: {{prefix: /}}, cluster: b}}]\n"
            f"clusters:\n  - name: b\n    endpoints: [127.0.0.1:{nport}]\n")
        plain = common.Server([a.weft, "proxy", "--config", f"{tmp}/hop.yaml", "--log-level", "warn"], pin_proxy)
        procs.append(plain)
        common.wait_port(hop)
        common.wait_port(up)
        deadline = time.time() + 20
        while time.time() < deadline:
            r = sh(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{up}/"])
            if r.stdout == "200":
                break
            time.sleep(0.2)
        else:
            sys.exit("bench: the mesh path never answered 200")
        pa, pb = common.pids_of(side_a.p.pid), common.pids_of(side_b.p.pid)
        pp = common.pids_of(plain.p.pid)

        # Latency at a fixed rate, interleaved rounds, in two layouts: proxies
        # on their own core (each hop crosses cores: on a VM an idle vCPU
        # takes tens of µs to wake), and everything on one core.
        paths = [("direct (nginx)", nport, []), ("one plaintext weft hop", hop, pp),
                 ("mesh: sidecar -> mTLS -> sidecar", up, pa + pb)]
        nginx_pids = common.pids_of(procs[0].p.pid)
        layouts = [("split", pin_load), ("one core", pin_proxy)]
        lat = {(lay, name): [] for lay, _ in layouts for name, _, _ in paths}
        for lay, load_cpus in layouts:
            for pid in nginx_pids:
                sh(["taskset", "-p", "-c", load_cpus, str(pid)])
            for rnd in range(a.rounds):
                for name, port, pids in paths:
                    r = rate_run(client, port, a.rate, a.seconds, load_cpus, pids)
                    lat[(lay, name)].append(r)
                    print(f"{lay} round {rnd + 1} {name}: p50 {r['p50_us']:.0f} µs p99 {r['p99_us']:.0f} µs "
                          f"cpu {r['cpu_us']:.1f} µs/req errors {r['errors']}")
        for pid in nginx_pids:
            sh(["taskset", "-p", "-c", pin_load, str(pid)])

        def med(lay, name, key):
            return statistics.median(x[key] for x in lat[(lay, name)])

        # Handshakes through one worker (sidecar B's inbound port).
        hs = {}
        for mode in ("new", "reuse"):
            before, t0 = common.cpu_seconds(pb), time.time()
            n, t, out = s_time(b_in, mode, 10, pin_load, cpem, ckey, ca_pem)
            cpu = common.cpu_seconds(pb) - before
            hs[mode] = {"conns": n, "secs": t, "rate": n / t, "cpu": cpu, "wall": time.time() - t0,
                        "per_cpu_s": n / cpu if cpu else 0.0}
            print(f"s_time -{mode}: {n} connections in {t:.1f}s ({n / t:.0f}/s), sidecar CPU {cpu:.2f}s "
                  f"-> {hs[mode]['per_cpu_s']:.0f} handshakes per CPU-second")

        # Two workers, two clients at once (nothing pinned: all share the cores).
        common.wait_port(b2_in)
        time.sleep(1)
        pb2 = common.pids_of(side_b2.p.pid)
        before = common.cpu_seconds(pb2)
        clients = [subprocess.Popen([common.tool("openssl"), "s_time", "-connect", f"127.0.0.1:{b2_in}", "-tls1_3",
                                     "-new", "-time", "10", "-cert", cpem, "-key", ckey, "-CAfile", ca_pem,
                                     "-www", "/"], stdout=subprocess.PIPE, text=True) for _ in range(2)]
        n2 = 0
        for c in clients:
            o, _ = c.communicate(timeout=60)
            m2 = re.findall(r"(\d+) connections in ([\d.]+) real seconds", o)
            n2 += int(m2[-1][0]) if m2 else 0
        cpu2 = common.cpu_seconds(pb2) - before
        hs["two-workers"] = {"conns": n2, "secs": 10.0, "rate": n2 / 10.0, "cpu": cpu2,
                             "per_cpu_s": n2 / cpu2 if cpu2 else 0.0}
        print(f"2 workers, 2 clients: {n2} connections, {cpu2 * 1e6 / max(n2, 1):.0f} µs CPU per connection")

        # The same client against openssl s_server on the same core, for
        # reference: what OpenSSL itself spends per connection here.
        skey, spem = leaf(tmp, "server", "spiffe://weft.local/ns/default/sa/app", ca_pem, ca_key)
        sport = common.free_port()
        ref = common.Server([common.tool("openssl"), "s_server", "-accept", str(sport), "-cert", spem, "-key", skey,
                             "-CAfile", ca_pem, "-Verify", "2", "-tls1_3", "-www", "-quiet"], pin_proxy)
        common.wait_port(sport)
        ref_pids = common.pids_of(ref.p.pid)
        for mode in ("new", "reuse"):
            before = common.cpu_seconds(ref_pids)
            n, t, out = s_time(sport, mode, 10, pin_load, cpem, ckey, ca_pem)
            cpu = common.cpu_seconds(ref_pids) - before
            hs["ref-" + mode] = {"conns": n, "secs": t, "rate": n / t, "cpu": cpu,
                                 "per_cpu_s": n / cpu if cpu else 0.0}
            print(f"s_server, s_time -{mode}: {n / t:.0f}/s, {cpu * 1e6 / max(n, 1):.0f} µs CPU per connection")
        ref.stop()

        # Bulk: 256 MiB through the mesh path, three times.
        bulk = []
        for _ in range(3):
            ba, bb = common.cpu_seconds(pa), common.cpu_seconds(pb)
            r = sh(["taskset", "-c", pin_load, "curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{time_total}",
                    f"http://127.0.0.1:{up}/big"], timeout=300)
            size, secs = r.stdout.split()
            bulk.append({"bytes": int(size), "secs": float(secs), "cpu_a": common.cpu_seconds(pa) - ba,
                         "cpu_b": common.cpu_seconds(pb) - bb})
        bulk.sort(key=lambda x: x["bytes"] / x["secs"])
        bm = bulk[1]
        print(f"bulk: {bm['bytes'] / bm['secs'] / 1e6:.0f} MB/s; encrypting sidecar {bm['cpu_b']:.2f}s CPU, "
              f"decrypting sidecar {bm['cpu_a']:.2f}s CPU")

        authz = json.loads(sh([authz_bench, "--benchmark_format=json", "--benchmark_min_time=0.5"],
                              timeout=120).stdout)
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    cpu = common.cpu_model()
    d, p1, m = "direct (nginx)", "one plaintext weft hop", "mesh: sidecar -> mTLS -> sidecar"
    lines = [
        "# Mesh TLS and authorization benchmark", "",
        f"Run: `bash bench/mtls.sh` (bench/mtls.py), {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        f"Machine: {os.cpu_count()} cores ({cpu}). Proxies on core(s) {pin_proxy}; nginx, clients and load "
        f"generators on core(s) {pin_load}; every weft proxy with 1 worker. This machine is shared and noisy: "
        "read the ratios.", "",
        "## Reference: OpenSSL on this machine", "",
        f"- `openssl speed ecdsap256`: {sign:.0f} signs/s, {verify:.0f} verifies/s",
        f"- `openssl speed -evp aes-128-gcm`, 16 KB blocks: {gcm / 1e6:.0f} MB/s", "",
        "## Handshakes through one proxy worker", "",
        "`openssl s_time -new|-reuse -www /` into a sidecar's inbound port with a client certificate "
        "(TLS 1.3, ECDSA P-256, X25519); each connection also fetches a small page through the proxy. The "
        "client shares its core with nginx, so the proxy is not saturated: the capacity of one worker is the "
        "handshakes per CPU-second the proxy spent.", "",
        "| handshake | conn/s (client-bound) | proxy CPU µs/conn | per proxy CPU-second | vs ecdsa sign/s |",
        "|---|---:|---:|---:|---:|"]
    for mode, label in (("new", "weft sidecar, full"), ("reuse", "weft sidecar, resumed"),
                        ("two-workers", "weft sidecar, full, 2 workers and 2 clients at once (unpinned)"),
                        ("ref-new", "openssl s_server, full (reference)"),
                        ("ref-reuse", "openssl s_server, resumed (reference)")):
        h = hs[mode]
        lines.append(f"| {label} | {h['rate']:.0f} | {h['cpu'] * 1e6 / max(h['conns'], 1):.0f} | "
                     f"{h['per_cpu_s']:.0f} | {h['per_cpu_s'] / sign:.2f} |")
    floor = 1 / sign + 2 / verify
    lines += ["", f"The cryptography alone bounds a full mutual handshake on the server side at one ECDSA sign "
              f"(ours) and two verifies (the client's CertificateVerify and its certificate's signature): "
              f"{floor * 1e6:.0f} µs, {1 / floor:.0f}/s per core ({1 / floor / sign:.2f} of the sign rate), before "
              "the key exchange, hashing and record work."]
    lines += ["", "## Bulk throughput through one mTLS hop", "",
              "`curl` downloading 256 MiB from nginx through sidecar A -> mTLS -> sidecar B (median of 3).", "",
              "| | MB/s | vs aes-128-gcm 16 KB |", "|---|---:|---:|",
              f"| end to end (client-bound: everything on 2 cores) | {bm['bytes'] / bm['secs'] / 1e6:.0f} | "
              f"{bm['bytes'] / bm['secs'] / gcm:.2f} |",
              f"| per CPU-second of the encrypting sidecar (B) | {bm['bytes'] / max(bm['cpu_b'], 1e-9) / 1e6:.0f} | "
              f"{bm['bytes'] / max(bm['cpu_b'], 1e-9) / gcm:.2f} |",
              f"| per CPU-second of the decrypting sidecar (A) | {bm['bytes'] / max(bm['cpu_a'], 1e-9) / 1e6:.0f} | "
              f"{bm['bytes'] / max(bm['cpu_a'], 1e-9) / gcm:.2f} |", "",
              f"## Latency at {a.rate} requests/s (open loop, 8 connections, {a.seconds}s, median of {a.rounds} rounds)", ""]
    for lay, load_cpus in (("split", pin_load), ("one core", pin_proxy)):
        where = (f"proxies on core(s) {pin_proxy}, nginx and the client on {pin_load}" if lay == "split"
                 else f"proxies, nginx and the client all on core(s) {pin_proxy}")
        lines += [f"### {lay}: {where}", "",
                  "| path | p50 µs | p90 µs | p99 µs | p99.9 µs | proxy CPU µs/req | errors |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name in (d, p1, m):
            lines.append(f"| {name} | {med(lay, name, 'p50_us'):.0f} | {med(lay, name, 'p90_us'):.0f} | "
                         f"{med(lay, name, 'p99_us'):.0f} | {med(lay, name, 'p999_us'):.0f} | "
                         f"{med(lay, name, 'cpu_us'):.1f} | {sum(x['errors'] for x in lat[(lay, name)])} |")
        lines += ["", f"The mesh path adds **{med(lay, m, 'p99_us') - med(lay, d, 'p99_us'):.0f} µs at p99** over "
                  f"direct ({med(lay, m, 'p50_us') - med(lay, d, 'p50_us'):.0f} µs at p50); one plaintext hop adds "
                  f"{med(lay, p1, 'p99_us') - med(lay, d, 'p99_us'):.0f} µs at p99 "
                  f"({med(lay, p1, 'p50_us') - med(lay, d, 'p50_us'):.0f} µs at p50). Target: ≤ 100 µs at p99.", ""]
    lines += ["",
              "## Authorization decision, 100 rules (Google Benchmark, bench/micro/authz_bench.cc)", "",
              "| case | ns/decision |", "|---|---:|"]
    for b in authz["benchmarks"]:
        lines.append(f"| {b['name']} | {b['cpu_time']:.0f} |")
    lines += ["", "AllowedByLastRule: the request matches the last of the rules, so every deny rule and every "
              "earlier allow rule is evaluated (source, methods, path prefix, header each). Nothing is allocated "
              "per decision (tests/unit/proxy/authz_test.cc checks).", ""]
    common.write_with_notes(lines, a.out, os.path.join(HERE, "NOTES-mtls.md"))


if __name__ == "__main__":
    main()
