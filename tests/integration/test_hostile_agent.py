"""The agent's local doors, attacked: its HTTP API without or with the wrong
agent token, and its socket from another uid and from a sidecar asking for
another service's identity."""
import grp
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

from conftest import MeshProxy, free_port, require, wait_for

NOGROUP = grp.getgrnam("nogroup").gr_gid  # Debian's unprivileged group
OTHER_UID = 31337  # no such user: a process of its own, not root, not the agent's


def test_agent_api_needs_the_agent_token_for_writes_and_config(server, agent, tmp_path):
    s = server()
    a = agent(s, "node-1")
    path = os.path.join(a.data_dir, "agent-token")
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert "agent token is in" in a.log() and open(path).read().strip() not in a.log()
    reg = {"Name": "web", "ID": "web-1", "Port": 8080}
    # Without a token: reads of the catalog and the node's services only.
    status, _, body = a.request("PUT", "/v1/agent/service/register", reg, token="")
    assert status == 403 and "anonymous token lacks agent:write" in body, (status, body)
    status, _, body = a.request("PUT", "/v1/agent/service/register", reg, token="not-the-agent-token")
    assert status == 403 and "a token that is not this agent's lacks agent:write" in body, (status, body)
    status, _, body = a.request("PUT", "/v1/agent/service/register", reg,
                                headers={"Authorization": "Bearer " + a.token}, token="")
    assert status == 200, body
    status, _, body = a.request("PUT", "/v1/agent/service/deregister/web-1", token="")
    assert status == 403, body
    assert "web-1" in json.loads(a.request("GET", "/v1/agent/services", token="")[2])
    assert a.request("GET", "/v1/catalog/services", token="")[0] == 200
    assert a.request("GET", "/v1/health/service/web", token="")[0] == 200
    assert a.request("GET", "/metrics", token="")[0] == 200  # counts: Prometheus scrapes every agent
    assert a.request("GET", "/v1/agent/members", token="")[0] == 200  # weft stat and check read it
    for path in ("/v1/config", "/v1/agent/self"):
        status, _, body = a.request("GET", path, token="")
        assert status == 403 and "lacks agent:read" in body, (path, status, body)
        assert a.request("GET", path)[0] == 200, path
    assert "agent api: PUT /v1/agent/service/register" in a.log() and "refused" in a.log()
    # A token given to the agent is used instead of a file made for it.
    given = tmp_path / "given-token"
    given.write_text("a-token-the-operator-chose-0123456789\n")
    b = agent(s, "node-2", extra=("--agent-token-file", str(given)))
    assert not os.path.exists(os.path.join(b.data_dir, "agent-token"))
    assert b.request("PUT", "/v1/agent/service/register", reg, token="a-token-the-operator-chose-0123456789")[0] == 200
    assert b.request("PUT", "/v1/agent/service/register", reg, token=a.token)[0] == 403
    # A Token in a registration is a secret: short ones are refused, and
    # it shows nowhere (the agent's services, the catalog, local.json).
    status, _, body = a.request("PUT", "/v1/agent/service/register", {**reg, "Token": "short"})
    assert status == 400 and "Token" in body, body
    secret = "web-sidecar-secret-0123456789abcdef"
    assert a.request("PUT", "/v1/agent/service/register", {**reg, "Token": secret})[0] == 200
    assert secret not in a.request("GET", "/v1/agent/services")[2]
    assert wait_for(lambda: "web-1" in s.request("GET", "/v1/catalog/service/web")[2], 10)
    assert secret not in s.request("GET", "/v1/catalog/service/web")[2]
    assert secret not in open(os.path.join(a.data_dir, "local.json")).read()


def register_pair(a, name, app_port, token):
    """`name` and its sidecar on agent `a`; the sidecar's registration
    carries `token`. Returns the sidecar's inbound port."""
    inbound = free_port()
    status, _, body = a.request("PUT", "/v1/agent/service/register",
                                {"Name": name, "ID": f"{name}-1", "Port": app_port})
    assert status == 200, body
    status, _, body = a.request("PUT", "/v1/agent/service/register",
                                {"Name": f"{name}-sidecar", "ID": f"{name}-sidecar-1", "Port": inbound,
                                 "Kind": "connect-proxy", "Token": token,
                                 "Proxy": {"DestinationServiceName": name, "LocalServicePort": app_port}})
    assert status == 200, body
    return inbound


def served_identity(port):
    """The SPIFFE ID in the certificate the sidecar on `port` presents ("" none)."""
    pem = subprocess.run([require("openssl"), "s_client", "-connect", f"127.0.0.1:{port}"],
                         input=b"", capture_output=True, timeout=20).stdout
    out = subprocess.run([require("openssl"), "x509", "-noout", "-ext", "subjectAltName"],
                         input=pem, capture_output=True, timeout=20).stdout.decode(errors="replace")
    return out.split("URI:", 1)[1].strip() if "URI:" in out else ""


