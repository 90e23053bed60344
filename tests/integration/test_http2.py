"""HTTP/2 and gRPC through weft proxy: curl, nghttp and h2load as HTTP/2
clients, python3-grpcio and grpc-js as gRPC clients and servers, nginx as an
HTTP/2 upstream, and the project's HTTP/1.1 test backend behind HTTP/2
clients."""
import hashlib
import json
import os
import subprocess
import threading
import time

import grpc
import pytest

import grpc_peer as g
from conftest import curl, free_port, require, simple_config, stop_nginx, wait_port


def grpc_config(clusters, workers=1, extra="", lb=None):
    """A bootstrap with one HTTP listener in front of HTTP/2 clusters
    ({name: [addr]}), the first one routed."""
    text = simple_config(clusters, workers=workers, extra_listener=extra, lb=lb)
    for name in clusters:
        text = text.replace(f"  - name: {name}\n", f"  - name: {name}\n    protocol: http2\n", 1)
    return text


@pytest.fixture
def grpc_servers():
    made = []

    def make(n=1, impl="python", prefix="s"):
        out = []
        for i in range(n):
            p = g.start_server(0, name=f"{prefix}{i}", impl=impl)
            made.append(p)
            out.append(p)
        return out

    yield make
    for p in made:
        g.stop_server(p)


# ---- HTTP/2 clients to an HTTP/1.1 upstream ----


def test_h2c_prior_knowledge_and_http1_share_a_port(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}))
    r = curl("--http2-prior-knowledge", "-i", w.url(path="/echo?x=1"), "-H", "x-kept: yes",
             "-H", "cookie: a=1", "-H", "cookie: b=2")
    assert r.returncode == 0, r.stderr
    head, body = r.stdout.split("\n\n", 1)
    assert head.startswith("HTTP/2 200"), head
    e = json.loads(body)
    hdrs = {k.lower(): v for k, v in e["headers"]}
    assert e["method"] == "GET" and e["target"] == "/echo?x=1"
    assert hdrs["host"] == f"127.0.0.1:{w.ports['public']}"  # :authority becomes Host
    assert hdrs["x-kept"] == "yes"
    assert hdrs["cookie"] == "a=1; b=2"  # crumbs joined for HTTP/1.1 (RFC 9113 8.2.3)
    assert "x-request-id" in hdrs
    # The same port still speaks HTTP/1.1.
    r = curl("-i", w.url(path="/echo"))
    assert r.stdout.startswith("HTTP/1.1 200"), r.stdout
    assert w.stat("weft_listener_downstream_cx_http2_total", listener="public") == 1


def test_h2_request_and_response_bodies_both_ways(weft, backends, tmp_path):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}))
    data = os.urandom(3 * 1024 * 1024 + 7)
    f = tmp_path / "body"
    f.write_bytes(data)
    # Upload without a length (DATA frames) -> chunked to the HTTP/1.1 upstream.
    r = curl("--http2-prior-knowledge", "--data-binary", f"@{f}", "-H", "content-type: x/y",
             "-H", "transfer-encoding:", w.url(path="/sink"))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["length"] == len(data) and got["sha256"] == hashlib.sha256(data).hexdigest()
    # Download: content-length and chunked upstream responses.
    for path, n in (("/bytes/2000000", 2000000), ("/chunked/1500000", 1500000)):
        r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", w.url(path=path)],
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert len(r.stdout) == n


