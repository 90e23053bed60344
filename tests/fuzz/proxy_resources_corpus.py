#!/usr/bin/python3
"""Writes the seed corpus of the proxy_resources fuzz target
(tests/fuzz/corpus/proxy_resources): StreamResponse messages shaped like the
ones a server compiles for a sidecar (inbound and outbound HTTP and TCP
listeners, route tables with splits and retries, clusters and endpoints,
authorization policies, transparent capture, a bundle and a secret with a
real key and certificate), plus broken ones. Needs protoc, python3-protobuf
and openssl.

Usage: tests/fuzz/proxy_resources_corpus.py [DIR]
"""
import importlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join(HERE, "..", "..", "proto")


def load_pb():
    out = tempfile.mkdtemp(prefix="weft-pb-")
    subprocess.run(["protoc", f"--proto_path={PROTO}", f"--python_out={out}",
                    os.path.join(PROTO, "weft", "v1", "config.proto")], check=True)
    sys.path.insert(0, out)
    return importlib.import_module("weft.v1.config_pb2")


def identity():
    """(root PEM, leaf chain PEM, leaf key PEM) made with openssl."""
    d = tempfile.mkdtemp(prefix="weft-id-")

    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)
    ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "root.key")
    ossl("req", "-x509", "-new", "-key", "root.key", "-subj", "/O=weft/CN=fuzz root", "-days", "3650",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-out", "root.pem")
    ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "leaf.key")
    ossl("req", "-new", "-key", "leaf.key", "-subj", "/O=weft", "-out", "leaf.csr")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=URI:spiffe://weft.local/ns/default/sa/web\n")
    ossl("x509", "-req", "-in", "leaf.csr", "-CA", "root.pem", "-CAkey", "root.key", "-CAcreateserial",
         "-days", "3650", "-extfile", "ext", "-out", "leaf.pem")
    read = lambda n: open(os.path.join(d, n)).read()  # noqa: E731
    return read("root.pem"), read("leaf.pem"), read("leaf.key")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus", "proxy_resources")
    os.makedirs(out, exist_ok=True)
    pb = load_pb()
    root, chain, key = identity()

    def res(kind, name, **body):
        r = pb.Resource(type=kind, name=name, version="v1")
        getattr(r, kind if kind != "route" else "route").CopyFrom(body["msg"])
        return r

    def listener(**kw):
        return pb.Listener(**kw)

    policy = {"kind": "AuthorizationPolicy", "apiVersion": "weft.dev/v1",
              "metadata": {"name": "web", "namespace": "default"},
              "spec": {"service": "web", "default": "deny",
                       "rules": [{"action": "allow", "from": ["spiffe://weft.local/ns/default/sa/frontend"],
                                  "to": {"methods": ["GET"], "paths": ["/api/*"], "headers": {"x-tenant": "acme*"}}},
                                 {"action": "deny", "from": ["spiffe://weft.local/ns/untrusted/*"]}]}}
    sidecar = [
        res("listener", "inbound", msg=listener(name="inbound", address="127.0.0.1:15000", protocol="http",
                                                direction="inbound", route_table="inbound", mtls="strict",
                                                request_timeout_ms=15000, idle_timeout_ms=60000)),
        res("route", "inbound", msg=pb.RouteTable(name="inbound", routes=[
            pb.Route(name="all", prefix="/", clusters=[pb.WeightedCluster(cluster="local_app", weight=100)])])),
        res("cluster", "local_app", msg=pb.Cluster(name="local_app", service="web", protocol="http")),
        res("endpoints", "local_app", msg=pb.Endpoints(cluster="local_app", endpoints=[
            pb.Endpoint(address="127.0.0.1:8080", weight=1, health="passing")])),
        res("listener", "reviews", msg=listener(name="reviews", address="127.0.0.1:9080", protocol="http",
                                                direction="outbound", route_table="reviews")),
        res("route", "reviews", msg=pb.RouteTable(name="reviews", routes=[
            pb.Route(name="v2-header", prefix="/", headers=[pb.HeaderMatch(name="x-version", value="v2")],
                     clusters=[pb.WeightedCluster(cluster="reviews-v2", weight=1)], timeout_ms=2000,
                     retry=pb.RetryPolicy(attempts=3, per_try_timeout_ms=200, on=["connect-failure", "5xx",
                                                                                  "retriable-status-codes"],
                                         retriable_status_codes=[503, 429])),
            pb.Route(name="split", path="/exact", clusters=[pb.WeightedCluster(cluster="reviews", weight=80),
                                                             pb.WeightedCluster(cluster="reviews-v2", weight=20)],
                     fault=pb.Fault(delay_ms=50, delay_percent=10, abort_http_status=503,
                                    abort_grpc_status=14, abort_percent=1.5))])),
        res("cluster", "reviews", msg=pb.Cluster(name="reviews", service="reviews", namespace="default",
                                                 lb="ewma", lb_decay_ms=2000, connect_timeout_ms=1000,
                                                 protocol="http", mesh_protocol="http2", retry_budget_percent=20,
                                                 retry_budget_min_per_s=5, max_connections=100,
                                                 max_pending_requests=10, max_requests=50, max_retries=3)),
        res("endpoints", "reviews", msg=pb.Endpoints(cluster="reviews", endpoints=[
            pb.Endpoint(address="127.0.0.1:15001", weight=1, zone="a", health="passing", node="n1",
                        instance_id="reviews-1", mtls=True),
            pb.Endpoint(address="[::1]:15002", weight=3, health="warning", mtls=True)])),
        res("cluster", "reviews-v2", msg=pb.Cluster(name="reviews-v2", service="reviews-v2", protocol="grpc")),
        res("listener", "redis", msg=listener(name="redis", address="127.0.0.1:6380", protocol="tcp",
                                              direction="outbound", cluster="redis")),
        res("cluster", "redis", msg=pb.Cluster(name="redis", service="redis", protocol="tcp", lb="random")),
        res("endpoints", "redis", msg=pb.Endpoints(cluster="redis", endpoints=[
            pb.Endpoint(address="10.0.0.7:6379", weight=1)])),
        res("policy", "default/web", msg=pb.Policy(json=json.dumps(policy))),
        res("bundle", "roots", msg=pb.Bundle(trust_domain="weft.local", roots_pem=[root], active_root_id="r1")),
        res("secret", "workload", msg=pb.Secret(spiffe_id="spiffe://weft.local/ns/default/sa/web",
                                                cert_chain_pem=chain, key_pem=key, not_after_unix=4102444800,
                                                root_id="r1")),
    ]
    capture = [
        res("listener", "capture", msg=listener(name="capture", address="127.0.0.1:15001", protocol="capture",
                                                egress="registry_only")),
        res("listener", "v-reviews", msg=listener(name="v-reviews", address="127.0.0.1:15001", protocol="http", direction="outbound",
                                                  capture_of="capture", route_table="reviews",
                                                  match_addresses=["10.96.0.10:9080"],
                                                  match_hosts=["reviews", "reviews.default.svc"])),
        res("listener", "v-redis", msg=listener(name="v-redis", address="127.0.0.1:15001", protocol="tcp", direction="outbound",
                                                capture_of="capture", cluster="redis",
                                                match_addresses=["10.96.0.11:6379"])),
    ]
    broken = {
        "unknown_lb": [res("cluster", "x", msg=pb.Cluster(name="x", lb="fastest"))],
        "missing_route": [res("listener", "l", msg=listener(name="l", address="127.0.0.1:1", protocol="http",
                                                            route_table="nope"))],
        "bad_address": [res("listener", "l", msg=listener(name="l", address="no-port", protocol="tcp",
                                                          cluster="c"))],
        "bad_policy": [res("policy", "p", msg=pb.Policy(json='{"kind": "Route", "spec": {}}'))],
        "bad_pem": [res("bundle", "roots", msg=pb.Bundle(roots_pem=["-----BEGIN CERTIFICATE-----\nAAAA\n"])),
                    res("secret", "workload", msg=pb.Secret(cert_chain_pem="junk", key_pem="junk"))],
        "bad_mtls": [res("listener", "l", msg=listener(name="l", address="127.0.0.1:1", protocol="tcp",
                                                       cluster="c", mtls="sometimes"))],
    }
    seeds = {"sidecar": sidecar, "capture": sidecar + capture, **broken}
    for name, resources in seeds.items():
        msg = pb.StreamResponse(version_info="1", nonce="n", full_state=True, resources=resources)
        with open(os.path.join(out, name), "wb") as f:
            f.write(msg.SerializeToString())
    print(f"{len(seeds)} seeds in {out}")


if __name__ == "__main__":
    main()
