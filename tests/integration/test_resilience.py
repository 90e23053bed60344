"""Traffic that survives bad instances: the latency-aware balancer (peak-EWMA
with two choices, the default) against a slow instance, shown by what a
client sees, with `weft demo-app` instances turned slow at run time."""
import hashlib
import http.client
import json
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import free_port, simple_config, wait_for


class Demo:
    """A `weft demo-app` with its behaviour admin port."""

    def __init__(self, weft_bin, version):
        self.p = subprocess.Popen([weft_bin, "demo-app", "--name", "reviews", "--version", version,
                                   "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.p.stdout.readline()
        assert line.startswith("weft demo-app listening"), line
        fields = dict(f.split("=", 1) for f in line.split()[3:])
        self.port = int(fields["http"].rsplit(":", 1)[1])
        self.admin = fields["admin"]
        self.version = version

    def behave(self, **kw):
        req = urllib.request.Request(f"http://{self.admin}/behaviour", data=json.dumps(kw).encode(),
                                     method="PUT", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def stop(self):
        self.p.kill()
        self.p.wait()


@pytest.fixture
def demos(weft_bin):
    made = []

    def make(version):
        d = Demo(weft_bin, version)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


class Load:
    """Closed-loop load on keep-alive connections from `workers` threads;
    records (time, backend version, latency s, status) per request."""

    def __init__(self, port, workers=4):
        self.port, self.samples, self.stop_flag = port, [], False
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(workers)]
        for t in self.threads:
            t.start()

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop_flag:
            t0 = time.monotonic()
            try:
                conn.request("GET", "/")
                r = conn.getresponse()
                r.read()
                who, status = r.getheader("x-backend", "?"), r.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                who, status = "?", 0
            t1 = time.monotonic()
            with self.lock:
                self.samples.append((t1, who, t1 - t0, status))

    def window(self, since, until=None):
        with self.lock:
            return [s for s in self.samples if s[0] >= since and (until is None or s[0] < until)]

    def finish(self):
        self.stop_flag = True
        for t in self.threads:
            t.join(15)


def share(samples, version):
    return sum(1 for s in samples if s[1] == f"reviews-{version}") / max(len(samples), 1)


def p99(samples):
    lat = sorted(s[2] for s in samples)
    return lat[int(len(lat) * 0.99)] if lat else 0


def sidecar_stat(px, name):
    """Sum of a sidecar's /stats counter over the reviews cluster."""
    total = 0.0
    for line in px.admin("/stats")[1].splitlines():
        if line.startswith(name + "{") and "reviews" in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def get_many(port, n):
    """n sequential GETs on one keep-alive connection: their statuses."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    for _ in range(n):
        conn.request("GET", "/")
        r = conn.getresponse()
        r.read()
        out.append(r.status)
    return out


def mesh_with_three_reviews(server, mesh_proxy, demos, lb, policy=""):
    s = server()
    apps = [demos(v) for v in ("a", "b", "c")]
    for d in apps:
        s.register("node-" + d.version, "reviews", d.port, f"reviews-{d.version}")
    r = s.ctl("apply", "-f", "-", input="kind: TrafficPolicy\nmetadata: {name: reviews}\nspec:\n"
                                        f"  loadBalancer: {lb}\n{policy}")
    assert r.returncode == 0, r.stderr
    up = free_port()
    s.register("node-f", "frontend-sidecar", free_port(), "frontend-sc", Kind="connect-proxy",
               Proxy={"DestinationServiceName": "frontend", "LocalServicePort": 1,
                      "Upstreams": [{"DestinationName": "reviews", "LocalBindPort": up}]})
    px = mesh_proxy(s.grpc, "frontend")
    px.wait_ready(15)
    assert wait_for(lambda: len(px.endpoints("reviews") or []) == 3, timeout=10), px.config()
    return s, apps, up, px


def test_the_default_balancer_stops_choosing_a_slow_instance_and_takes_it_back(server, mesh_proxy, demos):
    s, apps, up, px = mesh_with_three_reviews(server, mesh_proxy, demos, "{policy: ewma, decay: 1s}")
    cluster = next(c for c in px.config()["clusters"] if "reviews" in c["name"])
    assert cluster["lb"] == "ewma" and cluster["ewma_decay_ms"] == 1000, cluster
    load = Load(up)
    try:
        time.sleep(1.5)
        healthy = load.window(time.monotonic() - 1.0)
        # Every instance gets traffic (not evenly: a hiccup on a busy
        # machine makes an instance look slower for a while).
        assert all(share(healthy, v) > 0.02 for v in "abc"), [share(healthy, v) for v in "abc"]
        healthy_p99 = p99(healthy)
        apps[2].behave(latency="200ms")
        turned = time.monotonic()
        time.sleep(4)
        # Within a second the slow instance gets (almost) nothing: it is
        # tried again now and then as its estimate decays, and kept out.
        after = load.window(turned + 1.0)
        assert len(after) > 200, len(after)
        assert share(after, "c") < 0.02, (share(after, "c"), len(after))
        assert p99(after) < max(0.05, 3 * healthy_p99), (p99(after), healthy_p99)
        assert all(s[3] == 200 for s in after)
        # Recovered: back in the rotation within a few decays.
        apps[2].behave(latency="0ms")
        back = time.monotonic()
        assert wait_for(lambda: share(load.window(time.monotonic() - 1.0), "c") > 0.05, timeout=15), \
            share(load.window(back), "c")
    finally:
        load.finish()


def test_round_robin_keeps_sending_a_third_to_the_slow_instance(server, mesh_proxy, demos):
    # The contrast: what a plain balancer does with the same instance.
    s, apps, up, px = mesh_with_three_reviews(server, mesh_proxy, demos, "{policy: round_robin}")
    apps[2].behave(latency="200ms")
    load = Load(up)
    try:
        time.sleep(3)
        after = load.window(time.monotonic() - 2.0)
        assert 0.25 < share(after, "c") < 0.4, share(after, "c")
        assert p99(after) >= 0.2
    finally:
        load.finish()


def test_default_retries_turn_a_failing_instance_into_success(server, mesh_proxy, demos):
    # Round robin, so that the failing instance keeps its third of the
    # traffic and what saves the requests is the retry (503 is retried by
    # default, on another endpoint).
    s, apps, up, px = mesh_with_three_reviews(server, mesh_proxy, demos, "{policy: round_robin}")
    apps[2].behave(errorRate=0.1, errorStatus=503)
    statuses = get_many(up, 600)
    assert statuses.count(200) == 600, {c: statuses.count(c) for c in set(statuses)}
    retried = sidecar_stat(px, "weft_cluster_upstream_rq_retry_total")
    assert 5 <= retried <= 40, retried  # about 10% of a third of 600
    # With retries off, the same instance's 503s reach the client.
    r = s.ctl("apply", "-f", "-", input="kind: TrafficPolicy\nmetadata: {name: reviews}\nspec:\n"
                                        "  loadBalancer: {policy: round_robin}\n  retries: {attempts: 0}\n")
    assert r.returncode == 0, r.stderr
    time.sleep(1)
    statuses = get_many(up, 600)
    assert 5 <= statuses.count(503) <= 40, statuses.count(503)


def test_a_per_try_timeout_moves_a_stuck_request_to_another_instance(server, mesh_proxy, demos):
    s, apps, up, px = mesh_with_three_reviews(
        server, mesh_proxy, demos, "{policy: round_robin}",
        "  retries: {attempts: 2, perTryTimeout: 100ms, on: [gateway-error]}\n"
        "  connectionPool: {maxRequests: 64, maxRetries: 8}\n")
    # The policy reached the sidecar as written.
    cluster = next(c for c in px.config()["clusters"] if "reviews" in c["name"])
    assert cluster["circuit_breakers"] == {"max_connections": 1024, "max_pending_requests": 1024,
                                           "max_requests": 64, "max_retries": 8}, cluster
    route = next(r for lst in px.config()["listeners"] for r in lst.get("routes", []) if "reviews" in json.dumps(r))
    assert route["per_try_timeout_ms"] == 100, route
    apps[2].behave(latency="1s")
    conn = http.client.HTTPConnection("127.0.0.1", up, timeout=10)
    slowest = 0
    for _ in range(30):
        t0 = time.monotonic()
        conn.request("GET", "/")
        r = conn.getresponse()
        r.read()
        assert r.status == 200
        slowest = max(slowest, time.monotonic() - t0)
    # Each request that met the stuck instance waited 100 ms for it, then
    # went elsewhere: never the full second.
    assert slowest < 0.6, slowest
    assert sidecar_stat(px, "weft_cluster_upstream_rq_per_try_timeout_total") >= 5


@pytest.mark.parametrize("percent,most", [(20, 1.25), (100, 2.1)])
def test_the_retry_budget_bounds_the_load_on_a_failing_cluster(server, mesh_proxy, demos, percent, most):
    # Every instance fails; the route allows 5 retries on any 5xx. What
    # reaches the backends per client request is bounded by the budget, not
    # by the attempts (measured at the backends).
    s, apps, up, px = mesh_with_three_reviews(
        server, mesh_proxy, demos, "{policy: round_robin}",
        f"  retries: {{attempts: 5, on: [5xx], budget: {{percent: {percent}, minPerSecond: 0}}}}\n")
    for d in apps:
        d.behave(errorRate=1.0, errorStatus=503)
    before = sum(d.behave()["requests"] for d in apps)
    statuses = get_many(up, 500)
    reached = sum(d.behave()["requests"] for d in apps) - before
    assert statuses.count(503) == 500
    assert reached <= most * 500, (reached, percent)
    assert reached >= 500 * (1 + percent / 100) * 0.8, (reached, percent)  # the budget is used
    assert sidecar_stat(px, "weft_cluster_upstream_rq_retry_budget_exhausted_total") > 0


def backend_requests(apps):
    return [d.behave()["requests"] for d in apps]


def test_outlier_detection_ejects_a_failing_instance_and_takes_it_back(server, mesh_proxy, demos):
    # Round robin and no retries: without ejection the failing instance
    # would answer a third of the requests with 503.
    s, apps, up, px = mesh_with_three_reviews(
        server, mesh_proxy, demos, "{policy: round_robin}",
        "  retries: {attempts: 0}\n"
        "  outlierDetection: {consecutive5xxErrors: 3, baseEjectionTime: 2s, interval: 20s}\n")
    cluster = next(c for c in px.config()["clusters"] if "reviews" in c["name"])
    od = cluster["outlier_detection"]
    assert (od["consecutive_5xx"], od["base_ejection_time_ms"], od["interval_ms"]) == (3, 2000, 20000), od
    apps[2].behave(errorRate=1.0, errorStatus=503)
    statuses = get_many(up, 150)
    # Three 503s in a row from it, then it is out: the rest succeed.
    assert statuses.count(503) == 3, {c: statuses.count(c) for c in set(statuses)}
    assert sidecar_stat(px, "weft_cluster_outlier_ejections_total") == 1
    assert sidecar_stat(px, "weft_cluster_outlier_ejected") == 1
    seen = backend_requests(apps)
    assert all(s == 200 for s in get_many(up, 60))
    assert backend_requests(apps)[2] == seen[2]  # nothing reached it
    # Healed; after its ejection time it is back in the rotation.
    apps[2].behave(errorRate=0.0)
    time.sleep(2.2)
    get_many(up, 60)
    assert backend_requests(apps)[2] - seen[2] >= 15
    assert sidecar_stat(px, "weft_cluster_outlier_returns_total") == 1
    assert sidecar_stat(px, "weft_cluster_outlier_ejected") == 0
    # Failing again: ejected again, for twice as long (2 x 2 s; an interval
    # in service would have paid one ejection back).
    apps[2].behave(errorRate=1.0, errorStatus=503)
    assert get_many(up, 60).count(503) == 3
    time.sleep(2.5)
    seen = backend_requests(apps)
    get_many(up, 30)
    assert backend_requests(apps)[2] == seen[2]  # still out after 2.5 s


def test_outlier_ejection_cap_and_panic_threshold(server, mesh_proxy, demos):
    s, apps, up, px = mesh_with_three_reviews(
        server, mesh_proxy, demos, "{policy: round_robin}",
        "  retries: {attempts: 0}\n  outlierDetection: {consecutive5xxErrors: 2}\n")
    for d in apps:
        d.behave(errorRate=1.0, errorStatus=503)
    get_many(up, 60)
    # The default cap (10 %, at least one): one of three is out; the others
    # would be ejected but are not, and keep their traffic.
    assert sidecar_stat(px, "weft_cluster_outlier_ejected") == 1
    assert sidecar_stat(px, "weft_cluster_outlier_ejections_overflow_total") > 0
    seen = backend_requests(apps)
    get_many(up, 60)
    got = [b - a for a, b in zip(seen, backend_requests(apps))]
    assert sorted(got) == [0, 30, 30], got
    # Every one may be ejected, but below half in service the balancer
    # ignores ejections (panic): all three get traffic again.
    r = s.ctl("apply", "-f", "-", input="kind: TrafficPolicy\nmetadata: {name: reviews}\nspec:\n"
                                        "  loadBalancer: {policy: round_robin}\n  retries: {attempts: 0}\n"
                                        "  outlierDetection: {consecutive5xxErrors: 2, maxEjectionPercent: 100,"
                                        " minHealthPercent: 50}\n")
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: next(c for c in px.config()["clusters"] if "reviews" in c["name"])
                    ["outlier_detection"]["max_ejection_percent"] == 100, timeout=10)
    get_many(up, 60)
    # The first stayed out across the update; more follow, and below half
    # in service the balancer uses them all.
    assert sidecar_stat(px, "weft_cluster_outlier_ejected") >= 2
    seen = backend_requests(apps)
    get_many(up, 90)
    got = [b - a for a, b in zip(seen, backend_requests(apps))]
    assert all(g >= 20 for g in got), got
    assert sidecar_stat(px, "weft_cluster_lb_panic_total") >= 90


def concurrently(url, n, headers=None):
    """n GETs at once, each on its own connection: [(status, x-weft-overloaded, seconds)]."""
    out, lock = [], threading.Lock()

    def one():
        t0 = time.monotonic()
        req = urllib.request.Request(url, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                r.read()
                res = (r.status, r.headers.get("x-weft-overloaded"), time.monotonic() - t0)
        except urllib.error.HTTPError as e:
            e.read()
            res = (e.code, e.headers.get("x-weft-overloaded"), time.monotonic() - t0)
        with lock:
            out.append(res)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def breaker_config(addrs, limits, workers=1, extra_cluster=""):
    text = simple_config({"c": addrs}, workers=workers, lb="round_robin")
    return text.replace("    connect_timeout: 500ms\n",
                        f"    connect_timeout: 500ms\n    circuit_breakers: {limits}\n{extra_cluster}")


def test_circuit_breakers_answer_503_overloaded_at_once(weft, backends):
    b = backends("slow")
    # max_requests: 2 in flight; the rest are answered at once.
    w = weft(breaker_config([b.addr], "{max_requests: 2}"))
    got = concurrently(w.url(path="/sleep/500"), 8)
    ok = [r for r in got if r[0] == 200]
    over = [r for r in got if r[0] == 503]
    assert len(ok) == 2 and len(over) == 6, got
    assert all(r[1] == "true" and r[2] < 0.3 for r in over), over
    assert w.stat("weft_cluster_upstream_rq_overflow_total", cluster="c") == 6
    # max_connections: 1 open HTTP/1.1 connection; a second request that
    # needs one of its own is refused.
    w = weft(breaker_config([b.addr], "{max_connections: 1}"))
    got = concurrently(w.url(path="/sleep/500"), 4)
    assert sorted(r[0] for r in got) == [200, 503, 503, 503], got
    assert w.stat("weft_cluster_upstream_cx_overflow_total", cluster="c") == 3
    # The split over workers: each takes its share, rounded up (2 workers x 1).
    w = weft(breaker_config([b.addr], "{max_requests: 2}", workers=2))
    assert w.stat("weft_cluster_upstream_rq_overflow_total", cluster="c") == 0


def test_pending_requests_and_retries_have_their_limits(weft, backends):
    import socket
    # An endpoint whose accept queue is full: connects hang until the
    # connect timeout, so requests wait for a connection.
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(0)
    fillers = []
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(stuck.getsockname())
        fillers.append(f)
    addr = f"127.0.0.1:{stuck.getsockname()[1]}"
    w = weft(breaker_config([addr], "{max_pending_requests: 1}"))
    got = concurrently(w.url(path="/"), 5)
    over = [r for r in got if r[1] == "true"]
    assert len(over) == 4 and all(r[0] == 503 for r in over), got
    assert w.stat("weft_cluster_upstream_rq_pending_overflow_total", cluster="c") == 4
    # max_retries: one request being retried at a time; the others' retries
    # are refused with 503 overloaded (every endpoint answers 503 slowly).
    b = backends("failing")
    w = weft(breaker_config([b.addr, b.addr], "{max_retries: 1}"))
    got = concurrently(w.url(path="/status/503"), 6)
    assert all(r[0] == 503 for r in got), got
    assert w.stat("weft_cluster_upstream_rq_retry_overflow_total", cluster="c") >= 1, got
    for f in fillers:
        f.close()
    stuck.close()


def fault_listener(fault, extra_route="", key="fault"):
    """A listener whose catch-all route to cluster c has `key: fault` (a
    fault, a rate limit, a mirror, a hedge), after `extra_route`."""
    return f"""  - name: public
    address: 127.0.0.1:0
    routes:
{extra_route}      - match: {{prefix: /}}
        cluster: c
        {key}: {fault}
"""


def grpc_backend_config(port, listeners):
    """One listener's route to a gRPC backend on `port` (cluster g, HTTP/2)."""
    text = simple_config({"g": [f"127.0.0.1:{port}"]}, workers=1, listeners=listeners.replace("cluster: c", "cluster: g"))
    return text.replace("  - name: g\n", "  - name: g\n    protocol: http2\n", 1)


def test_fault_aborts_and_delays_hit_their_share_of_requests(weft, backends):
    b = backends("b")
    # 30% aborted with 503, by the caller's proxy: the backend never sees them.
    w = weft(simple_config({"c": [b.addr]}, workers=1,
                           listeners=fault_listener("{abort_status: 503, abort_percent: 30}")))
    before = b.stats()["requests"]
    codes = get_many(w.ports["public"], 500)
    aborted = codes.count(503)
    # Binomial(500, 0.3): sd 10.2; 4 sd either side.
    assert 109 <= aborted <= 191, aborted
    assert codes.count(200) == 500 - aborted
    assert b.stats()["requests"] - before - 1 == 500 - aborted  # (the /_stats itself counts one)
    assert w.stat("weft_route_fault_aborts_total", listener="public", route="public.0") == aborted
    # A delay of 150 ms on half of them.
    w = weft(simple_config({"c": [b.addr]}, workers=1,
                           listeners=fault_listener("{delay: 150ms, delay_percent: 50}")))
    conn = http.client.HTTPConnection("127.0.0.1", w.ports["public"], timeout=10)
    slow = 0
    for _ in range(100):
        t0 = time.monotonic()
        conn.request("GET", "/echo")
        r = conn.getresponse()
        r.read()
        assert r.status == 200
        slow += time.monotonic() - t0 >= 0.15
    assert 30 <= slow <= 70, slow  # Binomial(100, 0.5): sd 5
    assert w.stat("weft_route_fault_delays_total", listener="public", route="public.0") == slow


def test_fault_only_where_its_rule_matches(weft, backends):
    # The fault rule matches a header; other requests go through untouched.
    b = backends("b")
    chaos = """      - match: {prefix: /, headers: {x-chaos: "1"}}
        cluster: c
        fault: {abort_status: 500}
"""
    w = weft(simple_config({"c": [b.addr]}, workers=1, listeners=f"""  - name: public
    address: 127.0.0.1:0
    routes:
{chaos}      - match: {{prefix: /}}
        cluster: c
"""))
    url = f"http://127.0.0.1:{w.ports['public']}/echo"
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(url, headers={"x-chaos": "1"}), timeout=5)
    assert e.value.code == 500 and b"fault injected" in e.value.read()


def test_fault_aborts_a_grpc_call_with_the_grpc_status_given(weft):
    import grpc_peer as g
    p = g.start_server(0, name="s")
    try:
        w = weft(grpc_backend_config(p.port, fault_listener("{abort_status: 503, abort_grpc_status: 8}")))
        r = g.unary(f"127.0.0.1:{w.ports['public']}", b"q")
        assert r["code"] == "RESOURCE_EXHAUSTED" and "fault injected" in r["details"], r
    finally:
        g.stop_server(p)


def test_route_manifest_faults_reach_the_sidecar(server, mesh_proxy, demos):
    s, apps, up, px = mesh_with_three_reviews(server, mesh_proxy, demos, "{policy: ewma}")
    r = s.ctl("apply", "-f", "-", input="""kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
    - match: {headers: {x-test: abort}}
      backends: [{service: reviews}]
      fault: {abort: {httpStatus: 503, grpcStatus: 14, percent: 100}}
    - backends: [{service: reviews}]
      fault: {delay: {fixed: 50ms, percent: 10}}
""")
    assert r.returncode == 0, r.stderr
    y = s.ctl("get", "route", "reviews", "-o", "json").stdout
    rules = json.loads(y)["spec"]["rules"]
    assert rules[0]["fault"] == {"abort": {"httpStatus": 503, "grpcStatus": 14, "percent": 100.0}}, rules
    assert rules[1]["fault"] == {"delay": {"fixed": "50ms", "percent": 10.0}}, rules

    def aborted():
        req = urllib.request.Request(f"http://127.0.0.1:{up}/", headers={"x-test": "abort"})
        try:
            urllib.request.urlopen(req, timeout=5)
            return False
        except urllib.error.HTTPError as e:
            return e.code == 503 and b"fault injected" in e.read()
    assert wait_for(aborted, timeout=10)
    assert get_many(up, 20) == [200] * 20
    # What the proxy cannot do is refused at apply, naming the field.
    r = s.ctl("apply", "-f", "-", input="""kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
    - backends: [{service: reviews}]
      fault: {delay: {fixed: 50ms, percent: 120}}
""")
    assert r.returncode == 1 and "spec.rules[0].fault.delay.percent" in r.stderr, r.stderr


def limit_listener(limit):
    return fault_listener(limit, key="rate_limit")


def get_status(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        e.read()
        return e.code, dict(e.headers)


def test_a_route_rate_limit_answers_429_with_retry_after_at_its_rate(weft, backends):
    b = backends("b")
    # 2 workers share one bucket: 5 at once, then 5 a second.
    w = weft(simple_config({"c": [b.addr]}, workers=2,
                           listeners=limit_listener("{requests_per_second: 5, burst: 5}")))
    before = b.stats()["requests"]
    got = concurrently(w.url(path="/x"), 20)
    assert sorted(r[0] for r in got).count(200) == 5, got
    assert b.stats()["requests"] - before - 1 == 5  # the limited ones never reached it (/_stats counts one)
    status, hdrs = get_status(w.url(path="/x"))
    assert status == 429 and hdrs["retry-after"] == "1" and hdrs["x-weft-ratelimited"] == "true", hdrs
    assert w.stat("weft_route_rate_limited_total", listener="public", route="public.0") == 16
    # At the configured rate over time: 3 s of a client asking 50 times a
    # second gets about 15 more (5 a second), never the 150 it asked for.
    ok, t_end = 0, time.monotonic() + 3
    while time.monotonic() < t_end:
        ok += get_status(w.url(path="/x"))[0] == 200
        time.sleep(0.02)
    assert 12 <= ok <= 21, ok


def test_a_per_caller_limit_keeps_one_caller_from_starving_the_others(weft, backends):
    b = backends("b")
    w = weft(simple_config({"c": [b.addr]}, workers=1,
                           listeners=limit_listener("{per_caller: {requests_per_second: 2, burst: 3}}")))
    # Every request here comes from 127.0.0.1: one caller, 3 at once.
    assert [get_status(w.url(path="/y"))[0] for _ in range(5)] == [200, 200, 200, 429, 429]
    # Another address is another caller.
    other = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--interface", "127.0.0.2",
                            w.url(path="/y")], capture_output=True, text=True, timeout=10)
    assert other.stdout == "200", other
    cfg = w.admin("/config_dump")[1]
    assert '"per_caller"' in cfg and '"requests_per_second": 2' in cfg


