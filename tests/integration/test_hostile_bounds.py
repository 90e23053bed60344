"""Bounds a hostile client runs into (part of the hostile suite), each
exceeded: config streams per address, blocking queries per client address,
and the number of nodes (registrations and joins). The global bounds
(max_streams with its share for agents, the first message's size, JSON
depth, body sizes) are in test_stream_protocol.py, test_acl.py and
test_server.py."""
import threading
import time

from conftest import new_csr, sign_rpc
from test_stream_protocol import Stream


def proxy_hello(pb, i):
    req = pb.StreamRequest(resource_types=["listener", "cluster"])
    req.client.role = "proxy"
    req.client.service = f"svc{i}"
    req.client.id = f"p{i}"
    return req


def test_streams_per_address_are_limited(pb, server):
    import grpc
    s = server(extra=("--max-streams-per-peer", "2"))
    held = [Stream(pb, s, proxy_hello(pb, i), acl_token=s.token) for i in range(2)]
    for st in held:
        assert st.next() is not None, st.error
    extra = Stream(pb, s, proxy_hello(pb, 9), acl_token=s.token)
    assert extra.next() is None and extra.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_streams_per_peer" in extra.error.details()
    assert s.metric("weft_server_streams_per_peer_refused_total") == 1
    # A slot given back is a slot to take.
    held[0].close()
    time.sleep(0.5)
    again = Stream(pb, s, proxy_hello(pb, 7), acl_token=s.token)
    assert again.next() is not None, again.error
    for st in held[1:] + [again]:
        st.close()


def test_blocking_queries_per_client_are_limited(server):
    s = server(extra=("--max-blocking-queries-per-client", "2"))
    s.register("n1", "web", 80, "web-1")
    _, index = s.get_json("/v1/catalog/services")
    done = []

    def block():
        t0 = time.time()
        s.request("GET", f"/v1/catalog/services?index={index}&wait=4s")
        done.append(time.time() - t0)

    threads = [threading.Thread(target=block) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    # The third from the same address is answered at once, and counted.
    t0 = time.time()
    status, _, _ = s.request("GET", f"/v1/catalog/services?index={index}&wait=4s")
    assert status == 200 and time.time() - t0 < 1.5
    assert s.metric("weft_server_blocking_refused_total") == 1
    assert "max_blocking_queries_per_client" in s.log()
    for t in threads:
        t.join()
    assert all(d >= 3 for d in done), done  # the two within the share did wait


def test_the_node_count_is_limited(server, pb):
    import grpc
    s = server(extra=("--max-nodes", "3"))
    for i in range(3):
        s.register(f"n{i}", "web", 80, f"web-{i}")
    status, _, body = s.request("PUT", "/v1/catalog/register",
                                {"Node": "n3", "Address": "127.0.0.1", "Service": {"Service": "web", "Port": 80}})
    assert status == 400 and "at most 3 nodes" in body, body
    # Known nodes still take writes.
    s.register("n0", "api", 81, "api-0")
    # A join as a fourth node is refused too.
    _, csr = new_csr()
    code, detail = sign_rpc(pb, s, pb.SignRequest(csr_pem=csr, node="n-new", node_identity=True),
                            (("x-weft-join-token", s.join_token),))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "maximum of 3 nodes" in detail, detail
