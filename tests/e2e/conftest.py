"""A three-node weft cluster made of network namespaces, for the e2e tests.

Nodes are namespaces NAME-n1..n3 with one veth each into a bridge that lives
in its own namespace (NAME-sw), addresses 198.18.0.1-3/24 (the range set
aside for network tests; no route leaves the machine). Node 1 runs the
server. Every node runs an agent (DNS on 127.0.0.1:53, which the node's
resolv.conf names), a `web` demo app whose sidecar intercepts the node's
outbound TCP (`weft redirect`), and nodes 2 and 3 run `reviews` (a demo app)
and redis, each behind a sidecar that intercepts its app port. The agents'
config stream to the server is TLS too (`--grpc-tls`, `--server-ca`).

Everything is created by the `cluster` fixture and removed at teardown, also
when a test fails. Needs root (CI runs as root) and iptables, tcpdump, redis.
"""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

NODES = 3
MARK = "1337"


def pytest_addoption(parser):
    parser.addoption("--weft", default=os.environ.get("WEFT_BIN", ""), help="path to the weft binary")


@pytest.fixture(scope="session")
def weft_bin(pytestconfig):
    path = os.path.abspath(pytestconfig.getoption("--weft") or "")
    if not os.access(path, os.X_OK):
        pytest.fail(f"weft binary not found (pass --weft PATH): {path!r}")
    return path


def need(tool):
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if not path:
        pytest.fail(f"{tool} is required for the e2e tests; run scripts/deps.sh")
    return path


def run(*cmd, check=True, timeout=30, **kw):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


