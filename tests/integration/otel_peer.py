#!/usr/bin/env python3
"""weft's OpenTelemetry test peers, for the tracing interop tests: helpers
that run the Node.js programs of node_otel/ (npm-installed on first use by
node_otel/install.sh) and talk to them.

  node_otel/collector.js  an OTLP/HTTP trace receiver (POST /v1/traces,
                          protobuf decoded with the OpenTelemetry JS
                          generated decoder, or OTLP/JSON) that keeps every
                          span, normalised, for the test to read back
  node_otel/app.js        an HTTP service traced with the OpenTelemetry JS
                          SDK (W3C traceparent/tracestate in and out, spans
                          exported as OTLP/protobuf), or a client of one

Helpers (see their docstrings):

  ensure_node_otel()       installs the npm dependencies, or raises
                           RuntimeError naming what is missing
  Collector()              a running collector.js: .url, .spans(), .clear(),
                           .stats(), .wait_spans(), .configure(), .post(),
                           .stop()
  start_app(name, port, collector_url, next_urls)
                           a running app.js server: .port, .url, .get(),
                           .stop()
  run_client(url, collector_url, count, concurrency=1, sampled="1")
                           app.js in client mode: the per-request dicts (a
                           list, with the final summary as .summary)
  http_get(url, headers)   one plain GET: (status, headers, body as JSON)
  traceparent(trace_id, span_id, sampled=True), by_trace(spans),
  span_by_id(spans)        small helpers for assertions

Every process is started with the OTEL_* variables of the environment
removed (so the SDK only uses what app.js passes it) and, on Linux, with
the parent-death signal set to SIGKILL, so none outlives the test run even
when pytest itself is killed. stop() sends SIGTERM (app.js flushes its
spans), then SIGKILL; stop_all() stops every process still running and runs
at interpreter exit. A process's stderr is kept in a temporary file and
shown in the errors raised about it (.stderr_text() reads it).

Span kinds in the collector's spans are OTLP's numbers (SPAN_KIND_*), not
the OpenTelemetry API's: SERVER 2, CLIENT 3 (KIND_SERVER, KIND_CLIENT).
"""
import atexit
import json
import os
import select
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from node_peer import ensure_npm_dir

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node_otel")
COLLECTOR_JS = os.path.join(NODE_DIR, "collector.js")
APP_JS = os.path.join(NODE_DIR, "app.js")

# OTLP's span kinds and status codes (the numbers the collector reports).
KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = 1, 2, 3, 4, 5
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2

# Files whose presence means node_otel's dependencies are installed (the
# decoder the collector relies on included).
_INSTALLED_MARKERS = (
    "node_modules/@opentelemetry/otlp-transformer/build/src/generated/root.js",
    "node_modules/@opentelemetry/exporter-trace-otlp-proto/package.json",
    "node_modules/@opentelemetry/sdk-trace-node/package.json",
)

# Processes started here and not stopped yet.
_LIVE = set()


# --------------------------------------------------------------- install --

def ensure_node_otel():
    """Installs node_otel's npm dependencies (see node_peer.py)."""
    ensure_npm_dir("node_otel", _INSTALLED_MARKERS, "the OpenTelemetry test peers")


# ------------------------------------------------------------- processes --

def _env():
    """The environment for the node processes: this one without OTEL_*
    (an OTEL_EXPORTER_OTLP_* or OTEL_TRACES_SAMPLER from the caller would
    change what the SDK does) and without NODE_OPTIONS."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "NODE_OPTIONS"}


def _die_with_parent():
    """preexec_fn: SIGKILL this child when the process that started it
    exits (prctl PR_SET_PDEATHSIG), so no node process is left behind."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
    except Exception:
        pass


def stop_all():
    """Stops every process started here and still running."""
    for proc in list(_LIVE):
        proc.stop()


atexit.register(stop_all)


