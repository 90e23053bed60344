"""Live requests ("tap") at a sidecar's admin endpoint, GET /tap: what a
session sees, what it never sees (query strings, header values), and its
bounds (events per second, sessions, buffered events, idle sessions), and
what it costs the data path with a tap open and after."""
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

from conftest import simple_config, start_nginx, stop_nginx
from test_mtls import get

ROUTES = """  - name: public
    address: 127.0.0.1:0
    routes:
      - name: api
        match: {prefix: /api}
        cluster: b
      - name: rest
        match: {prefix: /}
        cluster: b
"""


def poll(w, sid, **q):
    args = "&".join(f"{k}={v}" for k, v in q.items())
    status, body = w.admin(f"/tap?id={sid}" + (f"&{args}" if args else ""))
    return status, json.loads(body)


def test_a_tap_shows_requests_without_their_query_or_headers(weft, backends):
    b = backends()
    w = weft(simple_config({"b": [b.addr]}, listeners=ROUTES))
    status, ans = poll(w, "s1")
    assert status == 200 and ans["events"] == [] and ans["dropped"] == 0 and ans["rate"] == 100, ans
    get(w.ports["public"], "/api/users?token=SECRET123", headers={"authorization": "Bearer SECRET456"})
    get(w.ports["public"], "/other")
    get(w.ports["public"], "/api/x", method="POST")
    status, ans = poll(w, "s1", wait_ms=2000)
    assert status == 200, ans
    # (A poll answers at its first event: the rest may come in the next.)
    events = ans["events"]
    if len(events) < 3:
        events += poll(w, "s1", wait_ms=2000)[1]["events"]
    assert [e["path"] for e in events] == ["/api/users", "/other", "/api/x"], events
    first = events[0]
    assert first["method"] == "GET" and first["status"] == 200 and first["route"] == "api", first
    assert first["listener"] == "public" and first["destination"] == "b" and first["upstream"] == b.addr, first
    assert first["direction"] == "outbound" and first["duration_ms"] > 0 and first["trace_id"] == "", first
    text = json.dumps(events)
    assert "SECRET" not in text, text
    # A filter sees only what it names; each session its own.
    poll(w, "api", route="api")
    poll(w, "post", method="POST")
    poll(w, "pre", path="/oth")
    for path, method in (("/api/a", "GET"), ("/api/b", "POST"), ("/other/c", "GET")):
        get(w.ports["public"], path, method=method)
    time.sleep(0.3)
    assert [e["path"] for e in poll(w, "api", route="api")[1]["events"]] == ["/api/a", "/api/b"]
    assert [e["path"] for e in poll(w, "post", method="POST")[1]["events"]] == ["/api/b"]
    assert [e["path"] for e in poll(w, "pre", path="/oth")[1]["events"]] == ["/other/c"]
    assert [e["path"] for e in poll(w, "s1")[1]["events"]] == ["/api/a", "/api/b", "/other/c"]
    # Counted: four sessions open, each delivered event once per session.
    assert tap_metric(w, "weft_tap_sessions") == 4
    assert tap_metric(w, "weft_tap_events_total", result="delivered") == 3 + 2 + 1 + 1 + 3


def test_bad_polls_are_refused_with_a_reason(weft, backends):
    b = backends()
    w = weft(simple_config({"b": [b.addr]}))
    for q, why in (("", "id:"), ("?id=" + "x" * 65, "id:"), ("?id=a/b", "id:"),
                   ("?id=ok&wait_ms=soon", "wait_ms"), ("?id=ok&method=" + "M" * 40, "too long")):
        status, body = w.admin("/tap" + q)
        assert status == 400 and why in json.loads(body)["error"], (q, status, body)
    # At most 16 sessions at once; the 17th is refused until one closes.
    for i in range(16):
        assert poll(w, f"s{i}")[0] == 200
    status, ans = poll(w, "one-more")
    assert status == 429 and "at most 16" in ans["error"], ans
    assert poll(w, "s3")[0] == 200  # an open session goes on


