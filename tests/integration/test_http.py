"""HTTP/1.1 through weft proxy, with curl and raw sockets as clients and the
project's test backend (and nginx) as upstreams."""
import json
import os
import socket
import subprocess
import time

from conftest import (curl, free_port, raw, read_to_eof, require, simple_config, start_nginx, stop_nginx,
                      wait_for)


def get_json(url, *args):
    r = curl(url, *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def headers_of(echo):
    return {k.lower(): v for k, v in echo["headers"]}


def test_routes_first_match_wins(weft, backends):
    v1, v2, exact = backends("v1"), backends("v2"), backends("exact")
    w = weft(simple_config({"v1": [v1.addr], "v2": [v2.addr], "exact": [exact.addr]}, listeners="""
  - name: public
    address: 127.0.0.1:0
    routes:
      - match: {prefix: /v2, headers: {x-canary: "1"}}
        cluster: v2
      - match: {path: /health}
        cluster: exact
      - match: {prefix: /}
        cluster: v1
"""))
    assert get_json(w.url(path="/v2/items"), "-H", "x-canary: 1")["backend"] == "v2"
    assert get_json(w.url(path="/v2/items"), "-H", "x-canary: 0")["backend"] == "v1"
    assert get_json(w.url(path="/health?full=1"))["backend"] == "exact"
    assert get_json(w.url(path="/healthz"))["backend"] == "v1"


def test_no_route_is_404_with_reason(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}, listeners="""
  - name: public
    address: 127.0.0.1:0
    routes: [{match: {prefix: /api}, cluster: c}]
"""))
    r = curl("-i", w.url(path="/other"))
    assert " 404 " in r.stdout.splitlines()[0]
    assert "no route for /other" in r.stdout
    assert w.stat("weft_listener_downstream_rq_rejected_total", listener="public", reason="no_route") == 1


def test_forwarding_headers_and_hop_by_hop(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}))
    e = get_json(w.url(path="/echo"), "-H", "Connection: keep-alive, X-Secret",
                 "-H", "X-Secret: s", "-H", "Keep-Alive: timeout=5", "-H", "TE: trailers",
                 "-H", "Proxy-Connection: keep-alive", "-H", "X-Forwarded-For: 10.1.2.3",
                 "-H", "X-Kept: yes", "-H", "X-Forwarded-Client-Cert: By=x;URI=spiffe://weft.local/ns/default/sa/admin")
    h = headers_of(e)
    # A caller's identity is vouched for only by a proxy that verified it:
    # a client's own XFCC never reaches the app (here, plain HTTP, no peer).
    assert "x-forwarded-client-cert" not in h
    # The app sees the normalized path; a fragment in the target is refused
    # (servers disagree on what follows a raw '#').
    assert get_json(w.url(path="/x/..//echo/./"), "--path-as-is")["target"] == "/echo/"
    out = raw(w.ports["public"], b"GET /echo#/../admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400") and b"fragment" in out, out[:300]
    assert h["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert len(h["x-request-id"]) == 36
    assert h["x-kept"] == "yes"
    for gone in ("connection", "x-secret", "keep-alive", "te", "proxy-connection"):
        assert gone not in h, gone
    # A request id given by the client is kept, and returned to it.
    r = curl("-si", w.url(path="/echo"), "-H", "x-request-id: my-id-1")
    assert "x-request-id: my-id-1" in r.stdout.lower()
    assert headers_of(json.loads(r.stdout.split("\n\n", 1)[1]))["x-request-id"] == "my-id-1"


def test_weighted_round_robin(weft, backends):
    a, b = backends("a"), backends("b")
    w = weft(simple_config({"c": [a.addr, (b.addr, 2)]}, workers=1, lb="round_robin"))
    seen = {"a": 0, "b": 0}
    for _ in range(30):
        seen[get_json(w.url(path="/echo"))["backend"]] += 1
    assert seen == {"a": 10, "b": 20}


def test_keepalive_reuses_upstream_connections(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}, workers=1))
    urls = [w.url(path=f"/echo/{i}") for i in range(50)]
    r = curl(*urls, "-o", "/dev/null", "-o", "/dev/null")
    assert r.returncode == 0, r.stderr
    for i in range(50):
        assert curl(w.url(path=f"/again/{i}"), "-o", "/dev/null").returncode == 0
    st = b.stats()
    assert st["requests"] == 101  # 100 proxied + this /_stats
    assert st["connections"] <= 3, st["connections"]
    assert w.stat("weft_cluster_upstream_cx_reused_total", cluster="c") >= 95


