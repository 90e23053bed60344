"""Hostile HTTP/2 clients against a running weft proxy: raw frames made with
hyperframe and hpack (python3-h2) on a plain socket, in front of the HTTP/1.1
test backend. Each attack ends as RFC 9113 and the proxy's limits say: GOAWAY
with the error code for a connection error, RST_STREAM (or a 431) for a
stream error; the proxy keeps serving, its memory stays bounded, the attack
is counted in weft_listener_http2_violations_total{kind} and logged once per
kind and second at most."""
import os
import socket
import time

import pytest
from hpack import Decoder, Encoder
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame,
                              PingFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame)

from conftest import curl, simple_config, wait_for

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = 7, 8, 11
SETTINGS, PING = 0x4, 0x6


class H2:
    """A raw HTTP/2 client connection: frames out as given, frames in as
    parsed (SETTINGS and PING acknowledgements only counted)."""

    def __init__(self, port, rcvbuf=0):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.connect(("127.0.0.1", port))
        self.enc, self.dec = Encoder(), Decoder()
        self.buf = b""
        self.block = b""  # a header block arriving in CONTINUATION frames
        self.frames, self.acks, self.closed = [], 0, False
        self.send(PREFACE + SettingsFrame(0).serialize())

    def send(self, data, timeout=10.0):
        """False when the proxy stopped taking bytes (closed, or not reading)."""
        self.s.settimeout(timeout)
        try:
            self.s.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            return False

    def headers(self, sid, fields, end_stream=True):
        f = HeadersFrame(sid, data=self.enc.encode(fields), flags=["END_HEADERS"])
        if end_stream:
            f.flags.add("END_STREAM")
        return f.serialize()

    def request(self, sid, path="/echo", method="GET", extra=(), end_stream=True):
        return self.headers(sid, [(":method", method), (":scheme", "http"),
                                  (":authority", "attack.test"), (":path", path), *extra],
                            end_stream)

    def _parse(self):
        pos, buf = 0, self.buf
        while len(buf) - pos >= 9:
            length = int.from_bytes(buf[pos:pos + 3], "big")
            if len(buf) - pos < 9 + length:
                break
            kind, flags = buf[pos + 3], buf[pos + 4]
            if kind in (SETTINGS, PING) and flags & 1:
                self.acks += 1
            else:
                f, _ = Frame.parse_frame_header(memoryview(buf[pos:pos + 9]))
                f.parse_body(memoryview(buf[pos + 9:pos + 9 + length]))
                if isinstance(f, (HeadersFrame, ContinuationFrame)):
                    self.block += f.data
                    if "END_HEADERS" in f.flags:
                        f.fields = dict(self.dec.decode(self.block))
                        self.block = b""
                self.frames.append(f)
            pos += 9 + length
        self.buf = buf[pos:]

    def read(self, until=None, timeout=5.0):
        """Reads until `until(frame)` holds for a frame received (then returns
        it), or until the connection closes or `timeout` passes (None)."""
        deadline = time.time() + timeout
        seen = 0
        while True:
            for f in self.frames[seen:]:
                if until and until(f):
                    return f
            seen = len(self.frames)
            if self.closed or time.time() >= deadline:
                return None
            self.s.settimeout(max(0.01, deadline - time.time()))
            try:
                chunk = self.s.recv(1 << 20)
            except socket.timeout:
                return None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
            self.buf += chunk
            self._parse()

    def read_to_close(self, timeout=10.0):
        self.read(timeout=timeout)
        return self.closed

    def goaway(self):
        return next((f for f in self.frames if isinstance(f, GoAwayFrame)), None)

    def answer(self, sid, timeout=5.0):
        """The response status of stream `sid`, or ("rst", code)."""
        f = self.read(lambda f: f.stream_id == sid and (
            isinstance(f, RstStreamFrame) or getattr(f, "fields", {}).get(":status")), timeout)
        if f is None:
            return None
        if isinstance(f, RstStreamFrame):
            return ("rst", f.error_code)
        return int(f.fields[":status"])

    def close(self):
        self.s.close()


@pytest.fixture
def proxy(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}, workers=1))
    w.backend = b
    return w


def backend_saw(w, prefix):
    """Requests for paths starting with `prefix` that reached the backend (of
    its last 200)."""
    return [r for r in w.backend.stats()["requests_seen"] if r.split(" ", 1)[1].startswith(prefix)]


def violations(w, kind):
    return w.stat("weft_listener_http2_violations_total", listener="public", kind=kind)


def warnings(w, kind):
    return [line for line in w.log().splitlines()
            if "[warn] http2: client 127.0.0.1:" in line and f": {kind}: " in line]


def still_serves(w):
    """A well-behaved HTTP/2 client gets its answer."""
    r = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
             w.url(path="/echo"))
    assert r.stdout == "200 2", (r.stdout, r.stderr)