def test_a_rate_limited_grpc_call_gets_resource_exhausted(weft):
    import grpc_peer as g
    p = g.start_server(0, name="s")
    try:
        w = weft(grpc_backend_config(p.port, limit_listener("{requests_per_second: 1, burst: 1}")))
        first = g.unary(f"127.0.0.1:{w.ports['public']}", b"q")
        second = g.unary(f"127.0.0.1:{w.ports['public']}", b"q")
        assert first["code"] == "OK", first
        assert second["code"] == "RESOURCE_EXHAUSTED" and "rate limited" in second["details"], second
    finally:
        g.stop_server(p)


def test_route_manifest_rate_limit_reaches_the_sidecar(server, mesh_proxy, demos):
    s, apps, up, px = mesh_with_three_reviews(server, mesh_proxy, demos, "{policy: ewma}")
    r = s.ctl("apply", "-f", "-", input="""kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
    - backends: [{service: reviews}]
      rateLimit: {requestsPerSecond: 2, burst: 4}
""")
    assert r.returncode == 0, r.stderr
    rules = json.loads(s.ctl("get", "route", "reviews", "-o", "json").stdout)["spec"]["rules"]
    assert rules[0]["rateLimit"] == {"requestsPerSecond": 2, "burst": 4}, rules

    def limited():
        return get_status(f"http://127.0.0.1:{up}/")[0] == 429
    assert wait_for(limited, timeout=10)
    assert sidecar_stat(px, "weft_route_rate_limited_total") >= 1
    # Per caller on a Route rule is refused at apply, with the reason.
    r = s.ctl("apply", "-f", "-", input="""kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
    - backends: [{service: reviews}]
      rateLimit: {perCaller: {requestsPerSecond: 2}}
""")
    assert r.returncode == 1 and "spec.rules[0].rateLimit.perCaller" in r.stderr, r.stderr