def test_idle_pool_size_is_bounded(weft, backends):
    b = backends()
    cfg = simple_config({"c": [b.addr]}, workers=1).replace(
        "connect_timeout: 500ms", "connect_timeout: 500ms\n    max_idle_per_endpoint: 0")
    w = weft(cfg)
    for i in range(5):
        assert curl(w.url(path=f"/echo/{i}"), "-o", "/dev/null").returncode == 0
    # No idle connection may be kept: every request opened a new one.
    assert b.stats()["connections"] == 6  # 5 proxied + this /_stats
    assert w.stat("weft_cluster_upstream_cx_reused_total", cluster="c") == 0


def test_pipelined_requests_answered_in_order(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}))
    reqs = b"".join(b"GET /echo/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
    reqs += b"GET /echo/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = raw(w.ports["public"], reqs)
    order = [seg.split(b'"target": "')[1].split(b'"')[0].decode() for seg in out.split(b"HTTP/1.1 200")[1:]]
    assert order == ["/echo/0", "/echo/1", "/echo/2", "/echo/3", "/echo/4", "/echo/last"]


def test_chunked_upload_and_trailers(weft, backends, tmp_path):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}))
    data = os.urandom(3 * 1024 * 1024 + 7)
    f = tmp_path / "body"
    f.write_bytes(data)
    import hashlib
    r = get_json(w.url(path="/sink"), "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{f}")
    assert r["length"] == len(data)
    assert r["sha256"] == hashlib.sha256(data).hexdigest()
    # Trailers from the client reach the upstream.
    body = b"5\r\nhello\r\n0\r\nx-digest: abc\r\n\r\n"
    out = raw(w.ports["public"], b"POST /sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                   b"Connection: close\r\n\r\n" + body)
    assert b'"length": 5' in out and b"x-digest: abc" in out
    # Chunked response with trailers streams back re-framed, trailers kept.
    out = raw(w.ports["public"], b"GET /chunked/100000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"transfer-encoding: chunked" in out.lower()
    assert out.endswith(b"0\r\nx-checksum: done\r\n\r\n")


def test_content_length_upload_with_expect_100_continue(weft, backends, tmp_path):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}))
    f = tmp_path / "body"
    f.write_bytes(b"z" * 2_000_000)
    t = time.time()
    r = curl("-v", w.url(path="/sink"), "-H", "Expect: 100-continue", "--data-binary", f"@{f}")
    took = time.time() - t
    assert "HTTP/1.1 100 Continue" in r.stderr
    assert json.loads(r.stdout)["length"] == 2_000_000
    assert took < 0.9, "curl waited for its 1 s Expect timeout: no 100 Continue was relayed in time"


def test_head_interim_and_status_codes(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}))
    r = curl("-sI", w.url(path="/bytes/12345"))
    assert "content-length: 12345" in r.stdout.lower()
    r = curl("-si", w.url(path="/early-hints"))
    assert r.stdout.startswith("HTTP/1.1 103")
    assert "HTTP/1.1 200" in r.stdout and "after hints" in r.stdout
    r = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", w.url(path="/status/204"))
    assert r.stdout == "204"
    r = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", w.url(path="/status/503"))
    assert r.stdout == "503"


