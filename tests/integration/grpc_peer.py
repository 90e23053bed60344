#!/usr/bin/env python3
"""weft's gRPC test peer: a real gRPC server and client (python3-grpcio) that
the integration tests put on either side of `weft proxy` to check that it
carries gRPC over HTTP/2 faithfully.

There is no generated protobuf code: every method carries raw bytes (the
identity serializer), so the peers need nothing but grpcio. The same service
is implemented by node_grpc/peer.js (grpc-js), so a test can pair a client of
one stack with a server of the other.

Service `weft.test.Echo`; NAME is the server's --name, so a test can tell
which instance answered:

  Unary         answers `NAME:` + the request bytes
  ServerStream  request `N` or `N,SIZE`: N messages `NAME:i` (i = 0..N-1),
                each padded with '.' up to SIZE bytes when SIZE is given
  ClientStream  reads every message, answers `NAME:count=<n>,bytes=<total>`
  Bidi          answers each message as it arrives with `NAME:` + the message,
                so a ping-pong client (send, wait for the reply, send) works

Request metadata that steers the server (every method):

  x-sleep-ms: N        wait N ms before answering (gives up early when the
                       call is cancelled or its deadline passes)
  x-head-delay-ms: N   wait N ms before anything, the response head included
                       (a slow upstream as a proxy's request timeout sees it)
  x-status: CODE       end the call with that status code (an int) and the
                       message of `x-message` (default "requested"). Unary
                       and ClientStream send no response message; the streams
                       end with it after their messages. The initial metadata
                       below is sent first, so this is not trailers-only.
                       0 means a normal answer; grpcio can only send the
                       codes 1..16 (grpc-js sends any integer).
  x-trailers-only: 1   end the call at once with the x-status code (default
                       14, UNAVAILABLE), no initial metadata and no message:
                       the HTTP/2 response is a single HEADERS frame.
  x-trailer: k=v       put k=v in the trailing metadata (also on errors)
  x-interval-ms: N     ServerStream: wait N ms between messages
  x-echo: a,b          send the request metadata a and b back in the initial
                       metadata as x-echo-a and x-echo-b

A server started with --fail CODE is a bad instance: every call ends with
that status, trailers-only (as if x-trailers-only were set), or after its
initial metadata with --fail-late (the status comes in the trailers).

Initial metadata the server sends back, for the tests to see what arrived:

  x-seen-timeout    the call's remaining time in whole ms when the handler
                    started (context.time_remaining()), or "none"
  x-seen-authority  the :authority (host) of the request
  x-seen-xfcc       the x-forwarded-client-cert metadata, when present
  x-seen-peer       the client's address as host:port (through weft: weft's
                    upstream connection, so equal values mean one connection)
  x-served-by       NAME

Usage:
  grpc_peer.py server --port P [--name NAME] [--fail CODE [--fail-late]] [--head-delay-ms MS]
                                                 prints "READY <port>" (P may be 0)
  grpc_peer.py client --target HOST:PORT --method unary|server_stream|client_stream|bidi
                      [--data D ...] [--timeout S] [--metadata k=v ...] [--repeat N]
      prints one JSON line per call: {code, code_value, details, response or
      responses, initial, trailing}

Importable helpers (see their docstrings): start_server, stop_server,
make_channel, unary, server_stream, client_stream, bidi, as_text,
node_client, ensure_node_peer, raw_call (one call framed by hand with
python3-h2, to check the HTTP/2 frames themselves).
"""
import argparse
import base64
import json
import os
import queue
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node_grpc")
NODE_PEER = os.path.join(NODE_DIR, "peer.js")

SERVICE = "weft.test.Echo"
METHODS = ("Unary", "ServerStream", "ClientStream", "Bidi")
PATHS = {m: f"/{SERVICE}/{m}" for m in METHODS}

# Large enough for the proxy's large-message tests; grpcio's default receive
# limit is 4 MiB.
MAX_MESSAGE = 64 * 1024 * 1024