class Cluster:
    def __init__(self, weft_bin, tmp):
        self.weft = weft_bin
        self.tmp = str(tmp)
        self.tag = f"wft{os.getpid() % 100000}"
        self.sw = f"{self.tag}-sw"
        self.ns = {i: f"{self.tag}-n{i}" for i in range(1, NODES + 1)}
        self.procs = []  # (node, name, Popen, log path)
        self.server_api = "198.18.0.1:8500"

    def ip(self, i):
        return f"198.18.0.{i}"

    # --- namespaces -------------------------------------------------------
    def create(self):
        if os.geteuid() != 0:
            pytest.fail("the e2e tests build network namespaces and need root (CI runs as root)")
        for t in ("ip", "iptables", "tcpdump", "redis-server", "redis-cli", "curl"):
            need(t)
        run("ip", "netns", "add", self.sw)
        run("ip", "-n", self.sw, "link", "set", "lo", "up")
        run("ip", "-n", self.sw, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.sw, "link", "set", "br0", "up")
        for i, ns in self.ns.items():
            run("ip", "netns", "add", ns)
            run("ip", "-n", self.sw, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            run("ip", "-n", self.sw, "link", "set", f"v{i}", "master", "br0", "up")
            run("ip", "-n", ns, "addr", "add", f"{self.ip(i)}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            os.makedirs(f"/etc/netns/{ns}", exist_ok=True)
            with open(f"/etc/netns/{ns}/resolv.conf", "w") as f:
                f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:2\n")

    def destroy(self):
        for node, name, p, log in reversed(self.procs):
            if p.poll() is None:
                p.kill()
        for node, name, p, log in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for ns in list(self.ns.values()) + [self.sw]:
            run("ip", "netns", "del", ns, check=False)
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)

    # --- processes --------------------------------------------------------
    def exec(self, node, *cmd, check=True, timeout=30):
        return run("ip", "netns", "exec", self.ns[node], *cmd, check=check, timeout=timeout)

    def spawn(self, node, name, *cmd):
        log = os.path.join(self.tmp, f"n{node}-{name}.log")
        f = open(log, "w")
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[node], *cmd], stdout=f, stderr=subprocess.STDOUT)
        self.procs.append((node, name, p, log))
        return p

    def kill_node(self, node):
        for n, name, p, log in self.procs:
            if n == node and p.poll() is None:
                p.kill()
                p.wait(10)

    def logs(self, node=None):
        out = []
        for n, name, p, log in self.procs:
            if node is None or n == node:
                out.append(f"--- n{n} {name} ---\n" + "".join(open(log).readlines()[-15:]))
        return "\n".join(out)

    def wait(self, what, pred, timeout=30, step=0.2):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                last = pred()
                if last:
                    return last
            except Exception as e:  # noqa: BLE001 - keep polling, report the last error
                last = e
            time.sleep(step)
        raise AssertionError(f"timed out waiting for {what} (last: {last!r})\n{self.logs()}")

    def http(self, node, url, *args):
        """curl inside a node: (status, body)."""
        r = self.exec(node, "curl", "-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}", *args, url, check=False)
        body, _, code = r.stdout.rpartition("\n")
        return int(code or 0), body

    def agent_token(self, node):
        """The agent token of node `node`'s agent (its data dir's agent-token)."""
        with open(f"{self.tmp}/agent{node}/agent-token") as f:
            return f.read().strip()

    def agent_put(self, node, path, body=None):
        """A write to node `node`'s agent, with its agent token."""
        data = ("-H", "Content-Type: application/json", "-d", json.dumps(body)) if body is not None else ()
        r = self.exec(node, "curl", "-fsS", "-X", "PUT", f"http://127.0.0.1:8501{path}",
                      "-H", f"X-Consul-Token: {self.agent_token(node)}", *data, check=False)
        assert r.returncode == 0, f"PUT {path} on n{node}: {r.stderr} {r.stdout}"

    def ctl(self, *args, check=True):
        return self.exec(1, self.weft, *args, "--server", f"http://{self.server_api}", check=check)

    def apply(self, text):
        path = os.path.join(self.tmp, f"m{time.time_ns()}.yaml")
        with open(path, "w") as f:
            f.write(text)
        return self.ctl("apply", "-f", path)

    # --- the mesh ---------------------------------------------------------
    def register(self, node, service, port, sidecar_port, check, transparent=False, egress_only_mesh=False):
        i = node
        self.agent_put(node, "/v1/agent/service/register", {
            "Name": service, "ID": f"{service}-n{i}", "Address": self.ip(i), "Port": port,
            "Meta": {"node": f"n{i}"}, "Check": dict(check, Interval="1s")})
        proxy = {"DestinationServiceName": service, "DestinationServiceID": f"{service}-n{i}",
                 "LocalServicePort": port}
        if transparent:
            proxy["Mode"] = "transparent"
            proxy["TransparentProxy"] = {"OutboundListenerPort": 15001, "MeshDestinationsOnly": egress_only_mesh}
        self.agent_put(node, "/v1/agent/service/register", {
            "Name": f"{service}-sidecar", "ID": f"{service}-sidecar-n{i}", "Kind": "connect-proxy",
            "Address": self.ip(i), "Port": sidecar_port, "Proxy": proxy})

    def start(self):
        d = self.tmp
        self.spawn(1, "server", self.weft, "server", "--dev", "--data-dir", f"{d}/server",
                   "--http", self.server_api, "--grpc", "198.18.0.1:8502", "--node-timeout", "3s", "--grpc-tls")
        self.wait("the server", lambda: self.exec(1, "curl", "-fsS", f"http://{self.server_api}/ready",
                                                  check=False).returncode == 0)
        for i in self.ns:
            self.spawn(i, "agent", self.weft, "agent", "--server", "198.18.0.1:8502", "--node", f"n{i}",
                       "--address", self.ip(i), "--data-dir", f"{d}/agent{i}", "--http", "127.0.0.1:8501",
                       "--dns", "127.0.0.1:53", "--server-ca", f"{d}/server/ca.pem")
        for i in self.ns:
            self.wait(f"agent n{i}", lambda i=i: self.exec(i, "curl", "-fsS", "http://127.0.0.1:8501/ready",
                                                            check=False).returncode == 0)
        self.apply("kind: Service\nmetadata: {name: redis}\nspec:\n  ports: [{port: 6379, protocol: tcp}]\n---\n"
                   "kind: Service\nmetadata: {name: reviews}\nspec:\n  ports: [{port: 9080, protocol: http}]\n"
                   # These tests ask whether each node is reached: with the
                   # default (latency-aware) balancer a run of sequential
                   # requests may rightly stay on the node that answered a
                   # little faster. The balancer's own choices are tested in
                   # tests/integration/test_resilience.py.
                   "---\nkind: TrafficPolicy\nmetadata: {name: reviews}\nspec:\n  lb: round_robin\n")
        for i in self.ns:
            self.spawn(i, "web", self.weft, "demo-app", "--name", "web", "--version", f"n{i}",
                       "--listen", "127.0.0.1:8080")
            self.register(i, "web", 8080, 21000, {"HTTP": "http://127.0.0.1:8080/healthz"}, transparent=True)
            self.spawn(i, "web-sidecar", self.weft, "proxy", "--agent", f"unix:{d}/agent{i}/weft.sock",
                       "--service", "web", "--proxy-id", f"web-sidecar-n{i}", "--admin", "127.0.0.1:15000",
                       "--workers", "1", "--socket-mark", MARK)
            # The node's outbound TCP (curl, redis-cli) to the web sidecar;
            # the control plane's ports stay direct.
            self.exec(i, self.weft, "redirect", "--id", "web", "--outbound-port", "15001", "--proxy-mark", MARK,
                      "--exclude-outbound-ports", "8500,8502")
        for i in (2, 3):
            self.spawn(i, "reviews", self.weft, "demo-app", "--name", "reviews", "--version", f"n{i}",
                       "--listen", "127.0.0.1:9080")
            self.register(i, "reviews", 9080, 21001, {"HTTP": "http://127.0.0.1:9080/healthz"})
            self.spawn(i, "reviews-sidecar", self.weft, "proxy", "--agent", f"unix:{d}/agent{i}/weft.sock",
                       "--service", "reviews", "--proxy-id", f"reviews-sidecar-n{i}", "--admin",
                       "127.0.0.1:15010", "--workers", "1", "--socket-mark", MARK)
            self.exec(i, self.weft, "redirect", "--id", "reviews", "--outbound-port", "0",
                      "--inbound-port", "21001", "--inbound-ports", "9080")
            self.spawn(i, "redis", "redis-server", "--port", "6379", "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no", "--dir", d)
            self.register(i, "redis", 6379, 21002, {"TCP": "127.0.0.1:6379"})
            self.spawn(i, "redis-sidecar", self.weft, "proxy", "--agent", f"unix:{d}/agent{i}/weft.sock",
                       "--service", "redis", "--proxy-id", f"redis-sidecar-n{i}", "--admin", "127.0.0.1:15020",
                       "--workers", "1", "--socket-mark", MARK)
            self.exec(i, self.weft, "redirect", "--id", "redis", "--outbound-port", "0",
                      "--inbound-port", "21002", "--inbound-ports", "6379")
            self.wait(f"redis on n{i}", lambda i=i: self.exec(i, "redis-cli", "-h", "127.0.0.1", "set", "node", f"n{i}",
                                                              check=False).stdout.strip() == "OK")
        for i in self.ns:
            for admin in (15000,) + ((15010, 15020) if i > 1 else ()):
                self.wait(f"sidecar {admin} on n{i}",
                          lambda i=i, a=admin: self.exec(i, "curl", "-fsS", f"http://127.0.0.1:{a}/ready",
                                                         check=False).returncode == 0)
        # Every node reaches both reviews and both redis through the mesh
        # before tests start (a health check passes a second after its app
        # listens; until then that instance is not an endpoint).
        for i in self.ns:
            self.wait(f"reviews from n{i}",
                      lambda i=i: {json.loads(self.http(i, "http://reviews.service.weft/reviews/1")[1])["version"]
                                   for _ in range(8)} == {"n2", "n3"}, timeout=30)
            self.wait(f"redis from n{i}",
                      lambda i=i: {self.exec(i, "redis-cli", "-h", "redis.service.weft", "GET", "node",
                                             check=False).stdout.strip() for _ in range(8)} == {"n2", "n3"},
                      timeout=30)


@pytest.fixture(scope="module")
def cluster(weft_bin, tmp_path_factory):
    c = Cluster(weft_bin, tmp_path_factory.mktemp("cluster"))
    try:
        c.create()
        c.start()
        yield c
    finally:
        c.destroy()
    # Nothing of ours is left: namespaces and resolv.conf overrides.
    left = run("ip", "netns", "list").stdout
    assert c.tag not in left, left
