"""The cluster is removed also when a test using it fails."""
import os
import subprocess
import sys

from conftest import run

FAILING = '''
def test_fails_inside_the_cluster(cluster):
    assert cluster.exec(1, "true").returncode == 0
    assert False, "on purpose"
'''


def test_a_failing_test_leaves_no_namespaces_behind(weft_bin, tmp_path):
    before = run("ip", "netns", "list").stdout
    etc_before = set(os.listdir("/etc/netns")) if os.path.isdir("/etc/netns") else set()
    here = os.path.dirname(os.path.abspath(__file__))
    test = tmp_path / "test_inner.py"
    test.write_text(FAILING)
    (tmp_path / "conftest.py").write_text(
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('weft_e2e_conftest', {os.path.join(here, 'conftest.py')!r})\n"
        "m = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(m)\n"
        "pytest_addoption, weft_bin, cluster = m.pytest_addoption, m.weft_bin, m.cluster\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test),
                        f"--weft={weft_bin}", "--rootdir", str(tmp_path)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 1 and "on purpose" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
    assert run("ip", "netns", "list").stdout == before
    etc_after = set(os.listdir("/etc/netns")) if os.path.isdir("/etc/netns") else set()
    assert etc_after == etc_before
