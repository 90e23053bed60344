"""weft server on a real 3-member etcd cluster (Debian's etcd-server) on
loopback: replicas share state, watches cross replicas, acknowledged writes
survive an etcd member and a server being killed, and one replica at a time
holds the singleton duties."""
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import free_port, require


class EtcdCluster:
    def __init__(self, base_dir, size=3):
        self.etcd = require("etcd")
        self.members = []
        for i in range(size):
            self.members.append({"name": f"m{i}", "client": free_port(), "peer": free_port(),
                                 "dir": os.path.join(base_dir, f"etcd-m{i}"), "proc": None})
        self.initial = ",".join(f"{m['name']}=http://127.0.0.1:{m['peer']}" for m in self.members)
        for m in self.members:
            self.start(m)
        deadline = time.time() + 30
        while time.time() < deadline:
            if all(self.healthy(m) for m in self.members):
                return
            time.sleep(0.2)
        raise RuntimeError("etcd cluster did not become healthy")

    def start(self, m):
        log = open(m["dir"] + ".log", "a")
        m["proc"] = subprocess.Popen(
            [self.etcd, "--name", m["name"], "--data-dir", m["dir"],
             "--listen-client-urls", f"http://127.0.0.1:{m['client']}",
             "--advertise-client-urls", f"http://127.0.0.1:{m['client']}",
             "--listen-peer-urls", f"http://127.0.0.1:{m['peer']}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{m['peer']}",
             "--initial-cluster", self.initial, "--initial-cluster-state", "new",
             "--initial-cluster-token", "weft-test"],
            stdout=log, stderr=log)

    def healthy(self, m):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{m['client']}/health", timeout=1) as r:
                return json.loads(r.read()).get("health") == "true"
        except Exception:  # noqa: BLE001
            return False

    def url(self, order):
        return "etcd://" + ",".join(f"127.0.0.1:{self.members[i]['client']}" for i in order)

    def kill(self, i):
        self.members[i]["proc"].send_signal(signal.SIGKILL)
        self.members[i]["proc"].wait()

    def stop(self):
        for m in self.members:
            if m["proc"] and m["proc"].poll() is None:
                m["proc"].kill()
                m["proc"].wait()


@pytest.fixture
def etcd(tmp_path):
    c = EtcdCluster(str(tmp_path))
    yield c
    c.stop()


def services(s):
    inst, _ = s.get_json("/v1/catalog/service/svc")
    return sorted(i["ServiceID"] for i in inst)


def test_replicas_share_state_and_watches(etcd, server):
    a = server("a", store=etcd.url([0, 1, 2]))
    b = server("b", store=etcd.url([1, 2, 0]))
    a.register("n1", "svc", 1, "svc-1")
    # Written through a, read through b (after b's watch delivers it).
    deadline = time.time() + 5
    while time.time() < deadline and services(b) != ["svc-1"]:
        time.sleep(0.02)
    assert services(b) == ["svc-1"]
    # A blocking query on b wakes on a write through a.
    _, index = b.get_json("/v1/health/service/svc")
    got = {}
    th = threading.Thread(target=lambda: got.update(r=b.get_json(f"/v1/health/service/svc?index={index}&wait=30s")))
    th.start()
    time.sleep(0.3)
    assert th.is_alive()
    t0 = time.time()
    a.register("n2", "svc", 2, "svc-2")
    th.join(5)
    assert not th.is_alive() and len(got["r"][0]) == 2
    assert time.time() - t0 < 2
    # Config entries too.
    assert a.ctl("apply", "-f", "-", input="kind: Service\nmetadata: {name: svc}\nspec: {ports: [{port: 1, protocol: tcp}]}\n").returncode == 0
    r = b.ctl("get", "service", "svc", "-o", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["spec"]["ports"][0]["protocol"] == "tcp"
    # Both replicas are members; exactly one holds the singleton duties.
    members = a.ctl("members").stdout
    assert sorted(l.split()[0] for l in members.splitlines()[1:]) == ["a", "b"], members
    leaders = a.metric("weft_server_leader") + b.metric("weft_server_leader")
    assert leaders == 1, members


def test_acknowledged_writes_survive_member_and_server_kills(etcd, server):
    a = server("a", store=etcd.url([0, 1, 2]))
    b = server("b", store=etcd.url([1, 2, 0]))
    acked, lock, stop = [], threading.Lock(), threading.Event()
    failed = [0]

    def writer(k):
        i = 0
        while not stop.is_set():
            target = a if (i + k) % 2 == 0 else b
            sid = f"w{k}-{i}"
            i += 1
            try:
                status, _, _ = target.request(
                    "PUT", "/v1/catalog/register",
                    {"Node": f"node-{k}", "Address": "10.0.0.1", "Service": {"Service": "svc", "ID": sid, "Port": 1}},
                    timeout=10)
            except Exception:  # noqa: BLE001
                status = 0
            if status == 200:
                with lock:
                    acked.append(sid)
            else:
                failed[0] += 1

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    etcd.kill(0)          # a's first endpoint, mid-writes
    time.sleep(1.0)
    b.stop(signal.SIGKILL)  # a server replica, mid-writes
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(15)
    assert len(acked) > 50, (len(acked), failed[0])
    # Every acknowledged write is there, read through the surviving replica.
    have = set(services(a))
    missing = [s for s in acked if s not in have]
    assert not missing, f"{len(missing)} acknowledged writes lost: {missing[:5]}"
    # The killed replica rebuilds its view from etcd and converges.
    b.start()
    deadline = time.time() + 10
    while time.time() < deadline and services(b) != services(a):
        time.sleep(0.1)
    assert services(b) == services(a)
    # Writes keep flowing with one etcd member down.
    b.register("node-x", "svc", 9, "after")
    deadline = time.time() + 5
    while time.time() < deadline and "after" not in services(a):
        time.sleep(0.05)
    assert "after" in services(a)


def test_singleton_duty_moves_when_its_holder_dies(etcd, server):
    a = server("a", store=etcd.url([0, 1, 2]))
    time.sleep(0.5)
    b = server("b", store=etcd.url([1, 2, 0]))
    deadline = time.time() + 5
    while time.time() < deadline and a.metric("weft_server_leader") != 1:
        time.sleep(0.1)
    assert a.metric("weft_server_leader") == 1 and b.metric("weft_server_leader") == 0
    a.stop(signal.SIGKILL)
    # The lease (10 s) expires, then b's next campaign (every 2 s) wins.
    deadline = time.time() + 20
    while time.time() < deadline and b.metric("weft_server_leader") != 1:
        time.sleep(0.2)
    assert b.metric("weft_server_leader") == 1
    # And a's member record went with its lease.
    r = b.ctl("members")
    names = [l.split()[0] for l in r.stdout.splitlines()[1:]]
    assert names == ["b"], r.stdout
