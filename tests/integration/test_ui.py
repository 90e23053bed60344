"""The web dashboard (/ui/) in a real browser: Debian's Chromium driven by
puppeteer-core (node_ui/), against the quickstart mesh run by `weft up`,
plus `weft tap` and `weft top` against the same mesh. Screenshots of each
page land in ui-screenshots/ beside the weft binary."""
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import terminate, wait_for
from test_acl import new_token, policy
from test_up import quickstart_file
from ui_browser import Browser

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVICES = ["catalog", "frontend", "ratings", "reviews-v1", "reviews-v2"]
EDGES = [("loadgen", "frontend"), ("frontend", "catalog"), ("frontend", "reviews-v1"),
         ("frontend", "reviews-v2"), ("reviews-v1", "ratings"), ("reviews-v2", "ratings")]
ALL_V2 = """kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
    - backends: [{service: reviews-v1, weight: 0}, {service: reviews-v2, weight: 100}]
"""
HALF_FAIL = ALL_V2 + "      fault: {abort: {httpStatus: 503, percent: 50}}\n"
# Every request traced (the collector address answers nothing: spans are
# dropped and counted), so that tap rows carry trace ids.
TRACE_ALL = """kind: Telemetry
metadata: {name: mesh}
spec:
  service: "*"
  tracing: {sampling: 1.0, otlp: "http://127.0.0.1:9/v1/traces"}
"""


class Mesh:
    def __init__(self, weft_bin, tmp):
        self.weft_bin = weft_bin
        path, self.api, self.base = quickstart_file(tmp)
        self.url = "http://" + self.api
        self.agent = "http://" + re.search(r"agent: \{http: ([\d.:]+)", open(path).read()).group(1)
        self.out = open(os.path.join(str(tmp), "up.out"), "w+")
        self.p = subprocess.Popen([weft_bin, "up", path, "--duration", "600s", "--dir", str(tmp / "up")],
                                  stdout=self.out, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: "try: " in self.text() or self.p.poll() is not None, timeout=90, step=0.2)
        assert self.p.poll() is None and "try: " in self.text(), self.text()

    def text(self):
        self.out.flush()
        with open(self.out.name) as f:
            return f.read()

    def ctl(self, *args, input=None, timeout=60):
        return subprocess.run([self.weft_bin, *args, "--server", self.url], input=input,
                              capture_output=True, text=True, timeout=timeout)

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return r.status, r.headers, r.read()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                terminate(self.p)
        self.out.close()


@pytest.fixture(scope="module")
def mesh(weft_bin, tmp_path_factory):
    m = Mesh(weft_bin, tmp_path_factory.mktemp("ui"))
    yield m
    m.stop()


@pytest.fixture(scope="module")
def shots(weft_bin):
    d = os.path.join(os.path.dirname(os.path.abspath(weft_bin)), "ui-screenshots")
    os.makedirs(d, exist_ok=True)
    return d


def shot(b, shots, name):
    path = os.path.join(shots, name + ".png")
    b.screenshot(path, full_page=False)
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000, (path, len(data))


def no_console_errors(b):
    msgs = b.console()
    assert msgs == [], msgs


def open_page(b, mesh, page, timeout_ms=10000):
    b.goto(f"{mesh.url}/ui/#/{page}")
    b.wait('body[data-loaded="1"]', timeout_ms)