def test_route_rules_have_their_own_timeout_and_retries(server, mesh_proxy, demos):
    s, apps, up, px = mesh_with_three_reviews(server, mesh_proxy, demos, "{policy: round_robin}")
    r = s.ctl("apply", "-f", "-", input="""kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
    - match: {pathPrefix: /quick}
      backends: [{service: reviews}]
      timeout: 300ms
      retries: {attempts: 0}
    - backends: [{service: reviews}]
""")
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: any(rt.get("timeout_ms") == 300 for lst in px.config()["listeners"]
                                for rt in lst.get("routes", [])), timeout=10), px.config()
    for d in apps:
        d.behave(latency="1s")
    t0 = time.monotonic()
    status, _ = get_status(f"http://127.0.0.1:{up}/quick")
    quick = time.monotonic() - t0
    assert status == 504 and quick < 0.9, (status, quick)
    # The other rule keeps the service's policy (15 s): it waits and succeeds.
    t0 = time.monotonic()
    assert get_status(f"http://127.0.0.1:{up}/other")[0] == 200
    assert time.monotonic() - t0 >= 0.9
    # attempts: 0 on /quick: a failing instance's 503 reaches the caller there
    # (the default would retry it elsewhere), and not on the other rule.
    for d in apps:
        d.behave(latency="0ms")
    apps[0].behave(errorRate=1.0, errorStatus=503)
    quick_codes = [get_status(f"http://127.0.0.1:{up}/quick")[0] for _ in range(12)]
    assert 503 in quick_codes, quick_codes
    other_codes = [get_status(f"http://127.0.0.1:{up}/other")[0] for _ in range(12)]
    assert other_codes == [200] * 12, other_codes