def test_h2_many_streams_on_one_connection(weft, backends):
    require("h2load")
    b = backends()
    w = weft(simple_config({"c": [b.addr]}))
    r = subprocess.run(["h2load", "-n", "400", "-c", "2", "-m", "20", w.url(path="/echo")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "400 succeeded, 0 failed, 0 errored" in r.stdout, r.stdout
    assert w.stat("weft_listener_downstream_cx_http2_total", listener="public") == 2


def test_nghttp_client_to_nginx_over_h2(weft, tmp_path):
    require("nginx")
    require("nghttp")
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""worker_processes 1;
daemon off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx.err;
events {{ worker_connections 256; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port} http2;
    location / {{ add_header x-proto $server_protocol; return 200 "nginx saw $request_uri\\n"; }}
  }}
}}
""")
    ng = subprocess.Popen(["nginx", "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        w = weft(grpc_config({"ng": [f"127.0.0.1:{port}"]}))
        r = subprocess.run(["nghttp", "-v", w.url(path="/a/b?c=d")], capture_output=True,
                           text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        assert "nginx saw /a/b?c=d" in r.stdout
        assert "x-proto: HTTP/2.0" in r.stdout  # nginx was reached over HTTP/2
        # An HTTP/1.1 client to the same HTTP/2 upstream.
        r = curl("-i", w.url(path="/h1"))
        assert r.stdout.startswith("HTTP/1.1 200") and "nginx saw /h1" in r.stdout
        assert w.stat("weft_cluster_upstream_cx_http2_total", cluster="ng") == 1
    finally:
        stop_nginx(ng)


# ---- gRPC ----


def test_grpc_unary_status_and_trailers_pass_through(weft, grpc_servers):
    (s,) = grpc_servers(1)
    w = weft(grpc_config({"g": [s.target]}))
    t = f"127.0.0.1:{w.ports['public']}"
    ch = g.make_channel(t)
    r = g.unary(t, b"hi", channel=ch)
    assert r["code"] == "OK" and r["response"] == b"s0:hi", r
    r = g.unary(t, b"x", metadata=[("x-status", "7"), ("x-message", "nope"),
                                   ("x-trailer", "k=v")], channel=ch)
    assert r["code"] == "PERMISSION_DENIED" and r["details"] == "nope", r
    assert r["trailing"].get("k") == "v"
    r = g.unary(t, b"x", metadata=[("x-trailers-only", "1"), ("x-status", "5")], channel=ch)
    assert r["code"] == "NOT_FOUND", r
    raw = g.raw_call(t, metadata=[("x-trailers-only", "1"), ("x-status", "5")])
    # One HEADERS frame with END_STREAM, as the server sent it.
    assert len(raw["frames"]) == 1, raw
    kind, fields, ended = raw["frames"][0]
    assert kind == "headers" and ended and fields["grpc-status"] == "5", raw


def test_grpc_streaming_kinds(weft, grpc_servers):
    (s,) = grpc_servers(1)
    w = weft(grpc_config({"g": [s.target]}))
    t = f"127.0.0.1:{w.ports['public']}"
    ch = g.make_channel(t)
    r = g.server_stream(t, 50, size=20000, channel=ch)
    assert r["code"] == "OK" and len(r["responses"]) == 50, r["code"]
    assert all(len(m) == 20000 for m in r["responses"])
    msgs = [os.urandom(1000) for _ in range(200)]
    r = g.client_stream(t, msgs, channel=ch)
    assert r["code"] == "OK" and r["response"] == b"s0:count=200,bytes=200000", r
    r = g.bidi(t, [b"a", b"b", b"c"], channel=ch)  # ping-pong: needs both directions at once
    assert r["code"] == "OK" and r["responses"] == [b"s0:a", b"s0:b", b"s0:c"], r


def test_grpc_balanced_per_request_over_one_connection(weft, grpc_servers):
    servers = grpc_servers(3)
    w = weft(grpc_config({"g": [s.target for s in servers]}, lb="round_robin"))
    t = f"127.0.0.1:{w.ports['public']}"
    ch = g.make_channel(t)
    seen = {}
    for i in range(60):
        r = g.unary(t, b"q", channel=ch)
        assert r["code"] == "OK", r
        name = r["response"].split(b":")[0]
        seen[name] = seen.get(name, 0) + 1
    assert seen == {b"s0": 20, b"s1": 20, b"s2": 20}, seen  # round robin, per call
    assert w.stat("weft_listener_downstream_cx_http2_total", listener="public") == 1
    assert w.stat("weft_cluster_upstream_cx_http2_total", cluster="g") == 3


def test_grpc_concurrent_calls_share_upstream_connections(weft, grpc_servers):
    (s,) = grpc_servers(1)
    w = weft(grpc_config({"g": [s.target]}))
    t = f"127.0.0.1:{w.ports['public']}"
    errors = []

    def client():
        ch = g.make_channel(t)
        for _ in range(20):
            r = g.unary(t, b"c", metadata=[("x-sleep-ms", "5")], channel=ch)
            if r["code"] != "OK":
                errors.append(r)
        ch.close()

    threads = [threading.Thread(target=client) for _ in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[:3]
    assert w.stat("weft_listener_downstream_cx_http2_total", listener="public") == 16
    # 16 client connections, one worker, one endpoint: one upstream connection.
    assert w.stat("weft_cluster_upstream_cx_http2_total", cluster="g") == 1


def test_grpc_js_client_and_server(weft, grpc_servers):
    (s,) = grpc_servers(1, impl="node", prefix="n")
    w = weft(grpc_config({"g": [s.target]}))
    t = f"127.0.0.1:{w.ports['public']}"
    r = g.unary(t, b"py")
    assert r["code"] == "OK" and r["response"] == b"n0:py", r
    out = g.node_client(t, "unary", data=["js"], repeat=3)
    assert [o["code"] for o in out] == ["OK"] * 3, out
    out = g.node_client(t, "bidi", data=["x", "y"])
    assert out[0]["code"] == "OK", out


def test_grpc_errors_from_the_proxy_are_grpc_statuses(weft, grpc_servers):
    (s,) = grpc_servers(1)
    dead = f"127.0.0.1:{free_port()}"
    text = grpc_config({"g": [s.target], "down": [dead]}, extra="") .replace(
        "      - match: {prefix: /}\n        cluster: g\n",
        "      - match: {prefix: /weft.test.Echo/ServerStream}\n        cluster: down\n"
        "      - match: {prefix: /weft.test.Echo/Unary}\n        cluster: g\n        timeout: 300ms\n"
        "      - match: {prefix: /}\n        cluster: g\n")
    w = weft(text)
    t = f"127.0.0.1:{w.ports['public']}"
    ch = g.make_channel(t)
    # No upstream to connect to: UNAVAILABLE with what happened, not "http1.x server".
    r = g.server_stream(t, 1, channel=ch)
    assert r["code"] == "UNAVAILABLE", r
    assert "upstream connect error" in r["details"] and dead in r["details"], r
    # The route's timeout, sooner than the caller's deadline: DEADLINE_EXCEEDED.
    r = g.unary(t, b"slow", metadata=[("x-head-delay-ms", "1500")], timeout=10, channel=ch)
    assert r["code"] == "DEADLINE_EXCEEDED", r
    assert "upstream request timeout after 300 ms" in r["details"], r
    # No route: UNIMPLEMENTED.
    w2 = weft(grpc_config({"g": [s.target]}).replace("{prefix: /}", "{prefix: /other}"))
    r = g.unary(f"127.0.0.1:{w2.ports['public']}", b"x")
    assert r["code"] == "UNIMPLEMENTED" and "no route" in r["details"], r
    assert w.stat("weft_route_grpc_total", listener="public", route="public.0",
                  grpc_status="UNAVAILABLE") == 1
    assert w.stat("weft_cluster_upstream_grpc_total", cluster="g",
                  grpc_status="DEADLINE_EXCEEDED") == 1


def test_grpc_timeout_is_passed_on_reduced(weft, grpc_servers):
    (s,) = grpc_servers(1)
    w = weft(grpc_config({"g": [s.target]}))
    t = f"127.0.0.1:{w.ports['public']}"
    r = g.unary(t, b"x", timeout=5)
    assert r["code"] == "OK", r
    seen = int(r["initial"]["x-seen-timeout"])
    assert 4000 < seen <= 5000, seen  # the caller's deadline, less the time spent so far
    # The caller's deadline, sooner than the route's: the proxy gives up at it.
    r = g.unary(t, b"x", metadata=[("x-head-delay-ms", "3000")], timeout=0.4)
    assert r["code"] == "DEADLINE_EXCEEDED", r
    assert w.stat("weft_listener_downstream_grpc_total", listener="public", grpc_status="OK") == 1


def endless_grpc_stream_server():
    """An HTTP/2 upstream that answers any call with a gRPC message every
    200 ms and never ends it, whatever its grpc-timeout says (grpcio servers
    enforce the deadline themselves, which would hide the proxy's). Returns
    (port, cancelled): `cancelled` is set when the proxy resets the stream."""
    import socket

    import h2.config
    import h2.connection
    import h2.events

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    cancelled = threading.Event()

    def serve():
        sock, _ = lsock.accept()
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        sock.settimeout(0.2)
        sid = None
        while not cancelled.is_set():
            try:
                data = sock.recv(65536)
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        sid = ev.stream_id
                        conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
                    elif isinstance(ev, h2.events.StreamReset):
                        cancelled.set()
            except socket.timeout:
                if sid is not None:
                    conn.send_data(sid, g.frame(b"tick"))
            sock.sendall(conn.data_to_send())

    threading.Thread(target=serve, daemon=True).start()
    return lsock.getsockname()[1], cancelled


def test_grpc_deadline_bounds_the_whole_response(weft):
    # A server stream that outlasts the caller's deadline: the proxy ends the
    # call at the deadline with DEADLINE_EXCEEDED trailers after the messages
    # already relayed (a raw client: no deadline of its own to hide it), and
    # resets the upstream stream.
    port, cancelled = endless_grpc_stream_server()
    w = weft(grpc_config({"g": [f"127.0.0.1:{port}"]}))
    t = f"127.0.0.1:{w.ports['public']}"
    start = time.monotonic()
    r = g.raw_call(t, "ServerStream", messages=(b"20",), metadata=[("grpc-timeout", "900m")], timeout=10)
    took = time.monotonic() - start
    kinds = [f[0] for f in r["frames"]]
    assert kinds[0] == "headers" and kinds[-1] == "trailers", r["frames"]
    trailers = r["frames"][-1][1]
    assert trailers["grpc-status"] == "4", trailers
    assert "deadline of 900 ms exceeded during the response" in trailers["grpc-message"], trailers
    assert 2 <= len(r["messages"]) <= 6, r["messages"]  # one every 200 ms until 900 ms
    assert 0.8 < took < 2.5, took
    assert cancelled.wait(5), "the upstream stream was not reset"
    assert w.stat("weft_cluster_upstream_grpc_total", cluster="g", grpc_status="DEADLINE_EXCEEDED") == 1
    assert w.stat("weft_cluster_upstream_rq_timeout_total", cluster="g") == 1


def test_grpc_status_counted_and_logged(weft, grpc_servers, tmp_path):
    (s,) = grpc_servers(1)
    log = tmp_path / "access.log"
    w = weft(grpc_config({"g": [s.target]}, extra=f"    access_log: {log}\n"))
    t = f"127.0.0.1:{w.ports['public']}"
    ch = g.make_channel(t)
    for code in ("0", "5", "5", "13"):
        g.unary(t, b"x", metadata=[("x-status", code)] if code != "0" else [], channel=ch)
    for status, n in (("OK", 1), ("NOT_FOUND", 2), ("INTERNAL", 1)):
        assert w.stat("weft_route_grpc_total", listener="public", route="public.0",
                      grpc_status=status) == n, status
    w.stop(__import__("signal").SIGTERM)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert sorted(x["grpc_status"] for x in lines) == [0, 5, 5, 13], lines
    assert all(x["status"] == 200 for x in lines)


def test_http1_client_to_grpc_upstream_keeps_trailers(weft, grpc_servers):
    # An HTTP/1.1 client speaking gRPC framing, chunked: weft turns it into
    # HTTP/2 upstream and the response's trailers into chunked trailers.
    import socket
    (s,) = grpc_servers(1)
    w = weft(grpc_config({"g": [s.target]}))
    msg = g.frame(b"h1")
    body = f"{len(msg):x}\r\n".encode() + msg + b"\r\n0\r\n\r\n"
    req = (b"POST /weft.test.Echo/Unary HTTP/1.1\r\nhost: svc\r\n"
           b"content-type: application/grpc\r\nte: trailers\r\nx-trailer: k=v\r\n"
           b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n") + body
    c = socket.create_connection(("127.0.0.1", w.ports["public"]), timeout=10)
    c.sendall(req)
    out = b""
    while True:
        d = c.recv(65536)
        if not d:
            break
        out += d
    c.close()
    head, rest = out.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), out
    assert b"transfer-encoding: chunked" in head.lower(), head
    # The body is the gRPC message, then the last chunk with the trailers.
    assert g.frame(b"s0:h1") in rest, rest
    tail = rest.split(b"\r\n0\r\n", 1)[1].lower()
    assert b"grpc-status: 0" in tail and b"k: v" in tail, rest


def test_h2_drain_sends_goaway_and_finishes_streams_in_flight(weft, backends):
    import signal
    import socket
    import time

    import h2.config
    import h2.connection
    b = backends()
    w = weft(simple_config({"c": [b.addr]}))
    sock = socket.create_connection(("127.0.0.1", w.ports["public"]), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":path", "/sleep/1500"),
                          (":authority", "svc")], end_stream=True)
    sock.sendall(conn.data_to_send())
    time.sleep(0.3)
    w.p.send_signal(signal.SIGTERM)
    # Frames parsed by hand: a client library stops reading at GOAWAY, and
    # what the test wants is what comes after it.
    import hpack
    from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame
    dec = hpack.Decoder()
    buf, status, ended, goaway = b"", None, False, None
    while True:
        data = sock.recv(65536)
        if not data:
            break
        buf += data
        while len(buf) >= 9:
            f, length = Frame.parse_frame_header(memoryview(buf[:9]))
            if len(buf) < 9 + length:
                break
            f.parse_body(memoryview(buf[9:9 + length]))
            buf = buf[9 + length:]
            if isinstance(f, GoAwayFrame):
                goaway = f
            elif isinstance(f, HeadersFrame) and f.stream_id == 1:
                status = dict(dec.decode(f.data))[":status"]
                ended = ended or "END_STREAM" in f.flags
            elif isinstance(f, DataFrame) and f.stream_id == 1:
                ended = ended or "END_STREAM" in f.flags
    sock.close()
    # The stream in flight when the drain began finished; the client was told
    # with GOAWAY (no error) that no new streams would be taken.
    assert status == "200" and ended
    assert goaway is not None and goaway.error_code == 0 and goaway.last_stream_id == 1, goaway
    assert w.p.wait(15) == 0


H2_GOAWAY_SERVER = r"""
import socket, sys, threading
import h2.config, h2.connection, h2.events
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(16)
print(srv.getsockname()[1], flush=True)
count = [0]
def serve(c, n):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection(); c.sendall(conn.data_to_send())
    while True:
        data = c.recv(65536)
        if not data:
            return
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                if n == 0:
                    # The first connection goes away before acting on anything.
                    conn.close_connection(last_stream_id=0)
                else:
                    conn.send_headers(ev.stream_id, [(":status", "200"), ("x-conn", str(n))])
                    conn.send_data(ev.stream_id, b"processed", end_stream=True)
        c.sendall(conn.data_to_send())
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c, count[0]), daemon=True).start()
    count[0] += 1
