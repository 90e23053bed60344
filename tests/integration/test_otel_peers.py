"""The OpenTelemetry test peers themselves, without weft: node_otel/app.js
(services traced with the OpenTelemetry JS SDK) exporting to
node_otel/collector.js (an OTLP/HTTP receiver), so that when a tracing test
through `weft proxy` fails, the peers are known to be right.

Checked: a client -> A -> B chain (every span of a request in one trace,
the parent links client root -> A server -> A client -> B server, the
service names, traceparent as each hop received it, the SDK's exports
arriving as application/x-protobuf and decoding); the sampled flag 00
propagated with nothing exported; an incoming traceparent/tracestate
continued; error statuses; the collector's OTLP/JSON path (ids, exact
64-bit times, attribute types) and its refusals (415, 413, 400), gzip, and
its slow and failing modes. Needs no weft binary; node_otel is
npm-installed on first use (node_otel/install.sh)."""
import gzip
import os
import re
import time

import pytest

import otel_peer
from otel_peer import KIND_CLIENT, KIND_SERVER, STATUS_ERROR, STATUS_UNSET

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


@pytest.fixture(scope="module")
def chain():
    """A collector and two services, A calling B for every request:
    {collector, a, b}. Everything is stopped at the end of the module."""
    made = []
    try:
        col = otel_peer.Collector()
        made.append(col)
        b = otel_peer.start_app("svc-b", 0, col.url)
        made.append(b)
        a = otel_peer.start_app("svc-a", 0, col.url, [b.url + "/hello"])
        made.append(a)
        yield {"collector": col, "a": a, "b": b}
    finally:
        for p in reversed(made):
            p.close()


@pytest.fixture
def collector():
    """A collector of the test's own."""
    col = otel_peer.Collector()
    try:
        yield col
    finally:
        col.close()


def spans_of(spans, trace_ids):
    return [s for s in spans if s["traceId"] in trace_ids]


def test_chain(chain):
    col, a, b = chain["collector"], chain["a"], chain["b"]
    results = otel_peer.run_client(a.url + "/start", col.url, 5)
    assert results.summary == {"done": True, "ok": 5, "failed": 0}, (results.summary, results.stderr)
    assert len(results) == 5
    trace_ids = {r["traceId"] for r in results}
    assert len(trace_ids) == 5

    # Four spans per request: client root, A server, A client, B server.
    spans = col.wait_spans(lambda ss: len(spans_of(ss, trace_ids)) >= 20)
    spans = spans_of(spans, trace_ids)
    assert len(spans) == 20, spans
    traces = otel_peer.by_trace(spans)

    for r in results:
        assert r["status"] == 200 and r["sampled"] is True, r
        assert HEX32.match(r["traceId"]) and HEX16.match(r["spanId"]), r
        tid = r["traceId"]
        mine = traces[tid]
        assert len(mine) == 4, mine
        by_id = otel_peer.span_by_id(mine)
        assert len(by_id) == 4

        root = by_id[r["spanId"]]
        assert root["parentSpanId"] == "" and root["kind"] == KIND_CLIENT and root["service"] == "client"
        a_server = [s for s in mine if s["parentSpanId"] == root["spanId"]]
        assert len(a_server) == 1, mine
        a_server = a_server[0]
        assert a_server["kind"] == KIND_SERVER and a_server["service"] == "svc-a"
        assert a_server["name"] == "GET /start"
        a_client = [s for s in mine if s["parentSpanId"] == a_server["spanId"]]
        assert len(a_client) == 1, mine
        a_client = a_client[0]
        assert a_client["kind"] == KIND_CLIENT and a_client["service"] == "svc-a"
        b_server = [s for s in mine if s["parentSpanId"] == a_client["spanId"]]
        assert len(b_server) == 1, mine
        b_server = b_server[0]
        assert b_server["kind"] == KIND_SERVER and b_server["service"] == "svc-b"
        assert b_server["name"] == "GET /hello"

        # The attributes of an HTTP instrumentation.
        assert a_server["attributes"] == {"http.request.method": "GET", "url.path": "/start",
                                          "http.response.status_code": 200}
        assert b_server["attributes"]["url.path"] == "/hello"
        assert a_client["attributes"]["url.full"] == b.url + "/hello"
        assert a_client["attributes"]["http.response.status_code"] == 200
        assert root["attributes"]["url.full"] == a.url + "/start"

        for s in mine:
            assert s["format"] == "protobuf"
            assert s["statusCode"] == STATUS_UNSET and s["traceState"] == ""
            assert s["resource"]["attrs"]["service.name"] == s["service"]
            assert s["resource"]["attrs"]["telemetry.sdk.language"] == "nodejs"
            assert s["startNs"].isdigit() and s["endNs"].isdigit()
            assert 0 <= int(s["endNs"]) - int(s["startNs"]) < 60 * 10**9, s
        # Each span starts inside its parent (the clocks are one machine's).
        for child, parent in ((a_server, root), (a_client, a_server), (b_server, a_client)):
            assert int(child["startNs"]) >= int(parent["startNs"]) - 2 * 10**6, (child, parent)

        # What each hop received, as the answers report it.
        body = r["body"]
        assert body["service"] == "svc-a"
        assert body["traceparent"] == otel_peer.traceparent(tid, root["spanId"])
        assert body["tracestate"] is None
        assert body["span"] == {"traceId": tid, "spanId": a_server["spanId"], "sampled": True}
        (b_body,) = body["calls"]
        assert b_body["service"] == "svc-b"
        assert b_body["traceparent"] == otel_peer.traceparent(tid, a_client["spanId"])
        assert b_body["span"]["spanId"] == b_server["spanId"]
        assert b_body["calls"] == []

    # The SDK's exporter posts protobuf, and the decoder took every export.
    st = col.stats()
    assert st["errors"] == 0 and st["refused"] == 0, st
    assert set(st["contentTypes"]) == {"application/x-protobuf"}, st
    assert st["byFormat"]["protobuf"] >= 20 and st["byFormat"]["json"] == 0, st