def hashed_config(addrs, lb, hash_):
    text = simple_config({"c": addrs}, workers=2)
    return text.replace("    connect_timeout: 500ms\n", f"    connect_timeout: 500ms\n    lb: {lb}\n    hash: {hash_}\n")


def backend_of(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.headers["x-backend"], r.headers.get("set-cookie")


@pytest.mark.parametrize("lb", ["ring_hash", "maglev"])
def test_consistent_hashing_keeps_a_key_on_one_endpoint_and_moves_few_when_one_leaves(weft, backends, lb):
    bs = [backends(f"b{i}") for i in range(4)]
    w = weft(hashed_config([b.addr for b in bs], lb, "{header: x-user}"))
    where = {}
    for u in range(40):
        seen = {backend_of(w.url(path="/h"), {"x-user": f"u{u}"})[0] for _ in range(3)}
        assert len(seen) == 1, (u, seen)  # every request of a user, on both workers, to one place
        where[u] = seen.pop()
    assert len(set(where.values())) >= 3, where  # users spread out
    # b3 leaves (a config update): its users move, nobody else does.
    with open(w.config, "w") as f:
        f.write(hashed_config([b.addr for b in bs[:3]], lb, "{header: x-user}"))
    code, _ = w.admin("/reload", method="POST")
    assert code == 200
    moved = [u for u in range(40) if backend_of(w.url(path="/h"), {"x-user": f"u{u}"})[0] != where[u]]
    gone = {u for u in range(40) if where[u] == "b3"}
    assert gone <= set(moved), (moved, where)
    # ring_hash: exactly b3's keys; maglev's rebuilt table moves a few more
    # (0.3 % of keys in the unit measurement).
    assert len(set(moved) - gone) <= (0 if lb == "ring_hash" else 2), (moved, where)


def test_a_hash_cookie_is_set_when_missing_and_then_keeps_the_client_in_place(weft, backends):
    bs = [backends(f"b{i}") for i in range(3)]
    w = weft(hashed_config([b.addr for b in bs], "ring_hash", "{cookie: {name: sticky, ttl: 1h}}"))
    first, cookie = backend_of(w.url(path="/c"))
    assert cookie and cookie.startswith("sticky=") and "Max-Age=3600" in cookie and "Path=/" in cookie \
        and "HttpOnly" in cookie, cookie
    value = cookie.split(";")[0]
    for _ in range(10):
        b, again = backend_of(w.url(path="/c"), {"cookie": f"other=1; {value}"})
        assert b == first and again is None
    # Clients without it get fresh cookies, spread over the backends.
    firsts = {backend_of(w.url(path="/c"))[0] for _ in range(30)}
    assert len(firsts) >= 2, firsts
    # Source address as the key: each address stays on one backend.
    w2 = weft(hashed_config([b.addr for b in bs], "maglev", "{source_ip: true}"))
    for ip in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
        got = {subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%header{x-backend}", "--interface", ip,
                               w2.url(path="/s")], capture_output=True, text=True, timeout=10).stdout
               for _ in range(4)}
        assert len(got) == 1 and got.pop().startswith("b"), (ip, got)


