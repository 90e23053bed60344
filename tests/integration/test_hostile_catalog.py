"""Catalog poisoning (part of the hostile suite): an instance registered
without a sidecar, for a strict Service that runs behind sidecars, is not
dialled in plaintext; it is left out of the endpoints and counted. (A
service with no sidecar at all is a plain backend: test_stream.py's
test_tcp_upstream reaches one.) (Bad addresses and CR/LF in check
definitions: test_acl.py and test_agent.py.)"""
from conftest import free_port, wait_for


def test_a_strict_services_sidecarless_instance_is_left_out(server, mesh_proxy):
    s = server()
    # db has one instance behind a sidecar and one registered bare.
    s.register("n-db1", "db", 5432, "db-1")
    s.register("n-db1", "db-sidecar", free_port(), "db-sc", Kind="connect-proxy",
               Proxy={"DestinationServiceName": "db", "LocalServicePort": 5432})
    s.register("n-db2", "db", 5432, "db-2", address="127.0.0.2")
    up = free_port()
    s.register("n-app", "app-sidecar", free_port(), "app-sc", Kind="connect-proxy",
               Proxy={"DestinationServiceName": "app", "LocalServicePort": 8080,
                      "Upstreams": [{"DestinationName": "db", "LocalBindPort": up}]})
    px = mesh_proxy(s.grpc, "app")
    px.wait_ready(15)

    def db_endpoints():
        for c in px.config().get("clusters", []):
            if "db" in c["name"]:
                return sorted(e["address"] if isinstance(e, dict) else e for e in c["endpoints"])
        return None

    # db runs behind sidecars and is strict (the default): the bare
    # instance is left out, counted and logged, not dialled in plaintext.
    assert wait_for(lambda: db_endpoints() is not None and len(db_endpoints()) == 1, timeout=10), px.config()
    assert "127.0.0.2:5432" not in db_endpoints()
    assert s.metric("weft_server_sidecarless_endpoints_skipped_total") >= 1
    assert "instance db-2 of db left out of its endpoints: the Service is mtls: strict" in s.log()
    # weft check names it, with the fix.
    r = s.ctl("check")
    assert r.returncode == 1, r.stdout
    assert ("FAIL instance db-2 of db (namespace default, node n-db2) gets no traffic: its Service is "
            "mtls: strict and it has no sidecar") in r.stdout, r.stdout
    assert "Proxy.DestinationServiceID db-2" in r.stdout
    # permissive (adding sidecars one by one): both are reached.
    r = s.ctl("apply", "-f", "-", input="kind: Service\nmetadata: {name: db}\nspec:\n"
                                        "  ports: [{port: 5432, protocol: tcp}]\n  mtls: permissive\n")
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: len(db_endpoints() or []) == 2, timeout=10), db_endpoints()
    r = s.ctl("check")
    assert "db-2" not in r.stdout and "every instance of a strict Service runs behind a sidecar" in r.stdout, r.stdout
    # strict again, written out: left out again.
    r = s.ctl("apply", "-f", "-", input="kind: Service\nmetadata: {name: db}\nspec:\n"
                                        "  ports: [{port: 5432, protocol: tcp}]\n  mtls: strict\n")
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: len(db_endpoints() or []) == 1, timeout=10), db_endpoints()


def test_an_upstream_bound_outside_loopback_needs_an_explicit_opt_in(server):
    s = server()
    reg = {"Node": "n1", "Address": "127.0.0.1",
           "Service": {"Service": "web-sidecar", "ID": "web-sc", "Kind": "connect-proxy", "Port": free_port(),
                       "Proxy": {"DestinationServiceName": "web", "LocalServicePort": 8080,
                                 "Upstreams": [{"DestinationName": "db", "LocalBindPort": free_port(),
                                                "LocalBindAddress": "0.0.0.0"}]}}}
    status, _, body = s.request("PUT", "/v1/catalog/register", reg)
    assert status == 400 and "is not a loopback address" in body and "LocalBindPublic" in body, body
    reg["Service"]["Proxy"]["Upstreams"][0]["LocalBindPublic"] = True
    status, _, body = s.request("PUT", "/v1/catalog/register", reg)
    assert status == 200, body
    ups = s.get_json("/v1/catalog/service/web-sidecar")[0][0]["ServiceProxy"]["Upstreams"]
    assert ups[0]["LocalBindAddress"] == "0.0.0.0" and ups[0]["LocalBindPublic"] is True, ups
    # Loopback needs nothing (127.0.0.0/8 and ::1 alike).
    reg["Service"]["Proxy"]["Upstreams"][0] = {"DestinationName": "db", "LocalBindPort": free_port(),
                                               "LocalBindAddress": "127.0.0.5"}
    status, _, body = s.request("PUT", "/v1/catalog/register", reg)
    assert status == 200, body
