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


_handed_out = set()


def terminate(p, grace=10):
    """SIGTERM, then SIGKILL after `grace` seconds; waits for the exit."""
    p.terminate()
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def stop_nginx(p):
    """Stops an nginx started in the foreground: SIGTERM, so that its master
    stops its workers (SIGKILL would leave them running, orphaned)."""
    terminate(p)


def start_nginx(tmp_path, body):
    """nginx in the foreground on a free port, answering every request 200
    with `body`: (Popen, port). Stop it with stop_nginx."""
    nginx = require("nginx")
    port = free_port()
    conf = tmp_path / f"nginx-{port}.conf"
    conf.write_text(f"""
daemon off; worker_processes 1; pid {tmp_path}/nginx-{port}.pid; error_log {tmp_path}/nginx-{port}.err;
events {{ worker_connections 256; }}
http {{ access_log off; client_body_temp_path {tmp_path};
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "{body}\\n"; }} }} }}
""")
    p = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path)])
    try:
        wait_port(port)
    except BaseException:
        stop_nginx(p)
        raise
    return p, port


def free_port():
    """A port nothing listens on now, never the same one twice in a run, and
    out of the kernel's ephemeral range (32768 and up here): a port the kernel
    hands out itself (bind to 0) may be taken again, by an outgoing
    connection's source port, before the process under test binds it
    ("Address already in use"). 10000-19999: test_up's `weft up` port bases
    take 20000-32399."""
    import random
    while True:
        port = random.randint(10000, 19999)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