def assert_goaway(h, code, kind, w):
    """The connection was closed with GOAWAY(code), counted once as `kind`
    and logged once."""
    assert h.read_to_close(), "the proxy kept the connection open"
    g = h.goaway()
    assert g is not None, f"no GOAWAY before the close: {h.frames[-5:]}"
    assert g.error_code == code, (g.error_code, g.additional_data)
    assert wait_for(lambda: violations(w, kind) == 1), violations(w, kind)
    assert w.stat("weft_listener_http2_goaways_sent_total", listener="public") == 1
    assert len(warnings(w, kind)) == 1, w.log()
    return g


# ---- Connection errors: GOAWAY, then close ----


def test_rapid_reset_is_cut_off_with_enhance_your_calm(proxy):
    w = proxy
    h = H2(w.ports["public"])
    # HEADERS then RST_STREAM, as fast as the socket takes them: 20,000 streams
    # are asked for; the default budget is a burst of 1000 and 33 a second.
    sid = 1
    for _ in range(40):
        batch = b"".join(h.request(sid + 2 * i) + RstStreamFrame(sid + 2 * i, error_code=CANCEL)
                         .serialize() for i in range(500))
        sid += 1000
        if not h.send(batch, timeout=2.0):
            break
    g = assert_goaway(h, ENHANCE_YOUR_CALM, "rapid_reset", w)
    assert g.last_stream_id < 2 * 1200, g.last_stream_id  # ~1000 streams, not 20,000
    assert w.backend.stats()["requests"] < 1200
    still_serves(w)


def test_streams_reset_over_the_connection_life_are_capped(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}, workers=1,
                           extra_listener="    http2: {max_reset_streams: 50}\n"))
    h = H2(w.ports["public"])
    # Well under the rate, but more than the connection may reset in its life.
    for i in range(60):
        h.send(h.request(1 + 2 * i) + RstStreamFrame(1 + 2 * i, error_code=CANCEL).serialize())
    g = assert_goaway(h, ENHANCE_YOUR_CALM, "rapid_reset", w)
    assert 2 * 45 < g.last_stream_id <= 2 * 51, g.last_stream_id
    still_serves(w)


def test_continuation_flood_gets_goaway(proxy):
    w = proxy
    h = H2(w.ports["public"])
    block = h.enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "a"),
                          (":path", "/echo")])
    frames = HeadersFrame(1, data=block, flags=["END_STREAM"]).serialize()
    frames += b"".join(ContinuationFrame(1, data=b"\x40\x01x\x01y").serialize()
                       for _ in range(10000))
    h.send(frames, timeout=2.0)
    assert_goaway(h, ENHANCE_YOUR_CALM, "continuation_flood", w)
    assert backend_saw(w, "/echo") == []
    still_serves(w)


def flood_unread(w, frame):
    """Sends `frame` over and over without reading what comes back, until
    the proxy stops taking them; returns the connection."""
    h = H2(w.ports["public"], rcvbuf=4096)
    chunk = frame * 20000
    for _ in range(400):  # up to 8 million frames; the proxy gives up long before
        if not h.send(chunk, timeout=1.0):
            break
    return h


def test_settings_flood_unread_gets_goaway(proxy):
    w = proxy
    rss = w.rss_kb()
    h = flood_unread(w, SettingsFrame(0).serialize())
    assert_goaway(h, ENHANCE_YOUR_CALM, "flood", w)
    assert w.rss_kb() - rss < 32 * 1024
    still_serves(w)


def test_ping_flood_unread_gets_goaway(proxy):
    w = proxy
    rss = w.rss_kb()
    h = flood_unread(w, PingFrame(0, opaque_data=b"attack!!").serialize())
    assert_goaway(h, ENHANCE_YOUR_CALM, "flood", w)
    assert w.rss_kb() - rss < 32 * 1024
    still_serves(w)


def test_empty_data_flood_gets_goaway(proxy):
    w = proxy
    h = H2(w.ports["public"])
    frames = h.request(1, "/sink", "POST", end_stream=False)
    frames += DataFrame(1, data=b"").serialize() * 5000
    h.send(frames, timeout=2.0)
    assert_goaway(h, ENHANCE_YOUR_CALM, "empty_frames", w)
    still_serves(w)


def test_window_update_past_the_maximum_is_a_flow_control_error(proxy):
    w = proxy
    h = H2(w.ports["public"])
    # A stream's window past 2^31-1: that stream is reset.
    h.send(h.request(1, "/sleep/1000") + WindowUpdateFrame(1, window_increment=0x7fffffff).serialize())
    assert h.answer(1) == ("rst", FLOW_CONTROL_ERROR)
    assert wait_for(lambda: violations(w, "stream_protocol_error") == 1)
    # The connection's: GOAWAY.
    h.send(WindowUpdateFrame(0, window_increment=0x7fffffff).serialize())
    assert_goaway(h, FLOW_CONTROL_ERROR, "flow_control", w)
    still_serves(w)