# Channel options every client here uses: never an HTTP proxy from the
# environment, and a subchannel (so a TCP connection) of this channel's own,
# so that the calls on one channel share exactly one HTTP/2 connection.
CHANNEL_OPTIONS = [
    ("grpc.enable_http_proxy", 0),
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]

_CODES = {c.value[0]: c for c in grpc.StatusCode}


# ---------------------------------------------------------------- server --

def _status_code(value):
    """grpc.StatusCode of an integer code; grpcio cannot send other codes."""
    try:
        return _CODES[int(value)]
    except (KeyError, ValueError):
        raise ValueError(f"x-status {value!r} is not a gRPC status code grpcio can send")


class _Controls:
    """The steering metadata of one call, read once when the handler starts
    (a failing server's --fail, when set, wins)."""

    fail = None  # the server's --fail CODE
    fail_late = False
    head_delay_ms = 0  # the server's --head-delay-ms (a slow instance)

    def __init__(self, context):
        md = {}
        for k, v in context.invocation_metadata():
            md[k] = v
        self.md = md
        self.sleep_ms = int(md.get("x-sleep-ms", "0") or 0)
        self.head_delay_ms = max(int(md.get("x-head-delay-ms", "0") or 0), _Controls.head_delay_ms)
        self.interval_ms = int(md.get("x-interval-ms", "0") or 0)
        self.status = int(md["x-status"]) if md.get("x-status") else None
        self.message = md.get("x-message", "requested")
        self.trailers_only = md.get("x-trailers-only", "") not in ("", "0")
        if _Controls.fail:
            self.status, self.message = _Controls.fail, "this instance fails every call (--fail)"
            self.trailers_only = not _Controls.fail_late
        self.trailer = None
        if md.get("x-trailer"):
            k, _, v = md["x-trailer"].partition("=")
            self.trailer = (k.strip().lower(), v)


class EchoServicer:
    """The four methods of weft.test.Echo; `name` prefixes every answer."""

    def __init__(self, name):
        self.name = name
        self.prefix = name.encode() + b":"

    # Common prologue and epilogue of every method.

    def _begin(self, context):
        """Reads the controls; answers trailers-only, or sends the initial
        metadata and sleeps. Returns the controls."""
        c = _Controls(context)
        if c.trailer:
            context.set_trailing_metadata((c.trailer,))
        if c.head_delay_ms:
            self._sleep(context, c.head_delay_ms)
        if c.trailers_only:
            # No initial metadata has gone out: grpcio sends the status (and
            # the trailers) as the only HEADERS frame of the response.
            context.abort(_status_code(c.status if c.status else 14), c.message)
        context.send_initial_metadata(self._seen(context, c))
        if c.sleep_ms:
            self._sleep(context, c.sleep_ms)
        return c

    def _seen(self, context, c):
        remaining = context.time_remaining()
        # Without a deadline grpcio reports an effectively infinite time.
        timeout = "none" if remaining is None or remaining > 1e9 else str(int(remaining * 1000))
        out = [("x-seen-timeout", timeout), ("x-served-by", self.name)]
        authority = _authority(context)
        if authority:
            out.append(("x-seen-authority", authority))
        if "x-forwarded-client-cert" in c.md:
            out.append(("x-seen-xfcc", c.md["x-forwarded-client-cert"]))
        out.append(("x-seen-peer", _peer(context.peer())))
        for key in c.md.get("x-echo", "").split(","):
            key = key.strip().lower()
            if key and key in c.md and not key.endswith("-bin"):
                out.append((f"x-echo-{key}", c.md[key]))
        return out

    @staticmethod
    def _sleep(context, ms):
        """Sleeps `ms` in small steps, returning early once the call is over
        (cancelled by the client, or past its deadline)."""
        end = time.monotonic() + ms / 1000.0
        while context.is_active():
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.01))

    def _end(self, context, c):
        """Ends the call with the requested status, if any."""
        if c.status:
            context.abort(_status_code(c.status), c.message)

    # The methods.

    def unary(self, request, context):
        c = self._begin(context)
        self._end(context, c)
        return self.prefix + request

    def server_stream(self, request, context):
        c = self._begin(context)
        n_text, _, size_text = request.decode("ascii", "replace").partition(",")
        n, size = int(n_text or 0), int(size_text or 0)
        for i in range(n):
            if not context.is_active():
                return
            if i and c.interval_ms:
                self._sleep(context, c.interval_ms)
            msg = self.prefix + str(i).encode()
            if len(msg) < size:
                msg += b"." * (size - len(msg))
            yield msg
        self._end(context, c)

    def client_stream(self, request_iterator, context):
        c = self._begin(context)
        count = total = 0
        for msg in request_iterator:
            count += 1
            total += len(msg)
        self._end(context, c)
        return self.prefix + f"count={count},bytes={total}".encode()

    def bidi(self, request_iterator, context):
        c = self._begin(context)
        for msg in request_iterator:
            yield self.prefix + msg
        self._end(context, c)

    def handler(self):
        """The generic (bytes in, bytes out) handler of the service."""
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi),
        })


