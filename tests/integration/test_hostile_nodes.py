"""Hostile callers against node identity (part of the hostile suite: every
test_hostile_*.py; `pytest tests/integration -k hostile` runs them alone).

Agents join once with a join token and get a node certificate; from then
on the certificate, not the token, says which node a call may act for.
Join tokens expire and can be revoked; a second agent cannot take a node
another one holds; an agent on a wiped data dir adopts its node's services
instead of removing them; a proxy without an agent gets only the identity
its ACL token has service:write on."""
import json
import os
import signal
import time

from conftest import free_port, grpc_channel, new_csr, node_identity, sign_rpc, wait_for


def sync_node(pb, srv, node, doc, identity=None):
    import grpc
    ch = grpc_channel(srv, identity)
    call = ch.unary_unary("/weft.v1.ConfigStream/SyncNode", request_serializer=lambda m: m.SerializeToString(),
                          response_deserializer=pb.SyncNodeResponse.FromString)
    try:
        return grpc.StatusCode.OK, call(pb.SyncNodeRequest(node=node, json=json.dumps(doc)), timeout=10)
    except grpc.RpcError as e:
        return e.code(), e.details()
    finally:
        ch.close()


def join(pb, srv, node, token):
    """A join as an agent makes it: (code, response or details)."""
    _, csr = new_csr()
    return sign_rpc(pb, srv, pb.SignRequest(csr_pem=csr, node=node, node_identity=True),
                    (("x-weft-join-token", token),))


def make_join_token(srv, *flags):
    r = srv.ctl("acl", "join-token", "create", "-o", "json", *flags)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_join_tokens_expire_are_listed_without_secrets_and_can_be_revoked(server, pb):
    import grpc
    s = server()
    short = make_join_token(s, "--ttl", "2s", "--description", "short")
    revoked = make_join_token(s, "--description", "revoked")
    listed = json.loads(s.ctl("acl", "join-token", "list", "-o", "json").stdout)
    assert {t["Description"] for t in listed} >= {"made on first start", "short", "revoked"}
    assert all("SecretID" not in t for t in listed), listed
    assert short["SecretID"] not in open(os.path.join(s.data_dir, "weft.db"), "rb").read().decode(errors="replace")
    assert short["ExpirationTime"] - short["CreateTime"] == 2
    # Revoked: refused from then on.
    r = s.ctl("acl", "join-token", "revoke", revoked["ID"])
    assert r.returncode == 0 and "revoked" in r.stdout, r.stderr
    code, detail = join(pb, s, "n-revoked", revoked["SecretID"])
    assert code == grpc.StatusCode.UNAUTHENTICATED and "unknown or revoked join token" in detail, detail
    # Expired: refused once its time is up.
    code, _ = join(pb, s, "n-early", short["SecretID"])
    assert code == grpc.StatusCode.OK
    time.sleep(2.5)
    code, detail = join(pb, s, "n-late", short["SecretID"])
    assert code == grpc.StatusCode.UNAUTHENTICATED and "expired" in detail, detail
    # Joining needs the acl:write a read token lacks; the anonymous token may not even list.
    r = s.ctl("acl", "join-token", "list", token="")
    assert r.returncode != 0 and "Permission denied" in r.stderr + r.stdout, r.stdout + r.stderr
    # Bad TTLs are refused with the rule.
    r = s.ctl("acl", "join-token", "create", "--ttl", "500ms")
    assert r.returncode != 0 and "use 0 (never) or 1s to 8760h" in r.stderr + r.stdout


def test_sync_node_writes_the_callers_own_node_only(server, pb):
    import grpc
    s = server()
    a = node_identity(pb, s, "node-a")
    doc = {"Node": "node-a", "Address": "127.0.0.1", "Services": {}, "Checks": {}}
    code, resp = sync_node(pb, s, "node-a", doc, a)
    assert code == grpc.StatusCode.OK, resp
    # node-a's certificate rewriting node-b: refused, counted, logged with the peer.
    s.register("node-b", "payments", 9000, "payments-1")
    forged = {"Node": "node-b", "Address": "127.0.0.1", "Services": {}, "Checks": {}}
    code, detail = sync_node(pb, s, "node-b", forged, a)
    assert code == grpc.StatusCode.PERMISSION_DENIED and "node \"node-a\"'s" in detail, detail
    assert s.metric("weft_server_foreign_node_refused_total") == 1
    assert "node sync from ipv4:127.0.0.1:" in s.log() and "names \"node-b\"" in s.log()
    # No certificate at all (the join token is no identity): refused.
    code, detail = sync_node(pb, s, "node-b", forged)
    assert code == grpc.StatusCode.UNAUTHENTICATED, detail
    assert [x["ServiceID"] for x in s.get_json("/v1/catalog/service/payments")[0]] == ["payments-1"]
    # A node certificate for another node than the join names: refused.
    _, csr = new_csr()
    code, detail = sign_rpc(pb, s, pb.SignRequest(csr_pem=csr, node="node-b", node_identity=True), identity=a)
    assert code == grpc.StatusCode.PERMISSION_DENIED and "not node \"node-b\"'s" in detail, detail
    # Node names a SPIFFE ID cannot hold are refused at the join.
    code, detail = join(pb, s, "bad:name", s.join_token)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, detail