def test_http10_client_and_connection_close(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}))
    out = raw(w.ports["public"], b"GET /echo HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and b"connection: close" in out.lower()
    # A chunked upstream body goes to an HTTP/1.0 client unframed, ended by close.
    out = raw(w.ports["public"], b"GET /chunked/1000 HTTP/1.0\r\n\r\n")
    head, body = out.split(b"\r\n\r\n", 1)
    assert b"chunked" not in head.lower() and body == b"x" * 1000
    # HTTP/1.0 keep-alive is honoured.
    s = socket.create_connection(("127.0.0.1", w.ports["public"]), timeout=5)
    s.sendall(b"GET /bytes/3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    first = b""
    while not first.endswith(b"\r\n\r\nxxx"):
        first += s.recv(4096)
    assert b"connection: keep-alive" in first.lower()
    s.sendall(b"GET /bytes/3 HTTP/1.0\r\n\r\n")
    rest = read_to_eof(s)
    assert rest.startswith(b"HTTP/1.1 200")
    # Connection: close from an HTTP/1.1 client closes after the response.
    out = raw(w.ports["public"], b"GET /bytes/5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=3)
    assert out.endswith(b"xxxxx")


def test_close_delimited_upstream_body_is_rechunked(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}))
    out = raw(w.ports["public"], b"GET /close/70000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, body = out.split(b"\r\n\r\n", 1)
    assert b"transfer-encoding: chunked" in head.lower()
    assert body.endswith(b"0\r\n\r\n")
    r = curl(w.url(path="/close/70000"), "-o", "/dev/null", "-w", "%{size_download}")
    assert r.stdout == "70000"


def test_websocket_upgrade_is_tunnelled(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}))
    s = socket.create_connection(("127.0.0.1", w.ports["public"]), timeout=5)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
              b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101")
    assert b"upgrade: websocket" in head.lower()
    for msg in (b"frame-one", b"\x00\x01binary\xff" * 1000):
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            got += s.recv(65536)
        assert got == msg
    s.shutdown(socket.SHUT_WR)
    assert s.recv(10) == b""
    s.close()


def test_upstream_connect_error_is_503_with_reason(weft, backends):
    dead = free_port()
    w = weft(simple_config({"c": [f"127.0.0.1:{dead}"]}))
    r = curl("-si", w.url(path="/x"))
    assert r.stdout.startswith("HTTP/1.1 503")
    assert f"upstream connect error: 127.0.0.1:{dead}: Connection refused" in r.stdout
    assert w.stat("weft_cluster_upstream_cx_connect_fail_total", cluster="c") >= 1


def test_connect_failure_retried_on_another_endpoint(weft, backends):
    b = backends("live")
    dead = free_port()
    # Round robin (and no outlier detection) goes back to the dead endpoint
    # every other request: each of those is retried on the live one.
    w = weft(simple_config({"c": [f"127.0.0.1:{dead}", b.addr]}, workers=1, lb="round_robin",
                           outlier="{enabled: false}"))
    for i in range(20):
        r = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", w.url(path=f"/p/{i}"))
        assert r.stdout == "200"
    assert w.stat("weft_cluster_upstream_rq_retry_total", cluster="c") >= 9
    # With outlier detection (the default), five failed connects in a row
    # eject the dead endpoint: round robin skips it from then on.
    w1 = weft(simple_config({"c": [f"127.0.0.1:{dead}", b.addr]}, workers=1, lb="round_robin"))
    for i in range(20):
        r = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", w1.url(path=f"/p/{i}"))
        assert r.stdout == "200"
    assert w1.stat("weft_cluster_upstream_rq_retry_total", cluster="c") == 5
    assert w1.stat("weft_cluster_outlier_ejections_total", cluster="c", reason="consecutive_5xx") == 1
    assert w1.stat("weft_cluster_outlier_ejected", cluster="c") == 1
    # The default balancer (ewma) counts the failed connect as a slow answer
    # and stops choosing the dead endpoint after it.
    w2 = weft(simple_config({"c": [f"127.0.0.1:{dead}", b.addr]}, workers=1))
    for i in range(20):
        r = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", w2.url(path=f"/p/{i}"))
        assert r.stdout == "200"
    assert w2.stat("weft_cluster_upstream_rq_retry_total", cluster="c") <= 1


