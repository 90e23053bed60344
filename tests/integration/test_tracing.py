"""Distributed tracing through weft's sidecars: W3C trace context (and B3)
carried upstream, head sampling, a server span per exchange and a client
span per upstream attempt exported over OTLP/HTTP. The collector is
node_otel/collector.js, which decodes OTLP/protobuf with OpenTelemetry's
own generated decoder (not code written here); the applications in the
mesh test are traced with the OpenTelemetry JS SDK."""
import http.client
import json
import os
import re
import subprocess
import time

import pytest

from conftest import free_port, require, simple_config, wait_for, wait_port
from test_mtls import get
from otel_peer import (KIND_CLIENT, KIND_SERVER, STATUS_ERROR, Collector, by_trace,
                       ensure_node_otel, run_client, span_by_id, start_app, traceparent)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "dashboards", "weft-grafana.json")
# Families that appear with their first event (checked where one happens).
FIRST_EVENT_FAMILIES = {"weft_route_grpc_total", "weft_golden_grpc_total"}


def dashboard_queries():
    """(panel title, PromQL) of the Grafana dashboard, its variables filled
    in as Grafana would for "All"."""
    d = json.load(open(DASHBOARD))
    out = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"].replace("$instance", ".*").replace("$__rate_interval", "1m")))
    return out


def dashboard_metrics():
    return {m for _, q in dashboard_queries() for m in re.findall(r"\bweft_[a-z0-9_]+", q)}
PARENT = "00f067aa0ba902b7"