class NodeProcess:
    """A node program of node_otel/ that prints `listening <port>` when it
    is ready. `proc` is the Popen, `port` the port it reported."""

    def __init__(self, args, what, timeout=15.0):
        ensure_node_otel()
        self.what = what
        self.errfile = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(["node", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.errfile, text=True, env=_env(), cwd=NODE_DIR,
                                     preexec_fn=_die_with_parent)
        _LIVE.add(self)
        try:
            self.port = self._read_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _read_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if r:
                line = self.proc.stdout.readline()
                if line.startswith("listening "):
                    return int(line.split()[1])
                if line:
                    continue
            if self.proc.poll() is not None:
                break
        raise RuntimeError(f"{self.what} did not print `listening <port>` within {timeout}s "
                           f"(exit {self.proc.poll()}): {self.stderr_text()}")

    def stderr_text(self):
        """What the process wrote on stderr so far."""
        try:
            self.errfile.flush()
            self.errfile.seek(0)
            return self.errfile.read().decode(errors="replace")
        except ValueError:  # closed by stop()
            return ""

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=10.0):
        """SIGTERM (app.js flushes its spans first), then SIGKILL if it has
        not exited within `timeout`. Returns the exit status. Safe to call
        twice."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout and not self.proc.stdout.closed:
            self.proc.stdout.close()
        _LIVE.discard(self)
        return self.proc.returncode

    def close(self):
        """stop(), and forget the stderr file."""
        self.stop()
        self.errfile.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------- HTTP --

def _request(method, url, body=None, headers=None, timeout=10.0):
    """One HTTP request, never through a proxy from the environment:
    (status, headers dict, body bytes). HTTP errors are answers too."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def http_get(url, headers=None, timeout=10.0):
    """One GET: (status, headers, body) with the body parsed as JSON when it
    is JSON (app.js answers always are), else text."""
    status, hdrs, body = _request("GET", url, headers=headers, timeout=timeout)
    text = body.decode(errors="replace")
    try:
        return status, hdrs, json.loads(text)
    except ValueError:
        return status, hdrs, text


# ------------------------------------------------------------ collector --

class Collector(NodeProcess):
    """A running node_otel/collector.js on 127.0.0.1 (`port` 0: it picks
    one). `delay_ms`: it answers every export that late (a slow collector);
    `status`: it answers every export with that HTTP status (a failing
    collector; the spans are not kept). `.url` is http://127.0.0.1:PORT,
    the exporter endpoint is .url + "/v1/traces" (.traces_url)."""

    def __init__(self, port=0, delay_ms=0, status=None, timeout=15.0):
        args = [COLLECTOR_JS, str(port)]
        if delay_ms:
            args += ["--delay-ms", str(delay_ms)]
        if status is not None:
            args += ["--status", str(status)]
        super().__init__(args, "collector.js", timeout)
        self.url = f"http://127.0.0.1:{self.port}"
        self.traces_url = self.url + "/v1/traces"

    def _json(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        status, _, out = _request(method, self.url + path, data,
                                  {"Content-Type": "application/json"} if data else None)
        if status != 200:
            raise RuntimeError(f"collector {method} {path}: {status} {out!r} {self.stderr_text()}")
        return json.loads(out)

    def spans(self):
        """Every span received (and kept) so far, normalised: dicts with
        traceId, spanId, parentSpanId ('' for none), traceState, name, kind,
        service, resource {attrs}, attributes, statusCode, statusMessage,
        startNs, endNs (strings), format ('protobuf' or 'json')."""
        return self._json("GET", "/spans")

    def clear(self):
        """Forgets the spans received so far (the stats stay)."""
        self._json("DELETE", "/spans")

    def stats(self):
        """{requests, spans, errors, refused, dropped, byFormat: {protobuf,
        json}, contentTypes, lastError}; see collector.js."""
        return self._json("GET", "/stats")

    def configure(self, delay_ms=None, status=None):
        """Changes the answer delay and status while running (status=200
        makes a failing collector healthy)."""
        cfg = {}
        if delay_ms is not None:
            cfg["delayMs"] = delay_ms
        if status is not None:
            cfg["status"] = status
        return self._json("PUT", "/config", cfg)

    def post(self, body, content_type="application/json", headers=None, timeout=10.0):
        """POSTs an export by hand: `body` is bytes, a str, or (JSON) a
        dict. Returns (status, headers, body bytes)."""
        if isinstance(body, dict):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        hdrs = {"Content-Type": content_type, **(headers or {})}
        return _request("POST", self.traces_url, body, hdrs, timeout)

    def wait_spans(self, want, timeout=10.0, step=0.05):
        """Polls until `want` holds and returns the spans: `want` is a count
        (at least that many spans) or a predicate on the list of spans.
        Raises AssertionError with what arrived when `timeout` passes."""
        pred = (lambda spans: len(spans) >= want) if isinstance(want, int) else want
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if pred(spans):
                return spans
            if time.monotonic() >= deadline:
                raise AssertionError(f"collector: spans not there after {timeout}s (want {want!r}); "
                                     f"stats {self.stats()}; {len(spans)} spans: {spans}; "
                                     f"stderr: {self.stderr_text()}")
            time.sleep(step)


# ------------------------------------------------------------------ app --

class App(NodeProcess):
    """A running node_otel/app.js server; see start_app."""

    def __init__(self, name, port, collector_url, next_urls=(), sampled=None, timeout=15.0):
        args = [APP_JS, "--name", name, "--port", str(port), "--collector", collector_url]
        for u in next_urls:
            args += ["--next", u]
        if sampled is not None:
            args += ["--sampled", str(sampled)]
        super().__init__(args, f"app.js {name!r}", timeout)
        self.name = name
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path="/", headers=None, timeout=10.0):
        """One GET to the app itself: (status, headers, JSON body)."""
        return http_get(self.url + path, headers, timeout)


