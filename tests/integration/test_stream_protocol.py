"""The config stream at the protocol level, with Python's grpcio as the client
and message classes generated from proto/weft/v1/config.proto by protoc:
full state then differences, ACK and NACK, resume from held versions, and
refusal of a malformed first request."""
import queue
import threading
import time

import pytest

from conftest import grpc_channel, node_identity


class Stream:
    """One bidirectional stream: requests go through a queue, responses come back in order."""

    def __init__(self, pb, target, first, identity=None, acl_token=""):
        """`identity`: a node certificate to present ((key, cert)); `acl_token`: sent as x-consul-token."""
        self.pb = pb
        self.channel = grpc_channel(target, identity)
        self.requests = queue.Queue()
        self.requests.put(first)
        call = self.channel.stream_stream(
            "/weft.v1.ConfigStream/Stream",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.StreamResponse.FromString)
        md = (("x-consul-token", acl_token),) if acl_token else None
        self.responses = call(iter(self.requests.get, None), metadata=md)
        self.inbox = queue.Queue()
        self.error = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for r in self.responses:
                self.inbox.put(r)
        except Exception as e:  # noqa: BLE001
            self.error = e
            self.inbox.put(None)

    def next(self, timeout=5):
        return self.inbox.get(timeout=timeout)

    def nothing_for(self, seconds):
        try:
            r = self.inbox.get(timeout=seconds)
            return r is None and self.error is None
        except queue.Empty:
            return True

    def ack(self, r):
        self.requests.put(self.pb.StreamRequest(version_info=r.version_info, response_nonce=r.nonce))

    def nack(self, r, why, kept=""):
        req = self.pb.StreamRequest(version_info=kept, response_nonce=r.nonce)
        req.error_detail.message = why
        self.requests.put(req)

    def close(self):
        self.requests.put(None)
        self.channel.close()


def first_request(pb, versions=None):
    req = pb.StreamRequest(resource_types=["node", "config"])
    req.client.role = "client"
    req.client.id = "pytest"
    for k, v in (versions or {}).items():
        req.resource_versions[k] = v
    return req


def names(r):
    return sorted(f"{x.type}/{x.name}" for x in r.resources)


def test_full_state_then_differences_ack_and_nack(pb, server):
    s = server()
    s.register("n1", "a", 1, "a-1")
    st = Stream(pb, s, first_request(pb), node_identity(pb, s, "pytest-node"))
    r1 = st.next()
    assert r1.full_state and names(r1) == ["node/n1"] and r1.version_info and r1.nonce
    assert r1.resources[0].version
    st.ack(r1)

    # A change to another node: only that node comes.
    s.register("n2", "b", 2, "b-1")
    r2 = st.next()
    assert not r2.full_state and names(r2) == ["node/n2"] and r2.version_info != r1.version_info
    st.ack(r2)

    # NACK: the server keeps us where we were and does not resend that version.
    s.register("n3", "c", 3, "c-1")
    r3 = st.next()
    assert names(r3) == ["node/n3"]
    st.nack(r3, "cannot use it", kept=r2.version_info)
    assert st.nothing_for(1.0), "the refused version was sent again"
    assert s.metric("weft_server_stream_nacks_total") == 1
    # The next change is sent against what we hold (r2): n3 again, and n1's removal.
    s.request("PUT", "/v1/catalog/deregister", {"Node": "n1"})
    r4 = st.next()
    assert names(r4) == ["node/n3"]
    assert [f"{x.type}/{x.name}" for x in r4.removed] == ["node/n1"]
    st.ack(r4)
    # Config entries travel too.
    s.ctl("apply", "-f", "-", input="kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 1}]}\n")
    r5 = st.next()
    assert names(r5) == ["config/Service/default/a"]
    assert '"kind":"Service"' in r5.resources[0].config.json
    st.ack(r5)
    st.close()


