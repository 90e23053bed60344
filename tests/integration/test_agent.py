"""weft agent: the node's cached copy of the catalog, answering the
Consul-shaped HTTP API and DNS (checked with dig) with no network hop, and
keeping on answering with every server gone."""
import json
import signal
import subprocess
import socket
import struct
import threading
import time

import pytest

from conftest import make_root, require, wait_for



def lines(text):
    return sorted(l for l in text.splitlines() if l)


@pytest.fixture
def cluster(server, agent):
    s = server()
    for i in range(1, 4):
        s.register(f"node-{i}", "web", 8000 + i, f"web-{i}", address=f"10.0.0.{i}", Tags=[f"v{i}"])
    # Agents run on their own nodes: an agent is authoritative for its node
    # and would remove services registered there behind its back.
    a1 = agent(s, "agent-1")
    a2 = agent(s, "agent-2")
    for a in (a1, a2):
        assert wait_for(lambda: lines(a.dig("web.service.weft")) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]), a.log()
    return s, a1, a2


def test_dns_from_every_agent(cluster):
    s, a1, a2 = cluster
    for a in (a1, a2):
        assert lines(a.dig("v2.web.service.weft")) == ["10.0.0.2"]
        srv = lines(a.dig("web.service.weft", "SRV"))
        assert len(srv) == 3 and all(l.startswith("1 1 800") for l in srv), srv
        target = [l for l in srv if " 8002 " in l][0].split()[-1]
        assert a.dig(target).strip() == "10.0.0.2"
        assert a.dig("node-3.node.weft").strip() == "10.0.0.3"
        assert "status: NXDOMAIN" in a.dig("nope.service.weft", short=False)
        assert "status: REFUSED" in a.dig("example.com", short=False)
    # Answers come shuffled.
    orders = {a1.dig("web.service.weft") for _ in range(12)}
    assert len(orders) > 1


def test_large_answers_truncate_and_fall_back_to_tcp(server, agent):
    s = server()
    for i in range(60):
        s.register(f"n{i}", "big", 9000 + i, f"big-{i}", address=f"10.1.{i // 250}.{i % 250 + 1}")
    a = agent(s, "agent-x")
    assert wait_for(lambda: len(lines(a.dig("big.service.weft", tcp=True))) == 60)
    udp = a.dig("big.service.weft", "SRV", short=False)
    # dig retries over TCP by itself on TC; +ignore shows the truncated UDP answer.
    r = subprocess.run([require("dig"), "@127.0.0.1", "-p", str(a.dns_port), "big.service.weft",
                                      "SRV", "+ignore", "+noedns"], capture_output=True, text=True, timeout=20)
    assert " tc" in r.stdout.split("flags:")[1].split(";")[0], r.stdout
    assert "ANSWER: 60" in udp
    assert a.metric("weft_agent_dns_truncated_total") >= 1


def test_changes_reach_the_agents_dns_and_api(cluster):
    s, a1, a2 = cluster
    _, index = a2.get_json("/v1/health/service/web")
    got = {}
    th = threading.Thread(target=lambda: got.update(r=a2.get_json(f"/v1/health/service/web?index={index}&wait=20s")))
    th.start()
    time.sleep(0.3)
    assert th.is_alive()
    t0 = time.time()
    s.deregister("node-3", "web-3")
    th.join(5)
    assert not th.is_alive() and len(got["r"][0]) == 2
    assert wait_for(lambda: lines(a1.dig("web.service.weft")) == ["10.0.0.1", "10.0.0.2"], timeout=2)
    assert time.time() - t0 < 2
    # An unhealthy instance leaves DNS too.
    s.request("PUT", "/v1/catalog/register", {"Node": "node-2", "Address": "10.0.0.2", "SkipNodeUpdate": True,
                                              "Check": {"Name": "c", "Status": "critical", "ServiceID": "web-2"}})
    assert wait_for(lambda: lines(a1.dig("web.service.weft")) == ["10.0.0.1"], timeout=2)


