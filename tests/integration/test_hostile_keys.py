"""Keys at rest (part of the hostile suite): someone who can read the
server's database file, but not its key-encryption key, learns no CA key;
retired roots' keys leave the store and its history; earlier databases with
keys in the clear are encrypted on start; operator roots are checked before
they sign anything."""
import json
import os
import signal
import sqlite3
import subprocess

from conftest import make_root, require, wait_for


def db_bytes(data_dir):
    out = b""
    for name in ("weft.db", "weft.db-wal", "weft.db-shm"):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            out += open(path, "rb").read()
    return out


def ca_doc(data_dir):
    con = sqlite3.connect(f"file:{os.path.join(data_dir, 'weft.db')}?mode=ro", uri=True)
    try:
        return json.loads(con.execute("SELECT value FROM kv WHERE key = CAST('ca/root' AS BLOB)").fetchone()[0])
    finally:
        con.close()


def test_ca_keys_are_encrypted_in_the_database_and_need_the_kek(server, tmp_path):
    s = server()
    kek = os.path.join(s.data_dir, "ca-kek")
    assert oct(os.stat(kek).st_mode & 0o777) == "0o600"
    doc = ca_doc(s.data_dir)
    assert all("KeyEnc" in r and "Key" not in r for r in doc["Roots"]), doc
    assert b"PRIVATE KEY" not in db_bytes(s.data_dir)
    # The database without its KEK (copied elsewhere, or the KEK replaced): no CA.
    s.stop(signal.SIGTERM)
    with open(kek, "w") as f:
        f.write("cd" * 32)
    r = subprocess.run([s.weft_bin, "server", "--data-dir", s.data_dir, "--http", "127.0.0.1:0", "--grpc",
                        "127.0.0.1:0"], capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "wrong key-encryption key" in r.stderr, r.stderr


def test_keys_stored_in_the_clear_by_an_earlier_version_are_encrypted_and_scrubbed(server, tmp_path):
    s = server()
    s.stop(signal.SIGTERM)
    # What an earlier version wrote: the root's key in the clear, twice in the history.
    cert, key = make_root(tmp_path)
    clear = json.dumps({"TrustDomain": "weft.local", "Roots": [
        {"RootCert": open(cert).read(), "Key": open(key).read(), "ActivateAt": 0, "RetireAt": 0}]})
    con = sqlite3.connect(os.path.join(s.data_dir, "weft.db"))
    rev = con.execute("SELECT v FROM meta WHERE k = 'revision'").fetchone()[0]
    con.execute("UPDATE kv SET value = ?, mod_rev = ? WHERE key = CAST('ca/root' AS BLOB)", (clear, rev + 1))
    con.execute("INSERT INTO events (rev, type, key, value, create_rev) VALUES (?, 0, CAST('ca/root' AS BLOB), ?, 1)",
                (rev + 1, clear))
    con.execute("UPDATE meta SET v = ? WHERE k = 'revision'", (rev + 1,))
    con.commit()
    con.close()
    assert b"PRIVATE KEY" in db_bytes(s.data_dir)
    s.start()
    assert "the CA's keys were stored in the clear: now encrypted" in s.log()
    assert "the clear copies are gone from the store's history" in s.log()
    doc = ca_doc(s.data_dir)
    assert "KeyEnc" in doc["Roots"][0] and "Key" not in doc["Roots"][0]
    assert b"PRIVATE KEY" not in db_bytes(s.data_dir)
    # And it still signs with that root.
    roots = s.get_json("/v1/connect/ca/roots")[0]
    assert roots["Roots"][0]["RootCert"].strip() == open(cert).read().strip()


def test_a_retired_roots_key_leaves_the_store_and_its_history(server):
    s = server()
    old = ca_doc(s.data_dir)["Roots"][0]["KeyEnc"]
    r = s.ctl("ca", "rotate", "--propagate", "1s", "--overlap", "1s")
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: len(ca_doc(s.data_dir)["Roots"]) == 1 and
                    ca_doc(s.data_dir)["Roots"][0]["KeyEnc"] != old, timeout=15), ca_doc(s.data_dir)
    assert wait_for(lambda: "retired root(s) and their keys removed from the store and its history" in s.log(),
                    timeout=10), s.log()[-1500:]
    assert old.encode() not in db_bytes(s.data_dir)


def test_operator_roots_that_are_not_cas_are_refused(weft_bin, server, tmp_path):
    # A leaf certificate (CA:FALSE) given as the root: the server does not start.
    key, cert = tmp_path / "leaf.key", tmp_path / "leaf.pem"
    subprocess.run([require("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", "/CN=leaf",
                    "-addext", "basicConstraints=critical,CA:FALSE"], check=True, capture_output=True)
    r = subprocess.run([weft_bin, "server", "--data-dir", str(tmp_path / "d"), "--http", "127.0.0.1:0", "--grpc",
                        "127.0.0.1:0", "--ca-cert", str(cert), "--ca-key", str(key)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "--ca-cert: the root is not a CA certificate" in r.stderr, r.stderr
    # The same as a rotation's new root: 400, nothing changes.
    s = server()
    before = s.get_json("/v1/connect/ca/roots")[0]
    status, _, body = s.request("PUT", "/v1/connect/ca/rotate",
                                {"RootCert": cert.read_text(), "Key": key.read_text()})
    assert status == 400 and "not a CA certificate" in body, body
    assert s.get_json("/v1/connect/ca/roots")[0]["ActiveRootID"] == before["ActiveRootID"]
    # A root that expires within a day: refused too.
    short_key, short_cert = tmp_path / "short.key", tmp_path / "short.pem"
    subprocess.run([require("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(short_key), "-out", str(short_cert), "-days", "1", "-subj", "/CN=short",
                    "-addext", "basicConstraints=critical,CA:TRUE"], check=True, capture_output=True)
    status, _, body = s.request("PUT", "/v1/connect/ca/rotate",
                                {"RootCert": short_cert.read_text(), "Key": short_key.read_text()})
    assert status == 400 and "expires within a day" in body, body