def wait_for(pred, timeout=5.0, step=0.02):
    """Polls `pred` until it returns something true or `timeout` passes; returns its last value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


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


class Managed:
    """A process started by a test: `p` (Popen), its stderr file `stderr`
    written at `log_path`."""

    def log(self):
        self.stderr.flush()
        return open(self.log_path).read()

    def stop(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.stderr.close()


class Weft(Managed):
    """A running `weft proxy` with the ports it reported."""

    def __init__(self, weft_bin, config_text, tmpdir, extra=()):
        self.dir = tmpdir
        self.config = os.path.join(tmpdir, "proxy.yaml")
        with open(self.config, "w") as f:
            f.write(config_text)
        self.stderr_path = self.log_path = os.path.join(tmpdir, "weft.log")
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

    def rss_kb(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


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


def simple_config(clusters, listeners=None, admin=True, extra_listener="", workers=2, lb=None, outlier=None):
    """Builds a bootstrap: clusters is {name: [addr or (addr, weight)]};
    `lb` sets every cluster's policy (default: the proxy's, ewma), `outlier`
    every cluster's outlier_detection (a YAML flow map; default: the proxy's, on)."""
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
        policy = f"\n    lb: {lb}" if lb else ""
        if outlier:
            policy += f"\n    outlier_detection: {outlier}"
        out.append(f"  - name: {name}{policy}\n    connect_timeout: 500ms\n    endpoints: [{', '.join(items)}]")
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


class Server(Managed):
    """A running `weft server` (embedded store unless `store` is given)."""

    def __init__(self, weft_bin, data_dir, name="s1", grpc_port=0, http_port=0, store=None, extra=()):
        self.weft_bin, self.data_dir, self.name = weft_bin, data_dir, name
        self.grpc_port, self.http_port, self.store, self.extra = grpc_port, http_port, store, extra
        self.start()

    def start(self):
        args = [self.weft_bin, "server", "--name", self.name,
                "--http", f"127.0.0.1:{self.http_port}", "--grpc", f"127.0.0.1:{self.grpc_port}"]
        # With --store the data dir holds only local files (bootstrap-token, join-token).
        if self.store:
            args += ["--store", self.store]
            os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
            if "--ca-kek-file" not in self.extra:
                # Servers sharing a store share the CA's key-encryption key.
                kek = STORE_KEKS.setdefault(self._store_key(), os.path.join(
                    tempfile.mkdtemp(prefix="weft-kek-"), "ca-kek"))
                if not os.path.exists(kek):
                    with open(os.open(kek, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                        f.write(os.urandom(32).hex())
                args += ["--ca-kek-file", kek]
        args += ["--data-dir", self.data_dir]
        self.log_path = os.path.join(os.path.dirname(self.data_dir.rstrip("/")) or ".", f"server-{self.name}.log")
        self.stderr = open(self.log_path, "a")
        self.p = subprocess.Popen([*args, *self.extra], stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("weft server listening"):
            self.p.kill()
            raise RuntimeError(f"weft server did not start: {line!r} {open(self.log_path).read()}")
        fields = dict(part.split("=", 1) for part in line.split()[3:])
        self.http = fields["http"]
        self.grpc = fields["grpc"]
        self.https = fields.get("https", "")  # with --https ADDR
        # Keep the same ports across restarts.
        self.http_port = int(self.http.rsplit(":", 1)[1])
        self.grpc_port = int(self.grpc.rsplit(":", 1)[1])
        self.url = f"http://{self.http}"
        # Only the first server on a store makes (and writes) the join token;
        # replicas started after it on the same store share it.
        token_file = os.path.join(self.data_dir, "join-token")
        key = self._store_key()
        self.join_token = open(token_file).read().strip() if os.path.exists(token_file) else ""
        if self.join_token and key:
            STORE_JOIN_TOKENS.setdefault(key, self.join_token)
        self.join_token = self.join_token or STORE_JOIN_TOKENS.get(key, "")
        ca = os.path.join(self.data_dir, "ca.pem")
        # Without --dev the config stream is TLS: clients verify it with ca.pem.
        self.ca_file = ca if os.path.exists(ca) else ""
        _ = self.token  # noted for the replicas started after this one on its store
        SERVERS[self.grpc] = self

    def _store_key(self):
        return tuple(sorted(self.store.split("://", 1)[1].split(","))) if self.store else None

    @property
    def token(self):
        """The ACL token the tests' API calls and CLI commands carry: the
        bootstrap (management) token from DATA_DIR/bootstrap-token, or one a
        replica on the same store made (only the replica that bootstrapped
        the ACLs has the secret); "" when ACLs are off (--dev)."""
        path = os.path.join(self.data_dir, "bootstrap-token")
        token = open(path).read().strip() if os.path.exists(path) else ""
        key = self._store_key()
        if token and key:
            STORE_TOKENS.setdefault(key, token)
        return token or STORE_TOKENS.get(key, "")

    def request(self, method, path, body=None, timeout=40, token=None, headers=None):
        """One API call: (status, headers, body text). It carries `token`
        (default: self.token; "" for none, the anonymous token) as
        X-Consul-Token, and a body as application/json unless `headers` says
        otherwise (urllib's default, a form type, is refused with 415)."""
        data = body if body is None or isinstance(body, bytes) else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        token = self.token if token is None else token
        if token:
            hdrs["X-Consul-Token"] = token
        hdrs.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()

    def get_json(self, path, timeout=40):
        status, headers, body = self.request("GET", path, timeout=timeout)
        assert status == 200, (path, status, body)
        return json.loads(body), int(headers.get("X-Consul-Index", "0"))

    def get_json_as(self, path, token):
        """GET with another token: the body as JSON (the status must be 200)."""
        status, _, body = self.request("GET", path, token=token)
        assert status == 200, (path, status, body)
        return json.loads(body)

    def register(self, node, service, port, sid=None, address="127.0.0.1", **extra):
        svc = {"Service": service, "ID": sid or service, "Port": port, **extra}
        status, _, body = self.request("PUT", "/v1/catalog/register",
                                       {"Node": node, "Address": address, "Service": svc})
        assert status == 200, body

    def deregister(self, node, sid):
        status, _, body = self.request("PUT", "/v1/catalog/deregister", {"Node": node, "ServiceID": sid})
        assert status == 200, body

    def metric(self, name):
        _, _, text = self.request("GET", "/metrics")
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def ctl(self, *args, input=None, token=None):
        """A weft CLI command against this server, with `token` (default:
        self.token; "" for none) in WEFT_TOKEN."""
        env = {k: v for k, v in os.environ.items() if k != "WEFT_TOKEN"}
        token = self.token if token is None else token
        if token:
            env["WEFT_TOKEN"] = token
        return subprocess.run([self.weft_bin, *args, "--server", self.url], capture_output=True,
                              text=True, input=input, timeout=30, env=env)



@pytest.fixture
def server(weft_bin, tmp_path):
    made = []

    def make(name="s1", data_dir=None, **kw):
        s = Server(weft_bin, data_dir or str(tmp_path / f"data-{name}"), name=name, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


# gRPC address -> the Server tests started there, so a sidecar or an agent
# pointed at it gets its CA file and the tokens it needs.
SERVERS = {}
# A store's endpoints (sorted) -> the bootstrap token of a server on it.
STORE_TOKENS = {}
# A store's endpoints (sorted) -> the join token the first server on it made.
STORE_JOIN_TOKENS = {}
# A store's endpoints (sorted) -> the CA key-encryption key file its servers share.
STORE_KEKS = {}


def server_of(grpc):
    """The Server behind a comma-separated list of gRPC addresses (the
    first one tests started), or None."""
    return next((SERVERS[g] for g in grpc.split(",") if g in SERVERS), None)


class MeshProxy(Managed):
    """A `weft proxy --server ... --service NAME` sidecar."""

    def __init__(self, weft_bin, grpc, service, tmpdir, extra=(), env_extra=None, popen_kw=None):
        self.log_path = os.path.join(tmpdir, f"proxy-{service}-{time.time_ns()}.log")
        self.stderr = open(self.log_path, "w")
        env = {k: v for k, v in os.environ.items() if k != "WEFT_TOKEN"}
        srv = server_of(grpc)
        # Without an agent a sidecar presents an ACL token with service:write
        # on its service (the tests' management token, unless `extra` or
        # WEFT_TOKEN in `env_extra` says otherwise) and verifies the TLS
        # server with its CA file.
        if srv and srv.token:
            env["WEFT_TOKEN"] = srv.token
        env.update(env_extra or {})
        args = list(extra)
        if srv and srv.ca_file and "--server-ca" not in args:
            args += ["--server-ca", srv.ca_file]
        self.p = subprocess.Popen([weft_bin, "proxy", "--server", grpc, "--service", service,
                                   "--admin", "127.0.0.1:0", "--workers", "2", *args],
                                  stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env,
                                  **(popen_kw or {}))
        line = self.p.stdout.readline()
        if not line.startswith("weft proxy listening"):
            self.p.kill()
            raise RuntimeError(f"proxy did not start: {line!r} {open(self.log_path).read()}")
        self.admin_port = int(line.split("admin=")[1].split()[0].rsplit(":", 1)[1])

    def admin(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def config(self):
        return json.loads(self.admin("/config_dump")[1])

    def endpoints(self, cluster):
        for c in self.config().get("clusters", []):
            if c["name"] == cluster:
                return sorted(e["address"] if isinstance(e, dict) else e for e in c["endpoints"])
        return None

    def wait_ready(self, timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.admin("/ready")[0] == 200:
                return
            time.sleep(0.05)
        raise RuntimeError(f"proxy not ready: {self.admin('/ready')} {self.log()}")



@pytest.fixture
def mesh_proxy(weft_bin, tmp_path):
    made = []

    def make(grpc, service, extra=(), env=None, popen_kw=None):
        """`popen_kw`: more for subprocess.Popen (user=, group= to run the
        sidecar as another uid)."""
        m = MeshProxy(weft_bin, grpc, service, str(tmp_path), extra, env, popen_kw)
        made.append(m)
        return m

    yield make
    for m in made:
        m.stop()


class Agent(Managed):
    """A running `weft agent` with its HTTP and DNS ports."""

    def __init__(self, weft_bin, grpc, node, data_dir, tmpdir, extra=()):
        self.weft_bin, self.grpc, self.node, self.data_dir, self.tmpdir = weft_bin, grpc, node, data_dir, tmpdir
        self.extra = extra
        self.http_port = self.dns_port = 0
        self.start()

    def start(self, grpc=None):
        self.log_path = os.path.join(self.tmpdir, f"agent-{self.node}.log")
        self.stderr = open(self.log_path, "a")
        self.p = subprocess.Popen([self.weft_bin, "agent", "--server", grpc or self.grpc, "--node", self.node,
                                   "--data-dir", self.data_dir, "--http", f"127.0.0.1:{self.http_port}",
                                   "--dns", f"127.0.0.1:{self.dns_port}", *self.extra],
                                  stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("weft agent listening"):
            self.p.kill()
            raise RuntimeError(f"agent did not start: {line!r} {open(self.log_path).read()}")
        fields = dict(part.split("=", 1) for part in line.split()[3:])
        self.http = fields["http"]
        self.http_port = int(self.http.rsplit(":", 1)[1])
        self.dns_port = int(fields["dns"].rsplit(":", 1)[1])
        self.url = f"http://{self.http}"

    @property
    def token(self):
        """The agent token its local API wants for writes (DATA_DIR/agent-token,
        or the file given with --agent-token-file)."""
        path = os.path.join(self.data_dir, "agent-token")
        if "--agent-token-file" in self.extra:
            path = self.extra[list(self.extra).index("--agent-token-file") + 1]
        return open(path).read().strip() if os.path.exists(path) else ""

    request = Server.request
    get_json = Server.get_json
    metric = Server.metric

    def dig(self, name, qtype="A", tcp=False, short=True):
        args = [require("dig"), "@127.0.0.1", "-p", str(self.dns_port), name, qtype, "+time=2", "+tries=1"]
        if tcp:
            args.append("+tcp")
        if short:
            args.append("+short")
        r = subprocess.run(args, capture_output=True, text=True, timeout=20)
        return r.stdout


@pytest.fixture
def agent(weft_bin, tmp_path):
    made = []

    def make(srv, node, extra=(), token=None, ca=None, data_dir=None):
        """An agent of `srv` (a Server); it joins with the server's join
        token (from a file) unless `token` says otherwise ("" for none), and
        verifies the server with its CA file unless `extra` names one or
        `ca` is "" (plaintext)."""
        token = srv.join_token if token is None else token
        args = tuple(extra)
        if token:
            path = tmp_path / f"join-token-{node}-{time.time_ns()}"
            path.write_text(token)
            args += ("--join-token-file", str(path))
        ca = srv.ca_file if ca is None else ca
        if ca and "--server-ca" not in args:
            args += ("--server-ca", ca)
        a = Agent(weft_bin, srv.grpc, node, data_dir or str(tmp_path / f"agent-{node}"), str(tmp_path), args)
        made.append(a)
        return a

    yield make
    for a in made:
        a.stop()


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """Python classes for weft's protocol, generated by protoc from
    proto/weft/v1/config.proto (python3-grpcio speaks it)."""
    try:
        import grpc  # noqa: F401
    except ImportError:
        pytest.fail("python3-grpcio is required for this test; run scripts/deps.sh")
    import importlib
    import sys
    proto_root = os.path.join(HERE, "..", "..", "proto")
    out = tmp_path_factory.mktemp("pb")
    subprocess.run([require("protoc"), f"--proto_path={proto_root}", f"--python_out={out}",
                    os.path.join(proto_root, "weft", "v1", "config.proto")], check=True)
    sys.path.insert(0, str(out))
    return importlib.import_module("weft.v1.config_pb2")


def grpc_channel(target, identity=None):
    """A gRPC channel to a server's config stream. `target` is a Server or
    an address; a Server run without --dev speaks TLS, verified with its CA
    file, and the channel presents `identity` ((key PEM, cert PEM): a node
    certificate) when given."""
    import grpc
    srv = target if isinstance(target, Server) else SERVERS.get(target)
    addr = target.grpc if isinstance(target, Server) else target
    if not srv or not srv.ca_file:
        return grpc.insecure_channel(addr)
    key, cert = identity or (None, None)
    creds = grpc.ssl_channel_credentials(open(srv.ca_file, "rb").read(),
                                         key.encode() if key else None, cert.encode() if cert else None)
    return grpc.secure_channel(addr, creds, options=(("grpc.ssl_target_name_override", "server.weft"),))


def new_csr(tmpdir=None):
    """A fresh ECDSA P-256 key and a CSR for it (openssl): (key PEM, CSR PEM)."""
    d = tempfile.mkdtemp(dir=tmpdir)
    key, csr = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
    subprocess.run([require("openssl"), "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=test"], check=True, capture_output=True)
    return open(key).read(), open(csr).read()


def sign_rpc(pb, target, req, metadata=(), identity=None, timeout=10):
    """One Sign call: (grpc status code, SignResponse or the error's details)."""
    import grpc
    ch = grpc_channel(target, identity)
    call = ch.unary_unary("/weft.v1.ConfigStream/Sign", request_serializer=lambda m: m.SerializeToString(),
                          response_deserializer=pb.SignResponse.FromString)
    try:
        return grpc.StatusCode.OK, call(req, metadata=tuple(metadata) or None, timeout=timeout)
    except grpc.RpcError as e:
        return e.code(), e.details()
    finally:
        ch.close()


def node_identity(pb, srv, node, join_token=None):
    """A node certificate for `node` from `srv`, joined with its join token
    (or `join_token`): (key PEM, cert PEM). Cached per server and node."""
    import grpc
    cache = srv.__dict__.setdefault("_node_ids", {})
    if join_token is None and node in cache:
        return cache[node]
    key, csr = new_csr()
    req = pb.SignRequest(csr_pem=csr, node=node, node_identity=True)
    code, resp = sign_rpc(pb, srv, req, (("x-weft-join-token", join_token or srv.join_token),))
    assert code == grpc.StatusCode.OK, (code, resp)
    cache[node] = (key, resp.cert_chain_pem)
    return cache[node]


def make_root(tmpdir, name="root"):
    """An operator's CA root for `weft server --ca-cert/--ca-key` (openssl):
    (cert path, key path)."""
    cert, key = os.path.join(str(tmpdir), name + ".pem"), os.path.join(str(tmpdir), name + ".key")
    subprocess.run([require("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=weft test root",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"], check=True, capture_output=True)
    return cert, key