def test_chain_concurrent(chain):
    col, a = chain["collector"], chain["a"]
    results = otel_peer.run_client(a.url + "/c", col.url, 12, concurrency=4)
    assert results.summary == {"done": True, "ok": 12, "failed": 0}, (results.summary, results.stderr)
    trace_ids = {r["traceId"] for r in results}
    assert len(trace_ids) == 12
    spans = spans_of(col.wait_spans(lambda ss: len(spans_of(ss, trace_ids)) >= 48), trace_ids)
    for tid, mine in otel_peer.by_trace(spans).items():
        assert sorted((s["service"], s["kind"]) for s in mine) == [  # SERVER 2 sorts before CLIENT 3
            ("client", KIND_CLIENT), ("svc-a", KIND_SERVER), ("svc-a", KIND_CLIENT), ("svc-b", KIND_SERVER)], mine


def test_unsampled(chain):
    """Flags 00: the traceparent still travels every hop, nothing is
    exported (the services follow their caller's decision)."""
    col, a = chain["collector"], chain["a"]
    results = otel_peer.run_client(a.url + "/quiet", col.url, 3, sampled="0")
    assert results.summary["ok"] == 3, (results.summary, results.stderr)
    quiet = set()
    for r in results:
        assert r["sampled"] is False
        quiet.add(r["traceId"])
        body = r["body"]
        assert body["traceparent"] == otel_peer.traceparent(r["traceId"], r["spanId"], sampled=False)
        assert body["span"]["sampled"] is False
        assert body["calls"][0]["traceparent"].startswith(f"00-{r['traceId']}-")
        assert body["calls"][0]["traceparent"].endswith("-00")
    # A sampled request after them: once its spans are in, the unsampled
    # ones (never exported at all) are certainly not on their way.
    (marker,) = otel_peer.run_client(a.url + "/marker", col.url, 1)
    col.wait_spans(lambda ss: len(spans_of(ss, {marker["traceId"]})) >= 4)
    assert spans_of(col.spans(), quiet) == []


