"""The shared store's link (part of the hostile suite): a real etcd started
with TLS, client certificates and its own auth; weft reaches it with
etcds://, its CA, a client certificate and a user; every weaker way in is
refused; a plaintext etcd URL is warned about at start."""
import json
import os
import subprocess
import time
import urllib.request

import pytest

from conftest import free_port, require


def openssl(*args):
    subprocess.run([require("openssl"), *args], check=True, capture_output=True)


def make_pki(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate: {name: (cert, key)}."""
    os.makedirs(d, exist_ok=True)
    out = {}
    ca_key, ca = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", ca_key,
            "-out", ca, "-days", "2", "-subj", "/CN=etcd test ca", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign")
    out["ca"] = (ca, ca_key)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        key, csr, cert, extf = (os.path.join(d, f"{name}.{x}") for x in ("key", "csr", "pem", "ext"))
        open(extf, "w").write(ext + "\n")
        # etcd refuses gateway calls from a client certificate with a CommonName
        # once its auth is on (the CN would not be the user): none for the client.
        subj = "/CN=server" if name == "server" else "/O=weft"
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                "-out", csr, "-subj", subj)
        openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
                "-days", "2", "-extfile", extf)
        out[name] = (cert, key)
    return out


class SecureEtcd:
    """One etcd member with TLS, required client certificates and auth on (user root)."""

    def __init__(self, d):
        self.dir = d
        self.pki = make_pki(d)
        self.port, peer = free_port(), free_port()
        url = f"https://127.0.0.1:{self.port}"
        ca = self.pki["ca"][0]
        cert, key = self.pki["server"]
        self.log = open(os.path.join(d, "etcd.log"), "a")
        self.p = subprocess.Popen(
            [require("etcd"), "--name", "s0", "--data-dir", os.path.join(d, "data"),
             "--listen-client-urls", url, "--advertise-client-urls", url,
             "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls",
             f"http://127.0.0.1:{peer}", "--initial-cluster", f"s0=http://127.0.0.1:{peer}",
             "--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth"],
            stdout=self.log, stderr=self.log)
        self.password = "s3cret-" + os.urandom(8).hex()
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.ctl("endpoint", "health", check=False).returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("secure etcd did not start: " + open(os.path.join(d, "etcd.log")).read()[-2000:])
        self.ctl("user", "add", f"root:{self.password}")
        self.ctl("user", "grant-role", "root", "root")
        self.ctl("auth", "enable")

    def ctl(self, *args, check=True):
        cert, key = self.pki["client"]
        return subprocess.run([require("etcdctl"), "--endpoints", f"https://127.0.0.1:{self.port}",
                               "--cacert", self.pki["ca"][0], "--cert", cert, "--key", key, *args],
                              capture_output=True, text=True, timeout=20, check=check,
                              env={**os.environ, "ETCDCTL_API": "3"})

    def stop(self):
        self.p.kill()
        self.p.wait()


@pytest.fixture
def secure_etcd(tmp_path):
    e = SecureEtcd(str(tmp_path / "etcd"))
    yield e
    e.stop()


def run_server(weft_bin, tmp_path, store, *flags, timeout=20):
    """`weft server` with the store; returns (process or None, first line, log text)."""
    kek = tmp_path / "kek"
    kek.write_text("ab" * 32)
    os.chmod(kek, 0o600)
    log = tmp_path / f"server-{time.time_ns()}.log"
    p = subprocess.Popen([weft_bin, "server", "--store", store, "--data-dir", str(tmp_path / "d"),
                          "--ca-kek-file", str(kek), "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", *flags],
                         stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
    line = p.stdout.readline()
    if not line.startswith("weft server listening"):
        p.wait(timeout=timeout)
        return None, line, open(log).read()
    return p, line, open(log).read()


def test_etcd_over_tls_with_client_certificates_and_auth(weft_bin, secure_etcd, tmp_path):
    e = secure_etcd
    ca = e.pki["ca"][0]
    cert, key = e.pki["client"]
    pw = tmp_path / "etcd-password"
    pw.write_text(e.password + "\n")
    store = f"etcds://127.0.0.1:{e.port}"
    full = ("--etcd-ca", ca, "--etcd-cert", cert, "--etcd-key", key, "--etcd-user", "root",
            "--etcd-password-file", str(pw))
    p, line, log = run_server(weft_bin, tmp_path, store, *full)
    assert p is not None, log
    try:
        http = line.split("http=")[1].split()[0]
        token = open(tmp_path / "d" / "bootstrap-token").read().strip()
        body = b'{"Node":"n1","Address":"127.0.0.1","Service":{"Service":"web","Port":80}}'
        req = urllib.request.Request(f"http://{http}/v1/catalog/register", data=body, method="PUT",
                                     headers={"Content-Type": "application/json", "X-Consul-Token": token})
        assert urllib.request.urlopen(req, timeout=10).status == 200
        with urllib.request.urlopen(f"http://{http}/v1/catalog/service/web", timeout=10) as r:
            assert b'"ServiceName":"web"' in r.read().replace(b" ", b"")
        # It went to etcd, under weft's prefix (read back with etcd's own client, as root).
        assert "n1" in e.ctl("--user", f"root:{e.password}", "get", "--prefix", "/weft/",
                                        "--keys-only").stdout
        log = open(sorted(tmp_path.glob("server-*.log"))[-1]).read()
        assert "etcd in plaintext" not in log and "etcd without its own auth" not in log, log
    finally:
        p.terminate()
        p.wait(timeout=10)
    # Each weaker way in is refused, saying why.
    p, _, log = run_server(weft_bin, tmp_path, store, "--etcd-ca", ca, "--etcd-cert", cert, "--etcd-key", key,
                           "--etcd-user", "root", "--etcd-password-file", str(tmp_path / "kek"))
    assert p is None and "authentication" in log, log
    p, _, log = run_server(weft_bin, tmp_path, store, "--etcd-ca", ca, "--etcd-user", "root",
                           "--etcd-password-file", str(pw))
    assert p is None and "TLS read" in log and "certificate" in log, log  # no client certificate
    p, _, log = run_server(weft_bin, tmp_path, store, "--etcd-ca", e.pki["server"][0], "--etcd-cert", cert,
                           "--etcd-key", key, "--etcd-user", "root", "--etcd-password-file", str(pw))
    assert p is None and "the server's certificate" in log, log
    p, _, log = run_server(weft_bin, tmp_path, f"etcd://127.0.0.1:{e.port}", "--etcd-user", "root",
                           "--etcd-password-file", str(pw))
    assert p is None, log
    p, _, log = run_server(weft_bin, tmp_path, f"etcd://127.0.0.1:{e.port}", "--etcd-ca", ca)
    assert p is None and "use etcds://" in log, log


def test_a_plaintext_etcd_url_is_warned_about(weft_bin, tmp_path):
    from test_etcd import EtcdCluster
    etcd = EtcdCluster(str(tmp_path), size=1)
    try:
        p, _, _ = run_server(weft_bin, tmp_path, etcd.url([0]))
        assert p is not None
        p.terminate()
        p.wait(timeout=10)
        log = open(sorted(tmp_path.glob("server-*.log"))[-1]).read()
        assert "etcd in plaintext" in log and "use etcds://" in log, log
        assert "etcd without its own auth" in log, log
    finally:
        etcd.stop()


def test_a_retired_roots_key_leaves_etcds_history(weft_bin, secure_etcd, tmp_path):
    """etcd keeps every revision of a key until it compacts: once a rotated
    root retires, the server compacts at the CA document's new revision, so
    the retired key cannot be read back from history."""
    e = secure_etcd
    ca = e.pki["ca"][0]
    cert, key = e.pki["client"]
    pw = tmp_path / "etcd-password"
    pw.write_text(e.password + "\n")
    p, line, log = run_server(weft_bin, tmp_path, f"etcds://127.0.0.1:{e.port}", "--etcd-ca", ca, "--etcd-cert",
                              cert, "--etcd-key", key, "--etcd-user", "root", "--etcd-password-file", str(pw))
    assert p is not None, log
    root = ("--user", f"root:{e.password}")
    try:
        http = line.split("http=")[1].split()[0]
        token = open(tmp_path / "d" / "bootstrap-token").read().strip()
        before = json.loads(e.ctl(*root, "get", "/weft/ca/root", "-w", "json").stdout)["kvs"][0]["mod_revision"]
        r = subprocess.run([weft_bin, "ca", "rotate", "--propagate", "1s", "--overlap", "1s", "--server",
                            f"http://{http}"], capture_output=True, text=True, timeout=30,
                           env={**os.environ, "WEFT_TOKEN": token})
        assert r.returncode == 0, r.stdout + r.stderr
        log_path = sorted(tmp_path.glob("server-*.log"))[-1]
        deadline = time.time() + 20
        while time.time() < deadline and "removed from the store and its history" not in open(log_path).read():
            time.sleep(0.2)
        log = open(log_path).read()
        assert "retired root(s) and their keys removed from the store and its history" in log, log[-2000:]
        assert "etcd: history compacted at revision" in log, log[-2000:]
        old = e.ctl(*root, "get", "/weft/ca/root", "--rev", str(before), check=False)
        assert old.returncode != 0 and "compacted" in old.stderr, (old.stdout, old.stderr)
        # The current document is still there, and the server still answers from it.
        assert e.ctl(*root, "get", "/weft/ca/root", "--print-value-only").stdout.strip()
        with urllib.request.urlopen(f"http://{http}/v1/connect/ca/roots", timeout=10) as resp:
            assert len(json.loads(resp.read())["Roots"]) == 1
    finally:
        p.terminate()
        p.wait(timeout=10)
