"""The gRPC test peers themselves, without weft: grpc_peer.py (grpcio) and
node_grpc/peer.js (grpc-js) talk to each other directly, so that when a test
through `weft proxy` fails, the peers are known to be right.

Pairs checked (client -> server): python -> python, node -> python,
python -> node; every method, status and message pass-through, trailing
metadata, trailers-only answers (also at the HTTP/2 frame level, with
python3-h2), deadlines, and one channel (one connection) reused for many
calls. Needs no weft binary; node_grpc is npm-installed on first use
(node_grpc/install.sh)."""
import time

import pytest

import grpc_peer
from conftest import free_port


@pytest.fixture(scope="module")
def servers():
    """One python and one node server for the whole module: {impl: Popen}."""
    made = {}
    try:
        made["python"] = grpc_peer.start_server(free_port(), "py", impl="python")
        made["node"] = grpc_peer.start_server(free_port(), "js", impl="node")
        yield made
    finally:
        for p in made.values():
            grpc_peer.stop_server(p)


PAIRS = [("python", "python"), ("node", "python"), ("python", "node")]
NAMES = {"python": "py", "node": "js"}


def call(client, target, method, data, metadata=(), timeout=None):
    """One call by the `client` implementation; the result with text
    messages, whichever client made it. `data`: the request for unary and
    server_stream, the list of messages for client_stream and bidi."""
    if client == "node":
        return grpc_peer.node_client(target, method, data, metadata=metadata, timeout=timeout)[0]
    kw = dict(metadata=metadata, timeout=timeout)
    if method == "unary":
        r = grpc_peer.unary(target, data, **kw)
    elif method == "server_stream":
        n, _, size = data.partition(",")
        r = grpc_peer.server_stream(target, int(n), int(size or 0), **kw)
    elif method == "client_stream":
        r = grpc_peer.client_stream(target, data, **kw)
    else:
        r = grpc_peer.bidi(target, data, **kw)
    return grpc_peer.as_text(r)


def ok(r):
    assert r["code"] == "OK" and r["code_value"] == 0, r
    return r


@pytest.mark.parametrize("client,server", PAIRS)
def test_unary(servers, client, server):
    srv, name = servers[server], NAMES[server]
    r = ok(call(client, srv.target, "unary", "hello"))
    assert r["response"] == f"{name}:hello"
    assert r["initial"]["x-served-by"] == name
    assert r["initial"]["x-seen-timeout"] == "none"
    assert r["initial"]["x-seen-authority"] == srv.target
    assert r["initial"]["x-seen-peer"].startswith("127.0.0.1:")
    assert "x-seen-xfcc" not in r["initial"]


@pytest.mark.parametrize("client,server", PAIRS)
def test_server_stream(servers, client, server):
    srv, name = servers[server], NAMES[server]
    r = ok(call(client, srv.target, "server_stream", "5,16"))
    assert r["responses"] == [f"{name}:{i}".ljust(16, ".") for i in range(5)]
    r = ok(call(client, srv.target, "server_stream", "3"))
    assert r["responses"] == [f"{name}:0", f"{name}:1", f"{name}:2"]


@pytest.mark.parametrize("client,server", PAIRS)
def test_client_stream(servers, client, server):
    srv, name = servers[server], NAMES[server]
    r = ok(call(client, srv.target, "client_stream", ["a", "bb", "ccc"]))
    assert r["response"] == f"{name}:count=3,bytes=6"


@pytest.mark.parametrize("client,server", PAIRS)
def test_bidi_ping_pong(servers, client, server):
    srv, name = servers[server], NAMES[server]
    r = ok(call(client, srv.target, "bidi", ["one", "two", "three"]))
    assert r["responses"] == [f"{name}:one", f"{name}:two", f"{name}:three"]


@pytest.mark.parametrize("client,server", PAIRS)
def test_status_and_message_pass_through(servers, client, server):
    srv, name = servers[server], NAMES[server]
    r = call(client, srv.target, "unary", "x", metadata={"x-status": "7", "x-message": "go away"})
    assert (r["code"], r["code_value"], r["details"]) == ("PERMISSION_DENIED", 7, "go away"), r
    assert r["response"] is None
    # Headers went first: not a trailers-only answer.
    assert r["initial"]["x-served-by"] == name
    r = call(client, srv.target, "unary", "x", metadata={"x-status": "3"})
    assert (r["code"], r["details"]) == ("INVALID_ARGUMENT", "requested"), r
    # A stream ends with the status after its messages.
    r = call(client, srv.target, "server_stream", "2", metadata={"x-status": "9"})
    assert r["code"] == "FAILED_PRECONDITION" and r["responses"] == [f"{name}:0", f"{name}:1"], r


@pytest.mark.parametrize("client,server", PAIRS)
def test_trailing_metadata(servers, client, server):
    srv = servers[server]
    r = ok(call(client, srv.target, "unary", "x", metadata={"x-trailer": "k1=v1"}))
    assert r["trailing"]["k1"] == "v1"
    r = call(client, srv.target, "unary", "x", metadata={"x-trailer": "k2=v2", "x-status": "8"})
    assert r["code"] == "RESOURCE_EXHAUSTED" and r["trailing"]["k2"] == "v2", r
    r = ok(call(client, srv.target, "bidi", ["a"], metadata={"x-trailer": "k3=v3"}))
    assert r["trailing"]["k3"] == "v3"