def test_reset_before_response_retried_for_idempotent(weft, backends):
    # An upstream that accepts and closes without answering.
    rude = socket.socket()
    rude.bind(("127.0.0.1", 0))
    rude.listen(64)
    import threading

    def close_all():
        while True:
            try:
                c, _ = rude.accept()
            except OSError:
                return
            c.recv(65536)
            c.close()

    threading.Thread(target=close_all, daemon=True).start()
    b = backends("live")
    # Round robin, so that requests keep landing on the rude one.
    w = weft(simple_config({"c": [f"127.0.0.1:{rude.getsockname()[1]}", b.addr]}, workers=1, lb="round_robin",
                           outlier="{enabled: false}"))
    codes = [curl("-s", "-o", "/dev/null", "-w", "%{http_code}", w.url(path=f"/g/{i}")).stdout for i in range(10)]
    assert codes == ["200"] * 10
    # A POST is not replayed: it fails with a 503 that says why when it lands on the rude one.
    posts = [curl("-s", "-X", "POST", "-w", " %{http_code}", w.url(path="/p")).stdout for _ in range(4)]
    assert any(p.endswith(" 503") and "upstream reset before response" in p for p in posts)
    rude.close()


def always_503():
    """A server that answers every request with 503 (keep-alive); returns its port."""
    import threading
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)

    def serve(c):
        with c:
            buf = b""
            while True:
                try:
                    data = c.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    c.sendall(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy")

    def accept():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv


def test_503_is_retried_elsewhere_and_the_attempt_reaches_the_upstream(weft, backends, tmp_path):
    busy = always_503()
    b, b2 = backends("live"), backends("live2")
    # Round robin (outlier detection off): some requests land on the busy
    # endpoint first.
    log = str(tmp_path / "access.log")
    w = weft(simple_config({"c": [f"127.0.0.1:{busy.getsockname()[1]}", b.addr, b2.addr]}, workers=1,
                           lb="round_robin", outlier="{enabled: false}",
                           extra_listener=f"    access_log: {log}\n"))
    attempts = []
    for i in range(10):
        # A client's own x-weft-attempt never reaches the upstream.
        r = curl("-s", "-w", "\n%{http_code}", "-H", "x-weft-attempt: 7", w.url(path=f"/echo/{i}"))
        body, code = r.stdout.rsplit("\n", 1)
        assert code == "200", r.stdout
        hdrs = {k.lower(): v for k, v in json.loads(body)["headers"]}
        attempts.append(hdrs["x-weft-attempt"])
    assert sorted(set(attempts)) == ["1", "2"], attempts  # the 503 was retried: the second attempt
    assert w.stat("weft_cluster_upstream_rq_retry_total", cluster="c") == attempts.count("2")
    # The access log records the attempts each request took.
    def logged():
        if not os.path.exists(log):
            return []
        return [json.loads(line)["attempts"] for line in open(log) if '"/echo/' in line]
    assert wait_for(lambda: len(logged()) == 10, timeout=5), logged()
    assert sorted(logged()) == sorted(int(a) for a in attempts), logged()
    # Not a POST (it cannot be sent again as it is): the 503 reaches the client.
    posts = [curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-d", "x", w.url(path="/p")).stdout
             for _ in range(4)]
    assert "503" in posts and "200" in posts, posts
    busy.close()


def test_dead_pooled_connection_is_replaced_for_idempotent_requests(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}, workers=1))
    for i in range(5):
        # The backend closes the connection right after answering: the next
        # request finds the pooled connection dead and goes out on a new one.
        r = curl("-s", "-w", "%{http_code} ", "-o", "/dev/null", w.url(path="/then-close"),
                 "-o", "/dev/null", w.url(path=f"/echo/{i}"))
        assert r.stdout.split() == ["200", "200"], r.stdout
    assert w.stat("weft_cluster_upstream_rq_total", cluster="c", **{"class": "5xx"}) == 0


