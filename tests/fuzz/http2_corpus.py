#!/usr/bin/python3
"""Writes the seed corpus of the http2 fuzz target (tests/fuzz/corpus/http2):
valid and invalid frame sequences made with hyperframe and hpack (Debian's
python3-h2). Each file is one mode byte (see http2_fuzz.cc) and the frames.

Usage: tests/fuzz/http2_corpus.py [DIR]
"""
import os
import sys

from hpack import Encoder
from hyperframe.frame import (ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame, PingFrame,
                              PriorityFrame, PushPromiseFrame, RstStreamFrame, SettingsFrame,
                              WindowUpdateFrame)

SERVER, CLIENT, RAW, DRAIN, RESET = 0, 1, 2, 4, 8


def headers(enc, sid, fields, flags=("END_HEADERS",)):
    f = HeadersFrame(sid)
    f.data = enc.encode(fields)
    f.flags = set(flags)
    return f.serialize()


def req(path="/", method="GET", extra=()):
    return [(":method", method), (":scheme", "http"), (":authority", "fuzz.test"),
            (":path", path), *extra]


def data(sid, payload, end=False, pad=0):
    f = DataFrame(sid, data=payload)
    if end:
        f.flags.add("END_STREAM")
    if pad:
        f.flags.add("PADDED")
        f.pad_length = pad
    return f.serialize()


def settings(**kw):
    f = SettingsFrame(0)
    for k, v in kw.items():
        f.settings[getattr(SettingsFrame, k)] = v
    return f.serialize()


def ack():
    return SettingsFrame(0, flags=["ACK"]).serialize()


