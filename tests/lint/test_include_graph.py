"""The include-graph check passes on the tree and fails on includes that run
against the module graph (scripts/include_graph.py)."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "scripts", "include_graph.py")


def run(root):
    return subprocess.run([sys.executable, SCRIPT, root], capture_output=True, text=True)


def test_the_tree_follows_the_graph():
    r = run(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "include graph: ok" in r.stdout


@pytest.fixture
def tree(tmp_path):
    """A copy of src/ and tests/unit/ to plant forbidden includes in."""
    shutil.copytree(os.path.join(ROOT, "src"), tmp_path / "src")
    shutil.copytree(os.path.join(ROOT, "tests", "unit"), tmp_path / "tests" / "unit")
    return tmp_path


def plant(tree, rel, line):
    path = tree / rel
    path.write_text(line + "\n" + path.read_text())


@pytest.mark.parametrize("rel,include,says", [
    ("src/proxy/router.cc", '#include "control/api.h"', "proxy may not include control/api.h"),
    ("src/http/server.cc", '#include "proxy/config.h"', "http may not include proxy/config.h"),
    ("src/proxy/config.h", "#include <grpcpp/channel.h>", "(module proto)"),
    ("src/proxy/worker.h", '#include "weft/v1/config.pb.h"', "(module proto)"),
    ("src/mesh/catalog.cc", '#include "agent/dns.h"', "mesh may not include agent/dns.h"),
    ("src/base/strings.cc", '#include "io/stream.h"', "base may not include io/stream.h"),
    ("src/control/api.cc", '#include "agent/local.h"', "control may not include agent/local.h"),
    ("tests/unit/proxy/router_test.cc", '#include "xds/stream_client.h"',
     "proxy may not include xds/stream_client.h"),
])
def test_a_forbidden_include_fails(tree, rel, include, says):
    plant(tree, rel, include)
    r = run(str(tree))
    assert r.returncode == 1, r.stdout
    assert says in r.stdout, r.stdout
    assert rel + ":1:" in r.stdout, r.stdout


def test_a_module_outside_the_graph_fails(tree):
    (tree / "src" / "newthing").mkdir()
    (tree / "src" / "newthing" / "x.cc").write_text('#include "base/log.h"\n')
    r = run(str(tree))
    assert r.returncode == 1
    assert "module 'newthing' is not in the module graph" in r.stdout