"""


def test_h2_upstream_goaway_unprocessed_request_is_retried(weft):
    import sys
    srv = subprocess.Popen([sys.executable, "-c", H2_GOAWAY_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(srv.stdout.readline())
        w = weft(grpc_config({"h2": [f"127.0.0.1:{port}"]}))
        # (A request whose body was already streamed up cannot be sent again:
        # bodies are not buffered for retries yet.)
        r = curl("-i", w.url(path="/x"))
        assert r.stdout.startswith("HTTP/1.1 200"), r.stdout + r.stderr
        assert "processed" in r.stdout and "x-conn: 1" in r.stdout, r.stdout
        assert w.stat("weft_cluster_upstream_rq_retry_total", cluster="h2") == 1
        assert w.stat("weft_cluster_upstream_cx_http2_total", cluster="h2") == 2
    finally:
        srv.kill()
        srv.wait()


def haproxy_returning(tmp_path, port, h2):
    """HAProxy answering every request itself (`http-request return`), on
    HTTP/2 with prior knowledge (`proto h2`) or HTTP/1.1."""
    require("haproxy")
    cfg = tmp_path / f"haproxy-{port}.cfg"
    cfg.write_text(f"""global
  nbthread 1
defaults
  mode http
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend f
  bind 127.0.0.1:{port}{' proto h2' if h2 else ''}
  http-request return status 200 content-type text/plain lf-string "haproxy saw h%[fc_http_major] %[path]\\n"