def test_weft_up_prints_the_dashboard_and_serves_it_from_the_binary(mesh):
    assert re.search(rf"dashboard\s+http://{re.escape(mesh.api)}/ui/", mesh.text()), mesh.text()
    status, headers, body = mesh.get("/ui/")
    assert status == 200 and b"/ui/app.js" in body and headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
    # The page weight: JavaScript and CSS together under 300 KB.
    js = mesh.get("/ui/app.js")[2]
    css = mesh.get("/ui/app.css")[2]
    assert len(js) + len(css) < 300 * 1024, (len(js), len(css))
    # What the binary serves is the source tree's ui/ (built in, no install).
    assert js == open(os.path.join(ROOT, "ui", "app.js"), "rb").read()
    # Revalidation answers 304 with no body.
    etag = mesh.get("/ui/app.js")[1]["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{16}"', etag), etag
    req = urllib.request.Request(mesh.url + "/ui/app.js", headers={"If-None-Match": etag})
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("expected 304")
    except urllib.error.HTTPError as e:
        assert e.code == 304
    # A file that is not there.
    try:
        mesh.get("/ui/nothing.js")
        raise AssertionError("expected 404")
    except urllib.error.HTTPError as e:
        assert e.code == 404


def test_topology_agrees_with_weft_stat_and_every_page_loads_clean(mesh, shots):
    with Browser() as b:
        b.goto(f"{mesh.url}/ui/")
        b.wait('body[data-loaded="1"]', 10000)
        first = float(b.eval("document.body.dataset.firstLoadedMs"))
        # The first page, its data drawn, in under a second.
        assert first < 1000, first
        b.wait("svg#topology g.edge", 5000)
        time.sleep(4.5)  # two refreshes: rates over a full interval
        r = mesh.ctl("stat", "-o", "json", "--window", "2s")
        assert r.returncode == 0, r.stderr
        stat = {row["service"]: row for row in json.loads(r.stdout)}
        nodes = b.eval("""Object.fromEntries([...document.querySelectorAll('svg#topology g.node')]
                          .map(n => [n.dataset.service, {rps: parseFloat(n.dataset.rps),
                                                         bad: n.classList.contains('bad')}]))""")
        edges = b.eval("""[...document.querySelectorAll('svg#topology g.edge')].map(e => ({
                          s: e.dataset.source, d: e.dataset.destination, rps: parseFloat(e.dataset.rps),
                          success: parseFloat(e.dataset.success), p99: parseFloat(e.dataset.p99),
                          bad: e.classList.contains('bad'), label: e.textContent}))""")
        assert set(SERVICES) <= set(nodes), nodes
        assert {(e["s"], e["d"]) for e in edges} == set(EDGES), edges
        # The same numbers as `weft stat` (each over its own couple of
        # seconds of 50 requests/s).
        for svc in SERVICES:
            want, got = stat[svc]["rps"], nodes[svc]["rps"]
            assert abs(want - got) <= max(8, 0.3 * want), (svc, want, got)
        by_edge = {(e["s"], e["d"]): e for e in edges}
        for (s, d), e in by_edge.items():
            if d in stat and s != "reviews-v1" and s != "reviews-v2":
                # frontend is catalog's and reviews-*'s only caller.
                assert abs(stat[d]["rps"] - e["rps"]) <= max(8, 0.3 * stat[d]["rps"]), (s, d, e, stat[d])
            assert re.search(r"[\d.]+ rps", e["label"]), e
        assert by_edge[("frontend", "catalog")]["success"] >= 0.99
        assert not by_edge[("frontend", "catalog")]["bad"]
        assert 0 < by_edge[("frontend", "catalog")]["p99"] < 1000
        no_console_errors(b)
        shot(b, shots, "topology")

        open_page(b, mesh, "services")
        rows = b.eval("[...document.querySelectorAll('table#services tr[data-service]')].map(r => r.dataset.service)")
        assert set(SERVICES) <= set(rows), rows
        assert b.eval("document.querySelectorAll('table#services svg.spark polyline').length") >= len(SERVICES)
        no_console_errors(b)
        shot(b, shots, "services")

        open_page(b, mesh, "service/frontend")
        b.wait("section#sidecars tr[data-sidecar]", 5000)
        side = b.eval("document.querySelector('section#sidecars').innerText")
        assert "spiffe://weft.local/ns/default/sa/frontend" in side and "acked" in side, side
        inst = b.eval("document.querySelector('section#instances').innerText")
        assert "passing" in inst, inst
        no_console_errors(b)
        shot(b, shots, "service")

        open_page(b, mesh, "config")
        kinds = b.eval("[...document.querySelectorAll('pre.manifest')].map(p => p.dataset.kind + '/' + p.dataset.name)")
        assert {"Service/reviews", "Route/reviews", "AuthorizationPolicy/ratings"} <= set(kinds), kinds
        yaml_text = b.eval("document.querySelector('pre.manifest[data-kind=Route][data-name=reviews]').textContent")
        assert "kind: Route" in yaml_text and "weight: 90" in yaml_text, yaml_text
        no_console_errors(b)
        shot(b, shots, "config")


def test_a_route_change_applied_with_weft_apply_shows_up(mesh, shots):
    with Browser() as b:
        open_page(b, mesh, "topology")
        r = mesh.ctl("apply", "-f", "-", input=ALL_V2)
        assert r.returncode == 0, r.stdout + r.stderr
        try:
            def shifted():
                e = b.eval("""Object.fromEntries([...document.querySelectorAll('svg#topology g.edge')]
                              .map(e => [e.dataset.source + '>' + e.dataset.destination, parseFloat(e.dataset.rps)]))""")
                return e.get("frontend>reviews-v2", 0) > 30 and e.get("frontend>reviews-v1", 0) < 5 and e
            assert wait_for(shifted, timeout=20, step=0.5)
            # Half the calls fail: the edge turns red.
            r = mesh.ctl("apply", "-f", "-", input=HALF_FAIL)
            assert r.returncode == 0, r.stdout + r.stderr

            def red():
                e = b.eval("""(() => { const e = document.querySelector(
                              'svg#topology g.edge[data-source=frontend][data-destination=reviews-v2]');
                              return e && {bad: e.classList.contains('bad'), success: parseFloat(e.dataset.success)}; })()""")
                return e and e["bad"] and 0.3 < e["success"] < 0.7 and e
            assert wait_for(red, timeout=20, step=0.5)
            assert not b.eval("document.querySelector('svg#topology g.edge[data-source=frontend][data-destination=catalog]').classList.contains('bad')")
            shot(b, shots, "topology-failing")
            open_page(b, mesh, "config")
            yaml_text = b.eval("document.querySelector('pre.manifest[data-kind=Route][data-name=reviews]').textContent")
            assert "weight: 100" in yaml_text and "weight: 90" not in yaml_text, yaml_text
            assert "httpStatus: 503" in yaml_text, yaml_text
            open_page(b, mesh, "service/reviews-v2")
            b.wait("section#config pre.manifest[data-kind=Route][data-name=reviews]", 5000)
            no_console_errors(b)
        finally:
            back = open(os.path.join(ROOT, "examples", "quickstart.yaml")).read().split("---\n")
            route = next(d for d in back if d.startswith("kind: Route"))
            assert mesh.ctl("apply", "-f", "-", input=route).returncode == 0


def test_tap_in_the_browser_shows_requests_with_their_trace_ids(mesh, shots):
    r = mesh.ctl("apply", "-f", "-", input=TRACE_ALL)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        with Browser() as b:
            open_page(b, mesh, "tap?service=frontend")
            b.wait("table#tap tr.event", 10000)
            # Rows carry a trace id once the sidecars trace everything.
            def traced():
                ids = b.eval("[...document.querySelectorAll('table#tap tr.event')].map(r => r.dataset.traceId)")
                return [i for i in ids if re.fullmatch(r"[0-9a-f]{32}", i or "")]
            assert wait_for(traced, timeout=15, step=0.5)
            rows = b.eval("""[...document.querySelectorAll('table#tap tr.event')].slice(0, 50)
                             .map(r => [r.dataset.path, r.dataset.status])""")
            assert all(p in ("/", "/items", "/reviews/1") for p, _ in rows), rows
            assert any(s == "200" for _, s in rows), rows
            # Filtered: only what the filter names.
            b.goto(f"{mesh.url}/ui/#/tap?service=frontend&path=/items")
            b.wait("table#tap tr.event", 10000)
            time.sleep(1.5)
            paths = set(b.eval("[...document.querySelectorAll('table#tap tr.event')].map(r => r.dataset.path)"))
            assert paths == {"/items"}, paths
            no_console_errors(b)
            shot(b, shots, "tap")
    finally:
        assert mesh.ctl("delete", "Telemetry", "mesh").returncode == 0


def test_weft_tap_and_top_on_the_command_line(mesh):
    r = mesh.ctl("tap", "frontend", "--max", "20", "-o", "json", timeout=30)
    assert r.returncode == 0, r.stderr
    events = [json.loads(l) for l in r.stdout.splitlines()]
    assert len(events) == 20, r.stdout
    # reviews-v2 answers 2 % of its requests with 500 (and frontend answers
    # those calls with a 5xx of its own).
    assert sum(ev["status"] == 200 for ev in events) >= 15, events
    for ev in events:
        assert ev["direction"] in ("inbound", "outbound") and (ev["status"] == 200 or ev["status"] >= 500), ev
        if ev["direction"] == "inbound":
            assert ev["source"] == "spiffe://weft.local/ns/default/sa/loadgen" and ev["destination"] == "frontend", ev
        else:
            assert ev["source"] == "frontend" and ev["destination"] in ("catalog", "reviews-v1", "reviews-v2"), ev
        assert ev["duration_ms"] > 0 and ev["method"] == "GET", ev
    r = mesh.ctl("tap", "frontend", "--max", "5", "-o", "json", "--path", "/reviews", "--method", "GET", timeout=30)
    assert r.returncode == 0, r.stderr
    assert {json.loads(l)["path"] for l in r.stdout.splitlines()} == {"/reviews/1"}, r.stdout
    r = mesh.ctl("tap", "frontend", "--max", "3", timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("TIME"), r.stdout + r.stderr
    assert len(r.stdout.splitlines()) == 4 and "loadgen -> frontend" in r.stdout or "frontend -> " in r.stdout, r.stdout
    r = mesh.ctl("tap", "nosuch", "--max", "1", timeout=30)
    assert r.returncode != 0 and "no sidecar of service nosuch" in r.stderr, r.stderr

    # top: the busiest paths, sorted, as callees saw them.
    r = mesh.ctl("top", "--duration", "4s", "-o", "json", timeout=30)
    assert r.returncode == 0, r.stderr
    frames = [json.loads(l) for l in r.stdout.splitlines()]
    last = frames[-1]["paths"]
    assert [p["rps"] for p in last] == sorted((p["rps"] for p in last), reverse=True), last
    got = {(p["destination"], p["path"]): p for p in last}
    assert ("frontend", "/") in got and ("catalog", "/items") in got and ("ratings", "/ratings/1") in got, got
    # The sidecars' budget (100 events/s each) leaves requests out: the
    # rates are scaled back up, near the 50/s the loadgen sends.
    assert 25 < got[("frontend", "/")]["rps"] < 80, got[("frontend", "/")]
    assert got[("catalog", "/items")]["success"] == 1.0
    r = mesh.ctl("top", "frontend", "--duration", "3s", timeout=30)
    assert r.returncode == 0 and "weft top frontend" in r.stdout and "/items" in r.stdout, r.stdout + r.stderr


def test_a_read_token_entered_once_and_never_shown(server, shots):
    s = server()
    s.register("n1", "web", 80, "web-1")
    s.register("n1", "db", 5432, "db-1")
    assert s.ctl("apply", "-f", "-", input="kind: Route\nmetadata: {name: web}\nspec:\n  service: web\n"
                 "  rules:\n    - backends: [{service: web, weight: 100}]\n").returncode == 0
    policy(s, "web-reader", {"service": {"web": {"policy": "read"}}, "config_prefix": {"": {"policy": "read"}}})
    secret, _ = new_token(s, "web-reader")
    url = f"http://127.0.0.1:{s.http_port}"
    with Browser() as b:
        # A token the server does not know: the dashboard says so and asks.
        b.goto(f"{url}/ui/")
        b.set_local_storage("weft-token", "00000000-0000-4000-8000-00000000dead")
        b.goto(f"{url}/ui/#/config")
        b.wait("form#token-form input#token", 10000, visible=True)
        assert "ACL not found" in b.eval("document.querySelector('#error').innerText")
        assert {m["type"] for m in b.console()} <= {"error", "response"}  # the browser's own 403 lines
        b.type("input#token", "", clear=True)
        b.click("button#token-save")  # empty: forgets the stored token
        # Anonymous: the config's entries are not for it to read.
        b.goto(f"{url}/ui/#/config")
        b.wait('body[data-loaded="1"]', 10000)
        assert b.eval("document.querySelectorAll('pre.manifest').length") == 0
        b.click("#token-button")
        b.wait("form#token-form input#token", 10000, visible=True)
        b.type("input#token", secret)
        b.click("button#token-save")
        b.wait("pre.manifest[data-kind=Route][data-name=web]", 10000)
        # Entered once: a new visit has it.
        b.goto(f"{url}/ui/#/services")
        b.wait('body[data-loaded="1"]', 10000)
        rows = b.eval("[...document.querySelectorAll('table#services tr[data-service]')].map(r => r.dataset.service)")
        # db is not this token's to read.
        assert rows == ["web"], rows
        html = b.eval("document.documentElement.outerHTML")
        assert secret not in html and secret not in b.eval("document.body.innerText")
        no_console_errors(b)
        shot(b, shots, "token")
        # A tap of a service the token may not read is refused.
        status = b.eval(f"""fetch('/v1/ui/tap?service=db', {{headers: {{'X-Consul-Token': {json.dumps(secret)}}}}})
                           .then(r => r.status)""")
        assert status == 403


def test_the_agent_serves_the_dashboard_for_its_node(mesh):
    with urllib.request.urlopen(mesh.agent + "/ui/", timeout=10) as r:
        assert r.status == 200 and b"/ui/app.js" in r.read()
    def overview():
        with urllib.request.urlopen(mesh.agent + "/v1/ui/overview", timeout=10) as r:
            o = json.loads(r.read())
        return {e["source"] + ">" + e["destination"] for e in o["edges"]} >= {"loadgen>frontend", "frontend>catalog"} and o
    o = wait_for(overview, timeout=10, step=0.5)
    assert {s["service"] for s in o["sidecars"]} == set(SERVICES) | {"loadgen"}, o["sidecars"]
    assert all(s["reachable"] and s["spiffe_id"].startswith("spiffe://weft.local/") for s in o["sidecars"]), o
    # Its tap shows requests' paths and callers: the agent's own token only.
    try:
        urllib.request.urlopen(mesh.agent + "/v1/ui/tap?service=frontend", timeout=10)
        raise AssertionError("expected 403")
    except urllib.error.HTTPError as e:
        assert e.code == 403 and "agent" in e.read().decode()


def test_the_dashboards_api_refuses_what_it_cannot_honour(server):
    s = server()
    for path, code, why in (("/v1/ui/tap", 400, "service=NAME is required"),
                            ("/v1/ui/tap?service=web&route=" + "r" * 300, 400, "too long"),
                            ("/v1/ui/tap?service=web&since=later", 400, "since"),
                            ("/v1/ui/nothing", 404, "overview, tap"),
                            ("/v1/ui/overview?history=2", 400, "history=0 or history=1")):
        status, _, body = s.request("GET", path)
        assert status == code and why in body, (path, status, body)
    status, _, body = s.request("PUT", "/v1/ui/overview", {})
    assert status == 405, body
    # Anonymous: the overview is filtered, a tap is the service's readers'.
    s.register("n1", "web", 80, "web-1")
    status, _, body = s.request("GET", "/v1/ui/overview", token="")
    assert status == 200 and [x["name"] for x in json.loads(body)["services"]] == ["web"], body
    assert json.loads(body)["services"][0]["history"] == []
    status, _, body = s.request("GET", "/v1/ui/overview?history=0", token="")
    assert status == 200 and "history" not in json.loads(body)["services"][0], body
