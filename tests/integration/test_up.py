"""`weft up FILE`: the quickstart mesh on one machine, run as a user would.
The file is examples/quickstart.yaml with its ports moved to free ones."""
import json
import os
import random
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import free_port, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVICES = ["catalog", "frontend", "ratings", "reviews-v1", "reviews-v2"]


def port_range_free(base, n):
    for p in range(base, base + n):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


def quickstart_file(tmp_path):
    """examples/quickstart.yaml on free ports; returns (path, server API address, base)."""
    text = open(os.path.join(ROOT, "examples", "quickstart.yaml")).read()
    for _ in range(50):
        base = random.randrange(20000, 32000, 400)
        if port_range_free(base, 400):
            break
    ports = {k: free_port() for k in ("sh", "sg", "ah", "ad")}
    text = text.replace("portBase: 21000", f"portBase: {base}")
    text = text.replace("{http: 127.0.0.1:8500, grpc: 127.0.0.1:8502}",
                        f"{{http: 127.0.0.1:{ports['sh']}, grpc: 127.0.0.1:{ports['sg']}}}")
    text = text.replace("{http: 127.0.0.1:8501, dns: 127.0.0.1:8600}",
                        f"{{http: 127.0.0.1:{ports['ah']}, dns: 127.0.0.1:{ports['ad']}}}")
    assert f"portBase: {base}" in text and str(ports["ah"]) in text
    path = tmp_path / "quickstart.yaml"
    path.write_text(text)
    return str(path), f"127.0.0.1:{ports['sh']}", base


def procs_mentioning(marker):
    """PIDs of processes whose command line contains `marker`."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            out.append((int(pid), cmd.replace("\0", " ")))
    return out


def children_of(parent):
    """(pid, command line) of the processes whose parent is `parent`."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        # The parent pid is the 2nd field after the parenthesised command name.
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            out.append((int(pid), cmd.replace("\0", " ")))
    return out


def listening(base):
    """Ports of the weft up range that something listens on."""
    return [p for p in range(base, base + 400) if not port_range_free(p, 1)]


def last_table(out):
    """The last frame's rows: service -> [proxies, rps, success, p50, p99, mtls]."""
    frames = out.split("SERVICE ")
    assert len(frames) > 1, out
    rows = {}
    for line in frames[-1].splitlines()[1:]:
        f = line.split()
        if len(f) == 7 and f[0] in SERVICES:
            rows[f[0]] = f[1:]
    return rows


