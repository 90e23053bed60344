"""Zero trust end to end: the server's CA issues SPIFFE certificates from CSRs,
sidecars speak TLS 1.3 with certificates on both sides and check the peer's
identity, strict ports refuse everything else, and AuthorizationPolicy
decides who may call what. Real peers: curl, openssl s_client and x509,
tcpdump, python3-grpcio."""
import datetime
import http.client
import json
import os
import subprocess
import threading
import time

import pytest

from conftest import free_port, require, sign_rpc, wait_for, wait_port

TD = "weft.local"


def spiffe(service, ns="default", td=TD):
    return f"spiffe://{td}/ns/{ns}/sa/{service}"


class CA:
    """A CA made by the test (python3-cryptography), handed to the server
    with --ca-cert/--ca-key, so the test can also issue the odd certificates
    (expired, wrong identity) a real CA would not."""

    def __init__(self, path, name="test root"):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        self.x509, self.hashes, self.ec, self.ser = x509, hashes, ec, serialization
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        name_ = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (x509.CertificateBuilder().subject_name(name_).issuer_name(name_)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                    critical=True)
                     .sign(self.key, hashes.SHA256()))
        os.makedirs(path, exist_ok=True)
        self.cert_path, self.key_path = os.path.join(path, "ca.pem"), os.path.join(path, "ca.key")
        self.dir = path
        with open(self.cert_path, "wb") as f:
            f.write(self.cert.public_bytes(serialization.Encoding.PEM))
        with open(self.key_path, "wb") as f:
            f.write(self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    def leaf(self, name, uri, expired=False):
        """Writes NAME.pem/NAME.key: a workload certificate for `uri`."""
        x509 = self.x509
        key = self.ec.generate_private_key(self.ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        nb, na = (now - datetime.timedelta(days=2), now - datetime.timedelta(days=1)) if expired else \
            (now - datetime.timedelta(minutes=1), now + datetime.timedelta(hours=1))
        cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(nb).not_valid_after(na)
                .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,
                                                      x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(self.key, self.hashes.SHA256()))
        cp, kp = os.path.join(self.dir, name + ".pem"), os.path.join(self.dir, name + ".key")
        with open(cp, "wb") as f:
            f.write(cert.public_bytes(self.ser.Encoding.PEM))
        with open(kp, "wb") as f:
            f.write(key.private_bytes(self.ser.Encoding.PEM, self.ser.PrivateFormat.PKCS8,
                                      self.ser.NoEncryption()))
        return cp, kp


def metric(px, name, **labels):
    """Sum of a proxy metric over the samples whose labels include `labels`."""
    total = 0.0
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for line in px.admin("/stats")[1].splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name or not all(w in head for w in want):
            continue
        total += float(value)
    return total


def get(port, path="/echo", headers=None, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def s_client(port, cert=None, key=None, request=b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"):
    """openssl s_client into a mesh port, sending one request; returns its output."""
    args = [require("openssl"), "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3", "-quiet",
            "-alpn", "http/1.1"]
    if cert:
        args += ["-cert", cert, "-key", key]
    r = subprocess.run(args, input=request, capture_output=True, timeout=20)
    return r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def register_sidecar(s, node, service, inbound_port, app_port, upstreams=(), sid=None):
    s.register(node, f"{service}-sidecar", inbound_port, sid or f"{service}-sidecar-{node}", Kind="connect-proxy",
               Proxy={"DestinationServiceName": service, "LocalServicePort": app_port,
                      "Upstreams": [{"DestinationName": d, "LocalBindPort": p} for d, p in upstreams]})


@pytest.fixture
def ca(tmp_path):
    try:
        return CA(str(tmp_path / "ca"))
    except ImportError:
        pytest.fail("python3-cryptography is required for this test; run scripts/deps.sh")


@pytest.fixture
def mesh(server, mesh_proxy, backends, ca):
    """web (client) -> reviews, each behind its own sidecar fed by the server;
    the server signs with the test's CA."""
    s = server(extra=("--ca-cert", ca.cert_path, "--ca-key", ca.key_path, "--cert-ttl", "1h"))
    app = backends("reviews-app")
    web_app = backends("web-app")
    s.register("node-r", "reviews", app.port, "reviews-1")
    r_in, w_in, up = free_port(), free_port(), free_port()
    register_sidecar(s, "node-r", "reviews", r_in, app.port)
    register_sidecar(s, "node-w", "web", w_in, web_app.port, [("reviews", up)])
    s.register("node-w", "web", web_app.port, "web-1")
    rpx = mesh_proxy(s.grpc, "reviews")
    wpx = mesh_proxy(s.grpc, "web")
    rpx.wait_ready()
    wpx.wait_ready()
    wait_port(up)
    return s, wpx, rpx, up, r_in


def test_mesh_call_is_mutual_tls_with_spiffe_identities(mesh):
    s, wpx, rpx, up, r_in = mesh
    status, body = get(up)
    assert status == 200, body
    seen = json.loads(body)
    assert seen["backend"] == "reviews-app"
    # The app learns who called, as the reviews sidecar verified it.
    headers = {k.lower(): v for k, v in seen["headers"]}
    xfcc = dict(kv.split("=", 1) for kv in headers["x-forwarded-client-cert"].split(";"))
    assert xfcc == {"By": spiffe("reviews"), "URI": spiffe("web")}
    assert metric(wpx, "weft_cluster_upstream_mtls_handshakes_total", cluster="reviews") >= 1
    assert metric(rpx, "weft_listener_mtls_handshakes_total", listener="inbound") >= 1
    # Per-caller metrics on the receiving side, by verified identity.
    assert wait_for(lambda: metric(rpx, "weft_inbound_rq_total", source=spiffe("web")) >= 1, 5)
    assert s.metric("weft_server_certificates_issued_total") >= 2


def wait_mesh_protocol(px, cluster, want):
    def ok():
        for c in px.config().get("clusters", []):
            if c["name"] == cluster:
                return c.get("mesh_protocol", "http2") == want
        return False
    assert wait_for(ok, 10), px.config()


def test_session_resumption_between_proxies(mesh):
    s, wpx, rpx, up, r_in = mesh
    # One HTTP/1.1 exchange per connection between the sidecars (HTTP/2 would
    # carry them all on a connection or two).
    apply(s, json.dumps({"kind": "Service", "metadata": {"name": "reviews"},
                         "spec": {"ports": [{"port": 9080, "protocol": "http"}],
                                  "meshProtocol": "http1"}}))
    wait_mesh_protocol(wpx, "reviews", "http1")
    # Concurrent slow requests make the web sidecar open more connections to
    # reviews: a few first (full handshakes, each worker keeps the session
    # ticket), then more than its pool holds, which resume.
    def batch(n):
        results = []
        ts = [threading.Thread(target=lambda: results.append(get(up, "/sleep/300")[0])) for _ in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert results == [200] * n, wpx.log()[-3000:]
    batch(6)
    batch(16)
    assert wait_for(lambda: metric(rpx, "weft_listener_mtls_handshakes_total", kind="resumed") >= 3, 5), \
        rpx.admin("/stats")[1]
    assert metric(wpx, "weft_cluster_upstream_mtls_resumed_total", cluster="reviews") >= 3


def test_issued_certificate_names_the_workload_and_its_ttl(mesh, tmp_path):
    s, wpx, rpx, up, r_in = mesh
    # The certificate the reviews sidecar presents (s_client prints it even
    # though the handshake then fails for want of a client certificate).
    out = subprocess.run([require("openssl"), "s_client", "-connect", f"127.0.0.1:{r_in}", "-showcerts"],
                         input=b"", capture_output=True, timeout=20).stdout.decode(errors="replace")
    pem = out[out.index("-----BEGIN CERTIFICATE-----"):out.index("-----END CERTIFICATE-----") + 25]
    text = subprocess.run([require("openssl"), "x509", "-noout", "-text"], input=pem.encode(),
                          capture_output=True, timeout=10).stdout.decode()
    assert "URI:" + spiffe("reviews") in text, text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    dates = subprocess.run([require("openssl"), "x509", "-noout", "-startdate", "-enddate"], input=pem,
                           capture_output=True, timeout=10, text=True).stdout
    fmt = "%b %d %H:%M:%S %Y %Z"
    nb = datetime.datetime.strptime(" ".join(dates.split("notBefore=")[1].split()[:5]), fmt)
    na = datetime.datetime.strptime(" ".join(dates.split("notAfter=")[1].split()[:5]), fmt)
    # --cert-ttl 1h, backdated one minute for clock skew.
    assert (na - nb) == datetime.timedelta(hours=1, minutes=1), dates


def test_strict_port_refuses_bad_clients_and_accepts_a_good_one(mesh, ca):
    s, wpx, rpx, up, r_in = mesh
    refused = lambda: metric(rpx, "weft_listener_downstream_rq_rejected_total", reason="tls_handshake")  # noqa: E731
    cases = {
        "no certificate": (None, None),
        "another CA": CA(os.path.join(ca.dir, "other"), "intruder").leaf("other", spiffe("web")),
        "expired": ca.leaf("expired", spiffe("web"), expired=True),
    }
    for what, (cert, key) in cases.items():
        before = refused()
        out, err = s_client(r_in, cert, key)
        assert "HTTP/1.1" not in out, (what, out)
        assert wait_for(lambda: refused() > before, 5), (what, err)
    # The right CA but a name outside the trust domain: refused after the handshake.
    before = metric(rpx, "weft_listener_downstream_rq_rejected_total", reason="peer_identity")
    cert, key = ca.leaf("foreign", spiffe("web", td="elsewhere.example"))
    out, _ = s_client(r_in, cert, key)
    assert "HTTP/1.1" not in out, out
    assert metric(rpx, "weft_listener_downstream_rq_rejected_total", reason="peer_identity") == before + 1
    # Plaintext: refused.
    r = subprocess.run([require("curl"), "-sS", "-m", "5", f"http://127.0.0.1:{r_in}/echo"], capture_output=True)
    assert r.returncode != 0 and b"HTTP" not in r.stdout
    # Control: a certificate from the mesh CA with a mesh identity gets through.
    cert, key = ca.leaf("good", spiffe("web"))
    out, err = s_client(r_in, cert, key)
    assert out.startswith("HTTP/1.1 200"), (out, err)
    # The same over HTTP/2: ALPN offers h2 (the server's certificate names a
    # SPIFFE ID, not a host: -k, the test checks the client side only).
    r = subprocess.run([require("curl"), "-sS", "-k", "--http2", "-m", "5", "--cert", cert, "--key", key,
                        "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                        f"https://127.0.0.1:{r_in}/echo"], capture_output=True, text=True)
    assert r.stdout == "2 200", (r.stdout, r.stderr)
    assert metric(rpx, "weft_listener_downstream_cx_http2_total", listener="inbound") >= 1


SERVICE = "kind: Service\nmetadata: {{name: reviews}}\nspec:\n  ports: [{{port: 80, protocol: http}}]\n  mtls: {mode}\n"


def test_permissive_accepts_plaintext_and_mtls(mesh):
    s, wpx, rpx, up, r_in = mesh
    r = s.ctl("apply", "-f", "-", input=SERVICE.format(mode="permissive"))
    assert r.returncode == 0, r.stderr

    def plain_ok():
        try:
            return get(r_in)[0] == 200
        except OSError:
            return False
    assert wait_for(plain_ok, 5)
    assert metric(rpx, "weft_listener_plaintext_cx_total", listener="inbound") >= 1
    # Mesh callers still come with mTLS: counted under their verified identity.
    before = metric(rpx, "weft_inbound_rq_total", source=spiffe("web"))
    assert get(up)[0] == 200
    # Counted when the exchange ends, just after the last byte went out.
    assert wait_for(lambda: metric(rpx, "weft_inbound_rq_total", source=spiffe("web")) == before + 1, 5)
    # Back to strict: plaintext refused again.
    s.ctl("apply", "-f", "-", input=SERVICE.format(mode="strict"))
    assert wait_for(lambda: not plain_ok(), 5)


def test_client_refuses_a_peer_with_the_wrong_identity(mesh, server, mesh_proxy, backends):
    s, wpx, rpx, up, r_in = mesh
    # A `ratings` sidecar, and a `reviews` registration whose sidecar port is
    # really the ratings sidecar: web must not accept ratings as reviews.
    rat_app = backends("ratings-app")
    rat_in = free_port()
    s.register("node-x", "ratings", rat_app.port, "ratings-1")
    register_sidecar(s, "node-x", "ratings", rat_in, rat_app.port)
    mesh_proxy(s.grpc, "ratings").wait_ready()
    rpx.stop()  # the real reviews sidecar would follow the registration onto that port
    s.deregister("node-r", "reviews-sidecar-node-r")
    s.deregister("node-r", "reviews-1")
    s.register("node-x", "reviews", rat_app.port, "reviews-fake")
    register_sidecar(s, "node-x", "reviews", rat_in, rat_app.port, sid="reviews-fake-sidecar")
    assert wait_for(lambda: wpx.endpoints("reviews") == [f"127.0.0.1:{rat_in}"], 5), wpx.endpoints("reviews")
    before = metric(wpx, "weft_cluster_upstream_mtls_fail_total", cluster="reviews")
    status, body = get(up, headers={"connection": "close"})
    assert status == 503, body
    assert b"ratings" not in body or b"expected " + spiffe("reviews").encode() in body
    assert metric(wpx, "weft_cluster_upstream_mtls_fail_total", cluster="reviews") > before
    assert "expected " + spiffe("reviews") in wpx.log()


def test_capture_shows_no_plaintext_between_proxies(mesh, tmp_path):
    s, wpx, rpx, up, r_in = mesh
    tcpdump = require("tcpdump")
    pcap = str(tmp_path / "lo.pcap")
    cap = subprocess.Popen([tcpdump, "-i", "lo", "--immediate-mode", "-U", "-Z", "root", "-w", pcap, f"tcp port {r_in} or tcp port {up}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # tcpdump says "listening on lo" once it captures.
        assert b"listening" in cap.stderr.readline()
        marker = "zt-marker-7f3a9c"
        for _ in range(3):
            status, body = get(up, path=f"/echo/{marker}", headers={"x-secret": marker})
            assert status == 200 and marker.encode() in body
        time.sleep(0.5)
    finally:
        cap.terminate()
        cap.wait(10)
    raw = open(pcap, "rb").read()
    # Split the capture by port with tcpdump itself: app -> web sidecar is
    # plaintext (the control), web sidecar -> reviews sidecar must not be.
    def port_bytes(port):
        out = subprocess.run([tcpdump, "-r", pcap, "-A", f"tcp port {port}"], capture_output=True, timeout=20)
        assert out.returncode == 0, out.stderr
        return out.stdout
    assert len(raw) > 0
    assert marker.encode() in port_bytes(up), "the control capture saw no plaintext: is the capture working?"
    mesh_bytes = port_bytes(r_in)
    assert len(mesh_bytes) > 1000, "nothing captured between the proxies"
    assert marker.encode() not in mesh_bytes
    assert b"HTTP/1.1" not in mesh_bytes


def apply(s, text):
    r = s.ctl("apply", "-f", "-", input=text)
    assert r.returncode == 0, r.stderr


def established(dst_port):
    """TCP connections in ESTABLISHED state to 127.0.0.1:dst_port, from the kernel."""
    r = subprocess.run(["ss", "-Htn", "state", "established", "dst", f"127.0.0.1:{dst_port}"],
                       capture_output=True, text=True, check=True)
    return len([x for x in r.stdout.splitlines() if x.strip()])


def peak_connections(ports, load):
    """Runs load() while sampling the connections established to `ports`
    every 50 ms; returns the most seen at once."""
    peak, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            peak.append(sum(established(p) for p in ports))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        load()
    finally:
        stop.set()
        sampler.join()
    return max(peak)


def concurrent_gets(port, path, n):
    """n HTTP/1.1 requests at once, each on its own connection; the statuses."""
    results = []
    ts = [threading.Thread(target=lambda: results.append(get(port, path)[0])) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return results


def test_http_between_sidecars_is_multiplexed_on_http2(mesh):
    s, wpx, rpx, up, r_in = mesh
    # 256 HTTP/1.1 client connections at once, each with a slow request: the
    # app sees 256 HTTP/1.1 requests, the sidecars carry them as HTTP/2
    # streams on at most one connection per worker of the web sidecar.
    results = []
    peak = peak_connections([r_in], lambda: results.extend(concurrent_gets(up, "/sleep/1000", 256)))
    assert results == [200] * 256, wpx.log()[-3000:]
    assert 1 <= peak <= 2, peak  # 2 workers in the web sidecar
    assert metric(wpx, "weft_cluster_upstream_cx_http2_total", cluster="reviews") <= 2
    assert metric(rpx, "weft_listener_downstream_cx_http2_total", listener="inbound") >= 1
    # Turned off for the service: one HTTP/1.1 connection per request in flight.
    apply(s, json.dumps({"kind": "Service", "metadata": {"name": "reviews"},
                         "spec": {"ports": [{"port": 9080, "protocol": "http"}],
                                  "meshProtocol": "http1"}}))
    wait_mesh_protocol(wpx, "reviews", "http1")
    results = []
    peak = peak_connections([r_in], lambda: results.extend(concurrent_gets(up, "/sleep/500", 16)))
    assert results == [200] * 16
    assert peak >= 12, peak


def test_a_services_rate_limit_is_enforced_by_its_own_sidecar_per_caller(mesh):
    s, wpx, rpx, up, r_in = mesh
    apply(s, "kind: TrafficPolicy\nmetadata: {name: reviews}\nspec:\n"
             "  rateLimit: {requestsPerSecond: 100, perCaller: {requestsPerSecond: 1, burst: 2}}\n")

    def limited():
        lst = next(l for l in rpx.config()["listeners"] if l["name"] == "inbound")
        return lst["routes"][0].get("rate_limit", {}).get("per_caller", {}).get("requests_per_second") == 1
    assert wait_for(limited, timeout=10), rpx.config()
    codes = [get(up)[0] for _ in range(4)]
    # web (one verified caller) gets its burst of 2; the rest are refused by
    # reviews' sidecar, and the 429 comes back through web's.
    assert codes == [200, 200, 429, 429], codes
    assert metric(rpx, "weft_route_rate_limited_total", listener="inbound") == 2
    status, body = get(up)
    assert status == 429 and b"1 requests/s per caller" in body, body


def policy(rules, default=None, name="reviews", service="reviews"):
    doc = {"kind": "AuthorizationPolicy", "metadata": {"name": name},
           "spec": {"service": service, "rules": rules}}
    if default:
        doc["spec"]["default"] = default
    return json.dumps(doc)


def test_authorization_allow_deny_default_paths_methods_live(mesh):
    s, wpx, rpx, up, r_in = mesh
    status = lambda path="/reviews/1", method="GET": get(up, path, method=method)[0]  # noqa: E731
    assert status() == 200  # no policy: allowed
    # Default deny: everything refused, the body names the policy.
    apply(s, policy([], default="deny"))
    assert wait_for(lambda: status() == 403, 5)
    code, body = get(up, "/reviews/1")
    assert b"denied by AuthorizationPolicy default/reviews (default: deny)" in body, body
    # Allow web to GET /reviews/*: that passes, other paths and methods do not.
    apply(s, policy([{"action": "allow", "from": [spiffe("web")],
                      "to": {"methods": ["GET"], "paths": ["/reviews/*"]}}], default="deny"))
    assert wait_for(lambda: status() == 200, 5)
    assert status("/admin") == 403
    assert status("/reviews/1", "DELETE") == 403
    # A deny rule wins over the allow rule.
    apply(s, policy([{"action": "allow", "from": [spiffe("web")], "to": {"paths": ["/reviews/*"]}},
                     {"action": "deny", "from": ["spiffe://weft.local/ns/default/*"],
                      "to": {"paths": ["/reviews/secret"]}}], default="deny"))
    assert wait_for(lambda: status("/reviews/secret") == 403, 5)
    assert status("/reviews/1") == 200
    # Other spellings of the denied path are the same path: the sidecars
    # normalize before routing and authorization.
    for spelling in ("//reviews/secret", "/reviews//secret", "/reviews/%73ecret", "/reviews/./secret",
                     "/reviews/x/../secret", "/%72eviews/secret?x=1"):
        assert status(spelling) == 403, spelling
    # Spellings servers read differently are refused outright.
    for ambiguous in ("/reviews%2Fsecret", "/reviews/%5Csecret", "/reviews/sec%00ret"):
        code, body = get(up, ambiguous)
        assert code == 400 and b"escaped" in body, (ambiguous, code, body)
    assert metric(wpx, "weft_listener_downstream_rq_rejected_total", reason="ambiguous_path") >= 3
    # Header conditions.
    apply(s, policy([{"action": "allow", "from": ["*"], "to": {"headers": {"x-role": "admin"}}}], default="deny"))
    assert wait_for(lambda: get(up, "/x", headers={"x-role": "admin"})[0] == 200, 5)
    assert get(up, "/x", headers={"x-role": "guest"})[0] == 403
    # Allowing a different caller only: web is refused by default.
    apply(s, policy([{"action": "allow", "from": [spiffe("frontend")]}], default="deny"))
    assert wait_for(lambda: status() == 403, 5)
    # Counters per policy and decision.
    assert metric(rpx, "weft_authz_decisions_total", policy="default/reviews", decision="deny") >= 5
    assert metric(rpx, "weft_authz_decisions_total", policy="default/reviews", decision="allow") >= 3
    # Mesh-wide default deny, and the service's own default overriding it.
    s.ctl("delete", "authorizationpolicy", "reviews")
    assert wait_for(lambda: status() == 200, 5)
    apply(s, policy([], default="deny", name="mesh-default", service="*"))
    assert wait_for(lambda: status() == 403, 5)
    assert b"default/mesh-default" in get(up)[1]
    apply(s, policy([{"action": "allow", "from": [spiffe("web")]}], name="reviews"))
    assert wait_for(lambda: status() == 200, 5)


def test_tcp_service_mtls_and_authorization(server, mesh_proxy, ca):
    redis = require("redis-server")
    s = server(extra=("--ca-cert", ca.cert_path, "--ca-key", ca.key_path))
    rport = free_port()
    rp = subprocess.Popen([redis, "--port", str(rport), "--save", "", "--appendonly", "no"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(rport)
        apply(s, "kind: Service\nmetadata: {name: cache}\nspec:\n  ports: [{port: 6379, protocol: tcp}]\n")
        s.register("node-c", "cache", rport, "cache-1")
        c_in, up = free_port(), free_port()
        register_sidecar(s, "node-c", "cache", c_in, rport)
        register_sidecar(s, "node-a", "app", free_port(), 0, [("cache", up)])
        cpx = mesh_proxy(s.grpc, "cache")
        apx = mesh_proxy(s.grpc, "app")
        cpx.wait_ready()
        apx.wait_ready()
        wait_port(up)
        cli = require("redis-cli")
        ping = lambda: subprocess.run([cli, "-p", str(up), "PING"], capture_output=True, text=True,  # noqa: E731
                                      timeout=10).stdout.strip()
        assert ping() == "PONG", apx.log()[-2000:] + cpx.log()[-2000:]
        assert metric(cpx, "weft_listener_mtls_handshakes_total", listener="inbound") >= 1
        # Denied: the connection closes at once, nothing reaches redis.
        apply(s, policy([{"action": "allow", "from": [spiffe("someone-else")]}], default="deny",
                        name="cache", service="cache"))
        assert wait_for(lambda: ping() != "PONG", 5)
        assert metric(cpx, "weft_listener_downstream_rq_rejected_total", reason="denied") >= 1
        # An allow rule with HTTP conditions never matches a TCP connection.
        apply(s, policy([{"action": "allow", "from": [spiffe("app")], "to": {"paths": ["/x"]}}], default="deny",
                        name="cache", service="cache"))
        time.sleep(0.5)
        assert ping() != "PONG"
        apply(s, policy([{"action": "allow", "from": [spiffe("app")]}], default="deny", name="cache", service="cache"))
        assert wait_for(lambda: ping() == "PONG", 5)
    finally:
        rp.kill()
        rp.wait()


def sign(pb, srv, node, service, ca, identity=None, metadata=()):
    """A Sign call as an agent makes it (presenting `identity`, a node
    certificate); returns (grpc code name, response or details)."""
    cp, kp = ca.leaf("csr-" + service, spiffe(service))
    csr = subprocess.run([require("openssl"), "req", "-new", "-key", kp, "-subj", "/CN=x"],
                         capture_output=True, timeout=10).stdout.decode()
    code, resp = sign_rpc(pb, srv, pb.SignRequest(csr_pem=csr, service=service, node=node), metadata, identity)
    return code.name, resp


def test_agents_get_identities_of_their_own_services_only(server, agent, mesh_proxy, backends, pb, ca):
    s = server()
    a = agent(s, "node-1")
    app = backends("billing-app")
    a_in = free_port()
    status, _, body = a.request("PUT", "/v1/agent/service/register",
                                {"Name": "billing", "ID": "billing-1", "Port": app.port})
    assert status == 200, body
    status, _, body = a.request("PUT", "/v1/agent/service/register",
                                {"Name": "billing-sidecar", "ID": "billing-sidecar-1", "Port": a_in,
                                 "Kind": "connect-proxy",
                                 "Proxy": {"DestinationServiceName": "billing", "LocalServicePort": app.port}})
    assert status == 200, body
    # A proxy behind the agent: its certificate comes from the agent.
    px = mesh_proxy(f"unix:{a.data_dir}/weft.sock", "billing")
    px.wait_ready(20)
    out = subprocess.run([require("openssl"), "s_client", "-connect", f"127.0.0.1:{a_in}", "-showcerts"],
                         input=b"", capture_output=True, timeout=20).stdout.decode(errors="replace")
    assert "BEGIN CERTIFICATE" in out
    assert wait_for(lambda: s.metric("weft_server_certificates_issued_total") >= 2, 5)  # node + billing
    # The agent's own node certificate (0600 in its data dir) is what its
    # calls present: with it, billing is granted; another node's service,
    # or acting for another node, is refused and counted.
    key_path, cert_path = os.path.join(a.data_dir, "node-key.pem"), os.path.join(a.data_dir, "node-cert.pem")
    assert oct(os.stat(key_path).st_mode & 0o777) == "0o600"
    node1 = (open(key_path).read(), open(cert_path).read())
    s.register("node-2", "payments", 9999, "payments-1")
    code, resp = sign(pb, s, "node-1", "billing", ca, node1)
    assert code == "OK" and resp.spiffe_id == spiffe("billing"), (code, resp)
    code, resp = sign(pb, s, "", "billing", ca, node1)  # the node comes from the certificate
    assert code == "OK", (code, resp)
    before = s.metric("weft_server_certificate_requests_refused_total")
    code, detail = sign(pb, s, "node-1", "payments", ca, node1)
    assert code == "PERMISSION_DENIED" and "not registered on node node-1" in detail, (code, detail)
    code, detail = sign(pb, s, "node-2", "payments", ca, node1)
    assert code == "PERMISSION_DENIED" and "may not act for node" in detail, (code, detail)
    # The join token is not an identity any more: without a certificate a
    # node cannot be named, and without any credential nothing is signed.
    code, detail = sign(pb, s, "node-2", "payments", ca, metadata=(("x-weft-join-token", s.join_token),))
    assert code == "UNAUTHENTICATED", (code, detail)
    code, detail = sign(pb, s, "", "payments", ca)
    assert code == "UNAUTHENTICATED", (code, detail)
    assert s.metric("weft_server_certificate_requests_refused_total") == before + 4
    assert "refused" in s.log()
    # Every certificate issued is logged with identity, node, peer and serial.
    assert "certificate issued: spiffe://weft.local/ns/default/sa/billing node \"node-1\" peer ipv4:127.0.0.1:" in s.log()
    assert "serial " in s.log()


class Churn:
    """Load through the mesh while certificates and roots change: HTTP
    requests on kept-alive connections, and a new TCP connection (so a new
    mTLS handshake between the sidecars) for every redis PING."""

    def __init__(self, http_port, tcp_port):
        self.http_port, self.tcp_port = http_port, tcp_port
        self.http_ok = self.tcp_ok = 0
        self.failures = []
        self.stop_flag = False
        self.threads = [threading.Thread(target=self.http, daemon=True),
                        threading.Thread(target=self.tcp, daemon=True)]
        for t in self.threads:
            t.start()

    def http(self):
        conn = None
        while not self.stop_flag:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
                conn.request("GET", "/echo")
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    self.failures.append(("http", time.time(), r.status))
                else:
                    self.http_ok += 1
            except Exception as e:  # noqa: BLE001
                self.failures.append(("http", time.time(), repr(e)))
                conn = None
                time.sleep(0.01)

    def tcp(self):
        import socket
        while not self.stop_flag:
            try:
                with socket.create_connection(("127.0.0.1", self.tcp_port), timeout=10) as s:
                    s.sendall(b"PING\r\n")
                    got = s.recv(64)
                if got != b"+PONG\r\n":
                    self.failures.append(("tcp", time.time(), got))
                else:
                    self.tcp_ok += 1
            except Exception as e:  # noqa: BLE001
                self.failures.append(("tcp", time.time(), repr(e)))
                time.sleep(0.01)

    def stop(self):
        self.stop_flag = True
        for t in self.threads:
            t.join(15)


@pytest.fixture
def churn_mesh(server, mesh_proxy, backends, request):
    """web -> reviews (HTTP) and web -> cache (TCP, a real redis), every
    sidecar fed by the server; the server's certificate TTL comes from the
    test's `cert_ttl` marker argument."""
    ttl = getattr(request, "param", "1h")
    s = server(extra=("--cert-ttl", ttl))
    app, web_app = backends("reviews-app"), backends("web-app")
    redis = require("redis-server")
    rport = free_port()
    rp = subprocess.Popen([redis, "--port", str(rport), "--save", "", "--appendonly", "no"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(rport)
    apply(s, "kind: Service\nmetadata: {name: cache}\nspec:\n  ports: [{port: 6379, protocol: tcp}]\n")
    s.register("node-r", "reviews", app.port, "reviews-1")
    s.register("node-c", "cache", rport, "cache-1")
    r_in, c_in, up, cup = free_port(), free_port(), free_port(), free_port()
    register_sidecar(s, "node-r", "reviews", r_in, app.port)
    register_sidecar(s, "node-c", "cache", c_in, rport)
    register_sidecar(s, "node-w", "web", free_port(), web_app.port, [("reviews", up), ("cache", cup)])
    pxs = [mesh_proxy(s.grpc, n) for n in ("reviews", "cache", "web")]
    for px in pxs:
        px.wait_ready()
    wait_port(up)
    wait_port(cup)
    yield s, pxs, up, cup, r_in
    rp.kill()
    rp.wait()


def roots(s):
    return s.get_json("/v1/connect/ca/roots")[0]


def presented_root_ok(port, root_pem_path):
    """Whether the certificate a sidecar presents verifies against `root_pem_path` alone."""
    out = subprocess.run([require("openssl"), "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", root_pem_path,
                          "-verify_return_error"], input=b"", capture_output=True, timeout=20)
    return b"Verify return code: 0 (ok)" in out.stdout


def test_root_rotation_under_load_fails_no_request(churn_mesh, tmp_path):
    s, pxs, up, cup, r_in = churn_mesh
    old = roots(s)
    assert len(old["Roots"]) == 1
    old_id = old["ActiveRootID"]
    old_path = str(tmp_path / "old-root.pem")
    open(old_path, "w").write(old["Roots"][0]["RootCert"])
    assert presented_root_ok(r_in, old_path)
    issued0 = s.metric("weft_server_certificates_issued_total")
    load = Churn(up, cup)
    time.sleep(1.5)
    r = s.ctl("ca", "rotate", "--propagate", "2s", "--overlap", "6s")
    assert r.returncode == 0, r.stderr
    assert "new root" in r.stdout
    # Both roots trusted at once; then the new one signs; then the old one goes.
    both = roots(s)
    assert len(both["Roots"]) == 2 and both["ActiveRootID"] == old_id, both
    assert wait_for(lambda: roots(s)["ActiveRootID"] != old_id, 5)
    new_id = roots(s)["ActiveRootID"]
    assert wait_for(lambda: [x["ID"] for x in roots(s)["Roots"]] == [new_id], 12)
    time.sleep(2)  # traffic after the old root is gone
    load.stop()
    assert load.failures == [], load.failures[:5]
    assert load.http_ok > 100 and load.tcp_ok > 50, (load.http_ok, load.tcp_ok)
    # Every sidecar now presents a certificate from the new root.
    new_pem = [x["RootCert"] for x in roots(s)["Roots"]][0]
    path = str(tmp_path / "new-root.pem")
    open(path, "w").write(new_pem)
    assert presented_root_ok(r_in, path)
    assert not presented_root_ok(r_in, old_path)
    # Each of the three sidecars renewed on the new root, without waiting
    # for half its (one hour) lifetime.
    assert s.metric("weft_server_certificates_issued_total") >= issued0 + 3
    # weft ca roots shows it.
    out = s.ctl("ca", "roots").stdout
    assert new_id in out and old_id not in out, out


@pytest.mark.slow
@pytest.mark.parametrize("churn_mesh", ["1m"], indirect=True)
def test_one_minute_certificates_rotate_under_load_for_five_minutes(churn_mesh):
    s, pxs, up, cup, r_in = churn_mesh
    issued0 = s.metric("weft_server_certificates_issued_total")
    load = Churn(up, cup)
    time.sleep(300)
    load.stop()
    assert load.failures == [], load.failures[:5]
    # Three sidecars renewing at 24-36 s for 5 minutes: 8 or more each.
    renewed = s.metric("weft_server_certificates_issued_total") - issued0
    assert renewed >= 3 * 8, renewed
    assert load.http_ok > 1000 and load.tcp_ok > 500, (load.http_ok, load.tcp_ok)


def test_grpc_through_two_sidecars_balanced_per_call(server, mesh_proxy, backends, ca):
    import grpc_peer as g
    s = server(extra=("--ca-cert", ca.cert_path, "--ca-key", ca.key_path, "--cert-ttl", "1h"))
    apply(s, json.dumps({"kind": "Service", "metadata": {"name": "greeter"},
                         "spec": {"ports": [{"port": 9090, "protocol": "grpc"}]}}))
    # Round robin, so that each call's backend is known in advance.
    apply(s, json.dumps({"kind": "TrafficPolicy", "metadata": {"name": "greeter"},
                         "spec": {"loadBalancer": {"policy": "round_robin"}}}))
    apps = [g.start_server(0, name=f"g{i}") for i in range(3)]
    try:
        pxs, inbound = [], []
        for i, app in enumerate(apps):
            node = f"node-g{i}"
            s.register(node, "greeter", app.port, f"greeter-{i}")
            inbound.append(free_port())
            register_sidecar(s, node, "greeter", inbound[-1], app.port, sid=f"greeter-sidecar-{i}")
            pxs.append(mesh_proxy(s.grpc, "greeter", extra=("--proxy-id", f"greeter-sidecar-{i}")))
        client_app = backends("client-app")
        up = free_port()
        register_sidecar(s, "node-c", "client", free_port(), client_app.port, [("greeter", up)])
        cpx = mesh_proxy(s.grpc, "client")
        for px in pxs + [cpx]:
            px.wait_ready()
        wait_port(up)
        assert wait_for(lambda: len(cpx.endpoints("greeter")) == 3, 10), cpx.config()
        t = f"127.0.0.1:{up}"
        ch = g.make_channel(t)  # one client connection
        seen = {}
        for _ in range(30):
            r = g.unary(t, b"hi", channel=ch, timeout=10)
            assert r["code"] == "OK", r
            name = r["response"].split(b":")[0]
            seen[name] = seen.get(name, 0) + 1
        assert seen == {b"g0": 10, b"g1": 10, b"g2": 10}, seen
        # The app behind each sidecar learns the caller's verified identity.
        r = g.unary(t, b"x", metadata=[("x-echo", "x-forwarded-client-cert")], channel=ch)
        assert f"URI={spiffe('client')}" in r["initial"]["x-seen-xfcc"], r
        # Streaming and status pass through both sidecars.
        r = g.bidi(t, [b"a", b"b"], channel=ch)
        assert r["code"] == "OK" and len(r["responses"]) == 2, r
        r = g.unary(t, b"x", metadata=[("x-status", "9"), ("x-message", "nope")], channel=ch)
        assert r["code"] == "FAILED_PRECONDITION" and r["details"] == "nope", r
        # 256 client connections with calls in flight at once (h2load with
        # gRPC framing): still at most one connection per worker and endpoint
        # between the sidecars, counted by the kernel.
        require("h2load")
        body = os.path.join(os.path.dirname(cpx.log_path), "grpc-frame.bin")
        with open(body, "wb") as f:
            f.write(g.frame(b"load"))
        runs = []
        peak = peak_connections(inbound, lambda: runs.append(subprocess.run(
            ["h2load", "-n", "1024", "-c", "256", "-m", "1", "-d", body,
             "-H", "content-type: application/grpc", "-H", "te: trailers",
             "-H", "x-sleep-ms: 200", f"http://{t}/weft.test.Echo/Unary"],
            capture_output=True, text=True, timeout=120)))
        r = runs[0]
        assert "1024 succeeded, 0 failed" in r.stdout, r.stdout + r.stderr
        assert 1 <= peak <= 6, peak  # 2 workers x 3 endpoints
        # The sidecar in front of each app speaks HTTP/2 to it (a grpc port).
        # (More than one each when the app's own stream limit is reached:
        # grpcio advertises 100.)
        assert all(metric(px, "weft_cluster_upstream_cx_http2_total", cluster="local_app") >= 1
                   for px in pxs)
        # Authorization by method path, as for HTTP/1.1: a denial is a
        # PERMISSION_DENIED status that names the policy.
        apply(s, policy([{"action": "deny", "from": [spiffe("client")],
                          "to": {"paths": ["/weft.test.Echo/ClientStream"]}}],
                        name="greeter", service="greeter"))
        assert wait_for(lambda: g.client_stream(t, [b"x"], channel=ch)["code"] == "PERMISSION_DENIED",
                        10)
        r = g.client_stream(t, [b"x"], channel=ch)
        assert "AuthorizationPolicy default/greeter" in r["details"], r
        assert g.unary(t, b"still", channel=ch)["code"] == "OK"
    finally:
        for app in apps:
            g.stop_server(app)