def start_app(name, port=0, collector_url="", next_urls=(), sampled=None, timeout=15.0):
    """Starts app.js as the service `name` on 127.0.0.1:`port` (0: it
    picks), exporting its spans to `collector_url` (a Collector's .url) and
    calling each of `next_urls` (full URLs, in order) for every request.
    `sampled`: "parent" (app.js's default: follow the caller's flag), "1"
    or "0". Returns the App (.port, .url, .get(), .stop())."""
    if not collector_url:
        raise ValueError("collector_url is required")
    return App(name, port, collector_url, next_urls, sampled, timeout)


class ClientResults(list):
    """The per-request dicts of run_client ({traceId, spanId, sampled,
    status, ms, body, and error when no answer came}), with the final line
    {done, ok, failed} as `.summary` and app.js's stderr as `.stderr`."""

    summary = None
    stderr = ""


def run_client(url, collector_url, count, concurrency=1, sampled="1", name="client", timeout=120.0):
    """Runs app.js in client mode: `count` GETs to `url`, `concurrency` at a
    time, each under a root CLIENT span of service `name` ("1": sampled,
    flags 01; "0": not sampled, flags 00; "parent": the SDK's default),
    exporting to `collector_url`. Returns a ClientResults (a list of the
    per-request dicts, .summary). Every span has been sent to the
    collector when this returns (the client flushes before it exits).
    Raises RuntimeError with its stderr when it fails or has no summary."""
    ensure_node_otel()
    args = ["node", APP_JS, "--name", name, "--collector", collector_url, "--client", url,
            "--count", str(count), "--concurrency", str(concurrency), "--sampled", str(sampled)]
    try:
        r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=_env(),
                           cwd=NODE_DIR, timeout=timeout, preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired as e:  # run() has killed it
        raise RuntimeError(f"app.js client did not finish within {timeout}s: {e.stderr}") from None
    out = ClientResults()
    out.stderr = r.stderr
    for line in r.stdout.splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        if item.get("done"):
            out.summary = item
        else:
            out.append(item)
    if r.returncode != 0 or out.summary is None:
        raise RuntimeError(f"app.js client failed (exit {r.returncode}): {r.stderr}{r.stdout[-2000:]}")
    return out


# -------------------------------------------------------------- helpers --

def traceparent(trace_id, span_id, sampled=True):
    """A version-00 traceparent header value."""
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def by_trace(spans):
    """{traceId: [spans of that trace]}."""
    out = {}
    for s in spans:
        out.setdefault(s["traceId"], []).append(s)
    return out


def span_by_id(spans):
    """{spanId: span}."""
    return {s["spanId"]: s for s in spans}