def test_zone_aware_balancing_keeps_requests_in_the_callers_zone(server, mesh_proxy, demos):
    # Four instances: two in the caller's zone (z1), two in z2.
    s = server()
    apps = [demos(v) for v in ("a", "b", "c", "d")]
    for d, zone in zip(apps, ("z1", "z1", "z2", "z2")):
        s.register("node-" + d.version, "reviews", d.port, f"reviews-{d.version}", Locality={"Zone": zone})
    r = s.ctl("apply", "-f", "-", input="kind: TrafficPolicy\nmetadata: {name: reviews}\nspec:\n"
                                        "  loadBalancer: {policy: round_robin}\n"
                                        "  outlierDetection: {consecutive5xxErrors: 2, maxEjectionPercent: 50}\n")
    assert r.returncode == 0, r.stderr
    up = free_port()
    s.register("node-f", "frontend-sidecar", free_port(), "frontend-sc", Kind="connect-proxy",
               Locality={"Zone": "z1"},
               Proxy={"DestinationServiceName": "frontend", "LocalServicePort": 1,
                      "Upstreams": [{"DestinationName": "reviews", "LocalBindPort": up}]})
    px = mesh_proxy(s.grpc, "frontend")
    px.wait_ready(15)
    assert wait_for(lambda: len(px.endpoints("reviews") or []) == 4, timeout=10), px.config()
    cluster = next(c for c in px.config()["clusters"] if "reviews" in c["name"])
    assert cluster["local_zone"] == "z1", cluster
    seen = backend_requests(apps)
    assert get_many(up, 40) == [200] * 40
    got = [b - a for a, b in zip(seen, backend_requests(apps))]
    assert got[2] == got[3] == 0 and got[0] + got[1] == 40, got
    # One of z1's two fails and is ejected: half of z1's traffic spills to z2.
    apps[0].behave(errorRate=1.0, errorStatus=503)
    get_many(up, 20)
    assert sidecar_stat(px, "weft_cluster_outlier_ejected") == 1
    seen = backend_requests(apps)
    assert get_many(up, 200) == [200] * 200
    got = [b - a for a, b in zip(seen, backend_requests(apps))]
    assert got[0] == 0 and 60 <= got[1] <= 140 and 60 <= got[2] + got[3] <= 140, got
    # Turned off: all four share the traffic again.
    r = s.ctl("apply", "-f", "-", input="kind: TrafficPolicy\nmetadata: {name: reviews}\nspec:\n"
                                        "  loadBalancer: {policy: round_robin, zoneAware: false}\n")
    assert r.returncode == 0, r.stderr
    apps[0].behave(errorRate=0.0)
    assert wait_for(lambda: "local_zone" not in next(c for c in px.config()["clusters"] if "reviews" in c["name"]),
                    timeout=10)


def test_demo_app_behaviour_admin_validates_what_it_is_given(demos):
    d = demos("a")
    assert d.behave(latency="5ms", errorRate=0.5, errorStatus=503) == \
        {"latency": "5ms", "jitter": "0ms", "tail": "0ms", "tailRate": 0, "errorRate": 0.5, "errorStatus": 503,
         "requests": 0}
    for bad in ({"latency": "soon"}, {"errorRate": 2}, {"errorStatus": 404}, {"color": "red"}, {"tailRate": -1},
                {"tail": 5}):
        req = urllib.request.Request(f"http://{d.admin}/behaviour", data=json.dumps(bad).encode(), method="PUT")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        assert e.value.code == 400
    # Half the answers are 503 now.
    statuses = []
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{d.port}/", timeout=5) as r:
                statuses.append(r.status)
        except urllib.error.HTTPError as e:
            statuses.append(e.code)
    assert set(statuses) == {200, 503} and 60 < statuses.count(503) < 140, statuses.count(503)
    assert d.behave()["requests"] == 200  # counted at the backend
    # A latency tail: a share of the requests take longer.
    d.behave(latency="0ms", errorRate=0, tail="150ms", tailRate=0.25)
    took = []
    for _ in range(80):
        t0 = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{d.port}/", timeout=5) as r:
            r.read()
        took.append(time.monotonic() - t0)
    assert 5 <= sum(1 for t in took if t >= 0.15) <= 40, sorted(took)


def grpc_pair_config(good, bad, route_extra="", outlier="{enabled: false}"):
    """A listener routing to cluster g (HTTP/2) of a good and a bad gRPC
    instance, round robin (one worker: they alternate exactly)."""
    listeners = f"""  - name: public
    address: 127.0.0.1:0
    routes:
      - match: {{prefix: /}}
        cluster: g
{route_extra}"""
    text = simple_config({"g": [good.target, bad.target]}, workers=1, listeners=listeners, lb="round_robin",
                         outlier=outlier)
    return text.replace("  - name: g\n", "  - name: g\n    protocol: http2\n", 1)