def test_agent_api_is_consul_shaped_and_read_only(cluster):
    s, a1, _ = cluster
    services, index = a1.get_json("/v1/catalog/services")
    assert services == {"web": ["v1", "v2", "v3"]} and index > 0
    healthy, _ = a1.get_json("/v1/health/service/web?passing")
    assert sorted(e["Service"]["ID"] for e in healthy) == ["web-1", "web-2", "web-3"]
    status, headers, _ = a1.request("GET", "/v1/catalog/service/web")
    assert status == 200 and headers["X-Consul-KnownLeader"] == "true"
    self_, _ = a1.get_json("/v1/agent/self")
    assert self_["Config"]["Server"] is False and self_["Config"]["NodeName"] == "agent-1"
    status, _, body = a1.request("PUT", "/v1/catalog/register", {"Node": "x", "Address": "1.2.3.4"})
    assert status == 405 and "agent" in body
    # python-consul reads through the agent.
    import consul
    host, port = a1.http.rsplit(":", 1)
    c = consul.Consul(host=host, port=int(port))
    idx, svcs = c.catalog.services()
    assert svcs == {"web": ["v1", "v2", "v3"]}


def test_every_server_gone_the_agent_keeps_answering(cluster):
    s, a1, _ = cluster
    s.stop(signal.SIGKILL)
    assert wait_for(lambda: a1.request("GET", "/v1/catalog/services")[1].get("X-Consul-KnownLeader") == "false",
                    timeout=5)
    status, headers, body = a1.request("GET", "/v1/health/service/web?passing")
    assert status == 200 and len(json.loads(body)) == 3
    assert headers["X-Weft-Stale"] == "true" and int(headers["X-Consul-LastContact"]) >= 0
    assert lines(a1.dig("web.service.weft")) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    # Restarted with no server reachable, it answers at once from its cache.
    a1.stop(signal.SIGKILL)
    a1.start()
    assert lines(a1.dig("web.service.weft")) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    # The server comes back: the agent catches up without a restart.
    s.start()
    s.register("node-4", "web", 8004, "web-4", address="10.0.0.4")
    assert wait_for(lambda: len(lines(a1.dig("web.service.weft"))) == 4, timeout=15), a1.log()
    assert a1.request("GET", "/v1/catalog/services")[1]["X-Consul-KnownLeader"] == "true"


def test_malformed_dns_gets_formerr_or_silence(cluster):
    _, a1, _ = cluster
    port = a1.dns_port
    packets = [
        b"",                                   # empty
        b"\x12\x34",                           # shorter than a header
        b"\x12\x34\x81\x00" + b"\0" * 8,       # a response, not a query
        b"\x12\x34\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00\x03web\x00\x00\x01\x00\x01",  # two questions
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3fabc",                    # label past the end
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # pointer loop
        b"\x12\x34\x21\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01",      # opcode 4
        bytes(range(256)) * 2,
    ]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.3)
    for p in packets:
        sock.sendto(p, ("127.0.0.1", port))
        try:
            data, _ = sock.recvfrom(4096)
            rcode = data[3] & 0xF
            assert rcode in (1, 4), (p, data)  # FORMERR or NOTIMP
            assert data[:2] == p[:2]
        except socket.timeout:
            pass  # silence is allowed
    # Over TCP too, including a length prefix that promises more than comes.
    t = socket.create_connection(("127.0.0.1", port), timeout=2)
    q = packets[3]
    t.sendall(struct.pack(">H", len(q)) + q)
    n = struct.unpack(">H", t.recv(2))[0]
    assert t.recv(n)[3] & 0xF == 1
    t.sendall(b"\x00\x50abc")
    t.close()
    # Still answering.
    assert lines(a1.dig("web.service.weft")) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    _, _, metrics = a1.request("GET", "/metrics")
    formerr = [l for l in metrics.splitlines() if l.startswith('weft_agent_dns_queries_total{outcome="formerr"}')]
    assert formerr and float(formerr[0].split()[-1]) >= 4, formerr


def register_local(a, body):
    status, _, text = a.request("PUT", "/v1/agent/service/register", body)
    assert status == 200, text