def test_a_second_agent_cannot_take_a_held_node_and_a_wiped_agent_adopts_its_services(server, agent, tmp_path):
    s = server()
    first = agent(s, "node-1")
    status, _, body = first.request("PUT", "/v1/agent/service/register", {"Name": "keep", "ID": "keep-1", "Port": 1234})
    assert status == 200, body
    assert wait_for(lambda: len(s.get_json("/v1/catalog/service/keep")[0]) == 1, timeout=10)
    # The impostor joins with a valid join token, but node-1's agent is connected.
    impostor = agent(s, "node-1", data_dir=str(tmp_path / "impostor"))
    assert wait_for(lambda: "is held by an agent connected now" in impostor.log(), timeout=10), impostor.log()
    status, _, _ = impostor.request("PUT", "/v1/agent/service/register", {"Name": "evil", "ID": "evil-1", "Port": 1})
    time.sleep(1)
    assert "evil" not in s.get_json("/v1/catalog/services")[0]
    assert not os.path.exists(os.path.join(impostor.data_dir, "node-cert.pem"))
    impostor.stop(signal.SIGKILL)
    # The first agent's data dir is wiped (a new disk): its replacement joins
    # once the old one is gone, and adopts node-1's services instead of
    # removing them.
    first.stop(signal.SIGKILL)
    import shutil
    shutil.rmtree(first.data_dir)
    time.sleep(1)
    replacement = agent(s, "node-1")
    assert wait_for(lambda: "keep-1" in replacement.get_json("/v1/agent/services")[0], timeout=20), \
        replacement.log()
    assert "adopted 1 service(s) of node node-1" in replacement.log()
    time.sleep(1)
    assert [x["ServiceID"] for x in s.get_json("/v1/catalog/service/keep")[0]] == ["keep-1"]
    # The node's files are its owner's only.
    for name in ("node-key.pem", "node-cert.pem", "local.json"):
        path = os.path.join(replacement.data_dir, name)
        assert oct(os.stat(path).st_mode & 0o777) == "0o600", name
    assert oct(os.stat(replacement.data_dir).st_mode & 0o777) == "0o700"
    assert oct(os.stat(os.path.join(replacement.data_dir, "weft.sock")).st_mode & 0o777) == "0o660"


def test_an_agent_keeps_its_node_after_its_join_token_is_revoked(server, agent):
    s = server()
    a = agent(s, "node-k")
    assert wait_for(lambda: "node-k" in [n["Node"] for n in s.get_json("/v1/catalog/nodes")[0]], timeout=10)
    # Every join token revoked: the agent's certificate still works, across a restart with no token at all.
    for t in json.loads(s.ctl("acl", "join-token", "list", "-o", "json").stdout):
        assert s.ctl("acl", "join-token", "revoke", t["ID"]).returncode == 0
    a.stop(signal.SIGTERM)
    a.extra = tuple(x for i, x in enumerate(a.extra)
                    if x != "--join-token-file" and (i == 0 or a.extra[i - 1] != "--join-token-file"))
    a.start()
    assert "node certificate spiffe://weft.local/ns/weft/node/node-k from" in a.log()
    status, _, _ = a.request("PUT", "/v1/agent/service/register", {"Name": "after", "Port": 5})
    assert status == 200
    assert wait_for(lambda: "after" in s.get_json("/v1/catalog/services")[0], timeout=10), a.log()


def test_a_proxy_token_gets_the_identity_of_its_own_service_only(server, mesh_proxy, pb):
    import grpc
    s = server()
    s.register("n1", "web-sidecar", free_port(), "web-sc", Kind="connect-proxy",
               Proxy={"DestinationServiceName": "web", "LocalServicePort": 8080})
    s.register("n1", "billing-sidecar", free_port(), "billing-sc", Kind="connect-proxy",
               Proxy={"DestinationServiceName": "billing", "LocalServicePort": 8081})
    r = s.ctl("acl", "policy", "create", "--name", "web-proxy", "--rules", '{"service": {"web": {"policy": "write"}}}')
    assert r.returncode == 0, r.stderr
    r = s.ctl("acl", "token", "create", "--policy", "web-proxy", "-o", "json")
    web_token = json.loads(r.stdout)["SecretID"]
    _, csr = new_csr()
    md = (("x-consul-token", web_token),)
    code, resp = sign_rpc(pb, s, pb.SignRequest(csr_pem=csr, service="web"), md)
    assert code == grpc.StatusCode.OK and resp.spiffe_id == "spiffe://weft.local/ns/default/sa/web", resp
    code, detail = sign_rpc(pb, s, pb.SignRequest(csr_pem=csr, service="billing"), md)
    assert code == grpc.StatusCode.PERMISSION_DENIED and 'lacks service:write on "billing"' in detail, detail
    # A token cannot name a node (that needs the node's certificate).
    code, detail = sign_rpc(pb, s, pb.SignRequest(csr_pem=csr, service="web", node="n1"), md)
    assert code == grpc.StatusCode.PERMISSION_DENIED and "node's certificate" in detail, detail
    # The mesh's own namespace is not for workloads.
    code, detail = sign_rpc(pb, s, pb.SignRequest(csr_pem=csr, service="server", namespace="weft"),
                            (("x-consul-token", s.token),))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "reserved" in detail, detail
    # The same, end to end: the web sidecar runs with the token, the billing one is turned away.
    web = mesh_proxy(s.grpc, "web", env={"WEFT_TOKEN": web_token})
    web.wait_ready(15)
    assert json.loads(web.admin("/certs")[1])["spiffe_id"] == "spiffe://weft.local/ns/default/sa/web"
    mesh_proxy(s.grpc, "billing", env={"WEFT_TOKEN": web_token})
    assert wait_for(lambda: 'for proxy of billing refused: Permission denied: token lacks service:write on "billing"'
                    in s.log(), timeout=10), s.log()[-1500:]