def test_grpc_unavailable_is_retried_on_another_instance(weft):
    import grpc_peer as g
    good, bad = g.start_server(0, name="good"), g.start_server(0, name="bad", fail=14)
    try:
        # The default conditions (503, connect failures, resets) do not
        # include gRPC statuses: half the calls fail.
        w = weft(grpc_pair_config(good, bad))
        target = f"127.0.0.1:{w.ports['public']}"
        codes = [g.unary(target, b"q")["code"] for _ in range(20)]
        assert codes.count("UNAVAILABLE") == 10 and codes.count("OK") == 10, codes
        # Named in retry_on: every call is answered by the good instance.
        w = weft(grpc_pair_config(good, bad, "        retries: 2\n        retry_on: [unavailable]\n"))
        target = f"127.0.0.1:{w.ports['public']}"
        got = [g.unary(target, b"q") for _ in range(20)]
        assert all(r["code"] == "OK" and r["response"] == b"good:q" for r in got), got
        # (Round robin moves on for a retry's pick too: between every other
        # call and every call first reaches the bad instance.)
        assert 10 <= w.stat("weft_cluster_upstream_rq_retry_total", cluster="g") <= 20
        # A client stream's body is copied as it goes up and sent again.
        for _ in range(4):
            r = g.client_stream(target, [b"a" * 1000, b"b" * 1000, b"c"])
            assert r["code"] == "OK" and r["response"] == b"good:count=3,bytes=2001", r
        # A client stream still sending when the bad instance answers: what
        # came so far goes to the next instance from the copy, the rest as
        # it comes.
        for _ in range(2):
            r = g.client_stream(target, [b"a" * 100, b"b" * 100, b"c" * 100], gap_s=0.2)
            assert r["code"] == "OK" and r["response"] == b"good:count=3,bytes=300", r
        # Another status, not named: not retried.
        r = g.unary(target, b"q", metadata={"x-status": "13"})
        assert r["code"] == "INTERNAL", r
    finally:
        g.stop_server(good)
        g.stop_server(bad)


def test_grpc_calls_larger_than_the_retry_buffer_are_not_retried(weft):
    import grpc_peer as g
    good, bad = g.start_server(0, name="good"), g.start_server(0, name="bad", fail=14)
    try:
        text = grpc_pair_config(good, bad, "        retries: 2\n        retry_on: [unavailable]\n")
        text = text.replace("    address: 127.0.0.1:0\n    routes:",
                            "    address: 127.0.0.1:0\n    limits: {retry_buffer: 4096}\n    routes:", 1)
        w = weft(text)
        target = f"127.0.0.1:{w.ports['public']}"
        small = [g.unary(target, b"s" * 1000)["code"] for _ in range(6)]
        assert small == ["OK"] * 6, small
        # Over 4096 bytes: the call that reaches the bad instance fails as it answered.
        big = [g.unary(target, b"B" * 6000)["code"] for _ in range(6)]
        assert big.count("UNAVAILABLE") == 3 and big.count("OK") == 3, big
    finally:
        g.stop_server(good)
        g.stop_server(bad)


def test_outlier_detection_counts_grpc_statuses_in_trailers(weft):
    """A gRPC instance that answers every call with UNAVAILABLE in its
    trailers (HTTP 200) is failing: it is ejected after three in a row."""
    import grpc_peer as g
    good, bad = g.start_server(0, name="good"), g.start_server(0, name="bad", fail=14, fail_late=True)
    try:
        w = weft(grpc_pair_config(good, bad, outlier="{consecutive_5xx: 3, base_ejection_time: 30s}"))
        target = f"127.0.0.1:{w.ports['public']}"
        codes = [g.unary(target, b"q")["code"] for _ in range(30)]
        # Round robin: the bad instance's first three calls fail, then it is out.
        assert codes.count("UNAVAILABLE") == 3 and codes.count("OK") == 27, codes
        assert w.stat("weft_cluster_outlier_ejections_total", cluster="g", reason="consecutive_5xx") == 1
    finally:
        g.stop_server(good)
        g.stop_server(bad)


def test_a_put_with_a_body_is_retried_with_its_body(weft, backends, demos):
    """An idempotent request with a body is sent again, body and all, when
    an instance answers 503; a POST is not (it may have done its work)."""
    good, bad = backends("good"), demos("bad")
    bad.behave(errorRate=1.0, errorStatus=503)
    w = weft(simple_config({"c": [good.addr, f"127.0.0.1:{bad.port}"]}, workers=1, lb="round_robin",
                           outlier="{enabled: false}"))
    conn = http.client.HTTPConnection("127.0.0.1", w.ports["public"], timeout=10)
    body = bytes(range(256)) * 80  # 20480 bytes
    for _ in range(6):
        conn.request("PUT", "/sink", body=body, headers={"Content-Type": "application/octet-stream"})
        r = conn.getresponse()
        data = r.read()
        assert r.status == 200, (r.status, data[:200])
        got = json.loads(data)
        assert got["length"] == len(body) and got["sha256"] == hashlib.sha256(body).hexdigest(), got
    # (Round robin also moves on for a retry's pick: how many first went to
    # the bad instance depends on the order.)
    retried = w.stat("weft_cluster_upstream_rq_retry_total", cluster="c")
    assert 3 <= retried <= 6, retried
    # Chunked, the same.
    def chunks():
        for i in range(0, len(body), 5000):
            yield body[i:i + 5000]
    for _ in range(2):
        conn.request("PUT", "/sink", body=chunks(), encode_chunked=True)
        r = conn.getresponse()
        got = json.loads(r.read())
        assert r.status == 200 and got["length"] == len(body), got
    retried = w.stat("weft_cluster_upstream_rq_retry_total", cluster="c")
    statuses = []
    for _ in range(6):
        conn.request("POST", "/sink", body=body)
        r = conn.getresponse()
        r.read()
        statuses.append(r.status)
    assert statuses.count(503) == 3 and statuses.count(200) == 3, statuses
    assert w.stat("weft_cluster_upstream_rq_retry_total", cluster="c") == retried


def mirror_config(primary, mirror_addr, mirror):
    listeners = fault_listener(mirror, key="mirror")
    return simple_config({"c": [primary.addr], "m": [mirror_addr]}, workers=1, listeners=listeners)


def test_mirroring_copies_requests_with_their_bodies_and_the_answers_are_dropped(weft, backends):
    primary, shadow = backends("primary"), backends("shadow")
    w = weft(mirror_config(primary, shadow.addr, "{cluster: m}"))
    conn = http.client.HTTPConnection("127.0.0.1", w.ports["public"], timeout=10)
    for i in range(20):
        conn.request("GET", f"/echo?i={i}", headers={"Host": "reviews"})
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["backend"] == "primary"
    body = bytes(range(256)) * 40
    for _ in range(5):
        conn.request("PUT", "/sink", body=body, headers={"Host": "reviews"})
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["length"] == len(body)
    assert wait_for(lambda: shadow.stats()["requests"] >= 26, 5), shadow.stats()
    seen = shadow.stats()
    got = [s for s in seen["requests_seen"] if not s.startswith("GET /_stats")]
    # Each copy once (in any order: copies travel on connections of their own).
    assert sorted(got) == sorted([f"GET /echo?i={i}" for i in range(20)] + ["PUT /sink"] * 5), got
    assert set(h for h, s in zip(seen["hosts_seen"], seen["requests_seen"]) if not s.startswith("GET /_stats")) \
        == {"reviews-shadow"}, seen["hosts_seen"]
    assert wait_for(lambda: w.stat("weft_cluster_mirror_sent_total", cluster="m") == 25, 5)
    assert primary.stats()["requests"] == 25 + 1