def test_more_streams_than_advertised_are_refused(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}, workers=1,
                           extra_listener="    http2: {max_concurrent_streams: 20}\n"))
    h = H2(w.ports["public"])
    s = h.read(lambda f: isinstance(f, SettingsFrame))
    assert s is not None and s.settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 20
    # Acknowledged, then broken: 21 streams that stay open (a slow answer).
    frames = SettingsFrame(0, flags=["ACK"]).serialize()
    frames += b"".join(h.request(1 + 2 * i, "/sleep/3000") for i in range(21))
    h.send(frames)
    assert h.read_to_close()
    g, rst = h.goaway(), [f for f in h.frames if isinstance(f, RstStreamFrame)]
    # Past the acknowledged limit it is a connection error (nghttp2); a
    # REFUSED_STREAM would do too.
    assert (g is not None and g.error_code == PROTOCOL_ERROR) or \
        any(f.error_code == REFUSED_STREAM and f.stream_id == 41 for f in rst), h.frames[-3:]
    assert wait_for(lambda: violations(w, "refused_stream") == 1)
    assert len(warnings(w, "refused_stream")) == 1
    still_serves(w)


# ---- Stream errors: that stream is reset (or answered); the connection goes on ----


def test_hpack_bomb_is_answered_431_with_memory_bounded(proxy):
    w = proxy
    rss = w.rss_kb()
    h = H2(w.ports["public"])
    # One 4000-byte value in the dynamic table, then referenced 20,000 times
    # (one byte each): 80 MB once decoded.
    big = ("x-bomb", "b" * 4000)
    block = h.enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "a"),
                          (":path", "/echo"), big] + [big] * 20000)
    assert len(block) < 24000
    frames = HeadersFrame(1, data=block[:16000], flags=["END_STREAM"]).serialize()
    frames += ContinuationFrame(1, data=block[16000:], flags=["END_HEADERS"]).serialize()
    h.send(frames)
    assert h.answer(1) == 431
    assert w.rss_kb() - rss < 16 * 1024
    # The connection (and its HPACK state) goes on.
    h.send(h.request(3))
    assert h.answer(3) == 200
    assert violations(w, "header_overflow") == 1
    assert len(warnings(w, "header_overflow")) == 1
    assert len(backend_saw(w, "/echo")) == 1  # stream 3 only
    still_serves(w)


def test_header_list_over_the_limit_is_answered_431(proxy):
    w = proxy
    h = H2(w.ports["public"])
    extra = [(f"x-h{i}", os.urandom(500).hex()) for i in range(100)]  # ~100 KB > 64 KiB
    block = h.enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "a"),
                          (":path", "/echo")] + extra)
    parts = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    assert 2 <= len(parts) <= 8
    frames = HeadersFrame(1, data=parts[0], flags=["END_STREAM"]).serialize()
    for i, p in enumerate(parts[1:], 2):
        frames += ContinuationFrame(1, data=p, flags=["END_HEADERS"] if i == len(parts) else []
                                    ).serialize()
    h.send(frames)
    assert h.answer(1) == 431
    h.send(h.request(3))
    assert h.answer(3) == 200
    assert violations(w, "header_overflow") == 1
    still_serves(w)