def test_local_registration_reaches_every_agent_and_the_server(server, agent, backends):
    s = server()
    a1 = agent(s, "node-1")
    a2 = agent(s, "node-2", extra=("--address", "127.0.0.2"))
    b = backends("api")
    register_local(a1, {"Name": "api", "ID": "api-1", "Port": b.port, "Tags": ["blue"], "Meta": {"v": "1"}})
    services = a1.get_json("/v1/agent/services")[0]
    assert services["api-1"]["Service"] == "api" and services["api-1"]["Port"] == b.port
    # The server has it (the agent synced its node), and so does the other agent.
    assert wait_for(lambda: [i["ServiceID"] for i in s.get_json("/v1/catalog/service/api")[0]] == ["api-1"])
    assert wait_for(lambda: lines(a2.dig("api.service.weft")) == ["127.0.0.1"])
    assert lines(a2.dig("blue.api.service.weft")) == ["127.0.0.1"]
    # python-consul registers through the agent API too, with the agent's
    # token in a header (its token= goes in the query string, which is refused).
    import consul
    host, port = a2.http.rsplit(":", 1)
    c = consul.Consul(host=host, port=int(port))
    c.http.session.headers["X-Consul-Token"] = a2.token
    assert c.agent.service.register("cart", service_id="cart-1", port=7000, tags=["x"])
    assert "cart-1" in c.agent.services()
    assert wait_for(lambda: lines(a1.dig("cart.service.weft")) == ["127.0.0.2"])
    # ...and watches through it: a blocking health query wakes on the change.
    c1 = consul.Consul(host=a1.http.rsplit(":", 1)[0], port=a1.http_port)
    idx, nodes = c1.health.service("cart")
    assert len(nodes) == 1
    got = {}
    th = threading.Thread(target=lambda: got.update(r=c1.health.service("cart", index=idx, wait="20s")))
    th.start()
    time.sleep(0.3)
    assert th.is_alive()
    # This python-consul deregisters with GET, as old Consul did; a GET must
    # not change anything (a page could send one with an image tag).
    assert not c.agent.service.deregister("cart-1")
    assert "cart-1" in c.agent.services()
    assert a2.request("PUT", "/v1/agent/service/deregister/cart-1")[0] == 200
    th.join(5)
    assert not th.is_alive() and got["r"][1] == []
    assert wait_for(lambda: "status: NXDOMAIN" in a1.dig("cart.service.weft", short=False))
    # Bad registrations name the field.
    status, _, text = a1.request("PUT", "/v1/agent/service/register", {"Port": 1})
    assert status == 400 and "Name" in text
    status, _, text = a1.request("PUT", "/v1/agent/service/register",
                                 {"Name": "x", "Check": {"HTTP": "http://127.0.0.1:1/"}})
    assert status == 400 and "Interval" in text
    assert a1.request("PUT", "/v1/agent/service/deregister/nope")[0] == 404
    # What a check sends or dials is validated: no request injection through
    # Method or the URL, no unix: sockets or schemes as targets.
    for check, field in [({"HTTP": "http://127.0.0.1:1/", "Method": "GET / HTTP/1.1\r\nX: y\r\n"}, "Method"),
                         ({"HTTP": "http://127.0.0.1:1/a b", "Method": "GET"}, "HTTP"),
                         ({"HTTP": "http://127.0.0.1:1/\r\nX: y"}, "HTTP"),
                         ({"TCP": "unix:/run/docker.sock"}, "TCP"),
                         ({"TCP": "127.0.0.1"}, "TCP"),
                         ({"GRPC": "unix:/var/run/x.sock"}, "GRPC"),
                         ({"GRPC": "127.0.0.1:99999"}, "GRPC")]:
        status, _, text = a1.request("PUT", "/v1/agent/service/register",
                                     {"Name": "bad", "Port": 1, "Check": {**check, "Interval": "10s"}})
        assert status == 400 and field in text, (check, status, text)
    assert "bad" not in a1.get_json("/v1/agent/services")[0]
    ok = {"Name": "good", "ID": "good-1", "Port": 1,
          "Checks": [{"HTTP": "http://localhost/health", "Method": "HEAD", "Interval": "10s"},
                     {"GRPC": "127.0.0.1:50051/grpc.health.v1.Health", "Interval": "10s"},
                     {"TCP": "[::1]:6379", "Interval": "10s"}]}
    assert a1.request("PUT", "/v1/agent/service/register", ok)[0] == 200
    assert a1.request("PUT", "/v1/agent/service/deregister/good-1")[0] == 200