def test_incoming_context_and_tracestate(chain):
    """A request that arrives with traceparent and tracestate: A's server
    span continues that trace, and the tracestate travels on to B."""
    col, a = chain["collector"], chain["a"]
    tid, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    state = "weft=t61rcWkgMzE,other=x"
    status, _, body = a.get("/in", {"traceparent": otel_peer.traceparent(tid, parent), "tracestate": state})
    assert status == 200, body
    assert body["traceparent"] == otel_peer.traceparent(tid, parent) and body["tracestate"] == state
    assert body["span"]["traceId"] == tid
    assert body["calls"][0]["tracestate"] == state
    spans = spans_of(col.wait_spans(lambda ss: len(spans_of(ss, {tid})) >= 3), {tid})
    by_name = {(s["service"], s["kind"]): s for s in spans}
    a_server = by_name[("svc-a", KIND_SERVER)]
    assert a_server["parentSpanId"] == parent and a_server["traceState"] == state
    assert by_name[("svc-a", KIND_CLIENT)]["parentSpanId"] == a_server["spanId"]
    assert by_name[("svc-b", KIND_SERVER)]["traceState"] == state


def test_errors(chain):
    """/fail answers 500 with an ERROR span; a service whose --next fails
    answers 502, its client span ERROR."""
    col, b = chain["collector"], chain["b"]
    status, _, body = b.get("/fail")
    assert status == 500 and body["service"] == "svc-b"
    tid = body["span"]["traceId"]
    (s,) = spans_of(col.wait_spans(lambda ss: spans_of(ss, {tid})), {tid})
    assert s["statusCode"] == STATUS_ERROR and s["attributes"]["http.response.status_code"] == 500

    with otel_peer.start_app("svc-c", 0, col.url, [b.url + "/fail"]) as c:
        status, _, body = c.get("/x")
    assert status == 502, body
    assert body["calls"][0]["status"] == 500
    tid = body["span"]["traceId"]
    spans = spans_of(col.wait_spans(lambda ss: len(spans_of(ss, {tid})) >= 3), {tid})
    c_spans = {s["kind"]: s for s in spans if s["service"] == "svc-c"}
    assert c_spans[KIND_SERVER]["statusCode"] == STATUS_ERROR
    assert c_spans[KIND_SERVER]["attributes"]["http.response.status_code"] == 502
    assert c_spans[KIND_CLIENT]["statusCode"] == STATUS_ERROR


# ------------------------------------------------- the collector alone --

TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"
PARENT_ID = "eee19b7ec3c1b173"


def otlp_json(start='"1700000000000000001"', end="1700000000123456789"):
    """A small hand-made OTLP/JSON export (text, so that a time can be an
    unquoted number beyond 2^53)."""
    return """{"resourceSpans": [{
      "resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "hand-made"}},
        {"key": "host.name", "value": {"stringValue": "h1"}}]},
      "scopeSpans": [{"scope": {"name": "weft-test"}, "spans": [{
        "traceId": "%s", "spanId": "%s", "parentSpanId": "%s",
        "traceState": "weft=1", "name": "GET /json", "kind": 2,
        "startTimeUnixNano": %s, "endTimeUnixNano": %s,
        "attributes": [
          {"key": "s", "value": {"stringValue": "text"}},
          {"key": "i", "value": {"intValue": "42"}},
          {"key": "j", "value": {"intValue": 7}},
          {"key": "b", "value": {"boolValue": true}},
          {"key": "d", "value": {"doubleValue": 2.5}}],
        "status": {"code": 2, "message": "broken"}}]}]}]}""" % (TRACE_ID, SPAN_ID, PARENT_ID, start, end)