def _authority(context):
    """The request's :authority. grpcio keeps it out of the invocation
    metadata; it is only reachable through the call details (a private
    attribute), so this is best effort."""
    try:
        host = context._rpc_event.call_details.host  # noqa: SLF001
        return host.decode() if isinstance(host, bytes) else str(host or "")
    except Exception:
        return ""


def _peer(peer):
    """grpcio's `ipv4:1.2.3.4:5` / `ipv6:[::1]:5` as `1.2.3.4:5` / `[::1]:5`
    (what grpc-js reports), so both servers compare alike."""
    for prefix in ("ipv4:", "ipv6:"):
        if peer.startswith(prefix):
            return peer[len(prefix):]
    return peer


def serve(port, name, fail=None, fail_late=False, head_delay_ms=0):
    """Runs the server until SIGTERM/SIGINT; prints READY <port> when serving.
    `fail`: every call ends with that status code; `head_delay_ms`: every
    call waits that long before its response head (a slow instance)."""
    _Controls.fail, _Controls.fail_late = fail, fail_late
    _Controls.head_delay_ms = head_delay_ms
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=64),
        options=[
            # Two test servers must never share a port silently.
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ],
    )
    server.add_generic_rpc_handlers((EchoServicer(name).handler(),))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    if not bound:
        print(f"grpc_peer: cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        return 1
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"READY {bound}", flush=True)
    while not stop.wait(0.5):
        pass
    # Calls still running get a moment, then are cancelled.
    server.stop(grace=0.5).wait()
    return 0


# ---------------------------------------------------------------- client --

def make_channel(target):
    """An insecure channel to `target` with CHANNEL_OPTIONS. Pass it as
    `channel=` to the call helpers to run many calls on one HTTP/2
    connection; close it with channel.close()."""
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


def _md_dict(md):
    """Metadata pairs as a dict; a key seen twice gets its values joined with
    ", " (as HTTP does). -bin values stay bytes."""
    out = {}
    for k, v in md or ():
        if k in out:
            out[k] = out[k] + (b", " if isinstance(v, bytes) else ", ") + v
        else:
            out[k] = v
    return out


def _result(call, **extra):
    """The outcome of a finished call (a grpc.Call or an RpcError)."""
    code = call.code()
    return {
        "code": code.name,
        "code_value": code.value[0],
        "details": call.details() or "",
        "initial": _md_dict(call.initial_metadata()),
        "trailing": _md_dict(call.trailing_metadata()),
        **extra,
    }


class _Channel:
    """Uses the caller's channel, or opens one for this call and closes it."""

    def __init__(self, target, channel):
        self.own = channel is None
        self.channel = make_channel(target) if self.own else channel

    def __enter__(self):
        return self.channel

    def __exit__(self, *exc):
        if self.own:
            self.channel.close()


