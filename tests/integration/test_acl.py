"""ACLs on `weft server` (on unless --dev): the bootstrap token in the data
dir, what the anonymous token may do, policies and tokens made through the
API and the CLI and what they allow, the refusals that guard the API from
browsers (form types, foreign Host names, ?token=), and that the store and
the data dir keep secrets as they should."""
import hashlib
import json
import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import urllib.error
import urllib.request

from conftest import terminate


ROUTE = ("kind: Route\nmetadata: {{name: {name}}}\n"
         "spec: {{service: {name}, rules: [{{backends: [{{service: {name}, weight: 100}}]}}]}}\n")
TP = "kind: TrafficPolicy\nmetadata: {{name: {name}}}\nspec: {{lb: least_request}}\n"


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def files_under(d):
    return [os.path.join(root, f) for root, _, names in os.walk(d) for f in names]


def database(data_dir):
    """The SQLite database file in a server's data dir (found by its header)."""
    for path in files_under(data_dir):
        with open(path, "rb") as f:
            if f.read(16) == b"SQLite format 3\x00":
                return path
    raise AssertionError(f"no SQLite database in {data_dir}: {os.listdir(data_dir)}")


def reg(node, service):
    return {"Node": node, "Address": "10.0.0.1", "Service": {"Service": service, "ID": f"{service}-1", "Port": 80}}