def test_mirroring_takes_its_share_and_never_slows_or_fails_the_request(weft, backends, demos):
    primary = backends("primary")
    shadow = backends("shadow")
    # Half the requests.
    w = weft(mirror_config(primary, shadow.addr, "{cluster: m, percent: 50}"))
    codes = get_many(w.ports["public"], 400)
    assert codes.count(200) == 400
    assert wait_for(lambda: w.stat("weft_cluster_mirror_sent_total", cluster="m") > 0, 5)
    time.sleep(0.5)
    sent = w.stat("weft_cluster_mirror_sent_total", cluster="m")
    assert 150 <= sent <= 250, sent  # Binomial(400, 0.5): sd 10
    # A mirror that is down: the requests are answered as before; the copies fail, counted.
    dead = f"127.0.0.1:{free_port()}"
    w = weft(mirror_config(primary, dead, "{cluster: m}"))
    codes = get_many(w.ports["public"], 50)
    assert codes.count(200) == 50, codes
    assert wait_for(lambda: w.stat("weft_cluster_mirror_failed_total", cluster="m") == 50, 5)
    # A mirror that takes 2 s: the requests do not wait for it.
    slow = demos("slow")
    slow.behave(latency="2s")
    w = weft(mirror_config(primary, f"127.0.0.1:{slow.port}", "{cluster: m}"))
    conn = http.client.HTTPConnection("127.0.0.1", w.ports["public"], timeout=10)
    t0 = time.monotonic()
    for _ in range(10):
        conn.request("GET", "/echo")
        r = conn.getresponse()
        r.read()
        assert r.status == 200
    assert time.monotonic() - t0 < 1.0
    assert wait_for(lambda: w.stat("weft_cluster_mirror_sent_total", cluster="m") == 10, 10)


def test_mirrored_copies_in_flight_are_bounded(weft, backends, demos):
    """Over 256 copies in flight on a worker, more are dropped (counted);
    the requests themselves are all answered."""
    primary = backends("primary")
    slow = demos("slow")
    slow.behave(latency="3s")
    w = weft(mirror_config(primary, f"127.0.0.1:{slow.port}", "{cluster: m}"))
    codes = get_many(w.ports["public"], 300)
    assert codes.count(200) == 300
    assert w.stat("weft_cluster_mirror_dropped_total", cluster="m") == 300 - 256
    # A body over the copy buffer is not mirrored either.
    text = mirror_config(primary, f"127.0.0.1:{slow.port}", "{cluster: m}").replace(
        "    address: 127.0.0.1:0\n    routes:", "    address: 127.0.0.1:0\n    limits: {retry_buffer: 1024}\n    routes:", 1)
    w = weft(text)
    conn = http.client.HTTPConnection("127.0.0.1", w.ports["public"], timeout=10)
    conn.request("PUT", "/sink", body=b"x" * 4096)
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["length"] == 4096
    assert w.stat("weft_cluster_mirror_dropped_total", cluster="m") == 1


def test_route_manifest_mirror_reaches_the_sidecar(server, mesh_proxy, demos, backends):
    s, apps, up, px = mesh_with_three_reviews(server, mesh_proxy, demos, "{policy: round_robin}")
    shadow = backends("reviews-v2")
    s.register("node-v2", "reviews-v2", shadow.port, "reviews-v2-1")
    r = s.ctl("apply", "-f", "-", input="""kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
    - backends: [{service: reviews}]
      mirror: {service: reviews-v2, percent: 100}
""")
    assert r.returncode == 0, r.stderr
    rules = json.loads(s.ctl("get", "route", "reviews", "-o", "json").stdout)["spec"]["rules"]
    assert rules[0]["mirror"] == {"service": "reviews-v2", "percent": 100.0}, rules
    # The caller's sidecar gets a cluster for the mirror, and copies go to it.
    assert wait_for(lambda: len(px.endpoints("reviews-v2") or []) == 1, timeout=10), px.config()
    assert get_many(up, 20) == [200] * 20
    assert wait_for(lambda: shadow.stats()["requests"] >= 20, 5), shadow.stats()
    assert all(h.endswith("-shadow") for h in shadow.stats()["hosts_seen"][:20]), shadow.stats()["hosts_seen"]
    # Mirroring a service to itself, or a percent out of range: refused, naming the field.
    for bad, why in (("{service: reviews}", "spec.rules[0].mirror.service \"reviews\": the route's own service"),
                     ("{service: reviews-v2, percent: 0}", "spec.rules[0].mirror.percent"),
                     ("{service: reviews-v2, percent: 101}", "spec.rules[0].mirror.percent"),
                     ("{percent: 5}", "spec.rules[0].mirror.service: missing")):
        r = s.ctl("apply", "-f", "-", input=f"""kind: Route
metadata: {{name: reviews}}
spec:
  service: reviews
  rules:
    - backends: [{{service: reviews}}]
      mirror: {bad}
""")
        assert r.returncode == 1 and why in r.stderr, (bad, r.stderr)


def test_mirroring_copies_grpc_calls(weft):
    """gRPC calls (HTTP/2 both ways) are mirrored too, body included; the
    caller gets the primary's answer only."""
    import grpc_peer as g
    primary, shadow = g.start_server(0, name="primary"), g.start_server(0, name="shadow")
    try:
        listeners = """  - name: public
    address: 127.0.0.1:0
    routes:
      - match: {prefix: /}
        cluster: g
        mirror: {cluster: m}
"""
        text = simple_config({"g": [primary.target], "m": [shadow.target]}, workers=1, listeners=listeners)
        text = text.replace("  - name: g\n", "  - name: g\n    protocol: http2\n", 1)
        text = text.replace("  - name: m\n", "  - name: m\n    protocol: http2\n", 1)
        w = weft(text)
        target = f"127.0.0.1:{w.ports['public']}"
        for i in range(5):
            r = g.unary(target, f"q{i}".encode())
            assert r["code"] == "OK" and r["response"] == f"primary:q{i}".encode(), r
        r = g.client_stream(target, [b"a" * 100, b"b" * 100])
        assert r["code"] == "OK" and r["response"] == b"primary:count=2,bytes=200", r
        assert wait_for(lambda: w.stat("weft_cluster_mirror_sent_total", cluster="m") == 6, 5), \
            w.stat("weft_cluster_mirror_failed_total", cluster="m")
        assert w.stat("weft_cluster_mirror_failed_total", cluster="m") == 0
    finally:
        g.stop_server(primary)
        g.stop_server(shadow)


def hedge_config(first, second, hedge, budget=""):
    """Cluster c of two instances, round robin on one worker (requests
    alternate), outlier detection off, the route hedged as `hedge` says."""
    listeners = fault_listener(hedge, key="hedge")
    text = simple_config({"c": [first, second]}, workers=1, listeners=listeners, lb="round_robin",
                         outlier="{enabled: false}")
    if budget:
        text = text.replace("    connect_timeout: 500ms", f"    retry_budget: {budget}\n    connect_timeout: 500ms", 1)
    return text