def _meta(metadata):
    """Accepts pairs, a dict, or "k=v" strings; returns pairs."""
    if isinstance(metadata, dict):
        metadata = metadata.items()
    out = []
    for item in metadata or ():
        if isinstance(item, str):
            k, _, v = item.partition("=")
            item = (k, v)
        out.append((str(item[0]).lower(), item[1]))
    return tuple(out)


def _bytes(data):
    return data.encode() if isinstance(data, str) else bytes(data)


def unary(target, data, metadata=(), timeout=None, channel=None):
    """One Unary call. Returns {code, code_value, details, response,
    initial, trailing}: code is the status name ("OK", "PERMISSION_DENIED"),
    response the answer's bytes (None when the call failed), initial and
    trailing the metadata as dicts."""
    with _Channel(target, channel) as ch:
        method = ch.unary_unary(PATHS["Unary"], request_serializer=None, response_deserializer=None)
        try:
            response, call = method.with_call(_bytes(data), metadata=_meta(metadata), timeout=timeout)
            return _result(call, response=response)
        except grpc.RpcError as e:
            return _result(e, response=None)


def server_stream(target, n, size=0, metadata=(), timeout=None, channel=None):
    """One ServerStream call asking for `n` messages (padded to `size`).
    Returns {code, ..., responses: [bytes, ...]} with every message received
    before the call ended."""
    with _Channel(target, channel) as ch:
        method = ch.unary_stream(PATHS["ServerStream"], request_serializer=None, response_deserializer=None)
        request = f"{n},{size}" if size else str(n)
        call = method(request.encode(), metadata=_meta(metadata), timeout=timeout)
        responses = []
        try:
            for msg in call:
                responses.append(msg)
        except grpc.RpcError:
            pass
        return _result(call, responses=responses)


def client_stream(target, messages, metadata=(), timeout=None, channel=None, gap_s=0.0):
    """One ClientStream call sending `messages` (bytes or str), `gap_s`
    seconds apart. Returns {code, ..., response}."""
    def paced():
        for i, m in enumerate(messages):
            if i and gap_s:
                time.sleep(gap_s)
            yield _bytes(m)

    with _Channel(target, channel) as ch:
        method = ch.stream_unary(PATHS["ClientStream"], request_serializer=None, response_deserializer=None)
        try:
            response, call = method.with_call(paced(), metadata=_meta(metadata), timeout=timeout)
            return _result(call, response=response)
        except grpc.RpcError as e:
            return _result(e, response=None)


_DONE = object()


def bidi(target, messages, metadata=(), timeout=None, channel=None):
    """One Bidi call in ping-pong: sends a message, waits for its reply,
    then sends the next; half-closes after the last. Returns {code, ...,
    responses: [bytes, ...]}. A reply that does not come means the stream is
    stuck (e.g. a proxy buffering it): pass a `timeout` to bound the wait."""
    outbox = queue.Queue()

    def requests():
        while True:
            item = outbox.get()
            if item is _DONE:
                return
            yield item

    with _Channel(target, channel) as ch:
        method = ch.stream_stream(PATHS["Bidi"], request_serializer=None, response_deserializer=None)
        call = method(requests(), metadata=_meta(metadata), timeout=timeout)
        responses = []
        try:
            for m in messages:
                outbox.put(_bytes(m))
                responses.append(next(call))
            outbox.put(_DONE)
            for msg in call:  # nothing more is expected; reads to the status
                responses.append(msg)
        except (grpc.RpcError, StopIteration):
            pass
        finally:
            outbox.put(_DONE)
        return _result(call, responses=responses)


# ------------------------------------------------- raw HTTP/2 (python3-h2) --

def frame(message):
    """One gRPC length-prefixed message (uncompressed)."""
    return b"\0" + len(message).to_bytes(4, "big") + message