def test_resume_sends_only_what_changed(pb, server):
    s = server()
    s.register("n1", "a", 1, "a-1")
    s.register("n2", "b", 2, "b-1")
    st = Stream(pb, s, first_request(pb), node_identity(pb, s, "pytest-node"))
    r = st.next()
    held = {f"{x.type}/{x.name}": x.version for x in r.resources}
    st.ack(r)
    st.close()

    # Unchanged: an empty difference.
    st = Stream(pb, s, first_request(pb, held), node_identity(pb, s, "pytest-node"))
    r = st.next()
    assert not r.full_state and len(r.resources) == 0 and len(r.removed) == 0
    st.ack(r)
    st.close()
    assert s.metric("weft_server_stream_resumed_total") >= 1

    # Changed while away: just the change.
    s.register("n2", "b", 22, "b-1")
    st = Stream(pb, s, first_request(pb, held), node_identity(pb, s, "pytest-node"))
    r = st.next()
    assert not r.full_state and names(r) == ["node/n2"]
    st.close()


def test_only_subscribed_types_are_sent(pb, server):
    s = server()
    s.register("n1", "a", 1, "a-1")
    s.ctl("apply", "-f", "-", input="kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 1}]}\n")
    req = first_request(pb)
    del req.resource_types[:]
    req.resource_types.append("config")
    st = Stream(pb, s, req, node_identity(pb, s, "pytest-node"))
    r = st.next()
    assert names(r) == ["config/Service/default/a"]
    st.ack(r)
    s.register("n2", "b", 2, "b-1")  # a node change: nothing for a config-only client
    assert st.nothing_for(0.7)
    st.close()


def test_catalog_clients_need_a_node_certificate(pb, server):
    """Streams with no credentials are refused before anything is set up
    for them; an ACL token is for proxies, not for catalog clients."""
    import grpc
    s = server()
    st = Stream(pb, s, first_request(pb))
    assert st.next() is None and st.error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "node certificate" in st.error.details()
    st = Stream(pb, s, first_request(pb), acl_token=s.token)
    assert st.next() is None and st.error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert s.metric("weft_server_unauthenticated_total") == 2


def test_malformed_first_request_is_refused(pb, server):
    import grpc
    s = server()
    st = Stream(pb, s, pb.StreamRequest(), node_identity(pb, s, "pytest-node"))  # no client
    assert st.next() is None
    assert st.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "client" in st.error.details()
    req = pb.StreamRequest()
    req.client.role = "proxy"  # a proxy must name its service
    st = Stream(pb, s, req, node_identity(pb, s, "pytest-node"))
    assert st.next() is None and st.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert s.metric("weft_server_stream_protocol_errors_total") == 2
    # A first message is a hello: over 64 KiB is refused.
    req = first_request(pb)
    req.client.id = "x" * (70 * 1024)
    st = Stream(pb, s, req, node_identity(pb, s, "pytest-node"))
    assert st.next() is None and st.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "over 65536 bytes" in st.error.details()


def test_tokenless_streams_leave_slots_for_agents(pb, server):
    """Proxies (with an ACL token, no node certificate) may stream, but not
    into the last tenth of max_streams: an agent (with its node certificate)
    still gets in."""
    import grpc
    s = server(extra=("--max-streams", "10"))

    def proxy_hello(i):
        req = pb.StreamRequest(resource_types=["listener", "cluster"])
        req.client.role = "proxy"
        req.client.service = f"svc{i}"
        req.client.id = f"p{i}"
        return req

    held = []
    for i in range(9):
        st = Stream(pb, s, proxy_hello(i), acl_token=s.token)
        assert st.next() is not None, (i, st.error)
        held.append(st)
    st = Stream(pb, s, proxy_hello(9), acl_token=s.token)
    assert st.next() is None and st.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "kept for agents" in st.error.details()
    assert s.metric("weft_server_streams_tokenless_refused_total") == 1
    agent = Stream(pb, s, first_request(pb), node_identity(pb, s, "pytest-node"))
    assert agent.next() is not None, agent.error
    # Now every slot is taken: anyone is refused, with the token too.
    st = Stream(pb, s, first_request(pb), node_identity(pb, s, "pytest-node"))
    assert st.next() is None and st.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    for x in held + [agent]:
        x.close()
