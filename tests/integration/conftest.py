"""Fixtures for weft's integration tests: real processes on loopback.

Every server binds port 0 (or a port the kernel just handed out) and reports
its port; every process is killed at teardown. Tools the tests need (curl,
nginx, redis) must be installed (scripts/deps.sh): a missing one fails the
test loudly instead of skipping it.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_addoption(parser):
    parser.addoption("--weft", default=os.environ.get("WEFT_BIN", ""), help="path to the weft binary")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running tests (large transfers, soak)")


@pytest.fixture(scope="session")
def weft_bin(pytestconfig):
    path = pytestconfig.getoption("--weft")
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"weft binary not found (pass --weft PATH): {path!r}")
    return path


def require(tool):
    path = shutil.which(tool) or (os.path.exists(f"/usr/sbin/{tool}") and f"/usr/sbin/{tool}")
    if not path:
        pytest.fail(f"{tool} is required for this test; run scripts/deps.sh")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"port {port} did not open")


class Proc:
    def __init__(self, args, **kw):
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)

    def readline(self, timeout=10.0):
        import select
        deadline = time.time() + timeout
        while time.time() < deadline:
            r, _, _ = select.select([self.p.stdout], [], [], 0.1)
            if r:
                return self.p.stdout.readline()
            if self.p.poll() is not None:
                break
        err = self.p.stderr.read() if self.p.poll() is not None else ""
        raise RuntimeError(f"{self.p.args[0]}: no output (exit {self.p.poll()}): {err}")

    def stop(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


class Backend:
    def __init__(self, name):
        self.proc = Proc([sys.executable, os.path.join(HERE, "backend.py"), "0", "--name", name])
        line = self.proc.readline()
        assert line.startswith("backend listening"), line
        self.port = int(line.split()[-1])
        self.name = name
        self.addr = f"127.0.0.1:{self.port}"

    def stats(self):
        with urllib.request.urlopen(f"http://{self.addr}/_stats", timeout=5) as r:
            return json.loads(r.read())


@pytest.fixture
def backends():
    made = []

    def make(name="b"):
        b = Backend(name)
        made.append(b)
        return b

    yield make
    for b in made:
        b.proc.stop()


class Weft:
    """A running `weft proxy` with the ports it reported."""

    def __init__(self, weft_bin, config_text, tmpdir, extra=()):
        self.dir = tmpdir
        self.config = os.path.join(tmpdir, "proxy.yaml")
        with open(self.config, "w") as f:
            f.write(config_text)
        self.stderr_path = os.path.join(tmpdir, "weft.log")
        self.stderr = open(self.stderr_path, "w")
        self.p = subprocess.Popen([weft_bin, "proxy", "--config", self.config, *extra],
                                  stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("weft proxy listening"):
            self.p.kill()
            raise RuntimeError(f"weft did not start: {line!r} {open(self.stderr_path).read()}")
        self.ports = {}
        for part in line.split()[3:]:
            name, addr = part.split("=", 1)
            self.ports[name] = int(addr.rsplit(":", 1)[1])

    def url(self, listener="public", path="/"):
        return f"http://127.0.0.1:{self.ports[listener]}{path}"

    def admin(self, path, method="GET"):
        req = urllib.request.Request(f"http://127.0.0.1:{self.ports['admin']}{path}", method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stat(self, name, **labels):
        """Value of one Prometheus sample from /stats (0 when absent)."""
        _, text = self.admin("/stats")
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            if line.startswith(name + "{") and line.split("}")[0] == f"{name}{{{want}":
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def log(self):
        self.stderr.flush()
        return open(self.stderr_path).read()

    def rss_kb(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.stderr.close()


@pytest.fixture
def weft(weft_bin, tmp_path):
    made = []

    def make(config_text, extra=()):
        w = Weft(weft_bin, config_text, str(tmp_path), extra)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()


def simple_config(clusters, listeners=None, admin=True, extra_listener="", workers=2):
    """Builds a bootstrap: clusters is {name: [addr or (addr, weight)]}."""
    out = []
    if admin:
        out.append("admin: {address: 127.0.0.1:0}")
    out.append(f"workers: {workers}")
    out.append("listeners:")
    if listeners is None:
        first = next(iter(clusters))
        listeners = f"""  - name: public
    address: 127.0.0.1:0
{extra_listener}    routes:
      - match: {{prefix: /}}
        cluster: {first}
"""
    out.append(listeners.rstrip("\n"))
    out.append("clusters:")
    for name, eps in clusters.items():
        items = []
        for e in eps:
            if isinstance(e, tuple):
                items.append(f"{{address: {e[0]}, weight: {e[1]}}}")
            else:
                items.append(e)
        out.append(f"  - name: {name}\n    connect_timeout: 500ms\n    endpoints: [{', '.join(items)}]")
    return "\n".join(out) + "\n"


def curl(*args, timeout=30):
    require("curl")
    r = subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=timeout)
    return r


def raw(port, data, timeout=5.0, read_until_close=True):
    """Sends raw bytes and returns everything read until close or timeout."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if not read_until_close:
                break
    except socket.timeout:
        pass
    s.close()
    return out


def read_to_eof(sock):
    """Everything the peer sends until it closes."""
    out = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return out
        out += chunk