def test_malformed_heads_reset_their_stream_and_the_log_is_rate_limited(proxy):
    w = proxy
    h = H2(w.ports["public"])
    base = [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/echo")]
    bad = [
        base + [("X-Upper", "1")],                             # upper case
        base + [(":path", "/again")],                          # a pseudo-header twice
        base[:2] + [("x", "1")] + base[2:],                    # a pseudo-header after a field
        base + [("connection", "keep-alive")],                 # connection-specific
        base + [("te", "gzip")],                               # TE other than trailers
        base[:1] + base[2:],                                   # no :scheme
        base + [(":status", "200")],                           # a response pseudo-header
    ]
    sid = 1
    for fields in bad:
        h.send(h.headers(sid, fields))
        assert h.answer(sid) == ("rst", PROTOCOL_ERROR), fields
        sid += 2
    # Many more in a burst: each counted, the log keeps to a few lines.
    h.send(b"".join(h.headers(sid + 2 * i, base + [("X-Upper", "1")]) for i in range(50)))
    assert h.answer(sid + 98) == ("rst", PROTOCOL_ERROR)
    sid += 100
    assert wait_for(lambda: violations(w, "stream_protocol_error") == 57)
    lines = warnings(w, "stream_protocol_error")
    assert 5 <= len(lines) <= 10, lines
    assert "RST_STREAM PROTOCOL_ERROR on stream 1" in lines[0], lines[0]
    # The next second's first line tells what was dropped.
    time.sleep(1.1)
    h.send(h.headers(sid, base + [("X-Upper", "1")]))
    assert h.answer(sid) == ("rst", PROTOCOL_ERROR)
    assert wait_for(lambda: "similar lines suppressed)" in warnings(w, "stream_protocol_error")[-1])
    # The connection still serves, and nothing reached the backend.
    h.send(h.request(sid + 2))
    assert h.answer(sid + 2) == 200
    assert len(backend_saw(w, "/echo")) == 1
    assert w.stat("weft_listener_http2_goaways_sent_total", listener="public") == 0
    still_serves(w)


def test_content_length_that_disagrees_with_data_resets_the_stream(proxy):
    w = proxy
    h = H2(w.ports["public"])
    h.send(h.request(1, "/sink", "POST", [("content-length", "10")], end_stream=False)
           + DataFrame(1, data=b"abc", flags=["END_STREAM"]).serialize())
    assert h.answer(1) == ("rst", PROTOCOL_ERROR)
    h.send(h.request(3, "/sink", "POST", [("content-length", "2")], end_stream=False)
           + DataFrame(3, data=b"abcde", flags=["END_STREAM"]).serialize())
    assert h.answer(3) == ("rst", PROTOCOL_ERROR)
    assert wait_for(lambda: violations(w, "stream_protocol_error") == 2)
    h.send(h.request(5))
    assert h.answer(5) == 200
    still_serves(w)


# ---- Slow readers and upgrades ----


def test_a_reader_that_never_opens_its_window_holds_bounded_memory(proxy):
    w = proxy
    still_serves(w)  # warm: pools, buffers
    rss = w.rss_kb()
    h = H2(w.ports["public"])
    h.send(h.request(1, "/bytes/50000000"))
    assert h.answer(1) == 200
    # The default windows (64 KiB) and no WINDOW_UPDATE: the proxy sends what
    # they allow and reads no more from the backend than its buffers hold.
    h.read(timeout=2.0)
    got = sum(len(f.data) for f in h.frames if isinstance(f, DataFrame))
    assert got == 65535, got
    upstream = w.stat("weft_cluster_upstream_bytes_received_total", cluster="c")
    assert upstream < 4 * 1024 * 1024, upstream
    time.sleep(1.0)
    assert w.stat("weft_cluster_upstream_bytes_received_total", cluster="c") == upstream
    assert w.rss_kb() - rss < 16 * 1024
    assert not h.closed
    still_serves(w)
    h.close()


def test_a_client_reading_none_of_many_streams_holds_the_connection_cap(weft, backends):
    # 100 streams of large responses and a client that reads none of them
    # (no WINDOW_UPDATE). Each stream may queue 64 KiB for the client; all of
    # them together at most connection_send_buffer (256 KiB here) plus one
    # read. What each stream's HTTP/1.1 upstream exchange has read and not
    # yet handed on (one read, at most 64 KiB) comes on top: 100 x 64 KiB +
    # 256 KiB + the client's 64 KiB window is the most weft may have taken
    # from the upstreams (without the cap it takes ~11 MB).
    b = backends()
    conf = simple_config({"c": [b.addr]}, workers=1,
                         extra_listener="    http2: {connection_send_buffer: 262144}\n")
    w = weft(conf)
    h = H2(w.ports["public"])
    h.send(b"".join(h.request(1 + 2 * i, "/bytes/50000000") for i in range(100)))
    assert h.answer(1) == 200
    time.sleep(3.0)
    got = w.stat("weft_cluster_upstream_bytes_received_total", cluster="c")
    assert got <= 100 * 65536 + 262144 + 65536 + 65536, got
    time.sleep(1.0)
    assert w.stat("weft_cluster_upstream_bytes_received_total", cluster="c") - got < 64 * 1024
    assert not h.closed
    # Another client is served meanwhile.
    h2 = H2(w.ports["public"])
    h2.send(h2.request(1, "/other"))
    assert h2.answer(1) == 200
    h2.close()
    h.close()


def test_upgrade_to_h2c_is_served_as_http1(proxy):
    w = proxy
    s = socket.create_connection(("127.0.0.1", w.ports["public"]), timeout=5)
    req = (b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
    s.sendall(req + b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
    out = b""
    while out.count(b"HTTP/1.1 200") < 2:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    assert out.startswith(b"HTTP/1.1 200"), out[:200]
    assert b" 101 " not in out and out.count(b"HTTP/1.1 200") == 2, out
    # The backend saw a plain request: the upgrade and its settings are gone.
    first = out.split(b"\r\n\r\n", 1)[1].lower()
    assert b"upgrade" not in first and b"http2-settings" not in first, first
    assert w.stat("weft_listener_downstream_cx_http2_total", listener="public") == 0
