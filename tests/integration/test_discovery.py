"""Discovery by the tools people already run: Prometheus (Debian's package)
finding and scraping services through the agent, and the system resolver
(glibc, and Prometheus's DNS discovery) pointed at the agent's DNS inside a
network namespace of the test's own.

Debian's Prometheus is built without consul_sd_configs (`promtool check
config` rejects the field), so Prometheus discovers through the agent with
the two mechanisms it does have: http_sd_configs against
/v1/weft/prometheus-sd, and dns_sd_configs (SRV) through the system
resolver."""
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import free_port, require, wait_for



class Prometheus:
    def __init__(self, config, tmpdir, netns=None, extra=()):
        prom = require("prometheus")
        self.port = free_port() if netns is None else 19090
        path = os.path.join(tmpdir, "prometheus.yml")
        with open(path, "w") as f:
            f.write(config)
        check = subprocess.run([require("promtool"), "check", "config", path], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        cmd = [prom, f"--config.file={path}", f"--storage.tsdb.path={os.path.join(tmpdir, 'tsdb')}",
               f"--web.listen-address=127.0.0.1:{self.port}", *extra]
        if netns:
            cmd = ["ip", "netns", "exec", netns] + cmd
        self.netns = netns
        self.log = open(os.path.join(tmpdir, "prometheus.log"), "w")
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)

    def api(self, path):
        url = f"http://127.0.0.1:{self.port}{path}"
        if self.netns:
            r = subprocess.run(["ip", "netns", "exec", self.netns, require("curl"), "-s", url],
                               capture_output=True, text=True, timeout=10)
            try:
                return json.loads(r.stdout) if r.stdout else None
            except ValueError:
                return None  # "Service Unavailable" while Prometheus starts: ask again
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def targets(self):
        d = self.api("/api/v1/targets")
        return d["data"]["activeTargets"] if d else []

    def stop(self):
        self.p.kill()
        self.p.wait()
        self.log.close()


def test_prometheus_discovers_and_scrapes_through_the_agent(server, agent, tmp_path):
    s = server()
    a = agent(s, "node-1")
    # The server's and the agent's own /metrics, registered as services.
    for name, port in (("weft-server", s.http_port), ("weft-agent", a.http_port)):
        status, _, body = a.request("PUT", "/v1/agent/service/register",
                                    {"Name": name, "Port": port, "Tags": ["metrics"], "Meta": {"team": "mesh"}})
        assert status == 200, body
    sd = a.get_json("/v1/weft/prometheus-sd")[0]
    assert sorted(g["labels"]["__meta_weft_service"] for g in sd) == ["weft-agent", "weft-server"]
    assert sd[0]["labels"]["__meta_weft_tags"] == ",metrics,"
    prom = Prometheus(f"""global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: mesh
    http_sd_configs:
      - url: http://{a.http}/v1/weft/prometheus-sd
        refresh_interval: 1s
    # The server's /metrics needs a token with operator:read (the agent's
    # is open to anyone, and takes a token that is not its own as none).
    authorization:
      credentials_file: {os.path.join(s.data_dir, "bootstrap-token")}
    relabel_configs:
      - source_labels: [__meta_weft_service]
        target_label: service
      - source_labels: [__meta_weft_service_metadata_team]
        target_label: team
""", str(tmp_path))
    try:
        def up():
            ts = prom.targets()
            return len(ts) == 2 and all(t["health"] == "up" for t in ts) and ts
        ts = wait_for(up, timeout=20)
        assert ts, prom.targets()
        assert sorted(t["labels"]["service"] for t in ts) == ["weft-agent", "weft-server"]
        assert all(t["labels"]["team"] == "mesh" for t in ts)
        # Samples scraped from both (the agent's API counts its requests too).
        q = wait_for(lambda: len((prom.api("/api/v1/query?query=weft_server_http_requests_total") or {})
                                 .get("data", {}).get("result", [])) == 2, timeout=10)
        assert q
        res = prom.api("/api/v1/query?query=weft_server_http_requests_total")["data"]["result"]
        assert sorted(r["metric"]["service"] for r in res) == ["weft-agent", "weft-server"]
        # A deregistered service leaves Prometheus's targets.
        a.request("PUT", "/v1/agent/service/deregister/weft-agent")
        assert wait_for(lambda: [t["labels"]["service"] for t in prom.targets()] == ["weft-server"], timeout=15)
    finally:
        prom.stop()


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces); CI runs as root")
    require("ip")
    name = f"weft-t{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    etc = f"/etc/netns/{name}"
    os.makedirs(etc, exist_ok=True)
    # The namespace's resolver is the agent (ip netns exec bind-mounts this file).
    with open(f"{etc}/resolv.conf", "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:2\n")
    procs = []
    yield name, procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    subprocess.run(["ip", "netns", "del", name])
    shutil.rmtree(etc, ignore_errors=True)


def test_system_resolver_and_prometheus_dns_sd_through_the_agent(netns, weft_bin, tmp_path):
    ns, procs = netns

    def start(*args):
        p = subprocess.Popen(["ip", "netns", "exec", ns, weft_bin, *args], stdout=subprocess.PIPE,
                             stderr=open(tmp_path / f"{args[0]}.log", "w"), text=True)
        procs.append(p)
        line = p.stdout.readline()
        assert "listening" in line, (line, open(tmp_path / f"{args[0]}.log").read())
        return dict(part.split("=", 1) for part in line.split()[3:])

    srv = start("server", "--dev", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0")
    ag = start("agent", "--server", srv["grpc"], "--node", "n1", "--data-dir", str(tmp_path / "agent"),
               "--http", "127.0.0.1:0", "--dns", "127.0.0.1:53")
    sport = int(srv["http"].rsplit(":", 1)[1])

    def nsrun(*cmd):
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=20)

    reg = {"Name": "weft", "Port": sport, "Address": "127.0.0.1"}
    json_type = ("-H", "Content-Type: application/json",  # curl -d's default is a form type
                 "-H", "X-Consul-Token: " + open(tmp_path / "agent" / "agent-token").read().strip())
    r = nsrun(require("curl"), "-s", "-X", "PUT", *json_type, "-d", json.dumps(reg),
              f"http://{ag['http']}/v1/agent/service/register")
    assert r.returncode == 0
    reg2 = {"Name": "web", "Port": 80, "Address": "10.1.2.3"}
    nsrun(require("curl"), "-s", "-X", "PUT", *json_type, "-d", json.dumps(reg2),
          f"http://{ag['http']}/v1/agent/service/register")
    # glibc's resolver (getent, and Python's socket module) asks the agent.
    out = wait_for(lambda: nsrun("getent", "hosts", "web.service.weft").stdout, timeout=10)
    assert out.split()[0] == "10.1.2.3", out
    py = nsrun("python3", "-c", "import socket; print(socket.gethostbyname('web.service.weft'))")
    assert py.stdout.strip() == "10.1.2.3", py.stderr
    # Prometheus's DNS discovery: SRV records, then the targets' addresses.
    prom = Prometheus("""global: {scrape_interval: 1s}
scrape_configs:
  - job_name: weft
    dns_sd_configs:
      - names: [weft.service.weft]
        type: SRV
        refresh_interval: 1s
""", str(tmp_path), netns=ns)
    try:
        ts = wait_for(lambda: [t for t in prom.targets() if t["health"] == "up"], timeout=25)
        assert ts and ts[0]["labels"]["instance"].endswith(f":{sport}"), prom.targets()
    finally:
        prom.stop()
