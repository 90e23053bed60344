"""Large bodies stream through with bounded memory (slow: run with -m slow)."""
import subprocess
import threading
import time

import pytest

from conftest import require, simple_config

GIB = 1 << 30
RSS_LIMIT_KB = 64 * 1024


class RssSampler:
    def __init__(self, w):
        self.w = w
        self.peak = 0
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, self.w.rss_kb())
            time.sleep(0.05)

    def done(self):
        self.stop = True
        self.t.join()
        return self.peak


@pytest.mark.slow
def test_1gib_download_streams_with_bounded_rss(weft, backends):
    require("curl")
    b = backends()
    w = weft(simple_config({"c": [b.addr]}))
    sampler = RssSampler(w)
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{http_code}",
                        w.url(path=f"/bytes/{GIB}")], capture_output=True, text=True, timeout=600)
    peak = sampler.done()
    assert r.stdout == f"{GIB} 200", r.stderr
    assert peak < RSS_LIMIT_KB, f"proxy RSS peaked at {peak} kB"
    print(f"1 GiB download: proxy peak RSS {peak} kB")


@pytest.mark.slow
def test_1gib_chunked_upload_streams_with_bounded_rss(weft, backends):
    require("curl")
    b = backends()
    w = weft(simple_config({"c": [b.addr]}))
    sampler = RssSampler(w)
    # curl -T - sends a chunked body from a pipe: 1 GiB of zeros.
    cmd = f"head -c {GIB} /dev/zero | curl -sS -T - -H 'Content-Type: application/octet-stream' {w.url(path='/sink')}"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=900)
    peak = sampler.done()
    assert r.returncode == 0, r.stderr
    import json
    out = json.loads(r.stdout)
    assert out["length"] == GIB
    # sha256 of 1 GiB of zero bytes
    assert out["sha256"] == "49bc20df15e412a64472421e13fe86ff1c5165e18b2afccf160d4dc19fe68a14"
    assert peak < RSS_LIMIT_KB, f"proxy RSS peaked at {peak} kB"
    print(f"1 GiB upload: proxy peak RSS {peak} kB")


@pytest.mark.slow
def test_1gib_content_length_upload(weft, backends, tmp_path):
    b = backends()
    w = weft(simple_config({"c": [b.addr]}))
    sampler = RssSampler(w)
    # A Content-Length upload from a sparse file (no disk use).
    f = tmp_path / "sparse"
    with open(f, "wb") as fh:
        fh.truncate(GIB)
    r = subprocess.run(["curl", "-sS", "-T", str(f), "-X", "POST", "-H", "Expect:", w.url(path="/sink")],
                       capture_output=True, text=True, timeout=900)
    peak = sampler.done()
    assert '"length": %d' % GIB in r.stdout, r.stdout + r.stderr
    assert peak < RSS_LIMIT_KB, f"proxy RSS peaked at {peak} kB"