@pytest.mark.parametrize("client,server", PAIRS)
def test_trailers_only(servers, client, server):
    srv = servers[server]
    md = {"x-trailers-only": "1", "x-status": "5", "x-message": "no such thing", "x-trailer": "why=gone"}
    r = call(client, srv.target, "unary", "x", metadata=md)
    assert (r["code"], r["details"]) == ("NOT_FOUND", "no such thing"), r
    assert r["initial"] == {} and r["response"] is None
    assert r["trailing"]["why"] == "gone"
    r = call(client, srv.target, "server_stream", "3", metadata=md)
    assert r["code"] == "NOT_FOUND" and r["responses"] == [] and r["initial"] == {}, r


@pytest.mark.parametrize("server", ["python", "node"])
def test_trailers_only_is_one_headers_frame(servers, server):
    """On the wire: one HEADERS frame with END_STREAM that carries
    :status, grpc-status, grpc-message and the trailer; no DATA."""
    srv = servers[server]
    out = grpc_peer.raw_call(srv.target, "Unary", [b"x"], metadata={
        "x-trailers-only": "1", "x-status": "5", "x-message": "gone", "x-trailer": "why=gone"})
    assert len(out["frames"]) == 1, out
    kind, headers, end_stream = out["frames"][0]
    assert kind == "headers" and end_stream, out
    assert headers[":status"] == "200" and headers["content-type"].startswith("application/grpc")
    assert headers["grpc-status"] == "5" and headers["grpc-message"] == "gone" and headers["why"] == "gone"


@pytest.mark.parametrize("server", ["python", "node"])
def test_normal_answer_frames(servers, server):
    """On the wire: HEADERS, DATA (the message), then trailers with END_STREAM."""
    srv, name = servers[server], NAMES[server]
    out = grpc_peer.raw_call(srv.target, "Unary", [b"hi"], metadata={"x-trailer": "k=v"})
    kinds = [f[0] for f in out["frames"]]
    assert kinds[0] == "headers" and kinds[-1] == "trailers" and set(kinds[1:-1]) == {"data"}, out
    assert not out["frames"][0][2] and out["frames"][-1][2]
    trailers = out["frames"][-1][1]
    assert trailers["grpc-status"] == "0" and trailers["k"] == "v"
    assert out["messages"] == [f"{name}:hi".encode()]
    # The bidi method answers each message of a whole request body.
    out = grpc_peer.raw_call(srv.target, "Bidi", [b"a", b"b"])
    assert out["messages"] == [f"{name}:a".encode(), f"{name}:b".encode()]


@pytest.mark.parametrize("client,server", PAIRS)
def test_deadline_exceeded(servers, client, server):
    srv = servers[server]
    start = time.monotonic()
    r = call(client, srv.target, "unary", "slow", metadata={"x-sleep-ms": "2000"}, timeout=0.5)
    elapsed = time.monotonic() - start
    assert r["code"] == "DEADLINE_EXCEEDED", r
    # The server saw the deadline (grpc-timeout) and how much of it was left.
    seen = int(r["initial"]["x-seen-timeout"])
    assert 0 < seen <= 500, r
    assert elapsed < 1.8, elapsed  # the client gave up at the deadline, not after the sleep


@pytest.mark.parametrize("server", ["python", "node"])
def test_one_channel_many_calls(servers, server):
    """20 unary calls on one python channel: all answered, all on one
    connection (the server saw one client address)."""
    srv, name = servers[server], NAMES[server]
    channel = grpc_peer.make_channel(srv.target)
    try:
        results = [grpc_peer.unary(srv.target, f"m{i}", channel=channel) for i in range(20)]
        results.append(grpc_peer.server_stream(srv.target, 2, channel=channel))
        results.append(grpc_peer.bidi(srv.target, ["p"], channel=channel))
    finally:
        channel.close()
    for i, r in enumerate(results[:20]):
        assert r["code"] == "OK" and r["response"] == f"{name}:m{i}".encode(), r
    assert all(r["code"] == "OK" for r in results[20:]), results[20:]
    peers = {r["initial"]["x-seen-peer"] for r in results}
    assert len(peers) == 1, peers


def test_node_client_one_connection(servers):
    """node peer.js --repeat: 20 calls on one grpc-js client, one connection."""
    results = grpc_peer.node_client(servers["python"].target, "unary", "r", repeat=20)
    assert len(results) == 20 and all(r["response"] == "py:r" for r in results), results
    assert len({r["initial"]["x-seen-peer"] for r in results}) == 1


@pytest.mark.parametrize("server", ["python", "node"])
def test_xfcc_and_echo_metadata(servers, server):
    srv = servers[server]
    r = ok(grpc_peer.as_text(grpc_peer.unary(srv.target, "x", metadata={
        "x-forwarded-client-cert": "By=spiffe://a;URI=spiffe://b", "x-echo": "x-custom", "x-custom": "42"})))
    assert r["initial"]["x-seen-xfcc"] == "By=spiffe://a;URI=spiffe://b"
    assert r["initial"]["x-echo-x-custom"] == "42"


@pytest.mark.parametrize("impl", ["python", "node"])
def test_server_exits_cleanly_on_sigterm(impl):
    p = grpc_peer.start_server(0, "t", impl=impl)
    assert ok(grpc_peer.unary(p.target, "x"))["response"] == b"t:x"
    start = time.monotonic()
    assert grpc_peer.stop_server(p) == 0
    assert time.monotonic() - start < 5


def test_start_server_reports_failure():
    """A server that cannot listen fails start_server with its error."""
    p = grpc_peer.start_server(0, "holder")
    try:
        with pytest.raises(RuntimeError, match="did not print READY"):
            grpc_peer.start_server(p.port, "second", timeout=5)
    finally:
        grpc_peer.stop_server(p)