def test_request_timeout_is_504(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}, listeners="""
  - name: public
    address: 127.0.0.1:0
    routes:
      - match: {prefix: /}
        cluster: c
        timeout: 300ms
"""))
    t = time.time()
    r = curl("-si", w.url(path="/sleep/3000"))
    assert r.stdout.startswith("HTTP/1.1 504")
    assert "upstream request timeout after 300 ms" in r.stdout
    assert time.time() - t < 2
    assert w.stat("weft_cluster_upstream_rq_timeout_total", cluster="c") == 1


def test_connect_timeout(weft):
    # A listener whose accept queue is full drops new SYNs: connects hang.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(0)
    port = s.getsockname()[1]
    fillers = []
    for _ in range(3):
        f = socket.socket()
        f.setblocking(False)
        try:
            f.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(f)
    time.sleep(0.2)
    w = weft(simple_config({"c": [f"127.0.0.1:{port}"]}))
    t = time.time()
    r = curl("-si", w.url(path="/x"))
    assert r.stdout.startswith("HTTP/1.1 503"), r.stdout
    assert "connect timeout" in r.stdout
    assert time.time() - t < 3


def test_header_read_and_idle_timeouts(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}, extra_listener="    timeouts: {header_read: 500ms, idle: 700ms}\n"))
    s = socket.create_connection(("127.0.0.1", w.ports["public"]), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
    t = time.time()
    out = s.recv(4096)
    assert out.startswith(b"HTTP/1.1 408"), out
    assert 0.3 < time.time() - t < 2
    assert s.recv(10) == b""
    # An idle keep-alive connection is closed after the idle timeout.
    s = socket.create_connection(("127.0.0.1", w.ports["public"]), timeout=5)
    s.sendall(b"GET /bytes/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while not got.endswith(b"\r\n\r\nx"):
        got += s.recv(4096)
    assert got.startswith(b"HTTP/1.1 200")
    t = time.time()
    assert s.recv(10) == b""
    assert 0.4 < time.time() - t < 2
    assert w.stat("weft_listener_downstream_rq_rejected_total", listener="public", reason="header_timeout") == 1


SMUGGLING = [
    b"POST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    b"POST /smuggled HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG",
    b"POST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
    b"POST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n",
    b"POST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 1_0\r\n\r\n",
    b"POST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello",
    b"POST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    b"POST /smuggled HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"POST /smuggled HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    b"POST /smuggled HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    b"POST /smuggled HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    b"GET /smuggled HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    b"GET /smuggled HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
    b"GET /smuggled HTTP/1.1\nHost: x\n\n",
    b"GET /smuggled HTTP/1.1\r\nHost: x\r\nX-A: 1\n\r\n",
    b"POST /smuggled HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    b"POST /smuggled HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;\x01\r\nhello\r\n0\r\n\r\n",
    b"POST /smuggled HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    b"GET /smuggled" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
]


def test_smuggling_payloads_are_refused_and_never_forwarded(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}))
    for payload in SMUGGLING:
        out = raw(w.ports["public"], payload)
        status = int(out.split(b" ")[1]) if out.startswith(b"HTTP/1.1") else 0
        assert status in (400, 414, 431, 501), (payload, out[:200])
        # A chunked-body error can only be found after the head was sent on;
        # the body never completes upstream, so the backend answers nothing.
    seen = b.stats()["requests_seen"]
    complete = [r for r in seen if "smuggled" in r]
    # Only the three bodies whose head was valid may have reached the backend
    # as an (unfinished) request; no smuggled "G..." request ever did.
    assert len(complete) <= 3, complete
    assert not any(r.startswith("G") and "smuggled" not in r for r in seen[1:]), seen