def test_agent_socket_checks_its_peer(weft_bin, server, agent, mesh_proxy, backends, tmp_path, request):
    s = server()
    # Where other users reach it (tmp_path is root's only), as /run/weft would be.
    run = pathlib.Path(tempfile.mkdtemp(prefix="weft-run-"))
    os.chmod(run, 0o755)
    # The sidecars of other uids run a copy of the binary they can reach
    # (the build tree may sit in a directory that is root's only).
    their_weft = run / "weft"
    try:
        os.link(weft_bin, their_weft)
    except OSError:
        shutil.copy(weft_bin, their_weft)
    os.chmod(their_weft, 0o755)
    started = []

    def cleanup():
        for m in started:
            m.stop()
        shutil.rmtree(run, ignore_errors=True)
    request.addfinalizer(cleanup)

    def sidecar_as(uid, gid, service, extra=()):
        m = MeshProxy(str(their_weft), f"unix:{sock}", service, str(tmp_path), extra,
                      popen_kw={"user": uid, "group": gid, "extra_groups": []})
        started.append(m)
        return m
    sock = str(run / "agent.sock")
    a = agent(s, "node-1", extra=("--socket", sock, "--socket-group", "nogroup"))
    st = os.stat(sock)
    assert oct(st.st_mode & 0o777) == "0o660" and st.st_gid == NOGROUP
    web_token, pay_token = "web-token-0123456789abcdef", "pay-token-0123456789abcdef"
    web_in = register_pair(a, "web", backends("web-app").port, web_token)
    pay_in = register_pair(a, "payments", backends("pay-app").port, pay_token)
    token_file = run / "web-token"
    token_file.write_text(web_token)
    os.chmod(token_file, 0o644)  # the sidecar's user reads it (tmp_path is root's only)
    # A sidecar of another uid with web's token gets web's identity.
    web = sidecar_as(OTHER_UID, NOGROUP, "web", ("--token-file", str(token_file)))
    web.wait_ready(20)
    assert served_identity(web_in) == "spiffe://weft.local/ns/default/sa/web"
    # The same sidecar asking for payments' identity is refused and logged:
    # it never gets a certificate, and the agent counts it.
    before = a.metric("weft_agent_socket_refused_total")
    thief = sidecar_as(OTHER_UID, NOGROUP, "payments", ("--token-file", str(token_file)))
    assert wait_for(lambda: a.metric("weft_agent_socket_refused_total") > before, 10), a.log()
    assert f"uid {OTHER_UID}" in a.log() and "not the Token of a registration of \"payments\"" in a.log()
    assert thief.admin("/ready")[0] != 200
    assert "PERMISSION_DENIED" in thief.log() or "not the Token" in thief.log(), thief.log()
    assert served_identity(pay_in) == ""
    # Without a token, a uid that is not root's or the agent's gets nothing.
    sidecar_as(OTHER_UID, NOGROUP, "payments")
    assert wait_for(lambda: "present the Token of \"payments\"'s registration" in a.log(), 10), a.log()
    # A uid outside the socket's group cannot even connect.
    stranger = sidecar_as(OTHER_UID + 1, OTHER_UID + 1, "payments", ("--token-file", str(token_file)))
    time.sleep(2)
    assert stranger.admin("/ready")[0] != 200
    assert f"uid {OTHER_UID + 1}" not in a.log()
    # Root (who can read the node's key anyway) is trusted as any local proxy.
    pay = mesh_proxy(f"unix:{sock}", "payments")
    pay.wait_ready(20)
    assert served_identity(pay_in) == "spiffe://weft.local/ns/default/sa/payments"


HOLD = """
import socket, sys, time
held, closed = [], 0
for _ in range(int(sys.argv[2])):
    c = socket.socket(socket.AF_UNIX)
    c.connect(sys.argv[1])
    c.settimeout(0.5)
    try:
        gone = c.recv(1) == b""
    except socket.timeout:
        gone = False
    if gone:
        closed += 1
    else:
        held.append(c)
print(len(held), closed, flush=True)
sys.stdin.read()  # hold them until told
"""


def test_agent_socket_bounds_connections_in_all_and_per_uid(server, agent, request):
    """Connections that never open a stream are bounded: one uid cannot take
    every slot, and a slot comes back when its connection closes."""
    s = server()
    run = pathlib.Path(tempfile.mkdtemp(prefix="weft-run-"))
    os.chmod(run, 0o755)
    request.addfinalizer(lambda: shutil.rmtree(run, ignore_errors=True))
    sock = str(run / "agent.sock")
    a = agent(s, "node-1", extra=("--socket", sock, "--socket-group", "nogroup", "--socket-max-connections", "12",
                                  "--socket-max-connections-per-uid", "8"))
    holders = []

    def hold(n, **user):
        p = subprocess.Popen(["/usr/bin/python3", "-c", HOLD, sock, str(n)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, **user)
        holders.append(p)
        held, closed = map(int, p.stdout.readline().split())
        return p, held, closed

    try:
        # Root takes its 8; the 9th and 10th are closed at once, and counted.
        root, held, closed = hold(10)
        assert (held, closed) == (8, 2), (held, closed)
        assert a.metric("weft_agent_socket_connections_refused_total") == 2
        assert "refused: 8 open (8 from that uid; at most 12 and 8 per uid)" in a.log(), a.log()[-2000:]
        # Another uid still gets in, up to the total of 12.
        _, held, closed = hold(6, user=OTHER_UID, group=NOGROUP, extra_groups=[])
        assert (held, closed) == (4, 2), (held, closed)
        assert hold(1)[1:] == (0, 1)  # at the total now, root included
        # Root's connections closed: their slots come back.
        root.stdin.close()
        root.wait(timeout=10)
        _, held, closed = hold(8)
        assert (held, closed) == (8, 0), (held, closed)
        assert a.metric("weft_agent_socket_connections_refused_total") == 5
    finally:
        for h in holders:
            if h.poll() is None:
                h.kill()
                h.wait()