def test_a_sidecar_spends_no_more_than_its_tap_rate(weft, backends):
    b = backends()
    w = weft(simple_config({"b": [b.addr]}), extra=["--tap-rate", "20"])
    poll(w, "t")
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 2.0:
        get(w.ports["public"], "/x")
        n += 1
    secs = time.monotonic() - t0
    ans = poll(w, "t")[1]
    # At most 20 events in any second (the count starts anew each second).
    assert n > 100, n
    assert 20 <= len(ans["events"]) <= 20 * (int(secs) + 2), (len(ans["events"]), secs)
    assert ans["over_budget"] >= n - len(ans["events"]) - 5, ans["over_budget"]
    assert ans["rate"] == 20


def test_a_session_buffers_a_bounded_number_of_events(weft, backends, tmp_path):
    b = backends()
    w = weft(simple_config({"b": [b.addr]}), extra=["--tap-rate", "100000"])
    poll(w, "slow")
    for _ in range(1100):
        get(w.ports["public"], "/x")
    ans = poll(w, "slow")[1]
    assert len(ans["events"]) == 1000 and ans["dropped"] == 100, (len(ans["events"]), ans["dropped"])
    assert tap_metric(w, "weft_tap_events_total", result="dropped") == 100


def test_tap_off(weft, backends):
    b = backends()
    w = weft(simple_config({"b": [b.addr]}), extra=["--tap-rate", "0"])
    status, body = w.admin("/tap?id=x")
    assert status == 403 and "tap is off" in body, body


def tap_metric(w, name, **labels):
    """A sample of the sidecar's /stats (labels exactly as given; 0 when absent)."""
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in w.admin("/stats")[1].splitlines():
        if line.rsplit(" ", 1)[0] == want:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def proxy_cpu_ms(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
def test_cpu_per_request_with_a_tap_open_and_after_it_closes(weft, tmp_path):
    """What bench/tap.py measures precisely, held here to a loose bound:
    CPU per request through the sidecar with no tap, with a tap of
    everything open (its default budget spent every second), and once the
    session has closed (idle for 10 s) — where the data path reads one
    flag again."""
    wrk = shutil.which("wrk")
    assert wrk, "wrk is required (scripts/deps.sh)"
    ng, port = start_nginx(tmp_path, "ok")
    try:
        w = weft(simple_config({"b": [f"127.0.0.1:{port}"]}, workers=1))

        def phase():
            before = proxy_cpu_ms(w.p.pid)
            r = subprocess.run([wrk, "-t1", "-c16", "-d4s", w.url(path="/x")], capture_output=True, text=True)
            after = proxy_cpu_ms(w.p.pid)
            n = int(r.stdout.split(" requests in ")[0].split()[-1])
            return (after - before) * 1000.0 / n, n

        got = []

        def tapped_phase():
            stop = threading.Event()

            def tapping():
                while not stop.is_set():
                    got.extend(poll(w, "bench")[1]["events"])
                    time.sleep(0.25)

            t = threading.Thread(target=tapping)
            t.start()
            try:
                return phase()
            finally:
                stop.set()
                t.join()
                time.sleep(12)  # the session closes after 10 s without a poll

        # Twice each way, the lowest of each kept: a burst of other work on
        # this shared machine moves a phase by a fifth either way at times
        # (with no tap at all). Past the bounds, up to two more rounds.
        offs, ons, afters = [phase()[0], phase()[0]], [tapped_phase()[0], tapped_phase()[0]], []
        assert tap_metric(w, "weft_tap_sessions") == 0  # closed: nothing asked of the data path
        afters += [phase()[0], phase()[0]]
        for _ in range(2):
            if min(ons) <= min(offs) * 1.25 and min(afters) <= min(offs) * 1.25:
                break
            offs.append(phase()[0])
            ons.append(tapped_phase()[0])
            afters.append(phase()[0])
        off, on, after = min(offs), min(ons), min(afters)
        print(f"CPU µs/request: no tap {offs}, tap open {ons}, closed {afters}")
        assert len(got) >= 600, len(got)  # the budget (100/s) was spent
        assert tap_metric(w, "weft_tap_events_total", result="over_budget") > 10000
        # bench/RESULTS-tap.md: 1.013x open, 1.001x closed (paired per
        # round); bounds loose enough for a shared machine.
        assert on <= off * 1.25, (off, on)
        assert after <= off * 1.25, (off, after)
    finally:
        stop_nginx(ng)