def test_limits_are_enforced(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}, extra_listener=(
        "    limits: {max_request_line: 200, max_header_bytes: 1024, max_headers: 10, max_request_body: 1000}\n"
        "    max_connections: 2\n"), workers=1))
    port = w.ports["public"]
    assert raw(port, b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 414")
    assert raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"b" * 2000 + b"\r\n\r\n").startswith(b"HTTP/1.1 431")
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(12))
    assert raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n").startswith(b"HTTP/1.1 431")
    out = raw(port, b"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000)
    assert out.startswith(b"HTTP/1.1 413") and b"exceeds the limit of 1000 bytes" in out
    out = raw(port, b"POST /sink HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n" + b"x" * 2000 + b"\r\n0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413"), out[:100]
    # max_connections is per worker (one here): two held connections fill it.
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    time.sleep(0.2)
    extra = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(2)]
    for e in extra:
        e.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = e.recv(100)
        except ConnectionResetError:
            data = b""
        assert data == b""
    assert w.stat("weft_listener_downstream_rq_rejected_total", listener="public", reason="connection_limit") >= 2
    for h in held + extra:
        h.close()


def test_oversized_upstream_response_head_is_502(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}, extra_listener="    limits: {max_header_bytes: 4096, max_request_line: 2048}\n"))
    r = curl("-si", w.url(path="/bigheader/8000"))
    assert r.stdout.startswith("HTTP/1.1 502"), r.stdout[:200]
    assert "upstream response head too large" in r.stdout or "header section too large" in r.stdout
    r = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", w.url(path="/bigheader/1000"))
    assert r.stdout == "200"


def test_admin_endpoints(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}))
    for _ in range(3):
        curl(w.url(path="/echo"), "-o", "/dev/null")
    assert w.admin("/ready") == (200, "ready\n")
    code, dump = w.admin("/config_dump")
    cfg = json.loads(dump)
    assert cfg["listeners"][0]["name"] == "public" and cfg["clusters"][0]["endpoints"][0]["address"] == b.addr
    assert w.stat("weft_listener_downstream_rq_total", listener="public", **{"class": "2xx"}) == 3
    assert w.stat("weft_route_rq_total", listener="public", route="public.0", **{"class": "2xx"}) == 3
    assert w.stat("weft_cluster_upstream_rq_total", cluster="c", **{"class": "2xx"}) == 3
    assert w.stat("weft_listener_downstream_rq_duration_seconds_count", listener="public") == 3
    assert w.stat("weft_listener_downstream_cx_total", listener="public") == 3
    assert w.stat("weft_listener_downstream_bytes_received_total", listener="public") > 0
    assert w.stat("weft_listener_downstream_bytes_sent_total", listener="public") > 0
    assert w.admin("/nope")[0] == 404
    # Prometheus' own linter accepts the exposition.
    promtool = require("promtool")
    _, text = w.admin("/stats")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_access_log_json_lines(weft, backends, tmp_path):
    b = backends()
    log = tmp_path / "access.log"
    w = weft(simple_config({"c": [b.addr]}, extra_listener=f"    access_log: {log}\n"))
    curl(w.url(path="/echo?q=1"), "-H", "x-request-id: rid-7", "-o", "/dev/null")
    curl(w.url(path="/status/404"), "-o", "/dev/null")
    time.sleep(0.4)
    lines = {e["path"]: e for e in map(json.loads, log.read_text().splitlines())}
    assert set(lines) == {"/echo", "/status/404"}  # workers flush independently: order may vary
    first = lines["/echo"]
    assert first["method"] == "GET" and first["path"] == "/echo" and first["status"] == 200
    assert first["request_id"] == "rid-7" and first["upstream"] == b.addr
    for k in ("time", "bytes_received", "bytes_sent", "duration_ms", "upstream_ms"):
        assert k in first
    assert lines["/status/404"]["status"] == 404


def test_nginx_as_backend(weft, tmp_path):
    p, port = start_nginx(tmp_path, "nginx says hi")
    try:
        w = weft(simple_config({"c": [f"127.0.0.1:{port}"]}))
        for _ in range(5):
            r = curl("-si", w.url(path="/"))
            assert r.stdout.startswith("HTTP/1.1 200") and "nginx says hi" in r.stdout
    finally:
        stop_nginx(p)
