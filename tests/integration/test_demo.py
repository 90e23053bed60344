"""`weft demo-app`: the demo service the quickstart mesh is made of. Latency,
injected errors and calls to other services, checked with real requests,
alone and behind sidecars with mTLS."""
import http.client
import json
import os
import subprocess
import time

import pytest

from conftest import Managed, free_port, wait_port


class Demo(Managed):
    def __init__(self, weft_bin, tmpdir, name, *args):
        self.log_path = os.path.join(tmpdir, f"demo-{name}-{time.time_ns()}.log")
        self.stderr = open(self.log_path, "w")
        self.p = subprocess.Popen([weft_bin, "demo-app", "--name", name, "--listen", "127.0.0.1:0", *args],
                                  stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("weft demo-app listening"):
            self.p.kill()
            raise RuntimeError(f"demo-app did not start: {line!r} {self.log()}")
        self.addr = line.split("http=")[1].split()[0]
        self.port = int(self.addr.rsplit(":", 1)[1])


@pytest.fixture
def demo(weft_bin, tmp_path):
    made = []

    def make(name, *args):
        d = Demo(weft_bin, str(tmp_path), name, *args)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


def get(port, path="/", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, r.getheader("x-backend"), json.loads(body)


def test_answers_with_its_name_latency_and_calls(demo):
    ratings = demo("ratings", "--version", "v2")
    reviews = demo("reviews", "--latency", "50ms", "--call", f"{ratings.addr}/ratings/7")
    t0 = time.time()
    status, backend, body = get(reviews.port, "/reviews/7")
    took = time.time() - t0
    assert status == 200 and backend == "reviews-v1"
    assert took >= 0.05, took
    assert body["service"] == "reviews" and body["path"] == "/reviews/7"
    call = body["calls"][0]
    assert call["status"] == 200 and call["answer"]["service"] == "ratings"
    assert call["answer"]["version"] == "v2" and call["answer"]["path"] == "/ratings/7"


def test_injected_errors_and_failing_dependencies(demo):
    broken = demo("broken", "--error-rate", "1")
    status, _, body = get(broken.port)
    assert status == 500 and "injected" in body["error"]
    flaky = demo("flaky", "--error-rate", "0.5")
    codes = [get(flaky.port)[0] for _ in range(200)]
    assert 40 <= codes.count(500) <= 160, codes.count(500)
    assert set(codes) == {200, 500}
    # A dependency that fails or does not answer: 502, with the reason.
    caller = demo("caller", "--call", f"{broken.addr}/x", "--call-timeout", "500ms")
    status, _, body = get(caller.port)
    assert status == 502 and body["calls"][0]["status"] == 500
    gone = free_port()
    caller2 = demo("caller2", "--call", f"127.0.0.1:{gone}/x")
    status, _, body = get(caller2.port)
    assert status == 502 and body["calls"][0]["status"] == 0 and "refused" in body["calls"][0]["error"]


def test_bad_flags_are_refused(weft_bin):
    for args in (["--error-rate", "2"], ["--latency", "soon"], ["--bogus"]):
        r = subprocess.run([weft_bin, "demo-app", "--name", "x", *args], capture_output=True, text=True, timeout=10)
        assert r.returncode == 2, (args, r.stderr)
        assert args[0] in r.stderr


def test_behind_sidecars_the_callee_sees_the_callers_identity(demo, server, mesh_proxy):
    s = server()
    ratings = demo("ratings")
    r_in, w_in, up = free_port(), free_port(), free_port()
    s.register("node-r", "ratings", ratings.port, "ratings-1")
    s.register("node-r", "ratings-sidecar", r_in, "ratings-sc", Kind="connect-proxy",
               Proxy={"DestinationServiceName": "ratings", "LocalServicePort": ratings.port})
    reviews = demo("reviews", "--call", f"127.0.0.1:{up}/ratings/1")
    s.register("node-w", "reviews", reviews.port, "reviews-1")
    s.register("node-w", "reviews-sidecar", w_in, "reviews-sc", Kind="connect-proxy",
               Proxy={"DestinationServiceName": "reviews", "LocalServicePort": reviews.port,
                      "Upstreams": [{"DestinationName": "ratings", "LocalBindPort": up}]})
    for svc in ("ratings", "reviews"):
        mesh_proxy(s.grpc, svc).wait_ready()
    wait_port(up)
    status, _, body = get(reviews.port)
    assert status == 200, body
    assert body["calls"][0]["answer"]["caller"] == \
        "By=spiffe://weft.local/ns/default/sa/ratings;URI=spiffe://weft.local/ns/default/sa/reviews"


def test_weft_stat_shows_golden_metrics_from_the_proxies(demo, server, mesh_proxy):
    import threading
    s = server()
    ratings = demo("ratings", "--error-rate", "0.25")
    r_in, up = free_port(), free_port()
    s.register("node-r", "ratings", ratings.port, "ratings-1")
    s.register("node-r", "ratings-sidecar", r_in, "ratings-sc", Kind="connect-proxy",
               Proxy={"DestinationServiceName": "ratings", "LocalServicePort": ratings.port})
    reviews = demo("reviews", "--call", f"127.0.0.1:{up}/ratings/1")
    s.register("node-w", "reviews", reviews.port, "reviews-1")
    s.register("node-w", "reviews-sidecar", free_port(), "reviews-sc", Kind="connect-proxy",
               Proxy={"DestinationServiceName": "reviews", "LocalServicePort": reviews.port,
                      "Upstreams": [{"DestinationName": "ratings", "LocalBindPort": up}]})
    for svc in ("ratings", "reviews"):
        mesh_proxy(s.grpc, svc).wait_ready()
    wait_port(up)
    stop = []

    def load():
        while not stop:
            try:
                get(reviews.port)
            except Exception:  # noqa: BLE001
                pass
    th = threading.Thread(target=load, daemon=True)
    th.start()
    try:
        time.sleep(0.5)
        r = s.ctl("stat", "ratings", "--window", "2s", "-o", "json")
        assert r.returncode == 0, r.stderr
        row = json.loads(r.stdout)[0]
        assert row["service"] == "ratings" and row["proxies"] == 1 and row["unreachable"] == 0
        assert row["rps"] > 20, row
        assert 0.6 <= row["success"] <= 0.9, row  # 25% injected errors
        assert row["mtls"] >= 0.99, row  # every request came from reviews' sidecar over mTLS
        assert 0 < row["p50_ms"] <= row["p99_ms"] < 1000, row
        table = s.ctl("stat").stdout
        assert "SERVICE" in table and "ratings" in table and "reviews" in table, table
    finally:
        stop.append(1)
        th.join(10)
    r = s.ctl("stat", "nosuch")
    assert r.returncode != 0 and "no proxy of service nosuch" in r.stderr


def test_weft_check_finds_what_is_wrong(demo, server, mesh_proxy):
    s = server()
    ratings = demo("ratings")
    r_in = free_port()
    s.register("node-r", "ratings", ratings.port, "ratings-1")
    s.register("node-r", "ratings-sidecar", r_in, "ratings-sc", Kind="connect-proxy",
               Proxy={"DestinationServiceName": "ratings", "LocalServicePort": ratings.port})
    good = mesh_proxy(s.grpc, "ratings")
    good.wait_ready()
    r = s.ctl("check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok   the mesh CA has an active root" in r.stdout
    assert "has a valid workload certificate (spiffe://weft.local/ns/default/sa/ratings)" in r.stdout
    assert "0 agents and 1 proxies checked; 0 problem(s)" in r.stdout
    # A proxy with a wrong ACL token cannot get its certificate: check says so, with the fix.
    s.register("node-x", "billing", ratings.port, "billing-1")
    s.register("node-x", "billing-sidecar", free_port(), "billing-sc", Kind="connect-proxy",
               Proxy={"DestinationServiceName": "billing", "LocalServicePort": ratings.port})
    mesh_proxy(s.grpc, "billing", env={"WEFT_TOKEN": "wrong"})
    time.sleep(1)
    r = s.ctl("check")
    assert r.returncode == 1, r.stdout
    # The server turned it away (it is no member): check says that it did, and where to look.
    assert "FAIL no agent or proxy refused for its credentials in the last 10 minutes" in r.stdout, r.stdout
    assert "fix: a proxy's ACL token (--token-file; service:write on its service)" in r.stdout
    assert "for proxy of billing refused: ACL not found" in s.log(), s.log()[-2000:]
    # No server: said plainly.
    s.stop()
    r = s.ctl("check")
    assert r.returncode == 1 and "fix: start `weft server`" in r.stdout