def test_weft_up_runs_the_quickstart_mesh_and_stops_cleanly(weft_bin, tmp_path):
    path, api, base = quickstart_file(tmp_path)
    work = str(tmp_path / "up")
    r = subprocess.run([weft_bin, "up", path, "--duration", "6s", "--dir", work],
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    # Progress: each component with its address.
    assert re.search(rf"server\s+http://{api} \(API\)", out), out
    assert "agent " in out and "(DNS: NAME.service.weft)" in out
    assert "applied      Service/reviews, Route/reviews, AuthorizationPolicy/ratings" in out
    for svc in SERVICES:
        assert re.search(rf"^  {svc}\s+v\d app 127\.0\.0\.1:\d+  sidecar 127\.0\.0\.1:\d+ \(mTLS\)", out, re.M), out
    assert "traffic      50 req/s GET / to frontend" in out
    # The live table: one frame a second, every service served, all of it mTLS.
    assert out.count("SERVICE ") >= 4, out
    rows = last_table(out)
    assert sorted(rows) == SERVICES, out
    for svc, (proxies, rps, success, p50, p99, mtls) in rows.items():
        assert proxies == "1/1", (svc, out)
        if svc != "reviews-v2":  # 10% of 50/s: a frame may have none
            assert float(rps) > 15, (svc, out)
            assert mtls == "100%", (svc, out)
    # 90/10: reviews-v1 carries most of frontend's calls to reviews.
    assert float(rows["reviews-v1"][1]) > 2 * float(rows["reviews-v2"][1]), out
    sent = re.findall(r"sent ok (\d+), failed (\d+)", out)[-1]
    assert int(sent[0]) > 150, out
    # reviews-v2 injects 2% errors, and only 10% of calls reach it.
    assert int(sent[1]) <= max(5, int(sent[0]) // 20), out
    assert re.search(r"stopped 13 processes, logs kept in " + re.escape(work), out), out
    # Nothing is left behind.
    assert procs_mentioning(work) == []
    assert listening(base) == []


def test_ctrl_c_stops_weft_up_and_the_mesh_answers_stat_check_and_route_changes(weft_bin, tmp_path):
    path, api, base = quickstart_file(tmp_path)
    work = str(tmp_path / "up")
    env = dict(os.environ, WEFT_SERVER=f"http://{api}")
    out_path = tmp_path / "up.out"
    with open(out_path, "w") as out_f:
        p = subprocess.Popen([weft_bin, "up", path, "--dir", work], stdout=out_f,
                             stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert wait_for(lambda: open(out_path).read().count("SERVICE ") >= 2, timeout=60), open(out_path).read()

        check = subprocess.run([weft_bin, "check"], capture_output=True, text=True, env=env, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "1 agents and 6 proxies checked; 0 problem(s)" in check.stdout, check.stdout
        assert re.search(r"ok   agent agent/local at 127\.0\.0\.1:\d+ answers", check.stdout), check.stdout

        def stat():
            r = subprocess.run([weft_bin, "stat", "--window", "3s", "-o", "json"], capture_output=True,
                               text=True, env=env, timeout=30)
            assert r.returncode == 0, r.stdout + r.stderr
            return {row["service"]: row for row in json.loads(r.stdout)}

        # Every process weft up started is named weft in ps, top and ss, with
        # its role in its arguments.
        children = children_of(p.pid)
        assert len(children) == 13, children
        for pid, cmd in children:
            assert open(f"/proc/{pid}/comm").read().strip() == "weft", (pid, cmd)
            assert cmd.startswith("weft "), cmd
        assert any(cmd.startswith("weft proxy ") and "--service reviews-v1" in cmd
                   for _, cmd in children), children
        ss = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
        ours = [line for line in ss.splitlines()
                if any(f"pid={pid}," in line for pid, _ in children)]
        assert len(ours) >= 13, ss
        assert all('(("weft",' in line for line in ours), ours

        rows = stat()
        assert {"frontend", "catalog", "reviews-v1", "reviews-v2", "ratings"} <= set(rows), rows
        assert rows["frontend"]["rps"] > 20 and rows["frontend"]["mtls"] == 1.0, rows
        assert rows["reviews-v1"]["rps"] > 3 * rows["reviews-v2"]["rps"], rows

        # The README's "try next": move the split and watch it.
        route = tmp_path / "route.yaml"
        route.write_text("kind: Route\nmetadata: {name: reviews}\nspec:\n  service: reviews\n  rules:\n"
                         "    - backends: [{service: reviews-v1, weight: 50}, {service: reviews-v2, weight: 50}]\n")
        a = subprocess.run([weft_bin, "apply", "-f", str(route)], capture_output=True, text=True, env=env)
        assert a.returncode == 0, a.stderr
        time.sleep(1)
        rows = stat()
        v1, v2 = rows["reviews-v1"]["rps"], rows["reviews-v2"]["rps"]
        assert v2 > 10 and 0.5 < v1 / v2 < 2, rows

        p.send_signal(signal.SIGINT)
        assert p.wait(30) == 0, open(out_path).read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out = open(out_path).read()
    assert "stopped 13 processes" in out, out
    assert procs_mentioning(work) == []
    assert listening(base) == []


def test_weft_up_refuses_a_bad_file_and_a_busy_port(weft_bin, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: LocalMesh\nspec:\n  services: [{name: web, latncy: 1ms}]\n")
    r = subprocess.run([weft_bin, "up", str(bad)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "spec.services[0]" in r.stderr and "latncy" in r.stderr, r.stderr

    # At most 50 services: one more is refused before anything starts.
    many = ", ".join(f"{{name: s{i}}}" for i in range(51))
    bad.write_text(f"kind: LocalMesh\nspec:\n  services: [{many}]\n")
    r = subprocess.run([weft_bin, "up", str(bad)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "spec.services" in r.stderr and "at most 50" in r.stderr, r.stderr
    assert "logs in" not in r.stdout

    bad.write_text("kind: LocalMesh\nspec:\n  traffic: {to: nosuch}\n  services: [{name: web}]\n")
    r = subprocess.run([weft_bin, "up", str(bad)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "nosuch" in r.stderr and "not one of the services" in r.stderr, r.stderr

    path, api, base = quickstart_file(tmp_path)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", base + 300))
        s.listen()
        r = subprocess.run([weft_bin, "up", path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"port {base + 300} (frontend app) is in use" in r.stderr, r.stderr
    assert "logs in" not in r.stdout  # nothing was started