""")
    p = subprocess.Popen(["haproxy", "-f", str(cfg)], stderr=subprocess.DEVNULL)
    wait_port(port)
    return p


@pytest.mark.parametrize("h2", [True, False], ids=["h2-upstream", "h1-upstream"])
def test_haproxy_upstream_behind_http2_clients(weft, tmp_path, h2):
    port = free_port()
    hp = haproxy_returning(tmp_path, port, h2)
    try:
        cfg = grpc_config({"hp": [f"127.0.0.1:{port}"]}) if h2 else \
            simple_config({"hp": [f"127.0.0.1:{port}"]})
        w = weft(cfg)
        r = curl("--http2-prior-knowledge", "-i", w.url(path="/p?q=1"))
        assert r.stdout.startswith("HTTP/2 200"), r.stdout + r.stderr
        assert f"haproxy saw h{2 if h2 else 1} /p" in r.stdout, r.stdout
        r = curl("-i", w.url(path="/h1"))  # and an HTTP/1.1 client to the same
        assert r.stdout.startswith("HTTP/1.1 200") and "/h1" in r.stdout, r.stdout
    finally:
        hp.kill()
        hp.wait()


def test_grpc_cancellation_reaches_the_proxy_and_the_connection_goes_on(weft, grpc_servers):
    (s,) = grpc_servers(1)
    w = weft(grpc_config({"g": [s.target]}))
    t = f"127.0.0.1:{w.ports['public']}"
    ch = g.make_channel(t)
    # The caller cancels mid-stream: the proxy sees the reset, counts the
    # call as cancelled, and resets the upstream stream.
    call = ch.unary_stream("/weft.test.Echo/ServerStream")(b"100",
                                                            metadata=[("x-interval-ms", "50")])
    got = [next(call), next(call)]
    call.cancel()
    assert len(got) == 2
    from conftest import wait_for
    assert wait_for(lambda: w.stat("weft_cluster_upstream_grpc_total", cluster="g",
                                   grpc_status="CANCELLED") == 1, 5)
    # Both connections carry on.
    assert g.unary(t, b"after", channel=ch)["response"] == b"s0:after"
    assert w.stat("weft_cluster_upstream_cx_http2_total", cluster="g") == 1


def test_h2_request_reaches_http1_upstream_before_its_first_data(weft, backends):
    # The stream opens (HEADERS without END_STREAM) and its body waits: the
    # upstream must see the request now, not when the first DATA comes.
    import socket
    import time

    import h2.config
    import h2.connection
    from conftest import wait_for
    b = backends()
    w = weft(simple_config({"c": [b.addr]}))
    sock = socket.create_connection(("127.0.0.1", w.ports["public"]), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", "/sink"),
                          (":authority", "svc")], end_stream=False)
    sock.sendall(conn.data_to_send())
    assert wait_for(lambda: "POST /sink" in b.stats().get("requests_seen", []), 3), b.stats()
    sock.close()
