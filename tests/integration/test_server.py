"""weft server: the REST API (Consul shapes, config entries), blocking queries,
the CLI, durability of the embedded store, and limits."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import HERE, require

EXAMPLES = os.path.join(HERE, "..", "..", "examples")


def test_apply_get_delete_roundtrip(server, tmp_path):
    s = server()
    r = s.ctl("apply", "-f", os.path.join(EXAMPLES, "mesh.yaml"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "Service default/reviews created",
        "TrafficPolicy default/reviews created",
        "Route default/reviews created",
        "AuthorizationPolicy default/reviews created",
    ]
    # Idempotent: the same manifests again change nothing (and the index stays).
    _, index_before = s.get_json("/v1/config/Route/reviews")
    r = s.ctl("apply", "-f", os.path.join(EXAMPLES, "mesh.yaml"))
    assert r.returncode == 0 and all(l.endswith(" unchanged") for l in r.stdout.splitlines()), r.stdout
    _, index_after = s.get_json("/v1/config/Route/reviews")
    assert index_after == index_before
    # Every entry, with and without the trailing slash, in one namespace or all.
    for path in ("/v1/config", "/v1/config/", "/v1/config?ns=*"):
        status, _, body = s.request("GET", path, timeout=5)
        assert status == 200 and len(json.loads(body)) == 4, (path, status, body)

    # get -o yaml output applies back unchanged; -o json carries the spec.
    y = s.ctl("get", "route", "reviews", "-o", "yaml")
    assert y.returncode == 0 and "kind: Route" in y.stdout
    again = s.ctl("apply", "-f", "-", input=y.stdout)
    assert again.returncode == 0 and again.stdout.strip() == "Route default/reviews unchanged", again
    j = json.loads(s.ctl("get", "trafficpolicy", "reviews", "-o", "json").stdout)
    assert j["spec"]["loadBalancer"] == {"policy": "ewma", "decay": "10000ms", "zoneAware": True}, j["spec"]
    assert j["spec"]["retries"]["attempts"] == 2
    table = s.ctl("get", "services").stdout
    assert "reviews" in table and "NAME" in table

    # A change is reported as configured.
    mod = y.stdout.replace("weight: 90", "weight: 80").replace("weight: 10", "weight: 20")
    r = s.ctl("apply", "-f", "-", input=mod)
    assert r.stdout.strip() == "Route default/reviews configured", r
    route, _ = s.get_json("/v1/config/Route/reviews")
    assert [b["weight"] for b in route["spec"]["rules"][1]["backends"]] == [80, 20]

    # A directory applies every manifest in it.
    d = tmp_path / "manifests"
    d.mkdir()
    (d / "a.yaml").write_text("kind: Service\nmetadata: {name: ratings}\nspec: {ports: [{port: 9080, protocol: http}]}\n")
    (d / "b.yml").write_text("kind: Service\nmetadata: {name: db}\nspec: {ports: [{port: 6379, protocol: tcp}]}\n")
    r = s.ctl("apply", "-f", str(d))
    assert r.returncode == 0 and r.stdout.count("created") == 2, r

    r = s.ctl("delete", "route", "reviews")
    assert r.returncode == 0, r.stderr
    r = s.ctl("get", "route", "reviews")
    assert r.returncode == 1 and "not found" in r.stderr
    r = s.ctl("delete", "route", "reviews")
    assert r.returncode == 1 and "not found" in r.stderr


def test_fields_the_proxy_cannot_honour_are_refused_at_apply(server, tmp_path):
    # Accepting these and dropping them would tell the user "configured" for
    # something that never happens: refused, with the reason, nothing written.
    s = server()
    cases = {
        "kind: TrafficPolicy\nmetadata: {name: a}\nspec: {retries: {attempts: 2, on: [refused-stream]}}\n":
            "spec.retries.on[0] \"refused-stream\": a stream the upstream refused",
        "kind: TrafficPolicy\nmetadata: {name: b}\nspec: {retries: {perTryTimeout: 0s}}\n":
            "spec.retries.perTryTimeout: use more than 0",
        "kind: TrafficPolicy\nmetadata: {name: c}\nspec: {retries: {attempts: 10}}\n":
            "spec.retries.attempts",
        "kind: TrafficPolicy\nmetadata: {name: d}\nspec: {retries: {hedge: {delay: 0s}}}\n":
            "spec.retries.hedge.delay: use p95, or a duration of at least 1ms and at most 1h",
        "kind: TrafficPolicy\nmetadata: {name: f}\nspec: {retries: {hedge: {after: 10ms}}}\n":
            "spec.retries.hedge",
    }
    for i, (doc, why) in enumerate(cases.items()):
        f = tmp_path / f"m{i}.yaml"
        f.write_text(doc)
        r = s.ctl("apply", "-f", str(f))
        assert r.returncode == 1 and why in r.stderr, (doc, r.stderr)
    for kind, name in [("TrafficPolicy", n) for n in "abcdf"]:
        status, _, _ = s.request("GET", f"/v1/config/{kind}/{name}")
        assert status == 404, (kind, name)
    # What it can honour is accepted and reads back as written.
    ok = tmp_path / "ok.yaml"
    ok.write_text("kind: TrafficPolicy\nmetadata: {name: e}\nspec: {retries: {attempts: 0, on: [connect-failure]}}\n")
    r = s.ctl("apply", "-f", str(ok))
    assert r.returncode == 0, r.stderr
    r = s.ctl("get", "trafficpolicy", "e", "-o", "yaml")
    assert r.returncode == 0 and "attempts: 0" in r.stdout and "connect-failure" in r.stdout, r.stdout + r.stderr
    # HTTP/2 and gRPC ports are declared as such.
    ports = tmp_path / "ports.yaml"
    ports.write_text("kind: Service\nmetadata: {name: d}\nspec: {ports: [{port: 50051, protocol: grpc}]}\n"
                     "---\n"
                     "kind: Service\nmetadata: {name: f}\nspec: {ports: [{port: 8443, protocol: http2}]}\n")
    r = s.ctl("apply", "-f", str(ports))
    assert r.returncode == 0, r.stderr
    r = s.ctl("get", "service", "d", "-o", "yaml")
    assert r.returncode == 0 and "protocol: grpc" in r.stdout, r.stdout + r.stderr
    r = s.ctl("get", "service", "f", "-o", "yaml")
    assert r.returncode == 0 and "protocol: http2" in r.stdout, r.stdout + r.stderr


def test_bad_manifests_name_the_field(server, tmp_path):
    s = server()
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: TrafficPolicy\nmetadata: {name: x}\nspec: {lb: fastest}\n")
    r = s.ctl("apply", "-f", str(bad))
    assert r.returncode == 1
    assert "spec.lb" in r.stderr and "fastest" in r.stderr, r.stderr
    # Nothing was written.
    status, _, _ = s.request("GET", "/v1/config/TrafficPolicy/x")
    assert status == 404
    # The API validates too (a client that skips the CLI).
    status, _, body = s.request("PUT", "/v1/config/Route/r",
                                "kind: Route\nmetadata: {name: r}\nspec: {service: a, rules: [{backends: [{service: b, weight: x}]}]}\n")
    assert status == 400 and "spec.rules[0].backends[0].weight" in body, body
    status, _, body = s.request("PUT", "/v1/config/Route/other",
                                "kind: Route\nmetadata: {name: r}\nspec: {service: a, rules: [{backends: [{service: b}]}]}\n")
    assert status == 400 and "metadata.name" in body, body
    status, _, body = s.request("PUT", "/v1/config/Nope/x", "{}")
    assert status == 404 and "unknown config kind" in body
    # Unknown kind on the CLI.
    r = s.ctl("get", "gizmo")
    assert r.returncode == 2 and "unknown kind" in r.stderr


def test_catalog_consul_shapes_and_health(server):
    s = server()
    body = {
        "Node": "node-1", "Address": "10.1.0.1", "NodeMeta": {"rack": "r1"},
        "Service": {"Service": "web", "ID": "web-1", "Port": 8080, "Tags": ["v1", "primary"],
                    "Meta": {"version": "1"}, "Weights": {"Passing": 3, "Warning": 1}},
        "Checks": [{"CheckID": "web-1-http", "Name": "http", "Status": "passing", "ServiceID": "web-1"}],
    }
    assert s.request("PUT", "/v1/catalog/register", body)[0] == 200
    body2 = {"Node": "node-2", "Address": "10.1.0.2",
             "Service": {"Service": "web", "ID": "web-2", "Port": 8080, "Tags": ["v2"]},
             "Check": {"CheckID": "web-2-http", "Name": "http", "Status": "critical", "ServiceID": "web-2"}}
    assert s.request("PUT", "/v1/catalog/register", body2)[0] == 200

    services, index = s.get_json("/v1/catalog/services")
    assert services == {"web": ["primary", "v1", "v2"]}
    assert index > 0
    inst, _ = s.get_json("/v1/catalog/service/web")
    assert [i["ServiceID"] for i in inst] == ["web-1", "web-2"]
    first = inst[0]
    assert first["Node"] == "node-1" and first["Address"] == "10.1.0.1"
    assert first["ServicePort"] == 8080 and first["ServiceTags"] == ["v1", "primary"]
    assert first["ServiceMeta"] == {"version": "1"} and first["NodeMeta"] == {"rack": "r1"}
    assert first["ServiceWeights"] == {"Passing": 3, "Warning": 1}
    assert first["CreateIndex"] > 0 and first["ModifyIndex"] >= first["CreateIndex"]
    node, _ = s.get_json("/v1/catalog/node/node-1")
    assert node["Node"]["Address"] == "10.1.0.1" and node["Node"]["Meta"] == {"rack": "r1"}
    assert list(node["Services"]) == ["web-1"] and node["Services"]["web-1"]["Port"] == 8080
    assert s.get_json("/v1/catalog/node/nope")[0] is None
    tagged, _ = s.get_json("/v1/catalog/service/web?tag=v2")
    assert [i["ServiceID"] for i in tagged] == ["web-2"]

    all_health, _ = s.get_json("/v1/health/service/web")
    assert len(all_health) == 2
    assert set(all_health[0]) >= {"Node", "Service", "Checks"}
    assert all_health[1]["Checks"][0]["Status"] == "critical"
    passing, _ = s.get_json("/v1/health/service/web?passing")
    assert [e["Service"]["ID"] for e in passing] == ["web-1"]
    passing, _ = s.get_json("/v1/health/service/web?passing=true")
    assert [e["Service"]["ID"] for e in passing] == ["web-1"]
    tagged, _ = s.get_json("/v1/health/service/web?tag=v2")
    assert [e["Service"]["ID"] for e in tagged] == ["web-2"]
    critical, _ = s.get_json("/v1/health/state/critical")
    assert [c["CheckID"] for c in critical] == ["web-2-http"]

    # A node-level critical check takes every instance on the node out.
    assert s.request("PUT", "/v1/catalog/register",
                     {"Node": "node-1", "Address": "10.1.0.1", "SkipNodeUpdate": True,
                      "Check": {"CheckID": "serfHealth", "Name": "node", "Status": "critical"}})[0] == 200
    passing, _ = s.get_json("/v1/health/service/web?passing")
    assert passing == []

    # Deregister one check, one service, then a whole node.
    assert s.request("PUT", "/v1/catalog/deregister", {"Node": "node-1", "CheckID": "serfHealth"})[0] == 200
    passing, _ = s.get_json("/v1/health/service/web?passing")
    assert [e["Service"]["ID"] for e in passing] == ["web-1"]
    assert s.request("PUT", "/v1/catalog/deregister", {"Node": "node-2", "ServiceID": "web-2"})[0] == 200
    inst, _ = s.get_json("/v1/catalog/service/web")
    assert [i["ServiceID"] for i in inst] == ["web-1"]
    status, _, body = s.request("PUT", "/v1/catalog/deregister", {"Node": "node-2", "ServiceID": "web-2"})
    assert status == 404 and "web-2" in body
    assert s.request("PUT", "/v1/catalog/deregister", {"Node": "node-1"})[0] == 200
    services, _ = s.get_json("/v1/catalog/services")
    assert services == {}
    nodes, _ = s.get_json("/v1/catalog/nodes")
    assert [n["Node"] for n in nodes] == ["node-2"]


def test_catalog_validation_and_limits(server, weft_bin, tmp_path):
    s = server()
    cases = [
        ({"Address": "1.2.3.4"}, "Node"),
        ({"Node": "n", "Address": "1.2.3.4", "Service": {"Port": 1}}, "Service.Service"),
        ({"Node": "n", "Address": "1.2.3.4", "Service": {"Service": "a", "Port": 70000}}, "Service.Port"),
        ({"Node": "n/x", "Address": "1.2.3.4"}, "Node"),
        ({"Node": "n", "Address": "1.2.3.4",
          "Service": {"Service": "a", "Meta": {f"k{i}": "v" for i in range(65)}}}, "Service.Meta"),
        ({"Node": "n", "Address": "1.2.3.4", "Check": {"Name": "c", "Status": "fine"}}, "Check.Status"),
        ({"Node": "n", "Address": "1.2.3.4", "Check": {"Name": "c", "ServiceID": "nope"}}, "Check.ServiceID"),
        ({"Node": "n", "Address": "1.2.3.4",
          "Service": {"Service": "p", "Kind": "connect-proxy", "Port": 1}}, "DestinationServiceName"),
    ]
    for body, field in cases:
        status, _, text = s.request("PUT", "/v1/catalog/register", body)
        assert status == 400 and field in text, (body, status, text)
    status, _, text = s.request("PUT", "/v1/catalog/register", "{not json")
    assert status == 400
    # Body size limit (1 MiB by default) -> 413, and the server keeps serving.
    status, _, text = s.request("PUT", "/v1/catalog/register", b"x" * (1024 * 1024 + 1))
    assert status == 413 and "limit" in text
    assert s.request("GET", "/v1/catalog/services")[0] == 200
    assert s.metric("weft_server_rejected_total") >= len(cases) + 1


def test_blocking_queries_wake_on_change_and_time_out(server):
    s = server()
    s.register("n1", "api", 80, "api-1")
    _, index = s.get_json("/v1/health/service/api")
    _, cindex = s.get_json("/v1/catalog/services")

    # Times out at `wait` when nothing changes, with the same index.
    t0 = time.time()
    _, idx2 = s.get_json(f"/v1/health/service/api?index={index}&wait=1s")
    assert 0.9 <= time.time() - t0 < 3.0 and idx2 == index

    # Wakes at once when the result changes.
    result = {}

    def watch():
        t = time.time()
        result["body"], result["index"] = s.get_json(f"/v1/health/service/api?index={index}&wait=30s")
        result["took"] = time.time() - t

    th = threading.Thread(target=watch)
    th.start()
    time.sleep(0.5)
    assert th.is_alive(), "the blocking query returned before anything changed"
    # An unrelated service does not wake it...
    s.register("n1", "other", 81, "other-1")
    time.sleep(0.3)
    assert th.is_alive(), "a change to another service woke the query"
    s.register("n2", "api", 80, "api-2")
    th.join(5)
    assert not th.is_alive()
    assert result["index"] > index and len(result["body"]) == 2 and result["took"] < 2.0
    # ...but it does move the services index.
    _, c2 = s.get_json(f"/v1/catalog/services?index={cindex}&wait=5s")
    assert c2 > cindex

    # Config entries block the same way.
    s.ctl("apply", "-f", os.path.join(EXAMPLES, "mesh.yaml"))
    _, ridx = s.get_json("/v1/config/Route/reviews")
    out = {}
    th = threading.Thread(target=lambda: out.update(r=s.request("GET", f"/v1/config/Route/reviews?index={ridx}&wait=30s")))
    th.start()
    time.sleep(0.3)
    assert th.is_alive()
    s.ctl("delete", "route", "reviews")
    th.join(5)
    assert not th.is_alive()
    status, headers, _ = out["r"]
    assert status == 404 and int(headers["X-Consul-Index"]) > ridx


def test_python_consul_client(server):
    try:
        import consul
    except ImportError:
        pytest.fail("python3-consul is required for this test; run scripts/deps.sh")
    s = server()
    host, port = s.http.rsplit(":", 1)
    c = consul.Consul(host=host, port=int(port))
    # python-consul sends its `token` as ?token=, which the server refuses
    # (400): the token goes in a header on every request of its session.
    c.http.session.headers["X-Consul-Token"] = s.token
    assert c.catalog.register("node-a", "10.0.0.5", service={"service": "cart", "port": 7000, "tags": ["blue"]},
                              check={"Name": "alive", "Status": "passing", "ServiceID": "cart"})
    index, services = c.catalog.services()
    assert services == {"cart": ["blue"]} and int(index) > 0
    index, nodes = c.catalog.service("cart")
    assert nodes[0]["ServiceAddress"] == "" and nodes[0]["Address"] == "10.0.0.5" and nodes[0]["ServicePort"] == 7000
    index, healthy = c.health.service("cart", passing=True)
    assert [h["Service"]["Service"] for h in healthy] == ["cart"]

    # A blocking watch with the client's own index wakes on change.
    got = {}

    def watch():
        got["res"] = c.health.service("cart", index=index, wait="20s")

    th = threading.Thread(target=watch)
    th.start()
    time.sleep(0.3)
    assert th.is_alive()
    assert c.catalog.deregister("node-a", service_id="cart")
    th.join(5)
    assert not th.is_alive() and got["res"][1] == [] and int(got["res"][0]) > int(index)


def test_members_lists_server(server):
    s = server(name="alpha")
    r = s.ctl("members")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "ADDRESS", "ROLE"]
    assert lines[1].split()[0] == "alpha" and "server" in lines[1]


def test_kill9_after_ack_loses_nothing(server, tmp_path):
    s = server()
    acked = []
    for i in range(200):
        s.register(f"node-{i % 7}", "svc", 1000 + i, f"svc-{i}")
        acked.append(f"svc-{i}")
    s.ctl("apply", "-f", os.path.join(EXAMPLES, "mesh.yaml"))
    s.stop(signal.SIGKILL)
    s.start()
    inst, _ = s.get_json("/v1/catalog/service/svc")
    assert sorted(i["ServiceID"] for i in inst) == sorted(acked)
    assert s.get_json("/v1/config/Route/reviews")[0]["spec"]["service"] == "reviews"


def test_concurrent_registrations_on_one_node_all_land(server):
    s = server()
    errors = []

    def worker(k):
        try:
            for i in range(25):
                s.register("shared-node", "svc", 2000 + k * 100 + i, f"w{k}-{i}")
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    inst, _ = s.get_json("/v1/catalog/service/svc")
    assert len(inst) == 200


def test_blocking_query_limit(server):
    # max_blocking_queries: the ones past the limit are answered at once (with
    # the current index), counted and logged; the ones within it wait.
    s = server(extra=("--max-blocking-queries", "3"))
    s.register("n1", "api", 80, "api-1")
    _, index = s.get_json("/v1/catalog/services")
    results = []

    def watch():
        results.append(s.get_json(f"/v1/catalog/services?index={index}&wait=20s")[1])

    threads = [threading.Thread(target=watch) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    assert s.metric("weft_server_blocking_queries_waiting") == 3
    t0 = time.time()
    _, over = s.get_json(f"/v1/catalog/services?index={index}&wait=20s")
    assert time.time() - t0 < 1.0 and over == index  # not held
    assert s.metric("weft_server_blocking_refused_total") == 1
    assert "max_blocking_queries" in s.log()
    s.register("n1", "api2", 81, "api2-1")
    for t in threads:
        t.join(5)
    assert len(results) == 3 and all(r > index for r in results)


def test_api_connection_limit_and_header_timeout(server):
    import socket as _socket
    s = server(extra=("--http-max-connections", "4", "--http-header-timeout", "1500ms"))
    # A client that never finishes its request head is cut off at the timeout.
    slow = _socket.create_connection(("127.0.0.1", s.http_port), timeout=5)
    slow.sendall(b"GET /v1/catalog/services HTTP/1.1\r\nHost: x\r\n")
    t0 = time.time()
    assert slow.recv(1024) == b""  # closed by the server
    assert 1.3 < time.time() - t0 < 4
    # Over the connection limit: accepted and closed at once.
    held = [_socket.create_connection(("127.0.0.1", s.http_port), timeout=5) for _ in range(4)]
    time.sleep(0.2)
    extra = _socket.create_connection(("127.0.0.1", s.http_port), timeout=5)
    extra.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        data = extra.recv(1024)
    except ConnectionResetError:
        data = b""
    assert data == b""
    for h in held:
        h.close()
    time.sleep(0.2)
    assert s.request("GET", "/ready")[0] == 200


def test_ca_root_is_made_once_kept_and_served(server, tmp_path):
    openssl = require("openssl")
    s = server()
    roots, _ = s.get_json("/v1/connect/ca/roots")
    assert roots["TrustDomain"] == "weft.local" and len(roots["Roots"]) == 1
    root = roots["Roots"][0]
    assert root["Active"] is True and root["ID"] == roots["ActiveRootID"] and len(root["ID"]) == 95
    (tmp_path / "root.pem").write_text(root["RootCert"])
    text = subprocess.run([openssl, "x509", "-noout", "-text", "-in", str(tmp_path / "root.pem")],
                          capture_output=True, text=True).stdout
    assert "CA:TRUE" in text and "URI:spiffe://weft.local" in text and "prime256v1" in text, text
    s.stop(signal.SIGKILL)
    s.start()
    assert s.get_json("/v1/connect/ca/roots")[0]["Roots"][0]["RootCert"] == root["RootCert"]
    # An operator's own root.
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem"), "-days", "30",
                    "-subj", "/CN=corp root", "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign"], check=True, capture_output=True)
    corp = server("corp", extra=("--trust-domain", "corp.example", "--ca-cert", str(tmp_path / "c.pem"),
                                 "--ca-key", str(tmp_path / "k.pem")))
    roots, _ = corp.get_json("/v1/connect/ca/roots")
    assert roots["TrustDomain"] == "corp.example"
    assert roots["Roots"][0]["RootCert"] == (tmp_path / "c.pem").read_text()
    # A key that is not the certificate's is refused at start.
    subprocess.run([openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-out", str(tmp_path / "k2.pem")], check=True, capture_output=True)
    r = subprocess.run([s.weft_bin, "server", "--data-dir", str(tmp_path / "bad"), "--http", "127.0.0.1:0",
                        "--grpc", "127.0.0.1:0", "--ca-cert", str(tmp_path / "c.pem"),
                        "--ca-key", str(tmp_path / "k2.pem")], capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "does not match" in r.stderr, r.stderr