def raw_call(target, method="Unary", messages=(b"",), metadata=(), timeout=5.0):
    """One call made by hand with python3-h2, to look at the HTTP/2 framing
    itself (what grpcio hides): e.g. that a trailers-only answer is one
    HEADERS frame with END_STREAM. Sends `messages` and half-closes (small
    bodies only: no flow-control waits). Returns {"frames": [(kind, value,
    end_stream), ...], "messages": [bytes, ...]} where kind is "headers"
    (value: dict), "data" (bytes), "trailers" (dict) or "reset" (error
    code)."""
    import socket

    import h2.config
    import h2.connection
    import h2.events

    host, port = target.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", PATHS[method]),
                            (":authority", target), ("content-type", "application/grpc"),
                            ("te", "trailers"), *_meta(metadata)])
    conn.send_data(sid, b"".join(frame(_bytes(m)) for m in messages), end_stream=True)
    sock.sendall(conn.data_to_send())
    frames, body, done = [], b"", False
    try:
        while not done:
            data = sock.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if getattr(ev, "stream_id", sid) != sid:
                    continue
                ended = getattr(ev, "stream_ended", None) is not None
                if isinstance(ev, h2.events.ResponseReceived):
                    frames.append(("headers", dict(ev.headers), ended))
                elif isinstance(ev, h2.events.TrailersReceived):
                    frames.append(("trailers", dict(ev.headers), ended))
                elif isinstance(ev, h2.events.DataReceived):
                    frames.append(("data", ev.data, ended))
                    body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamReset):
                    frames.append(("reset", ev.error_code, True))
                    done = True
                if isinstance(ev, h2.events.StreamEnded):
                    done = True
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    msgs = []
    while len(body) >= 5:
        n = int.from_bytes(body[1:5], "big")
        msgs.append(body[5:5 + n])
        body = body[5 + n:]
    return {"frames": frames, "messages": msgs}


# ------------------------------------------------------- process helpers --

def _read_ready(proc, timeout, errfile, what):
    """Waits for the "READY <port>" line of a server started by start_server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.1)
        if r:
            line = proc.stdout.readline()
            if line.startswith("READY "):
                return int(line.split()[1])
            if line:
                continue
        if proc.poll() is not None:
            break
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    errfile.seek(0)
    err = errfile.read().decode(errors="replace")
    raise RuntimeError(f"{what} did not print READY within {timeout}s (exit {proc.returncode}): {err}")


def start_server(port=0, name="grpc", impl="python", timeout=15.0, fail=None, fail_late=False, head_delay_ms=0):
    """Starts a gRPC echo server on 127.0.0.1:`port` (0: a port the kernel
    picks) named `name`; `impl` is "python" (this file) or "node"
    (node_grpc/peer.js, installed by ensure_node_peer()). Waits for its
    READY line and returns the subprocess.Popen, with `.port` (the port it
    listens on) and `.target` ("127.0.0.1:PORT") set. Stop it with
    stop_server(). Raises RuntimeError with the server's stderr when it does
    not come up within `timeout` seconds."""
    if impl == "python":
        args = [sys.executable, os.path.abspath(__file__), "server", "--port", str(port), "--name", name]
        if fail:
            args += ["--fail", str(fail)] + (["--fail-late"] if fail_late else [])
        if head_delay_ms:
            args += ["--head-delay-ms", str(head_delay_ms)]
    elif impl == "node":
        ensure_node_peer()
        args = ["node", NODE_PEER, "server", "--port", str(port), "--name", name]
    else:
        raise ValueError(f"impl must be 'python' or 'node', not {impl!r}")
    errfile = tempfile.TemporaryFile()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errfile, text=True)
    proc.errfile = errfile
    proc.port = _read_ready(proc, timeout, errfile, f"{impl} gRPC server {name!r}")
    proc.target = f"127.0.0.1:{proc.port}"
    return proc


def stop_server(proc, timeout=10.0):
    """SIGTERM, then SIGKILL if it has not exited within `timeout`; returns
    the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()
    errfile = getattr(proc, "errfile", None)
    if errfile:
        errfile.close()
    return proc.returncode