def call(url, method, path, body=None, headers=None):
    """A request to any server by URL: (status, body text)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    hdrs.update(headers or {})
    req = urllib.request.Request(url + path, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def policy(s, name, rules, token=None):
    status, _, body = s.request("PUT", "/v1/acl/policy",
                                {"Name": name, "Description": f"test {name}", "Rules": json.dumps(rules)}, token=token)
    assert status == 200, body
    p = json.loads(body)
    assert p["ID"] and p["Name"] == name, p
    return p


def new_token(s, *policies):
    """A token with the named policies: (SecretID, AccessorID)."""
    status, _, body = s.request("PUT", "/v1/acl/token",
                                {"Description": "test", "Policies": [{"Name": p} for p in policies]})
    assert status == 200, body
    t = json.loads(body)
    assert t["SecretID"] and t["AccessorID"] and t["SecretID"] != t["AccessorID"], t
    return t["SecretID"], t["AccessorID"]


def ids(text):
    """AccessorID and SecretID from the CLI's output, whatever its layout
    (JSON, `Key: value` or a table row)."""
    try:
        j = json.loads(text)
        if isinstance(j, dict):
            return j
    except ValueError:
        pass
    return dict(re.findall(r"(AccessorID|SecretID)\W+([\w-]+)", text))


def start_raw(weft_bin, args, log_path):
    """A `weft server` outside the fixture: (Popen, http URL)."""
    err = open(log_path, "w")
    p = subprocess.Popen([weft_bin, "server", *args], stdout=subprocess.PIPE, stderr=err, text=True)
    err.close()
    line = p.stdout.readline()
    if not line.startswith("weft server listening"):
        p.kill()
        p.wait()
        raise AssertionError(f"weft server did not start: {line!r} {open(log_path).read()}")
    fields = dict(part.split("=", 1) for part in line.split()[3:] if "=" in part)
    return p, "http://" + fields["http"]


def stop_raw(p):
    if p.poll() is None:
        terminate(p)
    return p.stdout.read()


def test_bootstrap_token_and_data_dir_modes(server):
    s = server()
    path = os.path.join(s.data_dir, "bootstrap-token")
    secret = open(path).read()
    assert secret and secret == secret.strip(), repr(secret)  # the secret only, no newline
    assert mode(path) == 0o600
    assert mode(s.data_dir) == 0o700
    assert mode(database(s.data_dir)) == 0o600
    # The CA's public roots are the one file others may read.
    assert mode(os.path.join(s.data_dir, "ca.pem")) == 0o644
    loose = {p: oct(mode(p)) for p in files_under(s.data_dir) if mode(p) != 0o600 and not p.endswith("ca.pem")}
    assert not loose, loose
    assert mode(os.path.join(s.data_dir, "join-token")) == 0o600


def test_anonymous_reads_the_catalog_only_and_the_bootstrap_token_does_everything(server):
    s = server()
    s.register("n1", "web", 80, "web-1")
    assert s.ctl("apply", "-f", "-", input=ROUTE.format(name="web")).returncode == 0
    # Open to anyone: catalog and health reads, and what probes and proxies need.
    for path in ("/v1/catalog/services", "/v1/catalog/service/web", "/v1/catalog/nodes", "/v1/catalog/node/n1",
                 "/v1/health/service/web", "/v1/health/state/any", "/v1/weft/prometheus-sd", "/ready",
                 "/v1/status/leader", "/v1/status/peers", "/v1/connect/ca/roots"):
        status, _, body = s.request("GET", path, token="")
        assert status == 200, (path, status, body)
    assert "web" in json.loads(s.request("GET", "/v1/catalog/services", token="")[2])
    # Everything else needs a token with rights, and says which right is missing.
    # Lists show what the token may read: config entries, none by default.
    status, headers, body = s.request("GET", "/v1/config", token="")
    assert status == 200 and json.loads(body) == [] \
        and headers.get("X-Consul-Results-Filtered-By-ACLs") == "true", (status, headers, body)
    refused = [("GET", "/v1/config/Route/web", None, 'config:read on "Route/default/web"'),
               ("PUT", "/v1/catalog/register", reg("n2", "db"), ":write"),
               ("PUT", "/v1/catalog/deregister", {"Node": "n1"}, "node:write"),
               ("PUT", "/v1/config/Route/api", ROUTE.format(name="api"), "config:write"),
               ("PUT", "/v1/connect/ca/rotate", None, "operator:write"),
               ("GET", "/metrics", None, "operator:read"),
               ("GET", "/stats", None, "operator:read"),
               ("GET", "/v1/agent/self", None, "operator:read"),
               ("GET", "/v1/agent/members", None, "operator:read"),
               ("GET", "/v1/acl/tokens", None, "acl:read"),
               ("GET", "/v1/acl/policies", None, "acl:read")]
    for method, path, body, why in refused:
        status, _, text = s.request(method, path, body, token="")
        assert status == 403 and "Permission denied" in text and "anonymous token" in text and why in text, \
            (method, path, status, text)
    assert json.loads(s.request("GET", "/v1/catalog/nodes", token="")[2])[0]["Node"] == "n1"  # nothing deregistered
    # The bootstrap token, as X-Consul-Token or Authorization: Bearer.
    for headers in ({"X-Consul-Token": s.token}, {"Authorization": f"Bearer {s.token}"}):
        status, _, body = s.request("GET", "/v1/config", token="", headers=headers)
        assert status == 200 and len(json.loads(body)) == 1, (headers, status, body)
    for method, path, body, _ in refused:
        if path == "/v1/catalog/deregister":
            continue
        status, _, text = s.request(method, path, body)
        assert status == 200, (method, path, status, text)
    assert s.metric("weft_server_http_requests_total") > 0
    assert "db" in s.get_json("/v1/catalog/services")[0]


def test_unknown_token_query_token_form_posts_and_foreign_hosts_are_refused(server):
    s = server()
    status, _, body = s.request("GET", "/v1/catalog/services", token="00000000-0000-4000-8000-000000000000")
    assert status == 403 and "ACL not found" in body, (status, body)
    status, _, body = s.request("GET", "/v1/catalog/services", token="", headers={"Authorization": "Bearer nope"})
    assert status == 403 and "ACL not found" in body, (status, body)
    # A token in the URL ends up in logs: refused, also a good one.
    for token in (s.token, ""):
        status, _, body = s.request("GET", f"/v1/catalog/services?token={s.token}", token=token)
        assert status == 400, (status, body)
    # A browser form can post these types cross-site: refused, even for management.
    before = s.get_json("/v1/catalog/services")[0]
    for ctype in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"):
        status, _, body = s.request("PUT", "/v1/catalog/register", reg("n9", "evil"),
                                    headers={"Content-Type": ctype})
        assert status == 415, (ctype, status, body)
        status, _, body = s.request("POST", "/v1/catalog/register", b"Node=n9&Address=1.2.3.4",
                                    headers={"Content-Type": ctype})
        assert status == 415, (ctype, status, body)
    assert s.get_json("/v1/catalog/services")[0] == before
    assert "n9" not in [n["Node"] for n in s.get_json("/v1/catalog/nodes")[0]]
    # DNS rebinding: a name the server does not answer to is refused, whatever the token.
    status, _, body = s.request("GET", "/v1/catalog/services", headers={"Host": "evil.example"})
    assert status == 403, (status, body)
    status, _, body = s.request("GET", "/ready", headers={"Host": f"evil.example:{s.http_port}"})
    assert status == 403, (status, body)
    for host in (f"localhost:{s.http_port}", "localhost", f"127.0.0.1:{s.http_port}", socket.gethostname()):
        status, _, body = s.request("GET", "/v1/catalog/services", headers={"Host": host})
        assert status == 200, (host, status, body)
    # --http-allow-host adds names.
    t = server("named", extra=("--http-allow-host", "weft.internal"))
    assert t.request("GET", "/v1/catalog/services", headers={"Host": "weft.internal:8500"})[0] == 200
    assert t.request("GET", "/v1/catalog/services", headers={"Host": "other.internal"})[0] == 403


def test_cli_policy_and_read_only_token(server, tmp_path):
    s = server()
    s.register("n1", "web", 80, "web-1")
    rules = tmp_path / "readers.json"
    rules.write_text(json.dumps({"service_prefix": {"": {"policy": "read"}}, "node_prefix": {"": {"policy": "read"}}}))
    r = s.ctl("acl", "policy", "create", "--name", "readers", "--description", "catalog readers",
              "--rules", f"@{rules}")
    assert r.returncode == 0, r.stdout + r.stderr
    r = s.ctl("acl", "policy", "list")
    assert r.returncode == 0 and "readers" in r.stdout and "global-management" in r.stdout \
        and "anonymous" in r.stdout, r.stdout + r.stderr
    r = s.ctl("acl", "policy", "read", "readers")
    assert r.returncode == 0 and "service_prefix" in r.stdout, r.stdout + r.stderr
    r = s.ctl("acl", "token", "create", "--description", "ci reader", "--policy", "readers")
    assert r.returncode == 0, r.stdout + r.stderr
    t = ids(r.stdout)
    secret, accessor = t.get("SecretID"), t.get("AccessorID")
    assert secret and accessor and secret != accessor, r.stdout
    # It reads...
    for path in ("/v1/catalog/services", "/v1/catalog/service/web", "/v1/health/service/web", "/v1/catalog/node/n1"):
        status, _, body = s.request("GET", path, token=secret)
        assert status == 200, (path, status, body)
    status, _, body = s.request("GET", "/v1/acl/token/self", token=secret)
    assert status == 200 and json.loads(body)["AccessorID"] == accessor, body
    # ...and nothing else.
    status, _, body = s.request("PUT", "/v1/catalog/register", reg("n2", "db"), token=secret)
    assert status == 403 and ("service:write" in body or "node:write" in body), (status, body)
    assert "anonymous" not in body
    for path in ("/metrics", "/v1/acl/tokens"):
        assert s.request("GET", path, token=secret)[0] == 403, path
    assert s.ctl("apply", "-f", "-", input=ROUTE.format(name="web")).returncode == 0
    status, _, body = s.request("GET", "/v1/config", token=secret)
    assert status == 200 and json.loads(body) == [], body  # no config:read: filtered out
    # The CLI takes the token from --token, --token-file or WEFT_TOKEN.
    r = s.ctl("get", "routes", "--token", secret, token="")
    assert r.returncode == 0 and "web" not in r.stdout, r.stdout + r.stderr
    (tmp_path / "tok").write_text(s.token)
    r = s.ctl("get", "routes", "--token-file", str(tmp_path / "tok"), token="")
    assert r.returncode == 0 and "web" in r.stdout, r.stdout + r.stderr
    assert s.ctl("members", "--token", s.token, token="").returncode == 0
    r = s.ctl("members", token="")
    assert r.returncode != 0 and ("Permission denied" in r.stderr or "403" in r.stderr), r.stdout + r.stderr
    # Deleting the token: it is unknown from then on.
    r = s.ctl("acl", "token", "delete", accessor)
    assert r.returncode == 0, r.stdout + r.stderr
    status, _, body = s.request("GET", "/v1/catalog/services", token=secret)
    assert status == 403 and "ACL not found" in body, (status, body)
    assert s.ctl("acl", "token", "read", accessor).returncode != 0
    r = s.ctl("acl", "policy", "delete", "readers")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "readers" not in s.ctl("acl", "policy", "list").stdout


def test_service_node_and_config_rules(server):
    s = server()
    policy(s, "payments-writer", {"service": {"payments": {"policy": "write"}}, "node_prefix": {"": {"policy": "write"}}})
    secret, _ = new_token(s, "payments-writer")
    status, _, body = s.request("PUT", "/v1/catalog/register", reg("n1", "payments"), token=secret)
    assert status == 200, body
    status, _, body = s.request("PUT", "/v1/catalog/register", reg("n1", "billing"), token=secret)
    assert status == 403 and "service:write" in body and '"billing"' in body, (status, body)
    assert list(s.get_json("/v1/catalog/services")[0]) == ["payments"]
    status, _, body = s.request("PUT", "/v1/catalog/deregister", {"Node": "n1", "ServiceID": "payments-1"}, token=secret)
    assert status == 200, body
    # The longest match decides, an exact name beats any prefix, deny beats the rest.
    policy(s, "most", {"service_prefix": {"": {"policy": "write"}, "internal-": {"policy": "deny"}},
                       "service": {"internal-ok": {"policy": "write"}}, "node_prefix": {"": {"policy": "write"}}})
    most, _ = new_token(s, "most")
    assert s.request("PUT", "/v1/catalog/register", reg("n2", "web"), token=most)[0] == 200
    assert s.request("PUT", "/v1/catalog/register", reg("n2", "internal-ok"), token=most)[0] == 200
    status, _, body = s.request("PUT", "/v1/catalog/register", reg("n2", "internal-db"), token=most)
    assert status == 403 and "internal-db" in body, (status, body)
    assert s.request("GET", "/v1/catalog/service/internal-ok", token=most)[0] == 200
    assert s.request("GET", "/v1/catalog/service/internal-db", token=most)[0] == 403
    # Config entries are KIND/NAMESPACE/NAME.
    policy(s, "routes", {"config_prefix": {"Route/": {"policy": "write"}}})
    routes, _ = new_token(s, "routes")
    status, _, body = s.request("PUT", "/v1/config/Route/web", ROUTE.format(name="web"), token=routes)
    assert status == 200, body
    r = s.ctl("apply", "-f", "-", input=ROUTE.format(name="api"), token=routes)
    assert r.returncode == 0 and "Route default/api created" in r.stdout, r.stdout + r.stderr
    status, _, body = s.request("PUT", "/v1/config/TrafficPolicy/web", TP.format(name="web"), token=routes)
    assert status == 403 and "config:write" in body and "TrafficPolicy/default/web" in body, (status, body)
    r = s.ctl("apply", "-f", "-", input=TP.format(name="web"), token=routes)
    assert r.returncode != 0 and "config:write" in r.stderr, r.stdout + r.stderr
    assert s.request("GET", "/v1/config/Route/web", token=routes)[0] == 200
    status, _, body = s.request("GET", "/v1/config/Route", token=routes)
    assert status == 200 and len(json.loads(body)) == 2, body
    status, _, body = s.request("GET", "/v1/config", token=routes)
    assert status == 200 and sorted(e["metadata"]["name"] for e in json.loads(body)) == ["api", "web"], body
    status, headers, body = s.request("GET", "/v1/config/Service", token=routes)
    assert status == 200 and json.loads(body) == [], (status, body)
    assert s.request("DELETE", "/v1/config/Route/web", token=routes)[0] == 200
    assert s.request("GET", "/v1/config/Route/web")[0] == 404


def test_a_mesh_wide_telemetry_takes_operator_rights(server):
    """Telemetry for service "*" reaches every namespace's sidecars (where
    their spans go): writing or deleting one takes operator:write, not only
    config:write on its own name."""
    s = server()
    policy(s, "telemetry", {"config_prefix": {"Telemetry/": {"policy": "write"}}})
    tok, _ = new_token(s, "telemetry")
    wide = "kind: Telemetry\nmetadata: {name: mesh}\nspec: {service: '*', tracing: {otlp: 'http://evil:4318'}}\n"
    own = "kind: Telemetry\nmetadata: {name: mesh}\nspec: {service: web, tracing: {otlp: 'http://c:4318'}}\n"
    status, _, body = s.request("PUT", "/v1/config/Telemetry/mesh", wide, token=tok)
    assert status == 403 and "operator:write" in body and "mesh-wide Telemetry" in body, (status, body)
    r = s.ctl("apply", "-f", "-", input=wide, token=tok)
    assert r.returncode != 0 and "operator:write" in r.stderr, r.stdout + r.stderr
    assert s.request("PUT", "/v1/config/Telemetry/web", own.replace("name: mesh", "name: web"), token=tok)[0] == 200
    # The operator's mesh-wide one can be neither replaced by a service's
    # nor deleted with that token.
    assert s.request("PUT", "/v1/config/Telemetry/mesh", wide)[0] == 200
    status, _, body = s.request("PUT", "/v1/config/Telemetry/mesh", own, token=tok)
    assert status == 403 and "operator:write" in body, (status, body)
    status, _, body = s.request("DELETE", "/v1/config/Telemetry/mesh", token=tok)
    assert status == 403 and "operator:write" in body, (status, body)
    assert s.request("DELETE", "/v1/config/Telemetry/web", token=tok)[0] == 200


def test_lists_show_only_what_the_token_may_read(server):
    """Consul's ACL filtering: a list answers 200 with the entries the
    token may read, and says in a header that some were left out."""
    s = server()
    for node, svc in (("n1", "web"), ("n2", "payments"), ("n3", "internal-db")):
        body = {**reg(node, svc), "Check": {"CheckID": f"{svc}-c", "Name": "c", "ServiceID": f"{svc}-1",
                                              "Status": "passing"}}
        assert s.request("PUT", "/v1/catalog/register", body)[0] == 200
    # A narrow anonymous policy: the default reads are widened or narrowed by the operator.
    status, _, body = s.request("PUT", "/v1/acl/policy/00000000-0000-0000-0000-000000000002",
                                {"Rules": json.dumps({"service": {"web": {"policy": "read"}},
                                                      "node": {"n1": {"policy": "read"}}})})
    assert status == 200, body
    expect = {
        "/v1/catalog/services": lambda j: sorted(j) == ["web"],
        "/v1/catalog/nodes": lambda j: [n["Node"] for n in j] == ["n1"],
        "/v1/health/state/any": lambda j: [c["ServiceName"] for c in j] == ["web"],
        "/v1/weft/prometheus-sd": lambda j: [g["labels"]["__meta_weft_service"] for g in j] == ["web"],
    }
    for path, ok in expect.items():
        status, headers, body = s.request("GET", path, token="")
        assert status == 200 and ok(json.loads(body)), (path, status, body)
        assert headers.get("X-Consul-Results-Filtered-By-ACLs") == "true", (path, headers)
    assert s.request("GET", "/v1/catalog/service/payments", token="")[0] == 403
    # The management token sees everything, and nothing is said to be filtered.
    status, headers, body = s.request("GET", "/v1/catalog/services")
    assert sorted(json.loads(body)) == ["internal-db", "payments", "web"], body
    assert "X-Consul-Results-Filtered-By-ACLs" not in headers, headers
    # Prefix rules and deny: everything but internal-*.
    policy(s, "most-read", {"service_prefix": {"": {"policy": "read"}, "internal-": {"policy": "deny"}},
                            "node_prefix": {"": {"policy": "read"}}})
    most, _ = new_token(s, "most-read")
    assert sorted(s.get_json_as("/v1/catalog/services", most)) == ["payments", "web"]
    assert sorted(c["ServiceName"] for c in s.get_json_as("/v1/health/state/passing", most)) == ["payments", "web"]
    assert [n["Node"] for n in s.get_json_as("/v1/catalog/nodes", most)] == ["n1", "n2", "n3"]


def test_token_update_changes_rights_and_keeps_the_secret(server):
    s = server()
    s.register("n1", "web", 80, "web-1")
    policy(s, "web-read", {"service": {"web": {"policy": "read"}}})
    policy(s, "web-write", {"service": {"web": {"policy": "write"}}, "node_prefix": {"": {"policy": "write"}}})
    secret, accessor = new_token(s, "web-read")
    assert s.request("PUT", "/v1/catalog/register", reg("n1", "web"), token=secret)[0] == 403
    # The CLI: --policy gives the whole new list; the secret stays the same.
    r = s.ctl("acl", "token", "update", accessor, "--policy", "web-write", "--description", "deployer")
    assert r.returncode == 0 and "deployer" in r.stdout and "web-write" in r.stdout, r.stdout + r.stderr
    assert "SecretID" not in r.stdout and secret not in r.stdout, r.stdout
    status, _, body = s.request("PUT", "/v1/catalog/register", reg("n1", "web"), token=secret)
    assert status == 200, body
    t = json.loads(s.request("GET", f"/v1/acl/token/{accessor}")[2])
    assert [p["Name"] for p in t["Policies"]] == ["web-write"] and t["Description"] == "deployer", t
    # A body read back and sent again (Consul's clients do) is accepted; the description alone keeps the policies.
    t["Description"] = "deployer 2"
    status, _, body = s.request("PUT", f"/v1/acl/token/{accessor}", t)
    assert status == 200 and json.loads(body)["Policies"][0]["Name"] == "web-write", body
    # What cannot change, or does not exist, is refused with the reason.
    for body, why in (({"SecretID": "00000000-0000-4000-8000-000000000000"}, "SecretID"),
                      ({"AccessorID": "00000000-0000-4000-8000-000000000000"}, "AccessorID"),
                      ({"Policies": [{"Name": "nope"}]}, "no such policy"),
                      ({"Description": "x" * 1025}, "1024")):
        status, _, text = s.request("PUT", f"/v1/acl/token/{accessor}", body)
        assert status == 400 and why in text, (body, status, text)
    status, _, text = s.request("PUT", "/v1/acl/token/00000000-0000-4000-8000-000000000000", {"Description": "x"})
    assert status == 404, (status, text)
    # Only a token with acl:write may update tokens, its own included.
    status, _, text = s.request("PUT", f"/v1/acl/token/{accessor}", {"Policies": [{"Name": "global-management"}]},
                                token=secret)
    assert status == 403 and "acl:write" in text, (status, text)
    assert s.ctl("acl", "token", "update", accessor).returncode != 0  # nothing to change


def test_a_write_is_checked_against_every_service_it_touches(server):
    """Write on one service does not reach another through a sidecar's
    destination, a reused instance ID, or checks naming its instances."""
    s = server()
    s.register("n1", "db", 5432, sid="db-1")
    policy(s, "web-only", {"service": {"web": {"policy": "write"}}, "node_prefix": {"": {"policy": "write"}}})
    web, _ = new_token(s, "web-only")
    attempts = [
        # A sidecar registered as "web" that fronts db.
        ("/v1/catalog/register", {"Node": "n1", "Address": "127.0.0.1", "Service": {
            "Service": "web", "ID": "web-sc", "Kind": "connect-proxy", "Port": 1,
            "Proxy": {"DestinationServiceName": "db", "LocalServicePort": 5432}}}),
        # db's instance ID, taken over by a "web" registration.
        ("/v1/catalog/register", {"Node": "n1", "Address": "127.0.0.1",
                                  "Service": {"Service": "web", "ID": "db-1", "Port": 2}}),
        # A check on db's instance.
        ("/v1/catalog/register", {"Node": "n1", "Address": "127.0.0.1",
                                  "Check": {"CheckID": "c", "Name": "c", "ServiceID": "db-1", "Status": "critical"}}),
        ("/v1/catalog/deregister", {"Node": "n1", "ServiceID": "db-1"}),
    ]
    for path, body in attempts:
        status, _, text = s.request("PUT", path, body, token=web)
        assert status == 403 and '"db"' in text, (body, status, text)
    status, _, body = s.request("GET", "/v1/health/service/db")
    assert status == 200 and [c["Status"] for e in json.loads(body) for c in e["Checks"]] == [], body
    assert s.request("PUT", "/v1/catalog/register", reg("n1", "web"), token=web)[0] == 200


def test_cross_site_writes_are_refused_by_origin(server, weft_bin, tmp_path):
    """A browser names the page a request comes from: a write from another
    site is refused even where no token is needed (--dev), and even with no
    Content-Type (a no-cors fetch or a beacon)."""
    p, url = start_raw(weft_bin, ["--dev", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"],
                       str(tmp_path / "dev.log"))
    try:
        host = url.split("://", 1)[1]
        body = json.dumps({"Node": "x", "Address": "127.0.0.1"}).encode()
        for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                        {"Sec-Fetch-Site": "cross-site"}):
            req = urllib.request.Request(url + "/v1/catalog/register", data=body, method="POST", headers=headers)
            req.remove_header("Content-type")
            try:
                urllib.request.urlopen(req, timeout=10)
                raise AssertionError(f"accepted: {headers}")
            except urllib.error.HTTPError as e:
                assert e.code == 403 and b"cross-site" in e.read(), headers
        # The same origin (a page the server itself serves) may write.
        req = urllib.request.Request(url + "/v1/catalog/register", data=body, method="PUT",
                                     headers={"Origin": f"http://{host}", "Content-Type": "application/json"})
        assert urllib.request.urlopen(req, timeout=10).status == 200
        with urllib.request.urlopen(url + "/v1/catalog/nodes", timeout=10) as r:
            assert [n["Node"] for n in json.loads(r.read())] == ["x"]
    finally:
        stop_raw(p)


def test_secrets_are_shown_once_and_stored_only_as_hashes(server):
    s = server()
    policy(s, "readers", {"service_prefix": {"": {"policy": "read"}}})
    secret, accessor = new_token(s, "readers")
    secrets = [s.token, secret]
    status, _, body = s.request("GET", "/v1/acl/tokens")
    assert status == 200, body
    tokens = json.loads(body)
    assert accessor in [t["AccessorID"] for t in tokens] and len(tokens) >= 2
    assert all(not t.get("SecretID") for t in tokens), tokens
    status, _, body = s.request("GET", f"/v1/acl/token/{accessor}")
    assert status == 200 and not json.loads(body).get("SecretID"), body
    for text in (json.dumps(tokens), body):
        assert not any(x in text for x in secrets)
    for args in (("acl", "token", "list"), ("acl", "token", "read", accessor)):
        r = s.ctl(*args)
        assert r.returncode == 0 and accessor in r.stdout, r.stdout + r.stderr
        assert not any(x in r.stdout + r.stderr for x in secrets), r.stdout
    # The database holds each secret's SHA-256, never the secret.
    db = database(s.data_dir)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        texts = []
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                texts += [v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in row]
    finally:
        conn.close()
    dump = "\n".join(texts)
    for x in secrets:
        assert x not in dump
        assert hashlib.sha256(x.encode()).hexdigest() in dump
    # Nor in any of its files' bytes (journal, free pages), nor the server's log.
    for path in files_under(s.data_dir):
        if os.path.basename(path) == "bootstrap-token":
            continue
        raw = open(path, "rb").read()
        assert not any(x.encode() in raw for x in secrets), path
    assert not any(x in s.log() for x in secrets)


def test_operator_widens_anonymous_access(server):
    s = server()
    assert s.ctl("apply", "-f", "-", input=ROUTE.format(name="web")).returncode == 0
    assert s.request("GET", "/v1/config/Route/web", token="")[0] == 403
    assert s.get_json_as("/v1/config", "") == []
    anon, _ = s.get_json("/v1/acl/policy/name/anonymous")
    rules = json.loads(anon["Rules"])
    rules["config_prefix"] = {"": {"policy": "read"}}
    status, _, body = s.request("PUT", f"/v1/acl/policy/{anon['ID']}",
                                {"Name": "anonymous", "Description": anon.get("Description", ""),
                                 "Rules": json.dumps(rules)})
    assert status == 200, body
    status, _, body = s.request("GET", "/v1/config", token="")
    assert status == 200 and len(json.loads(body)) == 1, (status, body)
    assert s.request("GET", "/v1/config/Route/web", token="")[0] == 200
    # Reads only.
    assert s.request("PUT", "/v1/config/Route/api", ROUTE.format(name="api"), token="")[0] == 403
    assert s.request("GET", "/metrics", token="")[0] == 403


def test_bad_rules_are_refused(server):
    s = server()
    bad = [{"services": {"": {"policy": "read"}}},           # unknown key
           {"service": {"web": {"policy": "admin"}}},        # unknown policy
           {"operator": "everything"},
           {"service_prefix": {"": "read"}}]                 # not {"policy": ...}
    for i, rules in enumerate(bad):
        status, _, body = s.request("PUT", "/v1/acl/policy", {"Name": f"bad-{i}", "Rules": json.dumps(rules)})
        assert status == 400, (rules, status, body)
        assert s.request("GET", f"/v1/acl/policy/name/bad-{i}")[0] == 404
    status, _, body = s.request("PUT", "/v1/acl/policy", {"Name": "bad-json", "Rules": "{not json"})
    assert status == 400, body
    r = s.ctl("acl", "policy", "create", "--name", "bad-cli", "--rules", '{"keys": {"": {"policy": "read"}}}')
    assert r.returncode != 0 and "keys" in r.stderr, r.stdout + r.stderr
    assert "bad-cli" not in s.ctl("acl", "policy", "list").stdout
    # Limits, each exceeded by one.
    many = {"service": {f"s{i}": {"policy": "read"} for i in range(1001)}}
    status, _, body = s.request("PUT", "/v1/acl/policy", {"Name": "many", "Rules": json.dumps(many)})
    assert status == 400 and "more than 1000 rules" in body, body
    status, _, body = s.request("PUT", "/v1/acl/policy", {"Name": "big", "Rules": " " * (64 * 1024 + 1)})
    assert status == 400 and "over the limit" in body, body
    status, _, body = s.request("PUT", "/v1/acl/token", {"Policies": [{"Name": "anonymous"}] * 65})
    assert status == 400 and "at most 64 policies" in body, body
    status, _, body = s.request("PUT", "/v1/acl/token",
                                {"Description": "x" * 1025, "Policies": [{"Name": "anonymous"}]})
    assert status == 400 and "Description over 1024" in body, body
    # An ID in the body that the path does not name is refused, not ignored.
    status, _, body = s.request("PUT", "/v1/acl/policy", {"Name": "with-id", "ID": "mine", "Rules": ""})
    assert status == 400 and "IDs are made by the server" in body, body


def test_restart_keeps_the_bootstrap_token_and_fixes_loose_modes(server):
    s = server()
    path = os.path.join(s.data_dir, "bootstrap-token")
    secret, before = s.token, os.stat(path)
    policy(s, "readers", {"service_prefix": {"": {"policy": "read"}}})
    made, _ = new_token(s, "readers")
    s.stop(signal.SIGTERM)
    db = database(s.data_dir)
    os.chmod(s.data_dir, 0o755)
    os.chmod(path, 0o644)
    os.chmod(db, 0o644)
    log_before = len(open(s.log_path).read())
    s.start()
    after = os.stat(path)
    assert open(path).read() == secret and after.st_mtime_ns == before.st_mtime_ns  # not made again
    assert s.request("GET", "/v1/acl/tokens")[0] == 200
    assert s.request("GET", "/v1/catalog/services", token=made)[0] == 200
    assert s.request("GET", "/v1/acl/tokens", token=made)[0] == 403
    # Loosened modes are put back, with a warning.
    assert (mode(s.data_dir), mode(path), mode(db)) == (0o700, 0o600, 0o600)
    new_log = open(s.log_path).read()[log_before:]
    assert any(w in new_log.lower() for w in ("mode", "permission", "0644", "0755")), new_log


def test_dev_server_is_open_and_says_acls_are_off(weft_bin, tmp_path):
    p, url = start_raw(weft_bin, ["--dev", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"], tmp_path / "dev.log")
    try:
        status, body = call(url, "PUT", "/v1/catalog/register", reg("n1", "web"))
        assert status == 200, body
        status, body = call(url, "PUT", "/v1/config/Route/web", ROUTE.format(name="web").encode())
        assert status == 200, body
        for path in ("/v1/config", "/metrics", "/v1/agent/members", "/v1/catalog/services"):
            assert call(url, "GET", path)[0] == 200, path
        # The browser guards stay on.
        status, _ = call(url, "PUT", "/v1/catalog/register", reg("n2", "evil"),
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 415
        assert call(url, "GET", "/v1/catalog/services", headers={"Host": "evil.example"})[0] == 403
    finally:
        out = stop_raw(p)
    out += open(tmp_path / "dev.log").read()
    assert "ACL" in out, out


def test_store_without_data_dir_needs_a_bootstrap_token_file(weft_bin, tmp_path):
    from test_etcd import EtcdCluster
    args = ["--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"]
    r = subprocess.run([weft_bin, "server", "--store", "etcd://127.0.0.1:1", *args],
                       capture_output=True, text=True, timeout=15)
    assert r.returncode != 0 and "--acl-bootstrap-token-file" in r.stderr, r.stderr
    etcd = EtcdCluster(str(tmp_path), size=1)
    try:
        secret_file = tmp_path / "secret"
        secret_file.write_text("4f1c9a7e-0d2b-4c61-9e55-2b7f3e8a1d90")
        os.chmod(secret_file, 0o600)
        # A shared store needs the CA's key-encryption key from a file every server has.
        r = subprocess.run([weft_bin, "server", "--store", etcd.url([0]), "--acl-bootstrap-token-file",
                            str(secret_file), *args], capture_output=True, text=True, timeout=15)
        assert r.returncode == 2 and "--ca-kek-file FILE is required with --store" in r.stderr, r.stderr
        kek = tmp_path / "kek"
        kek.write_text("ab" * 32)
        os.chmod(kek, 0o600)
        p, url = start_raw(weft_bin, ["--store", etcd.url([0]), "--acl-bootstrap-token-file", str(secret_file),
                                      "--ca-kek-file", str(kek), *args], tmp_path / "store.log")
        try:
            assert call(url, "GET", "/v1/acl/tokens")[0] == 403
            status, body = call(url, "GET", "/v1/acl/tokens", headers={"X-Consul-Token": secret_file.read_text()})
            assert status == 200, body
        finally:
            stop_raw(p)
    finally:
        etcd.stop()


def test_deeply_nested_json_is_refused_by_every_json_endpoint(server, agent):
    """400,000 levels of lists inside an otherwise valid body: each JSON
    endpoint answers 400 and the server and agent stay up."""
    s = server()
    a = agent(s, "deep-node")
    deep = "[" * 400000 + "]" * 400000
    bodies = {
        "/v1/catalog/register": '{"Node":"n1","Address":"127.0.0.1","Service":{"Service":"x","Meta":%s}}',
        "/v1/catalog/deregister": '{"Node":"n1","ServiceID":%s}',
        "/v1/config/Route/x": '{"kind":"Route","metadata":{"name":"x"},"spec":%s}',
        "/v1/acl/policy": '{"Name":"p","Rules":"x","Description":%s}',
        "/v1/acl/token": '{"Policies":%s}',
        "/v1/connect/ca/rotate": '{"RootCert":%s}',
    }
    for path, shape in bodies.items():
        status, _, text = s.request("PUT", path, (shape % deep).encode())
        assert status == 400 and "deeper than 64" in text, (path, status, text[:200])
    status, _, text = a.request("PUT", "/v1/agent/service/register",
                                ('{"Name":"x","Port":1,"Meta":%s}' % deep).encode())
    assert status == 400 and "deeper than 64" in text, (status, text[:200])
    # A policy's Rules are JSON inside a JSON string: checked on their own.
    status, _, text = s.request("PUT", "/v1/acl/policy",
                                {"Name": "deep", "Rules": '{"service": ' + "[" * 1000 + "]" * 1000 + "}"})
    assert status == 400 and "nested" in text, text
    assert s.request("GET", "/v1/catalog/services")[0] == 200
    assert a.request("GET", "/v1/agent/services")[0] == 200
    assert s.metric("weft_server_rejected_total") >= 7