@pytest.fixture
def collector():
    ensure_node_otel()
    made = []

    def make(**kw):
        c = Collector(**kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def traced_config(backend_addrs, otlp, sampling=1.0, fmt="protobuf", log=None, lb=None):
    tracing = (f"tracing: {{sampling: {sampling}, otlp: '{otlp}', format: {fmt}, "
               f"service_name: front}}\n")
    listener = f"    access_log: {log}\n" if log else ""
    return tracing + simple_config({"b": backend_addrs}, extra_listener=listener, lb=lb)


def upstream_headers(body):
    """The headers backend.py saw, lower-cased names."""
    return {k.lower(): v for k, v in json.loads(body)["headers"]}


def attrs(span):
    return span["attributes"]


def by_sidecar(span):
    """Whether a sidecar recorded the span (weft's own attributes)."""
    return any(k.startswith("weft.") for k in attrs(span))


def test_a_sidecar_continues_the_callers_trace_and_records_its_spans(weft, backends, collector, tmp_path):
    col = collector()
    b = backends("b")
    log = tmp_path / "access.log"
    w = weft(traced_config([b.addr], col.url, log=str(log)))
    status, body = get(w.ports["public"], "/echo?q=1",
                       {"traceparent": traceparent(TRACE, PARENT), "tracestate": "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"})
    assert status == 200, body
    seen = upstream_headers(body)
    # Upstream: the same trace, our client span as the parent, sampled; the
    # caller's tracestate as it came (normalised).
    version, trace_id, parent_id, flags = seen["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE, "01"), seen
    assert parent_id != PARENT
    assert seen["tracestate"] == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    spans = col.wait_spans(2)
    assert len(spans) == 2, spans
    server = next(s for s in spans if s["kind"] == KIND_SERVER)
    client = next(s for s in spans if s["kind"] == KIND_CLIENT)
    assert server["traceId"] == client["traceId"] == TRACE
    assert server["parentSpanId"] == PARENT
    assert client["parentSpanId"] == server["spanId"]
    assert client["spanId"] == parent_id  # the next hop hangs from the attempt
    assert server["service"] == client["service"] == "front"
    assert server["format"] == "protobuf"
    assert server["traceState"] == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    assert server["name"] == "GET /"
    a = attrs(server)
    assert a["http.request.method"] == "GET" and a["url.path"] == "/echo"
    assert a["http.response.status_code"] == 200 and a["http.route"] == "/"
    assert a["weft.listener"] == "public" and a["weft.response_flags"] == "-"
    assert a["weft.attempts"] == 1 and a["network.protocol.version"] == "1.1"
    c = attrs(client)
    assert c["server.address"] == "127.0.0.1" and c["server.port"] == b.port
    assert c["http.response.status_code"] == 200 and c["weft.attempt"] == 1
    assert c["weft.cluster"] == "b" and "http.request.resend_count" not in c
    assert int(server["startNs"]) <= int(client["startNs"]) <= int(client["endNs"]) <= int(server["endNs"])
    # Wall-clock times: within a minute of now.
    assert abs(int(server["startNs"]) / 1e9 - time.time()) < 60
    # The access log carries the trace id.
    assert wait_for(lambda: log.exists() and log.read_text().strip(), 5)
    assert json.loads(log.read_text().splitlines()[-1])["trace_id"] == TRACE
    assert w.stat("weft_tracing_spans_total", result="exported") == 2


def test_b3_headers_are_translated_and_passed_on_in_their_form(weft, backends, collector):
    col = collector()
    b = backends("b")
    w = weft(traced_config([b.addr], col.url, sampling=0))
    # Single header, a 64-bit trace id, sampled: recorded although the rate is 0.
    status, body = get(w.ports["public"], headers={"b3": f"a3ce929d0e0e4736-{PARENT}-1"})
    assert status == 200
    seen = upstream_headers(body)
    _, trace_id, span_id, flags = seen["traceparent"].split("-")
    assert trace_id == "0000000000000000a3ce929d0e0e4736" and flags == "01"
    assert seen["b3"] == f"{trace_id}-{span_id}-1"
    # Multi headers, not sampled: passed on unchanged (not recorded).
    status, body = get(w.ports["public"], headers={"X-B3-TraceId": TRACE, "X-B3-SpanId": PARENT,
                                                   "X-B3-Sampled": "0"})
    seen = upstream_headers(body)
    assert seen["traceparent"] == traceparent(TRACE, PARENT, sampled=False)
    assert (seen["x-b3-traceid"], seen["x-b3-spanid"], seen["x-b3-sampled"]) == (TRACE, PARENT, "0")
    # The caller's own headers do not also pass: one of each.
    assert sum(1 for k, _ in json.loads(body)["headers"] if k.lower() == "x-b3-traceid") == 1
    spans = col.wait_spans(2)
    time.sleep(1.5)  # a flush interval: the unsampled request left nothing
    spans = col.spans()
    assert {s["traceId"] for s in spans} == {"0000000000000000a3ce929d0e0e4736"}, spans
    server = next(s for s in spans if s["kind"] == KIND_SERVER)
    assert server["parentSpanId"] == PARENT


def test_a_request_without_context_starts_a_trace_the_next_hop_can_follow(weft, backends, collector):
    col = collector()
    b = backends("b")
    w = weft(traced_config([b.addr], col.url, sampling=0))
    # Not sampled at rate 0: a new trace id goes on, with flags 00.
    status, body = get(w.ports["public"])
    assert status == 200
    tp = upstream_headers(body)["traceparent"]
    assert tp.startswith("00-") and tp.endswith("-00") and len(tp) == 55, tp
    # A garbled traceparent is dropped for a new trace, not passed on.
    status, body = get(w.ports["public"], headers={"traceparent": "00-XYZ-abc-01"})
    tp2 = upstream_headers(body)["traceparent"]
    assert tp2 != "00-XYZ-abc-01" and tp2.split("-")[1] != tp.split("-")[1]
    time.sleep(1.5)
    assert col.spans() == []
    assert w.stat("weft_tracing_spans_total", result="exported") == 0


def test_each_attempt_is_a_client_span(weft, backends, collector):
    col = collector()
    b = backends("b")
    dead = f"127.0.0.1:{free_port()}"
    # Round robin over a closed port and the backend: every other request
    # is refused on its first attempt and retried on the backend.
    w = weft(traced_config([dead, b.addr], col.url, lb="round_robin"))
    for _ in range(4):
        assert get(w.ports["public"])[0] == 200
    spans = col.wait_spans(lambda s: len([x for x in s if x["kind"] == KIND_SERVER]) == 4)
    retried = [t for t in by_trace(spans).values() if len(t) == 3]
    assert retried, spans
    t = retried[0]
    server = next(s for s in t if s["kind"] == KIND_SERVER)
    first, second = sorted((s for s in t if s["kind"] == KIND_CLIENT), key=lambda s: int(s["startNs"]))
    assert first["parentSpanId"] == second["parentSpanId"] == server["spanId"]
    assert attrs(first)["weft.attempt"] == 1 and attrs(first)["error.type"]
    assert first["statusCode"] == STATUS_ERROR and "http.response.status_code" not in attrs(first)
    assert attrs(second)["weft.attempt"] == 2 and attrs(second)["http.request.resend_count"] == 1
    assert attrs(second)["http.response.status_code"] == 200
    assert attrs(second)["server.port"] == b.port
    assert attrs(server)["weft.attempts"] == 2


def test_a_hedge_is_a_client_span_of_its_own(weft, backends, collector):
    col = collector()
    b1, b2 = backends("b1"), backends("b2")
    cfg = traced_config([b1.addr, b2.addr], col.url, lb="round_robin")
    cfg = cfg.replace("        cluster: b\n", "        cluster: b\n        hedge: {delay: 50ms}\n", 1)
    w = weft(cfg)
    # Every instance takes 300 ms: after 50 ms a hedge goes to the other.
    # One answers first; the other attempt is cancelled.
    status, body = get(w.ports["public"], "/sleep/300", {"traceparent": traceparent(TRACE, PARENT)})
    assert status == 200, body
    spans = col.wait_spans(3)
    server = next(x for x in spans if x["kind"] == KIND_SERVER)
    clients = sorted((x for x in spans if x["kind"] == KIND_CLIENT), key=lambda x: int(x["startNs"]))
    assert len(clients) == 2 and all(c["parentSpanId"] == server["spanId"] for c in clients), spans
    first, hedge = clients
    assert "weft.hedge" not in attrs(first) and attrs(hedge)["weft.hedge"] is True
    assert attrs(hedge)["weft.attempt"] == 2 and attrs(server)["weft.attempts"] == 2
    assert int(hedge["startNs"]) - int(first["startNs"]) >= 45_000_000
    # One was relayed (its status), the other cancelled.
    outcomes = sorted(str((attrs(c).get("http.response.status_code"), attrs(c).get("error.type")))
                      for c in clients)
    assert outcomes == sorted([str((200, None)), str((None, "cancelled"))]), outcomes
    assert {attrs(c)["server.port"] for c in clients} == {b1.port, b2.port}


def test_grpc_calls_carry_their_status_per_attempt(weft, collector):
    import grpc_peer as g
    from test_resilience import grpc_pair_config
    col = collector()
    good, bad = g.start_server(0, name="good"), g.start_server(0, name="bad", fail=14)
    try:
        cfg = grpc_pair_config(good, bad, "        retry_on: [unavailable]\n        retries: 1\n")
        w = weft(f"tracing: {{sampling: 1, otlp: '{col.url}', service_name: front}}\n" + cfg)
        target = f"127.0.0.1:{w.ports['public']}"
        for _ in range(2):  # round robin: one of the two starts on the failing instance
            r = g.unary(target, b"q", timeout=10)
            assert r["code"] == "OK", r
        spans = col.wait_spans(lambda s: len([x for x in s if x["kind"] == KIND_SERVER]) == 2)
        t = next(t for t in by_trace(spans).values() if len(t) == 3)
        server = next(x for x in t if x["kind"] == KIND_SERVER)
        first, second = sorted((x for x in t if x["kind"] == KIND_CLIENT), key=lambda x: int(x["startNs"]))
        assert attrs(server)["rpc.system"] == "grpc" and attrs(server)["rpc.grpc.status_code"] == 0
        assert server["statusCode"] != STATUS_ERROR
        assert attrs(first)["rpc.grpc.status_code"] == 14 and first["statusCode"] == STATUS_ERROR
        assert attrs(first)["http.response.status_code"] == 200  # as it came: trailers-only
        assert attrs(second)["rpc.grpc.status_code"] == 0 and second["statusCode"] != STATUS_ERROR
        assert attrs(server)["network.protocol.version"] == "2"
        assert FIRST_EVENT_FAMILIES <= set(re.findall(r"^(weft_[a-z0-9_]+)", w.admin("/stats")[1], re.M))
    finally:
        g.stop_server(good)
        g.stop_server(bad)


def test_an_exchange_the_client_abandons_still_has_its_spans(weft, backends, collector):
    import socket
    col = collector()
    b = backends("b")
    w = weft(traced_config([b.addr], col.url))
    # Half a body, then gone: the attempt had gone upstream (naming its
    # span), so its spans are recorded although the exchange never ended.
    s = socket.create_connection(("127.0.0.1", w.ports["public"]))
    s.sendall(f"POST /sink HTTP/1.1\r\nhost: x\r\ntraceparent: {traceparent(TRACE, PARENT)}\r\n"
              "content-length: 1000\r\n\r\n0123456789".encode())
    time.sleep(0.3)
    s.close()
    spans = col.wait_spans(2)
    server = next(x for x in spans if x["kind"] == KIND_SERVER)
    client = next(x for x in spans if x["kind"] == KIND_CLIENT)
    assert attrs(server)["weft.response_flags"] == "DC"
    assert attrs(server)["error.type"] == "downstream disconnected"
    assert "http.response.status_code" not in attrs(server)
    assert server["statusCode"] == STATUS_ERROR and client["parentSpanId"] == server["spanId"]


def test_a_spans_path_is_cut_at_1_kib(weft, backends, collector):
    col = collector()
    b = backends("b")
    w = weft(traced_config([b.addr], col.url))
    path = "/echo/" + "a" * 3000
    assert get(w.ports["public"], path)[0] == 200
    spans = col.wait_spans(2)
    server = next(x for x in spans if x["kind"] == KIND_SERVER)
    assert attrs(server)["url.path"] == path[:1024]


def test_local_replies_are_traced(weft, collector):
    col = collector()
    dead = f"127.0.0.1:{free_port()}"
    w = weft(traced_config([dead], col.url))
    status, _ = get(w.ports["public"], headers={"traceparent": traceparent(TRACE, PARENT)})
    assert status == 503
    spans = col.wait_spans(lambda s: any(x["kind"] == KIND_SERVER for x in s))
    server = next(s for s in spans if s["kind"] == KIND_SERVER)
    assert server["statusCode"] == STATUS_ERROR
    assert attrs(server)["http.response.status_code"] == 503
    assert attrs(server)["weft.response_flags"] == "LR"


def test_a_collector_that_is_down_or_slow_costs_no_request(weft, backends, collector):
    b = backends("b")
    down = f"http://127.0.0.1:{free_port()}"
    w = weft(traced_config([b.addr], down))
    start = time.monotonic()
    for _ in range(200):
        assert get(w.ports["public"])[0] == 200
    elapsed_down = time.monotonic() - start
    assert wait_for(lambda: w.stat("weft_tracing_spans_total", result="failed") > 0, 10)
    # A collector that answers after 5 s: requests do not wait for it.
    slow = collector(delay_ms=5000)
    w2 = weft(traced_config([b.addr], slow.url))
    start = time.monotonic()
    for _ in range(200):
        assert get(w2.ports["public"])[0] == 200
    elapsed_slow = time.monotonic() - start
    # 200 sequential requests on loopback take well under 10 s with or
    # without a collector; waiting on one would take minutes.
    assert elapsed_down < 10 and elapsed_slow < 10, (elapsed_down, elapsed_slow)


def test_the_span_queue_is_bounded_and_drops_are_counted(weft, backends, collector):
    b = backends("b")
    slow = collector(delay_ms=3000)
    w = weft(traced_config([b.addr], slow.url))
    # 4096 spans wait at most: 2 spans a request, so 3000 requests while the
    # collector holds the first export must overflow the queue.
    c = http.client.HTTPConnection("127.0.0.1", w.ports["public"], timeout=10)
    for _ in range(3000):
        c.request("GET", "/echo")
        r = c.getresponse()
        r.read()
        assert r.status == 200
    c.close()
    assert wait_for(lambda: w.stat("weft_tracing_spans_total", result="dropped") > 0, 10)


def test_head_sampling_holds_its_rate(weft, backends, collector):
    col = collector()
    b = backends("b")
    w = weft(traced_config([b.addr], col.url, sampling=0.1))
    n = 2000
    c = http.client.HTTPConnection("127.0.0.1", w.ports["public"], timeout=10)
    sampled_flags = 0
    for _ in range(n):
        c.request("GET", "/echo")
        r = c.getresponse()
        body = r.read()
        assert r.status == 200
        sampled_flags += upstream_headers(body)["traceparent"].endswith("-01")
    c.close()
    # Binomial(2000, 0.1): mean 200, standard deviation 13.4; 5 of them
    # either way fails one run in millions.
    assert 133 <= sampled_flags <= 267, sampled_flags
    spans = col.wait_spans(lambda s: len([x for x in s if x["kind"] == KIND_SERVER]) >= sampled_flags)
    time.sleep(1.2)
    servers = [x for x in col.spans() if x["kind"] == KIND_SERVER]
    assert len(servers) == sampled_flags, (len(servers), sampled_flags)


def test_latency_exemplars_carry_trace_ids_to_prometheus(weft, backends, collector, tmp_path):
    """A sampled request's trace id rides on its route's latency bucket as
    an OpenMetrics exemplar: Prometheus (with exemplar storage) scrapes it
    and answers it back. The plain text format has none, and passes
    promtool."""
    import urllib.parse
    import urllib.request
    from test_discovery import Prometheus
    col = collector()
    b = backends("b")
    w = weft(traced_config([b.addr], col.url))
    assert get(w.ports["public"], headers={"traceparent": traceparent(TRACE, PARENT)})[0] == 200
    req = urllib.request.Request(f"http://127.0.0.1:{w.ports['admin']}/stats",
                                 headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(req, timeout=10) as r:
        om = r.read().decode()
        assert r.headers["content-type"].startswith("application/openmetrics-text"), r.headers
    assert om.endswith("# EOF\n")
    assert 'le="1.0"' in om and 'le="1"' not in om  # OpenMetrics' canonical numbers
    assert f'# {{trace_id="{TRACE}"}}' in om, om
    # The golden metrics of (source, destination, route) carry it too; the
    # source is "unknown" without a mesh identity.
    golden = [l for l in om.splitlines() if l.startswith("weft_golden_rq_duration_seconds_bucket{")]
    assert golden and golden[0].startswith(
        'weft_golden_rq_duration_seconds_bucket{source="unknown",destination="b",route="public.0",listener="public",')
    assert any(f'trace_id="{TRACE}"' in l for l in golden), golden
    assert "# TYPE weft_route_rq counter" in om and "weft_route_rq_total{" in om
    _, text = w.admin("/stats")
    assert "trace_id" not in text and "# EOF" not in text and 'le="1"' in text
    r = subprocess.run([require("promtool"), "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    prom = Prometheus(f"""global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: weft
    metrics_path: /stats
    static_configs: [{{targets: ["127.0.0.1:{w.ports['admin']}"]}}]
""", str(tmp_path), extra=("--enable-feature=exemplar-storage",))
    try:
        q = urllib.parse.quote('weft_route_rq_duration_seconds_bucket{route="public.0"}')

        def exemplar_ids():
            now = time.time()
            d = prom.api(f"/api/v1/query_exemplars?query={q}&start={now - 600}&end={now + 60}")
            if not d or d.get("status") != "success":
                return set()
            return {e["labels"].get("trace_id") for s in d["data"] for e in s["exemplars"]}

        assert wait_for(lambda: TRACE in exemplar_ids(), 20), (exemplar_ids(), prom.targets())
        assert all(t["health"] == "up" for t in prom.targets()), prom.targets()
        # The Grafana dashboard's queries are PromQL this Prometheus runs.
        for title, query in dashboard_queries():
            d = prom.api("/api/v1/query?query=" + urllib.parse.quote(query))
            assert d and d["status"] == "success", (title, query, d)
    finally:
        prom.stop()


def test_golden_metrics_split_by_destination(weft, backends):
    a, b = backends("a"), backends("b")
    listeners = """  - name: public
    address: 127.0.0.1:0
    routes:
      - match: {prefix: /}
        clusters: [{name: a, weight: 1}, {name: b, weight: 1}]
"""
    w = weft(simple_config({"a": [a.addr], "b": [b.addr]}, listeners=listeners))
    for _ in range(40):
        assert get(w.ports["public"])[0] == 200
    got = {d: w.stat("weft_golden_rq_total", source="unknown", destination=d, route="public.0",
                     listener="public", **{"class": "2xx"}) for d in ("a", "b")}
    assert got["a"] + got["b"] == 40 and got["a"] > 0 and got["b"] > 0, got
    assert w.stat("weft_golden_rq_duration_seconds_count", source="unknown", destination="a",
                  route="public.0", listener="public") == got["a"]


def test_json_export(weft, backends, collector):
    col = collector()
    b = backends("b")
    w = weft(traced_config([b.addr], col.url, fmt="json"))
    assert get(w.ports["public"], headers={"traceparent": traceparent(TRACE, PARENT)})[0] == 200
    spans = col.wait_spans(2)
    assert {s["format"] for s in spans} == {"json"}
    assert {s["traceId"] for s in spans} == {TRACE}


# ----------------------------------------------------------------- mesh --

def register_sidecar(s, node, service, inbound_port, app_port, upstreams=()):
    s.register(node, f"{service}-sidecar", inbound_port, f"{service}-sidecar-{node}", Kind="connect-proxy",
               Proxy={"DestinationServiceName": service, "LocalServicePort": app_port,
                      "Upstreams": [{"DestinationName": d, "LocalBindPort": p} for d, p in upstreams]})


def sidecar_tracing(px):
    return px.config().get("tracing", {})


def test_an_sdk_traced_app_and_the_sidecars_make_one_trace(server, mesh_proxy, collector):
    """client (SDK) -> web sidecar -> front sidecar -> front (SDK) -> front
    sidecar -> middle sidecar -> middle (SDK) -> middle sidecar -> back
    sidecar -> back (SDK): one trace, every parent link right."""
    col = collector()
    s = server()
    ports = {name: free_port() for name in ("front", "middle", "back")}
    inbound = {name: free_port() for name in ("front", "middle", "back")}
    up = {name: free_port() for name in ("web-front", "front-middle", "middle-back")}
    apps = {
        "back": start_app("back", ports["back"], col.url),
        "middle": start_app("middle", ports["middle"], col.url,
                            [f"http://127.0.0.1:{up['middle-back']}/back"]),
        "front": start_app("front", ports["front"], col.url,
                           [f"http://127.0.0.1:{up['front-middle']}/middle"]),
    }
    try:
        for name, app in apps.items():
            s.register(f"node-{name}", name, app.port, f"{name}-1")
        register_sidecar(s, "node-back", "back", inbound["back"], ports["back"])
        register_sidecar(s, "node-middle", "middle", inbound["middle"], ports["middle"],
                         [("back", up["middle-back"])])
        register_sidecar(s, "node-front", "front", inbound["front"], ports["front"],
                         [("middle", up["front-middle"])])
        register_sidecar(s, "node-web", "web", free_port(), 1, [("front", up["web-front"])])
        # Refused at apply: a Telemetry that traces names its collector.
        r = s.ctl("apply", "-f", "-", input="kind: Telemetry\nmetadata: {name: mesh}\n"
                                            "spec: {service: '*', tracing: {sampling: 1}}\n")
        assert r.returncode != 0 and "spec.tracing.otlp: required" in r.stderr, r.stderr
        proxies = {name: mesh_proxy(s.grpc, name) for name in ("web", "front", "middle", "back")}
        for px in proxies.values():
            px.wait_ready(15)
        for p in up.values():
            wait_port(p)
        assert sidecar_tracing(proxies["web"]) == {}
        # Applied live: every sidecar takes it.
        r = s.ctl("apply", "-f", "-", input="kind: Telemetry\nmetadata: {name: mesh}\n"
                                            f"spec: {{service: '*', tracing: {{sampling: 1, otlp: '{col.url}'}}}}\n")
        assert r.returncode == 0, r.stderr
        for name, px in proxies.items():
            assert wait_for(lambda: sidecar_tracing(px).get("enabled") is True, 10), px.config()
            t = sidecar_tracing(px)
            assert t["service_name"] == name and t["sampling"] == 1 and t["otlp"] == col.url
        shown = s.ctl("get", "telemetry", "mesh", "-o", "json")
        assert shown.returncode == 0 and col.url in shown.stdout, shown.stdout + shown.stderr

        results = run_client(f"http://127.0.0.1:{up['web-front']}/", col.url, 5, name="client")
        assert results.summary["ok"] == 5, results
        trace_ids = {r["traceId"] for r in results}
        # Per request: client 1 + web sidecar 2 + front sidecar 2 + front
        # 2 + front's outbound 2 + middle's inbound 2 + middle 2 + middle's
        # outbound 2 + back's inbound 2 + back 1 = 18 spans.
        spans = col.wait_spans(lambda sp: all(len(by_trace(sp).get(t, [])) >= 18 for t in trace_ids), 20)
        for r in results:
            t = by_trace(spans)[r["traceId"]]
            assert len(t) == 18, [(x["service"], x["name"], x["kind"]) for x in t]
            ids = span_by_id(t)
            roots = [x for x in t if not x["parentSpanId"]]
            assert [x["spanId"] for x in roots] == [r["spanId"]]  # the client's root span
            assert all(x["parentSpanId"] in ids for x in t if x["parentSpanId"]), t
            # From back's own server span up to the root, the services and
            # who recorded each span (a sidecar, or the SDK).
            leaf = next(x for x in t if x["service"] == "back" and not by_sidecar(x))
            chain = []
            x = leaf
            while x:
                chain.append((x["service"], "sidecar" if by_sidecar(x) else "app",
                              "server" if x["kind"] == KIND_SERVER else "client"))
                x = ids.get(x["parentSpanId"])
            chain.reverse()
            assert chain == [
                ("client", "app", "client"),
                ("web", "sidecar", "server"), ("web", "sidecar", "client"),
                ("front", "sidecar", "server"), ("front", "sidecar", "client"),
                ("front", "app", "server"), ("front", "app", "client"),
                ("front", "sidecar", "server"), ("front", "sidecar", "client"),
                ("middle", "sidecar", "server"), ("middle", "sidecar", "client"),
                ("middle", "app", "server"), ("middle", "app", "client"),
                ("middle", "sidecar", "server"), ("middle", "sidecar", "client"),
                ("back", "sidecar", "server"), ("back", "sidecar", "client"),
                ("back", "app", "server"),
            ], chain
            # The inbound sidecars name the verified caller.
            back_in = next(x for x in t if x["service"] == "back" and x["kind"] == KIND_SERVER
                           and by_sidecar(x))
            assert attrs(back_in)["weft.peer.identity"].endswith("/middle"), attrs(back_in)

        # A service's own Telemetry overrides the mesh's: middle's sidecar
        # stops recording, and passes the context on unchanged, so the
        # trace stays whole (middle's app span is back's sidecar's parent).
        r = s.ctl("apply", "-f", "-", input="kind: Telemetry\nmetadata: {name: quiet}\n"
                                            "spec: {service: middle, tracing: {enabled: false}}\n")
        assert r.returncode == 0, r.stderr
        assert wait_for(lambda: sidecar_tracing(proxies["middle"]).get("enabled") is False, 10)
        col.clear()
        results = run_client(f"http://127.0.0.1:{up['web-front']}/", col.url, 2, name="client")
        assert results.summary["ok"] == 2
        ids_wanted = {r["traceId"] for r in results}
        spans = col.wait_spans(lambda sp: all(len(by_trace(sp).get(t, [])) >= 14 for t in ids_wanted), 20)
        time.sleep(1.2)
        for tid in ids_wanted:
            t = by_trace(col.spans())[tid]
            assert len(t) == 14, [(x["service"], x["name"]) for x in t]
            assert not any(x["service"] == "middle" and by_sidecar(x) for x in t)
            ids = span_by_id(t)
            assert all(x["parentSpanId"] in ids for x in t if x["parentSpanId"]), t

        # What the sidecars and the server expose passes Prometheus' linter,
        # the tracing and per-caller families included.
        promtool = require("promtool")
        texts = [px.admin("/stats")[1] for px in proxies.values()]
        texts.append(s.request("GET", "/metrics")[2])
        assert 'weft_tracing_spans_total{result="exported"}' in texts[0]
        # Every family the Grafana dashboard charts is one the sidecars export.
        exported = {m for text in texts for m in re.findall(r"^(weft_[a-z0-9_]+)", text, re.M)}
        missing = dashboard_metrics() - exported - FIRST_EVENT_FAMILIES
        assert not missing, missing
        # The caller's sidecar counts its calls by (its identity, the
        # destination, the route); the callee's by verified caller.
        web_stats = proxies["web"].admin("/stats")[1]
        golden = [l for l in web_stats.splitlines() if l.startswith("weft_golden_rq_total{")
                  and 'destination="front"' in l and 'class="2xx"' in l]
        assert golden and golden[0].startswith('weft_golden_rq_total{source="spiffe://'), golden
        assert '/web"' in golden[0].split(",")[0] and float(golden[0].rsplit(" ", 1)[1]) >= 7, golden
        front_stats = proxies["front"].admin("/stats")[1]
        assert not any(l.startswith("weft_golden_rq_total{") and "local_app" in l
                       for l in front_stats.splitlines()), "the inbound side counts callers instead"
        for text in texts:
            r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
            assert r.returncode == 0, r.stdout + r.stderr
    finally:
        for app in apps.values():
            app.stop()
