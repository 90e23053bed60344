"""Process lifecycle: --validate, reload (SIGHUP and POST /reload), SIGTERM drain."""
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request

from conftest import curl, simple_config


def test_validate_reports_field_and_exit_code(weft_bin, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("""listeners:
  - {name: a, address: 127.0.0.1:8080, routes: [{cluster: c}]}
  - {name: b, address: 127.0.0.1:99999, protocol: tcp, cluster: c}
clusters: [{name: c, endpoints: [127.0.0.1:1]}]
""")
    r = subprocess.run([weft_bin, "proxy", "--config", str(bad), "--validate"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == 'config error: listeners[1].address "127.0.0.1:99999": port out of range'
    examples = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "proxy.yaml")
    r = subprocess.run([weft_bin, "proxy", "--config", examples, "--validate"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([weft_bin, "proxy", "--config", str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert r.returncode == 2 and "cannot read" in r.stderr
    r = subprocess.run([weft_bin, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("weft ")
    r = subprocess.run([weft_bin, "bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and 'unknown command "bogus"' in r.stderr
    r = subprocess.run([weft_bin, "proxy", "--server", ",", "--service", "web"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2 and "--server needs at least one address" in r.stderr


def routes_config(a, b, first):
    return simple_config({"a": [a.addr], "b": [b.addr]}, listeners=f"""
  - name: public
    address: 127.0.0.1:{{port}}
    routes:
      - match: {{prefix: /}}
        cluster: {first}
""")


def test_reload_applies_new_config_without_dropping_connections(weft, backends):
    a, b = backends("a"), backends("b")
    w = weft(routes_config(a, b, "a").replace("{port}", "0"))
    port = w.ports["public"]
    s = socket.create_connection(("127.0.0.1", port), timeout=5)

    def ask():
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            data += s.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            if head:
                n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
                if len(body) >= n:
                    return json.loads(body[:n])["backend"]

    assert ask() == "a"
    assert w.stat("weft_cluster_upstream_cx_active", cluster="a") == 1  # pooled
    # Same listener address, new route target.
    with open(w.config, "w") as f:
        f.write(routes_config(a, b, "b").replace("{port}", str(port)))
    w.p.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    # The idle client connection still holds the previous snapshot; its
    # pooled upstream connection was closed all the same.
    assert w.stat("weft_cluster_upstream_cx_active", cluster="a") == 0
    assert ask() == "b", "the open keep-alive connection follows the new config"
    assert json.loads(curl(w.url(path="/echo")).stdout)["backend"] == "b"
    assert w.stat("weft_config_reloads_total", result="ok") == 1

    # An invalid config is refused; the old one keeps serving.
    with open(w.config, "w") as f:
        f.write("listeners: [{name: x, address: 127.0.0.1:99999}]\n")
    w.p.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert "reload refused" in w.log() and "port out of range" in w.log()
    assert ask() == "b"
    code, body = w.admin("/reload", method="POST")
    assert code == 400 and "port out of range" in body
    assert w.stat("weft_config_reloads_total", result="rejected") == 2
    assert w.p.poll() is None
    s.close()


def test_reload_adds_and_removes_listeners(weft, backends):
    a = backends("a")
    w = weft(simple_config({"a": [a.addr]}))
    import conftest
    new_port = conftest.free_port()
    cfg = simple_config({"a": [a.addr]}, listeners=f"""
  - name: second
    address: 127.0.0.1:{new_port}
    routes: [{{cluster: a}}]
""")
    with open(w.config, "w") as f:
        f.write(cfg)
    code, body = w.admin("/reload", method="POST")
    assert code == 200, body
    time.sleep(0.2)
    assert json.loads(curl(f"http://127.0.0.1:{new_port}/echo").stdout)["backend"] == "a"
    r = curl(w.url(path="/echo"), "--max-time", "2")
    assert r.returncode != 0, "the removed listener no longer accepts"


def test_sigterm_drains_in_flight_requests(weft, backends):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}, workers=2))
    results = []
    lock = threading.Lock()

    def client(i):
        # Each client holds a keep-alive connection and sends slow requests.
        s = socket.create_connection(("127.0.0.1", w.ports["public"]), timeout=10)
        s.sendall(b"GET /sleep/600 HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"slept" not in data:
            d = s.recv(4096)
            if not d:
                break
            data += d
        with lock:
            results.append(data)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    time.sleep(0.25)
    w.p.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(10)
    rc = w.p.wait(10)
    assert rc == 0
    assert len(results) == 20
    for r in results:
        assert r.startswith(b"HTTP/1.1 200") and b"connection: close" in r.lower(), r[:200]
    assert "draining" in w.log()


def test_sigterm_under_wrk_load_has_no_failed_requests(weft, backends):
    import shutil
    wrk = shutil.which("wrk")
    assert wrk, "wrk is required (scripts/deps.sh)"
    b = backends()
    w = weft(simple_config({"c": [b.addr]}, workers=2))
    p = subprocess.Popen([wrk, "-t1", "-c8", "-d3s", w.url(path="/echo")], stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)
    w.p.send_signal(signal.SIGTERM)
    assert w.p.wait(10) == 0
    out = p.communicate(timeout=20)[0]
    # Once the listeners close, wrk's new connections are refused (it counts
    # those as write errors: its connect is non-blocking). No response was cut
    # and none timed out or got a non-2xx answer. One exception is the
    # kernel's: a connection whose handshake completes in the instant between
    # the last accept of the backlog and the listener's close is reset before
    # any request on it was read, and wrk, reconnecting in a tight loop,
    # counts it as a read error. Each of wrk's 8 connections can fall in that
    # window once at most (its next connect is refused: a write error), and a
    # CI run saw 3 across the two worker listeners.
    assert "requests in" in out
    assert "Non-2xx" not in out
    for line in out.splitlines():
        if "Socket errors" in line:
            fields = dict(x.strip().split(" ") for x in line.split(":", 1)[1].split(","))
            assert int(fields["read"]) <= 8 and fields["timeout"] == "0", line


def test_drain_timeout_bounds_the_drain(weft, backends):
    b = backends()
    cfg = simple_config({"c": [b.addr]}).replace("workers: 2", "workers: 2\ndrain_timeout: 1s")
    w = weft(cfg)
    s = socket.create_connection(("127.0.0.1", w.ports["public"]), timeout=10)
    s.sendall(b"GET /sleep/8000 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)
    t = time.time()
    w.p.send_signal(signal.SIGTERM)
    assert w.p.wait(10) == 0
    took = time.time() - t
    assert 0.8 < took < 3, f"drain took {took:.1f}s with a 1s drain_timeout"
    assert "drain timeout: closing 1 connections" in w.log()