def ensure_node_peer():
    """Installs node_grpc's npm dependencies (node_grpc/install.sh, which
    does nothing when they are there). Raises RuntimeError when it fails."""
    if os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@grpc", "grpc-js")):
        return
    r = subprocess.run(["bash", os.path.join(NODE_DIR, "install.sh")], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"node_grpc/install.sh failed: {r.stdout}{r.stderr}")


def node_client(target, method, data=(), metadata=(), timeout=None, repeat=1, process_timeout=60):
    """Runs node_grpc/peer.js as a client: `method` is unary, server_stream,
    client_stream or bidi; `data` a string or a list of strings (the
    messages; for server_stream "N" or "N,SIZE"). With repeat > 1 it makes
    that many calls on one grpc-js client (one connection). Returns the list
    of result dicts (one per call; response(s) as str, metadata as dicts)."""
    ensure_node_peer()
    args = ["node", NODE_PEER, "client", "--target", target, "--method", method]
    for d in [data] if isinstance(data, str) else data:
        args += ["--data", d]
    for k, v in _meta(metadata):
        args += ["--metadata", f"{k}={v}"]
    if timeout is not None:
        args += ["--timeout", str(timeout)]
    if repeat != 1:
        args += ["--repeat", str(repeat)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=process_timeout)
    if r.returncode != 0:
        raise RuntimeError(f"node client failed (exit {r.returncode}): {r.stderr}")
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


# ------------------------------------------------------------------- CLI --

def as_text(result):
    """A result dict with bytes turned into text, for the JSON line (the
    messages as UTF-8, invalid bytes backslash-escaped)."""
    def text(v):
        return v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v
    out = dict(result)
    for key in ("initial", "trailing"):
        # -bin values are binary: base64, as node_grpc/peer.js prints them.
        out[key] = {k: base64.b64encode(v).decode() if isinstance(v, bytes) else v
                    for k, v in out[key].items()}
    if "response" in out:
        out["response"] = text(out["response"])
    if "responses" in out:
        out["responses"] = [text(m) for m in out["responses"]]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="weft's gRPC test peer (weft.test.Echo)")
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server", help="serve weft.test.Echo on 127.0.0.1")
    s.add_argument("--port", type=int, required=True, help="port to listen on (0: any)")
    s.add_argument("--name", default="grpc", help="prefix of every answer")
    s.add_argument("--fail", type=int, default=None, help="end every call with this status code")
    s.add_argument("--fail-late", action="store_true", help="--fail after the initial metadata")
    s.add_argument("--head-delay-ms", type=int, default=0, help="wait this long before every response head")
    c = sub.add_parser("client", help="make calls and print one JSON line per call")
    c.add_argument("--target", required=True, help="HOST:PORT")
    c.add_argument("--method", default="unary", choices=["unary", "server_stream", "client_stream", "bidi"])
    c.add_argument("--data", action="append", default=[],
                   help="message (repeat for client_stream/bidi; server_stream: N or N,SIZE)")
    c.add_argument("--timeout", type=float, default=None, help="deadline in seconds")
    c.add_argument("--metadata", action="append", default=[], help="k=v (repeatable)")
    c.add_argument("--repeat", type=int, default=1, help="calls to make on one channel")
    a = ap.parse_args(argv)

    if a.mode == "server":
        return serve(a.port, a.name, a.fail, a.fail_late, a.head_delay_ms)

    channel = make_channel(a.target)
    try:
        for _ in range(a.repeat):
            kw = dict(metadata=a.metadata, timeout=a.timeout, channel=channel)
            if a.method == "unary":
                r = unary(a.target, a.data[0] if a.data else "", **kw)
            elif a.method == "server_stream":
                n, _, size = (a.data[0] if a.data else "0").partition(",")
                r = server_stream(a.target, int(n), int(size or 0), **kw)
            elif a.method == "client_stream":
                r = client_stream(a.target, a.data, **kw)
            else:
                r = bidi(a.target, a.data, **kw)
            print(json.dumps(as_text(r)), flush=True)
    finally:
        channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