def seeds():
    e = Encoder
    out = {}
    enc = e()
    out["get"] = (SERVER, settings() + ack() + headers(enc, 1, req(), ("END_HEADERS", "END_STREAM")))
    enc = e()
    out["post_body"] = (SERVER, settings(INITIAL_WINDOW_SIZE=100) + headers(
        enc, 1, req("/up", "POST", [("content-length", "5")])) + data(1, b"hel") + data(1, b"lo", True))
    enc = e()
    out["trailers"] = (SERVER, settings() + headers(enc, 1, req("/t", "POST", [("te", "trailers")]))
                       + data(1, b"x" * 300, pad=20)
                       + headers(enc, 1, [("x-trailer", "1")], ("END_HEADERS", "END_STREAM")))
    enc = e()
    block = enc.encode(req("/c", extra=[("x-long", "v" * 200)]))
    h = HeadersFrame(1, data=block[:40], flags=["END_STREAM"]).serialize()
    c = ContinuationFrame(1, data=block[40:], flags=["END_HEADERS"]).serialize()
    out["continuation"] = (SERVER, settings() + h + c)
    enc = e()
    block = enc.encode(req("/flood"))
    flood = HeadersFrame(1, data=block, flags=["END_STREAM"]).serialize()
    flood += b"".join(ContinuationFrame(1, data=b"").serialize() for _ in range(12))
    out["continuation_flood"] = (SERVER, settings() + flood)
    enc = e()
    rr = b""
    for i in range(30):
        sid = 1 + 2 * i
        rr += headers(enc, sid, req(f"/r{i}")) + RstStreamFrame(sid, error_code=8).serialize()
    out["rapid_reset"] = (SERVER, settings() + rr)
    enc = e()
    out["ping_settings"] = (SERVER, settings(HEADER_TABLE_SIZE=0, MAX_FRAME_SIZE=20000,
                                             INITIAL_WINDOW_SIZE=1) +
                            b"".join(PingFrame(0, opaque_data=b"12345678").serialize() for _ in range(5))
                            + headers(enc, 1, req(), ("END_HEADERS", "END_STREAM"))
                            + WindowUpdateFrame(1, window_increment=1000).serialize()
                            + WindowUpdateFrame(0, window_increment=1000).serialize())
    out["window_overflow"] = (SERVER, settings() + WindowUpdateFrame(0, window_increment=0x7fffffff).serialize() * 2)
    enc = e()
    bad = headers(enc, 1, req(extra=[("X-Upper", "1")]), ("END_HEADERS", "END_STREAM"))
    bad += headers(enc, 3, req() + [(":path", "/again")], ("END_HEADERS", "END_STREAM"))
    bad += headers(enc, 5, req(extra=[("connection", "keep-alive")]), ("END_HEADERS", "END_STREAM"))
    bad += headers(enc, 7, req(extra=[("te", "gzip")]), ("END_HEADERS", "END_STREAM"))
    bad += headers(enc, 9, [(":method", "GET"), (":path", "/")], ("END_HEADERS", "END_STREAM"))
    bad += headers(enc, 11, req(extra=[("x", "a\x00b")]), ("END_HEADERS", "END_STREAM"))
    out["bad_headers"] = (SERVER, settings() + bad)
    enc = e()
    out["content_length"] = (SERVER, settings() + headers(enc, 1, req("/cl", "POST", [("content-length", "3")]))
                             + data(1, b"toolong", True))
    enc = e()
    out["empty_data"] = (SERVER, settings() + headers(enc, 1, req("/e", "POST"))
                         + data(1, b"") * 20 + data(1, b"", True))
    enc = e()
    bomb = [("x-bomb", "b" * 3000)] * 50
    out["hpack_bomb"] = (SERVER, settings() + headers(enc, 1, req(extra=bomb), ("END_HEADERS", "END_STREAM")))
    enc = e()
    many = b"".join(headers(enc, 1 + 2 * i, req(f"/s{i}")) for i in range(20))
    out["too_many_streams"] = (SERVER, settings() + ack() + many)
    enc = e()
    misc = PriorityFrame(3, depends_on=1, stream_weight=20).serialize()
    misc += b"\x00\x00\x03\xfa\x00\x00\x00\x00\x00abc"  # an unknown frame type
    misc += headers(enc, 1, req(), ("END_HEADERS", "END_STREAM"))
    misc += GoAwayFrame(0, last_stream_id=1, error_code=0, additional_data=b"bye").serialize()
    out["priority_goaway"] = (SERVER, settings() + misc)
    out["no_preface"] = (SERVER | RAW, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    enc = e()
    gets = b"".join(headers(enc, 1 + 2 * i, req(f"/d{i}"), ("END_HEADERS", "END_STREAM")) for i in range(4))
    out["drain"] = (SERVER | DRAIN, settings() + gets)
    enc = e()
    out["reset_by_server"] = (SERVER | RESET, settings() + headers(enc, 1, req("/x", "POST"))
                              + data(1, b"abc", True))
    # Client mode: what the server sends.
    enc = e()
    resp = settings(MAX_CONCURRENT_STREAMS=10) + ack()
    resp += headers(enc, 1, [(":status", "103"), ("link", "</a>")])
    resp += headers(enc, 1, [(":status", "200"), ("content-length", "4")])
    resp += data(1, b"body", True)
    resp += headers(enc, 3, [(":status", "200")]) + data(3, b"x" * 100)
    resp += headers(enc, 3, [("grpc-status", "0")], ("END_HEADERS", "END_STREAM"))
    resp += headers(enc, 5, [(":status", "204")], ("END_HEADERS", "END_STREAM"))
    out["client_responses"] = (CLIENT, resp)
    enc = e()
    out["client_resets"] = (CLIENT, settings() + RstStreamFrame(1, error_code=7).serialize()
                            + headers(enc, 3, [(":status", "200")])
                            + GoAwayFrame(0, last_stream_id=3, error_code=2).serialize())
    enc = e()
    pp = PushPromiseFrame(1, promised_stream_id=2, data=enc.encode(req("/pushed")), flags=["END_HEADERS"])
    out["client_push"] = (CLIENT, settings() + pp.serialize())
    enc = e()
    out["client_bad_status"] = (CLIENT | RESET, settings() + headers(enc, 1, [(":status", "2000")])
                                + headers(enc, 3, [(":status", "200"), ("Upper", "x")]))
    return out


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "http2")
    os.makedirs(d, exist_ok=True)
    for name, (mode, frames) in seeds().items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(bytes([mode]) + frames)


if __name__ == "__main__":
    main()
