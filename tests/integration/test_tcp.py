"""Opaque TCP proxying: checksummed transfers, half-close, idle timeout, redis."""
import hashlib
import os
import socket
import subprocess
import threading
import time

from conftest import read_to_eof, require, free_port, wait_port


def tcp_config(port, idle="60s", endpoints=None):
    eps = endpoints or [f"127.0.0.1:{port}"]
    return f"""admin: {{address: 127.0.0.1:0}}
workers: 2
listeners:
  - name: db
    address: 127.0.0.1:0
    protocol: tcp
    cluster: up
    timeouts: {{idle: {idle}}}
clusters:
  - name: up
    connect_timeout: 500ms
    endpoints: [{", ".join(eps)}]
"""


class HashServer:
    """Reads until the client half-closes, then answers with the sha256 and
    length of what it got, followed by `reply_bytes` of deterministic data."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        h = hashlib.sha256()
        n = 0
        while True:
            d = c.recv(1 << 16)
            if not d:
                break
            h.update(d)
            n += len(d)
        c.sendall(f"{n} {h.hexdigest()}\n".encode())
        c.close()


def test_100mb_transfer_with_half_close_is_intact(weft):
    srv = HashServer()
    w = weft(tcp_config(srv.port))
    s = socket.create_connection(("127.0.0.1", w.ports["db"]))
    h = hashlib.sha256()
    total = 100 * 1024 * 1024
    block = os.urandom(1 << 20)
    for _ in range(total // len(block)):
        s.sendall(block)
        h.update(block)
    s.shutdown(socket.SHUT_WR)  # half-close: the server must still be able to answer
    reply = read_to_eof(s)
    n, digest = reply.decode().split()
    assert int(n) == total and digest == h.hexdigest()
    time.sleep(0.2)
    assert w.stat("weft_listener_downstream_bytes_received_total", listener="db") == total
    assert w.stat("weft_cluster_upstream_bytes_sent_total", cluster="up") == total
    assert w.stat("weft_listener_downstream_bytes_sent_total", listener="db") == len(reply)


def test_idle_timeout_closes_tcp_connection(weft):
    srv = HashServer()
    w = weft(tcp_config(srv.port, idle="500ms"))
    s = socket.create_connection(("127.0.0.1", w.ports["db"]), timeout=5)
    s.sendall(b"hello")
    t = time.time()
    try:
        got = s.recv(100)
    except ConnectionResetError:
        got = b""
    took = time.time() - t
    assert got == b"", "the server never answers: only the idle timeout can end this"
    assert 0.3 < took < 2.5, took


def test_connect_failure_tries_another_endpoint(weft):
    srv = HashServer()
    dead = free_port()
    w = weft(tcp_config(0, endpoints=[f"127.0.0.1:{dead}", f"127.0.0.1:{srv.port}"]))
    for _ in range(6):
        s = socket.create_connection(("127.0.0.1", w.ports["db"]), timeout=5)
        s.sendall(b"abc")
        s.shutdown(socket.SHUT_WR)
        assert s.recv(100).startswith(b"3 ")
        s.close()
    assert w.stat("weft_cluster_upstream_cx_connect_fail_total", cluster="up") >= 1


def test_redis_benchmark_through_tcp_listener(weft, tmp_path):
    redis = require("redis-server")
    bench = require("redis-benchmark")
    port = free_port()
    p = subprocess.Popen([redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", str(tmp_path)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        w = weft(tcp_config(port))
        r = subprocess.run([bench, "-h", "127.0.0.1", "-p", str(w.ports["db"]), "-n", "20000", "-c", "20",
                            "-t", "set,get,lpush", "-q"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.count("requests per second") == 3, r.stdout
        cli = require("redis-cli")
        out = subprocess.run([cli, "-p", str(w.ports["db"]), "dbsize"], capture_output=True, text=True)
        assert int(out.stdout.strip()) >= 2
    finally:
        p.kill()
        p.wait()