def test_failing_health_check_leaves_dns_and_the_proxy(server, agent, backends, mesh_proxy):
    from conftest import free_port, wait_port
    s = server()
    a = agent(s, "node-1")
    good, bad = backends("good"), backends("bad")
    for name, b in (("good", good), ("bad", bad)):
        register_local(a, {"Name": "api", "ID": f"api-{name}", "Port": b.port,
                           "Check": {"HTTP": f"http://127.0.0.1:{b.port}/status/200", "Interval": "200ms",
                                     "Timeout": "150ms"}})
    assert wait_for(lambda: len(lines(a.dig("api.service.weft", "SRV"))) == 2, timeout=5)
    # A sidecar that calls api sees both instances.
    up = free_port()
    s.register("node-web", "web-sidecar", free_port(), "web-sc", Kind="connect-proxy",
               Proxy={"DestinationServiceName": "web", "LocalServicePort": 1,
                      "Upstreams": [{"DestinationName": "api", "LocalBindPort": up}]})
    px = mesh_proxy(s.grpc, "web")
    px.wait_ready()
    wait_port(up)
    assert wait_for(lambda: len(px.endpoints("api") or []) == 2, timeout=5)
    t0 = time.time()
    bad.proc.stop()
    assert wait_for(lambda: px.endpoints("api") == [good.addr], timeout=5), px.endpoints("api")
    took = time.time() - t0
    srv = lines(a.dig("api.service.weft", "SRV"))
    assert len(srv) == 1 and str(good.port) in srv[0]
    # Within about a check interval plus propagation.
    assert took < 2.0, took
    checks = a.get_json("/v1/agent/checks")[0]
    assert checks["service:api-bad"]["Status"] == "critical" and "refused" in checks["service:api-bad"]["Output"]


def test_tcp_and_grpc_health_checks(server, agent, tmp_path):
    import grpc
    from concurrent import futures
    import importlib.util
    import os
    out = tmp_path / "pb"
    out.mkdir()
    root = os.path.join(os.path.dirname(__file__), "..", "..", "proto")
    subprocess.run([require("protoc"), f"--proto_path={root}", f"--python_out={out}",
                    os.path.join(root, "grpc", "health", "v1", "health.proto")], check=True)
    spec = importlib.util.spec_from_file_location("health_pb2", out / "grpc" / "health" / "v1" / "health_pb2.py")
    health = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(health)
    state = {"status": health.HealthCheckResponse.SERVING}

    def check(request, context):
        return health.HealthCheckResponse(status=state["status"])

    handler = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(
            check, request_deserializer=health.HealthCheckRequest.FromString,
            response_serializer=health.HealthCheckResponse.SerializeToString)})
    gs = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    gs.add_generic_rpc_handlers((handler,))
    gport = gs.add_insecure_port("127.0.0.1:0")
    gs.start()
    try:
        s = server()
        a = agent(s, "node-1")
        register_local(a, {"Name": "rpc", "ID": "rpc-1", "Port": gport,
                           "Check": {"GRPC": f"127.0.0.1:{gport}", "Interval": "200ms"}})
        register_local(a, {"Name": "raw", "ID": "raw-1", "Port": gport,
                           "Check": {"TCP": f"127.0.0.1:{gport}", "Interval": "200ms"}})
        assert wait_for(lambda: lines(a.dig("rpc.service.weft")) == ["127.0.0.1"], timeout=5)
        assert wait_for(lambda: lines(a.dig("raw.service.weft")) == ["127.0.0.1"], timeout=5)
        state["status"] = health.HealthCheckResponse.NOT_SERVING
        assert wait_for(lambda: a.dig("rpc.service.weft").strip() == "", timeout=5)
        assert "NOT_SERVING" in a.get_json("/v1/agent/checks")[0]["service:rpc-1"]["Output"]
        assert lines(a.dig("raw.service.weft")) == ["127.0.0.1"]  # the port is still open
        # Seen by the server too.
        assert wait_for(lambda: s.get_json("/v1/health/service/rpc?passing")[0] == [], timeout=5)
    finally:
        gs.stop(0)


