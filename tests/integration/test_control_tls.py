"""The config stream over TLS (always, on a server without --dev): agents
and agentless proxies that verify the server with its CA file join; a
plaintext client does not; what the server presents is checked with
openssl."""
import json
import os
import signal
import stat
import subprocess
import time

from conftest import require, wait_for


def members(srv):
    return {m["Name"]: m["Tags"].get("role") for m in srv.get_json("/v1/agent/members")[0]}


def test_agents_and_proxies_reach_a_tls_server_only_with_its_ca(server, agent, mesh_proxy, tmp_path):
    srv = server()
    ca = os.path.join(srv.data_dir, "ca.pem")
    assert "BEGIN CERTIFICATE" in open(ca).read()

    # What the server presents: a mesh-CA certificate for server.weft.
    out = subprocess.run([require("openssl"), "s_client", "-connect", srv.grpc, "-CAfile", ca,
                          "-verify_hostname", "server.weft", "-verify_return_error"],
                         input="", capture_output=True, text=True, timeout=20)
    assert "Verify return code: 0 (ok)" in out.stdout, out.stdout[-1500:]
    pem = out.stdout[out.stdout.index("-----BEGIN CERTIFICATE-----"):out.stdout.index("-----END CERTIFICATE-----") + 25]
    san = subprocess.run([require("openssl"), "x509", "-noout", "-ext", "subjectAltName"], input=pem,
                         capture_output=True, text=True).stdout
    assert "DNS:server.weft" in san and "URI:spiffe://weft.local/ns/weft/sa/server" in san, san

    good = agent(srv, "with-ca", extra=("--server-ca", ca))
    plain = agent(srv, "plaintext", ca="")
    assert wait_for(lambda: "agent/with-ca" in members(srv), timeout=10), members(srv)
    # The agent's cache fills from the TLS stream.
    srv.register("n-x", "api", 8080)
    assert wait_for(lambda: good.get_json("/v1/catalog/service/api")[0], timeout=10)
    time.sleep(2)
    assert "agent/plaintext" not in members(srv)
    assert plain.p.poll() is None  # it keeps retrying, it does not crash

    # A wrong CA file is refused at the flag.
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    r = subprocess.run([good.weft_bin, "agent", "--server", srv.grpc, "--node", "x", "--data-dir",
                        str(tmp_path / "x"), "--server-ca", str(bad)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--server-ca" in r.stderr and "no PEM certificate" in r.stderr, r.stderr

    # An agentless sidecar gets its config and its certificate over TLS.
    srv.register("n-web", "web-sidecar", 0, sid="web-sc", Kind="connect-proxy", Port=21500,
                 Proxy={"DestinationServiceName": "web", "LocalServicePort": 8080,
                        "Upstreams": [{"DestinationName": "api", "LocalBindPort": 21501}]})
    p = mesh_proxy(srv.grpc, "web", extra=("--server-ca", ca))
    p.wait_ready(timeout=15)
    status, body = p.admin("/certs")
    assert status == 200 and json.loads(body)["spiffe_id"] == "spiffe://weft.local/ns/default/sa/web", body


def test_agents_follow_a_rotated_root_without_a_new_ca_file(server, agent, tmp_path):
    srv = server()
    old_ca = tmp_path / "old-ca.pem"
    old_ca.write_text(open(os.path.join(srv.data_dir, "ca.pem")).read())
    follower = agent(srv, "follower", extra=("--server-ca", str(old_ca)))
    assert wait_for(lambda: "agent/follower" in members(srv), timeout=10), members(srv)

    # A new root: trusted at once (the bundle streams to the agent), signing
    # after a second.
    r = srv.ctl("ca", "rotate", "--propagate", "1s", "--overlap", "1h")
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: "checked against the streamed bundle (2 roots)" in follower.log(), timeout=10), \
        follower.log()[-2000:]
    time.sleep(1.5)
    # Restarted, the server presents a certificate from the new root.
    srv.stop(signal.SIGTERM)
    srv.start()
    assert open(os.path.join(srv.data_dir, "ca.pem")).read().count("BEGIN CERTIFICATE") == 2
    # The follower reconnects with what the stream taught it...
    assert wait_for(lambda: "agent/follower" in members(srv), timeout=30), follower.log()[-2000:]
    # ...while an agent that only has the old file cannot.
    agent(srv, "stale", extra=("--server-ca", str(old_ca)))
    time.sleep(3)
    assert "agent/stale" not in members(srv)


def verifies_with(addr, ca_file, alpn=None):
    """True when what `addr` presents verifies against `ca_file` alone, for the name server.weft."""
    out = subprocess.run([require("openssl"), "s_client", "-connect", addr, "-CAfile", str(ca_file),
                          "-verify_hostname", "server.weft", "-verify_return_error",
                          *(("-alpn", alpn) if alpn else ())],
                         input="", capture_output=True, text=True, errors="replace", timeout=20)
    # (errors="replace": an HTTP/2 server's first frames may follow the handshake in the output.)
    return "Verify return code: 0 (ok)" in out.stdout


def test_the_servers_certificate_follows_a_rotation_without_a_restart(server, agent, tmp_path):
    """The server's own certificate moves to the new root once it signs,
    on the config stream and on HTTPS; ca.pem follows the bundle; an agent
    that only knows the new root joins, and one that joined before stays."""
    srv = server(extra=("--https", "127.0.0.1:0"))
    ca_file = os.path.join(srv.data_dir, "ca.pem")
    follower = agent(srv, "follower", extra=("--server-ca", ca_file))
    assert wait_for(lambda: "agent/follower" in members(srv), timeout=10), members(srv)
    old_root = tmp_path / "old-root.pem"
    old_root.write_text(open(ca_file).read())
    assert verifies_with(srv.grpc, old_root, "h2") and verifies_with(srv.https, old_root)

    r = srv.ctl("ca", "rotate", "--propagate", "1s", "--overlap", "3s")
    assert r.returncode == 0, r.stderr
    roots = srv.get_json("/v1/connect/ca/roots")[0]
    new_root = tmp_path / "new-root.pem"
    new_root.write_text(next(x["RootCert"] for x in roots["Roots"] if x["RootCert"] not in old_root.read_text()))
    # Both listeners present a chain from the new root, without a restart.
    assert wait_for(lambda: verifies_with(srv.https, new_root), timeout=10), srv.log()[-2000:]
    assert wait_for(lambda: verifies_with(srv.grpc, new_root, "h2"), timeout=10), srv.log()[-2000:]
    assert "the server's own certificate (server.weft) renewed, signed by root" in srv.log()
    assert not verifies_with(srv.https, old_root)
    # Once the old root retires, ca.pem holds the new one only.
    assert wait_for(lambda: open(ca_file).read().strip() == new_root.read_text().strip(), timeout=15), \
        open(ca_file).read()
    assert stat.S_IMODE(os.stat(ca_file).st_mode) == 0o644
    for f in ("server-key.pem", "server-cert.pem"):
        assert stat.S_IMODE(os.stat(os.path.join(srv.data_dir, f)).st_mode) == 0o600, f
    # A new agent with the new file joins; the one from before is still in.
    fresh_ca = tmp_path / "fresh-ca.pem"
    fresh_ca.write_text(open(ca_file).read())
    agent(srv, "fresh", extra=("--server-ca", str(fresh_ca)))
    assert wait_for(lambda: "agent/fresh" in members(srv), timeout=15), members(srv)
    assert "agent/follower" in members(srv) and follower.p.poll() is None
    # The CLI over HTTPS with the rewritten bundle.
    r = subprocess.run([srv.weft_bin, "members", "--server", f"https://{srv.https}", "--ca-file", ca_file],
                       capture_output=True, text=True, timeout=20, env={**os.environ, "WEFT_TOKEN": srv.token})
    assert r.returncode == 0 and "fresh" in r.stdout, r.stdout + r.stderr


def test_rest_api_over_https_verified_with_the_mesh_bundle(server, tmp_path):
    s = server(extra=("--https", "127.0.0.1:0"))
    assert s.https, "the server did not print its https address"
    port = s.https.rsplit(":", 1)[1]
    env = {**os.environ, "WEFT_TOKEN": s.token}
    env.pop("WEFT_CA_FILE", None)
    s.register("n1", "web", 80, "web-1")

    def weft(*args, extra_env=None):
        return subprocess.run([s.weft_bin, *args], capture_output=True, text=True, timeout=30,
                              env={**env, **(extra_env or {})})

    # The CLI checks the server's certificate against the mesh bundle.
    r = weft("members", "--server", f"https://{s.https}", "--ca-file", s.ca_file)
    assert r.returncode == 0, r.stderr
    r = weft("get", "routes", "--server", f"https://{s.https}", extra_env={"WEFT_CA_FILE": s.ca_file})
    assert r.returncode == 0, r.stderr
    # Without the bundle (the system's roots) it refuses to talk.
    r = weft("members", "--server", f"https://{s.https}")
    assert r.returncode != 0 and "certificate" in r.stderr, r.stderr
    # Another CA's file: refused too.
    other = tmp_path / "other.pem"
    subprocess.run([require("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(tmp_path / "other.key"), "-out", str(other), "-days", "2", "-subj",
                    "/CN=other"], check=True, capture_output=True)
    r = weft("members", "--server", f"https://{s.https}", "--ca-file", str(other))
    assert r.returncode != 0 and "certificate" in r.stderr, r.stderr
    # curl: the name the mesh CA certifies is server.weft.
    out = subprocess.run([require("curl"), "-sS", "--cacert", s.ca_file, "--resolve", f"server.weft:{port}:127.0.0.1",
                          f"https://server.weft:{port}/v1/catalog/services"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0 and '"web"' in out.stdout, out.stderr
    # Plain HTTP to the HTTPS port gets nowhere; the plain port still answers.
    out = subprocess.run([require("curl"), "-sS", "-m", "5", f"http://{s.https}/v1/catalog/services"],
                         capture_output=True, text=True, timeout=20)
    assert '"web"' not in out.stdout
    assert s.get_json("/v1/catalog/services")[0].get("web") is not None