def test_json_export(collector):
    status, headers, body = collector.post(otlp_json())
    assert status == 200 and body == b"{}" and headers["Content-Type"] == "application/json"
    (s,) = collector.spans()
    assert s == {
        "traceId": TRACE_ID, "spanId": SPAN_ID, "parentSpanId": PARENT_ID, "traceState": "weft=1",
        "name": "GET /json", "kind": KIND_SERVER, "service": "hand-made",
        "resource": {"attrs": {"service.name": "hand-made", "host.name": "h1"}},
        "attributes": {"s": "text", "i": 42, "j": 7, "b": True, "d": 2.5},
        "statusCode": STATUS_ERROR, "statusMessage": "broken",
        "startNs": "1700000000000000001", "endNs": "1700000000123456789", "format": "json",
    }
    st = collector.stats()
    assert st["requests"] == 1 and st["spans"] == 1 and st["byFormat"] == {"protobuf": 0, "json": 1}, st

    # Upper-case hex is accepted and reported in lower case; a charset
    # parameter and gzip are fine; no parent is ''.
    text = otlp_json().replace(TRACE_ID, TRACE_ID.upper()).replace(f'"{PARENT_ID}"', '""')
    status, _, _ = collector.post(gzip.compress(text.encode()), "application/json; charset=utf-8",
                                  {"Content-Encoding": "gzip"})
    assert status == 200
    s = collector.spans()[1]
    assert s["traceId"] == TRACE_ID and s["parentSpanId"] == ""

    collector.clear()
    assert collector.spans() == [] and collector.stats()["spans"] == 2


def test_protobuf_answers(collector):
    # An empty export is valid; the answer is an empty
    # ExportTraceServiceResponse.
    status, headers, body = collector.post(b"", "application/x-protobuf")
    assert status == 200 and body == b"" and headers["Content-Type"] == "application/x-protobuf"
    # Garbage, and a trace id of 3 bytes (field 1 of a Span inside
    # ScopeSpans inside ResourceSpans), do not decode.
    status, _, _ = collector.post(b"\xff\xff\xff", "application/x-protobuf")
    assert status == 400
    span = b"\x0a\x03abc"
    scope = b"\x12" + bytes([len(span)]) + span
    rs = b"\x12" + bytes([len(scope)]) + scope
    req = b"\x0a" + bytes([len(rs)]) + rs
    status, _, body = collector.post(req, "application/x-protobuf")
    assert status == 400 and b"traceId" in body, body
    st = collector.stats()
    assert st["errors"] == 2 and st["spans"] == 0 and "traceId" in st["lastError"], st


def test_refusals(collector):
    assert collector.post(b"{}", "text/plain")[0] == 415
    assert collector.post(b"{}", "application/json", {"Content-Encoding": "br"})[0] == 415
    assert collector.post(b"x" * (8 * 1024 * 1024 + 1), "application/x-protobuf")[0] == 413
    assert collector.post(b"{not json", "application/json")[0] == 400
    assert collector.post('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "abc"}]}]}]}')[0] == 400
    st = collector.stats()
    assert st["refused"] == 3 and st["errors"] == 2 and st["requests"] == 5, st


def test_failing_and_slow_modes():
    with otel_peer.Collector(status=503) as col:
        status, _, _ = col.post(otlp_json())
        assert status == 503
        assert col.spans() == [] and col.stats()["dropped"] == 1
        col.configure(status=200, delay_ms=300)
        t0 = time.monotonic()
        status, _, _ = col.post(otlp_json())
        assert status == 200 and time.monotonic() - t0 >= 0.3
        assert len(col.spans()) == 1
    with otel_peer.Collector(delay_ms=200) as col:
        t0 = time.monotonic()
        assert col.post(otlp_json())[0] == 200
        assert time.monotonic() - t0 >= 0.2


def test_no_strays(chain):
    """Processes stopped are gone, and stop() is safe to repeat."""
    col = otel_peer.Collector()
    pid = col.proc.pid
    col.close()
    col.stop()
    assert not col.alive() and col.proc.returncode is not None
    assert col not in otel_peer._LIVE
    # The module's processes are still up (its fixture stops them).
    assert chain["a"].alive() and chain["b"].alive() and chain["collector"].alive()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
