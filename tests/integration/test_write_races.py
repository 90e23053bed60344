"""Writes to one node document racing each other: every acknowledged
registration survives (node documents are compare-and-swap, deletion
included)."""
import threading


def test_acknowledged_registrations_survive_a_racing_deregistration(server):
    s = server()
    lost = []
    for i in range(60):
        node = f"race-{i}"
        s.register(node, "old", 1000, sid="old")
        results = {}

        def dereg():
            results["dereg"] = s.request("PUT", "/v1/catalog/deregister", {"Node": node, "ServiceID": "old"})[0]

        def reg():
            body = {"Node": node, "Address": "127.0.0.1", "Service": {"Service": "new", "ID": "new", "Port": 1001}}
            results["reg"] = s.request("PUT", "/v1/catalog/register", body)[0]

        ts = [threading.Thread(target=dereg), threading.Thread(target=reg)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert results["dereg"] in (200, 404), results
        if results["reg"] == 200:
            status, _, body = s.request("GET", f"/v1/catalog/node/{node}")
            if status != 200 or '"new"' not in body:
                lost.append((node, status, body[:200]))
    assert not lost, f"acknowledged registrations lost: {lost}"
    # The write path counts the retries the races caused (at least possibly).
    assert s.metric("weft_server_writes_total") >= 120
