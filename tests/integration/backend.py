#!/usr/bin/env python3
"""weft's test backend: a small HTTP/1.1 origin server for integration tests.

It speaks just enough HTTP/1.1 to be a real peer, and it records what it saw
so that tests can assert on it:

  GET  /echo...          200, JSON of the request (method, target, headers, body length)
  GET  /bytes/N          N bytes with Content-Length (streamed)
  GET  /chunked/N        N bytes with chunked encoding and a trailer
  GET  /close/N          N bytes delimited by closing the connection (no framing)
  GET  /status/CODE      an empty response with that status
  GET  /bigheader/N      a response whose head carries an N-byte header
  GET  /then-close       a keep-alive response, then the connection is closed
  GET  /sleep/MS         answers after MS milliseconds
  GET  /early-hints      a 103 interim response, then 200
  POST /sink             reads the whole body (any framing) and returns its
                         length and sha256 (and trailers) as JSON
  GET  /ws               answers Upgrade with 101, then echoes bytes back
  GET  /_stats           {"connections": accepted so far, "requests": N, "requests_seen": [...],
                          "hosts_seen": [...] (the Host of each, in order)}

Usage: backend.py PORT [--name NAME]; prints "backend listening PORT" when ready.
"""
import asyncio
import hashlib
import json
import sys

STATE = {"connections": 0, "requests": 0, "seen": [], "hosts": []}
NAME = "backend"


async def read_head(reader):
    data = await reader.readuntil(b"\r\n\r\n")
    lines = data.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        k, v = line.split(":", 1)
        headers.append((k.strip(), v.strip()))
    return method, target, version, headers


def hget(headers, name):
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


async def read_body(reader, headers, sink):
    te = hget(headers, "transfer-encoding")
    trailers = []
    if te and te.lower() == "chunked":
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:
                    t = await reader.readuntil(b"\r\n")
                    if t == b"\r\n":
                        break
                    trailers.append(t.decode("latin-1").strip())
                break
            remaining = size
            while remaining:
                chunk = await reader.read(min(remaining, 1 << 16))
                if not chunk:
                    raise ConnectionError("eof in chunk")
                sink(chunk)
                remaining -= len(chunk)
            await reader.readexactly(2)
    else:
        remaining = int(hget(headers, "content-length") or 0)
        while remaining:
            chunk = await reader.read(min(remaining, 1 << 16))
            if not chunk:
                raise ConnectionError("eof in body")
            sink(chunk)
            remaining -= len(chunk)
    return trailers


async def write_n(writer, n, chunked=False):
    block = b"x" * 65536
    sent = 0
    while sent < n:
        part = block[: min(65536, n - sent)]
        if chunked:
            writer.write(b"%x\r\n" % len(part) + part + b"\r\n")
        else:
            writer.write(part)
        sent += len(part)
        await writer.drain()


async def handle(reader, writer):
    STATE["connections"] += 1
    try:
        while True:
            try:
                method, target, version, headers = await read_head(reader)
            except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                return
            STATE["requests"] += 1
            STATE["seen"].append(f"{method} {target}")
            STATE["hosts"].append(hget(headers, "host") or "")
            del STATE["seen"][:-1000], STATE["hosts"][:-1000]
            h = hashlib.sha256()
            length = 0

            def sink(b):
                nonlocal length
                h.update(b)
                length += len(b)

            if target == "/ws" and (hget(headers, "upgrade") or "").lower() == "websocket":
                writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\n\r\n")
                await writer.drain()
                while True:
                    data = await reader.read(65536)
                    if not data:
                        writer.write_eof()
                        return
                    writer.write(data)
                    await writer.drain()
            if target.startswith("/ws"):
                pass
            trailers = await read_body(reader, headers, sink)
            close = (hget(headers, "connection") or "").lower() == "close"
            extra = b"connection: close\r\n" if close else b""
            head_only = method == "HEAD"

            def respond(status, body, ctype=b"application/json"):
                writer.write(b"HTTP/1.1 %d X\r\ncontent-type: %s\r\ncontent-length: %d\r\nx-backend: %s\r\n%s\r\n"
                             % (status, ctype, len(body), NAME.encode(), extra))
                if not head_only:
                    writer.write(body)

            parts = target.split("?")[0].split("/")
            if target.startswith("/_stats"):
                respond(200, json.dumps({"connections": STATE["connections"], "requests": STATE["requests"],
                                         "requests_seen": STATE["seen"][-200:],
                                         "hosts_seen": STATE["hosts"][-200:]}).encode())
            elif target.startswith("/bytes/"):
                n = int(parts[2])
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nx-backend: %s\r\n%s\r\n" % (n, NAME.encode(), extra))
                if not head_only:
                    await write_n(writer, n)
            elif target.startswith("/chunked/"):
                n = int(parts[2])
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n%s\r\n" % extra)
                await write_n(writer, n, chunked=True)
                writer.write(b"0\r\nx-checksum: done\r\n\r\n")
            elif target.startswith("/close/"):
                n = int(parts[2])
                writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
                await write_n(writer, n)
                await writer.drain()
                writer.close()
                return
            elif target.startswith("/then-close"):
                # Answers as if the connection stays open, then closes it: a
                # pooled connection that dies before its next use.
                respond(200, b"bye\n", b"text/plain")
                await writer.drain()
                writer.close()
                return
            elif target.startswith("/bigheader/"):
                writer.write(b"HTTP/1.1 200 OK\r\nx-big: %s\r\ncontent-length: 0\r\n\r\n" % (b"b" * int(parts[2])))
            elif target.startswith("/status/"):
                respond(int(parts[2]), b"")
            elif target.startswith("/sleep/"):
                await asyncio.sleep(int(parts[2]) / 1000)
                respond(200, b"slept\n", b"text/plain")
            elif target.startswith("/early-hints"):
                writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n")
                respond(200, b"after hints\n", b"text/plain")
            elif target.startswith("/sink"):
                respond(200, json.dumps({"length": length, "sha256": h.hexdigest(), "trailers": trailers}).encode())
            else:
                respond(200, json.dumps({"method": method, "target": target, "version": version,
                                         "headers": headers, "body_length": length, "backend": NAME}).encode())
            await writer.drain()
            if close:
                writer.close()
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    global NAME
    port = int(sys.argv[1])
    if "--name" in sys.argv:
        NAME = sys.argv[sys.argv.index("--name") + 1]
    server = await asyncio.start_server(handle, "127.0.0.1", port, limit=1 << 20, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    print(f"backend listening {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