def test_anti_entropy_after_the_server_loses_its_data(server, agent, tmp_path):
    import shutil
    cert, key = make_root(tmp_path)
    s = server(extra=("--ca-cert", cert, "--ca-key", key))
    a = agent(s, "node-1")
    register_local(a, {"Name": "keep", "ID": "keep-1", "Port": 1234})
    assert wait_for(lambda: len(s.get_json("/v1/catalog/service/keep")[0]) == 1)
    # The server loses everything but the operator's CA root (as it would
    # in production): the agent's node certificate still proves its node.
    s.stop(signal.SIGKILL)
    shutil.rmtree(s.data_dir)
    s.start()
    assert wait_for(lambda: len(s.get_json("/v1/catalog/service/keep")[0]) == 1, timeout=15), a.log()
    # Entries for this node that the agent does not know are removed.
    s.register("node-1", "ghost", 1, "ghost-1", address="127.0.0.1")
    assert wait_for(lambda: "ghost" not in s.get_json("/v1/catalog/services")[0], timeout=5)
    assert "ghost" not in a.get_json("/v1/catalog/services")[0]
    # And the registration survives the agent's own restart.
    a.stop(signal.SIGKILL)
    a.start()
    assert "keep-1" in a.get_json("/v1/agent/services")[0]


def test_agents_need_the_join_token(server, agent):
    s = server()
    assert len(s.join_token) == 36
    a = agent(s, "intruder", token="0" * 36)
    assert wait_for(lambda: s.metric("weft_server_unauthenticated_total") >= 1, timeout=5)
    assert a.request("GET", "/v1/catalog/services")[1]["X-Consul-KnownLeader"] == "false"
    status, _, _ = a.request("PUT", "/v1/agent/service/register", {"Name": "sneaky", "Port": 1})
    assert status == 200  # accepted locally...
    time.sleep(1.0)
    assert "sneaky" not in s.get_json("/v1/catalog/services")[0]  # ...never reaches the servers
    assert "join token" in a.log()
    good = agent(s, "member")
    register_local(good, {"Name": "fine", "Port": 1})
    assert wait_for(lambda: "fine" in s.get_json("/v1/catalog/services")[0])


def test_proxies_get_config_from_their_agent_and_survive_the_server(server, agent, backends, tmp_path):
    from conftest import MeshProxy, free_port, wait_port
    from test_stream import Load
    s = server()
    a = agent(s, "node-1")
    r1, r2, app = backends("reviews-1"), backends("reviews-2"), backends("web-app")
    register_local(a, {"Name": "reviews", "ID": "reviews-1", "Port": r1.port})
    register_local(a, {"Name": "reviews", "ID": "reviews-2", "Port": r2.port})
    up = free_port()
    register_local(a, {"Name": "web-sidecar", "ID": "web-sc", "Kind": "connect-proxy", "Port": free_port(),
                       "Proxy": {"DestinationServiceName": "web", "LocalServicePort": app.port,
                                 "Upstreams": [{"DestinationName": "reviews", "LocalBindPort": up}]}})
    px = MeshProxy(a.weft_bin, f"unix:{a.data_dir}/weft.sock", "web", str(tmp_path))
    try:
        px.wait_ready()
        wait_port(up)
        load = Load(up)
        time.sleep(0.5)
        assert set(load.by_backend) == {"reviews-1", "reviews-2"}
        # Every server gone: the agent keeps serving its proxies and DNS.
        s.stop(signal.SIGKILL)
        time.sleep(1.5)
        assert lines(a.dig("reviews.service.weft")) == ["127.0.0.1", "127.0.0.1"]
        # Local changes still reach the local proxy (from the agent's cache).
        a.request("PUT", "/v1/agent/service/deregister/reviews-2")
        assert wait_for(lambda: px.endpoints("reviews") == [r1.addr], timeout=3)
        before = load.mark()
        time.sleep(0.5)
        load.stop()
        assert load.failures == [], load.failures[:5]
        assert load.by_backend["reviews-1"] > before.get("reviews-1", 0)
        # One stream per agent upstream, whatever the number of local proxies.
        _, _, metrics = a.request("GET", "/metrics")
        assert "weft_server_streams_active 1" in metrics
    finally:
        px.stop()


def test_dns_tcp_connection_limit(server, agent):
    s = server()
    a = agent(s, "node-1", extra=("--dns-max-tcp", "2"))
    held = [socket.create_connection(("127.0.0.1", a.dns_port), timeout=2) for _ in range(2)]
    time.sleep(0.2)
    extra = socket.create_connection(("127.0.0.1", a.dns_port), timeout=2)
    try:
        assert extra.recv(16) == b""  # closed at once
    except ConnectionResetError:
        pass
    assert a.metric("weft_agent_dns_tcp_refused_total") == 1
    for h in held:
        h.close()
    time.sleep(0.2)
    assert "status: NXDOMAIN" in a.dig("x.service.weft", tcp=True, short=False)