def timed_gets(port, n, path="/echo"):
    """n sequential GETs on one keep-alive connection: [(status, seconds, JSON body or None)]."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    for i in range(n):
        t0 = time.monotonic()
        conn.request("GET", f"{path}?i={i}")
        r = conn.getresponse()
        data = r.read()
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        out.append((r.status, time.monotonic() - t0, body))
    return out


def test_a_hedge_answers_for_a_slow_instance_and_the_slow_attempt_is_cancelled(weft, backends, demos):
    fast, slow = backends("fast"), demos("slow")
    slow.behave(latency="3s")
    w = weft(hedge_config(fast.addr, f"127.0.0.1:{slow.port}", "{delay: 30ms}"))
    port = w.ports["public"]
    got = timed_gets(port, 20)
    assert all(s == 200 and b["backend"] == "fast" for s, _, b in got), [(s, b) for s, _, b in got]
    # Without the hedge, a request that first reached the slow instance
    # would wait 3 s; the hedge answered it about 30 ms in.
    assert max(t for _, t, _ in got) < 1.0, [round(t, 3) for _, t, _ in got]
    attempts = [dict((k.lower(), v) for k, v in b["headers"]).get("x-weft-attempt") for _, _, b in got]
    hedged = attempts.count("2")
    assert hedged >= 5 and attempts.count("1") + hedged == 20, attempts
    assert w.stat("weft_cluster_upstream_rq_hedge_total", cluster="c") == hedged
    assert w.stat("weft_cluster_upstream_rq_hedge_won_total", cluster="c") == hedged
    # The slow attempts were cancelled: their connections closed at once
    # instead of waiting out the 3 s (one pooled connection to the fast
    # instance stays).
    assert w.stat("weft_cluster_upstream_cx_active", cluster="c") <= 2
    assert slow.behave()["requests"] == hedged
    # A POST is not hedged (it may have done its work): one of two lands on
    # the slow instance and waits for it.
    slow.behave(latency="600ms")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    slowest = 0
    for _ in range(2):
        t0 = time.monotonic()
        conn.request("POST", "/sink", body=b"x" * 100)
        r = conn.getresponse()
        r.read()
        assert r.status == 200
        slowest = max(slowest, time.monotonic() - t0)
    assert slowest >= 0.6, slowest
    assert w.stat("weft_cluster_upstream_rq_hedge_total", cluster="c") == hedged


def test_hedges_are_withdrawn_from_the_retry_budget(weft, backends, demos):
    fast, slow = backends("fast"), demos("slow")
    slow.behave(latency="300ms")
    w = weft(hedge_config(fast.addr, f"127.0.0.1:{slow.port}", "{delay: 20ms}",
                          budget="{percent: 0, min_per_second: 0}"))
    got = timed_gets(w.ports["public"], 10)
    assert all(s == 200 for s, _, _ in got)
    # No budget, no hedge: the requests that reached the slow instance waited for it.
    assert sum(1 for _, t, _ in got if t >= 0.3) >= 4, [round(t, 3) for _, t, _ in got]
    assert w.stat("weft_cluster_upstream_rq_hedge_total", cluster="c") == 0
    assert w.stat("weft_cluster_upstream_rq_hedge_skipped_total", cluster="c") >= 4


def test_a_hedge_at_the_instances_p95_follows_what_it_learnt(weft, backends, demos):
    fast, turning = backends("fast"), demos("turning")
    w = weft(hedge_config(fast.addr, f"127.0.0.1:{turning.port}", "{delay: p95}"))
    port = w.ports["public"]
    # Both fast: each instance's p95 is learnt from its answers.
    assert all(s == 200 for s, _, _ in timed_gets(port, 80))
    # One turns slow: what goes to it is hedged at its p95 (a few ms), not
    # waited for.
    turning.behave(latency="2s")
    got = timed_gets(port, 20)
    assert all(s == 200 and b["backend"] == "fast" for s, _, b in got)
    assert max(t for _, t, _ in got) < 0.5, [round(t, 3) for _, t, _ in got]
    assert w.stat("weft_cluster_upstream_rq_hedge_won_total", cluster="c") >= 8


def test_a_hedge_the_policy_would_retry_does_not_win(weft, demos):
    slow, failing = demos("slow"), demos("failing")
    slow.behave(latency="300ms")
    failing.behave(errorRate=1.0, errorStatus=503)
    # No retries, so that each request's first attempt stays where round
    # robin put it (a retry's pick moves round robin on too).
    text = hedge_config(f"127.0.0.1:{slow.port}", f"127.0.0.1:{failing.port}", "{delay: 30ms}")
    w = weft(text.replace("        hedge:", "        retries: 0\n        hedge:", 1))
    got = timed_gets(w.ports["public"], 8, path="/")
    # Round robin alternates, and each hedge's pick moves it on as well: a
    # request that starts at the failing instance gets its 503 (at most the
    # first), every other starts at the slow one and is hedged to the
    # failing one. The hedge's 503 is an answer the policy would retry: it
    # does not win; the slow instance's 200 is waited for.
    statuses = [s for s, _, _ in got]
    assert statuses[1:] == [200] * 7 and statuses[0] in (200, 503), got
    assert all(t >= 0.3 for s, t, _ in got if s == 200), [round(t, 3) for _, t, _ in got]
    assert w.stat("weft_cluster_upstream_rq_hedge_total", cluster="c") == statuses.count(200)
    assert w.stat("weft_cluster_upstream_rq_hedge_won_total", cluster="c") == 0
    assert failing.behave()["requests"] == 8


def test_grpc_calls_are_hedged(weft):
    import grpc_peer as g
    good, slow = g.start_server(0, name="good"), g.start_server(0, name="slow", head_delay_ms=3000)
    try:
        w = weft(grpc_pair_config(good, slow, "        hedge: {delay: 50ms}\n"))
        target = f"127.0.0.1:{w.ports['public']}"
        for _ in range(8):
            t0 = time.monotonic()
            r = g.unary(target, b"q", timeout=10)
            assert r["code"] == "OK" and r["response"] == b"good:q", r
            assert time.monotonic() - t0 < 1.0
        assert w.stat("weft_cluster_upstream_rq_hedge_won_total", cluster="g") >= 3
    finally:
        g.stop_server(good)
        g.stop_server(slow)


def test_a_traffic_policy_hedge_reaches_the_sidecar(server, mesh_proxy, demos):
    s, apps, up, px = mesh_with_three_reviews(server, mesh_proxy, demos, "{policy: round_robin}",
                                              "  retries: {hedge: {delay: 40ms}}\n")
    route = next(r for lst in px.config()["listeners"] for r in lst.get("routes", []) if "reviews" in json.dumps(r))
    assert route["hedge"] == {"delay_ms": 40}, route
    shown = s.ctl("get", "trafficpolicy", "reviews", "-o", "json")
    assert shown.returncode == 0 and '"hedge"' in shown.stdout and "40ms" in shown.stdout, shown.stdout
    apps[2].behave(latency="2s")
    got = timed_gets(up, 15, path="/")
    assert all(st == 200 for st, _, _ in got)
    assert max(t for _, t, _ in got) < 1.0, [round(t, 3) for _, t, _ in got]
    assert sidecar_stat(px, "weft_cluster_upstream_rq_hedge_won_total") >= 3
