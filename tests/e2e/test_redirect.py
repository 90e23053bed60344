"""`weft redirect` in a namespace of its own: the rules it installs, and
`--undo` leaving the nat table exactly as it found it."""
import subprocess

import pytest

from conftest import need, run


@pytest.fixture
def netns():
    need("iptables")
    name = f"wftr{__import__('os').getpid() % 100000}"
    run("ip", "netns", "add", name)
    try:
        yield name
    finally:
        run("ip", "netns", "del", name, check=False)


def nat(ns):
    return run("ip", "netns", "exec", ns, "iptables", "-t", "nat", "-S").stdout


def test_redirect_installs_its_chains_and_undo_removes_exactly_them(weft_bin, netns):
    ex = lambda *a, **kw: run("ip", "netns", "exec", netns, weft_bin, "redirect", *a, check=False, **kw)  # noqa: E731
    # Someone else's rule in the same table must survive our undo.
    run("ip", "netns", "exec", netns, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "9",
        "-j", "RETURN")
    before = nat(netns)
    r = ex("--id", "app", "--outbound-port", "15001", "--proxy-mark", "0x539", "--proxy-uid", "1337",
           "--exclude-outbound-ports", "22,8502", "--exclude-outbound-cidrs", "10.9.0.0/16",
           "--inbound-port", "21000", "--exclude-inbound-ports", "22")
    assert r.returncode == 0, r.stderr
    assert "undo: weft redirect --undo --id app" in r.stdout
    rules = nat(netns)
    for want in ("-A OUTPUT -p tcp -j WEFT-OUT-app",
                 "-A PREROUTING -p tcp -j WEFT-IN-app",
                 "-A WEFT-OUT-app -m mark --mark 0x539 -j RETURN",
                 "-A WEFT-OUT-app -m owner --uid-owner 1337 -j RETURN",
                 "-A WEFT-OUT-app -d 127.0.0.0/8 -j RETURN",
                 "-A WEFT-OUT-app -p tcp -m tcp --dport 8502 -j RETURN",
                 "-A WEFT-OUT-app -d 10.9.0.0/16 -j RETURN",
                 "-A WEFT-OUT-app -p tcp -j REDIRECT --to-ports 15001",
                 "-A WEFT-IN-app -p tcp -m tcp --dport 22 -j RETURN",
                 "-A WEFT-IN-app -p tcp -m tcp --dport 21000 -j RETURN",
                 "-A WEFT-IN-app -p tcp -j REDIRECT --to-ports 21000"):
        assert want in rules, (want, rules)
    # The mark is checked before anything is redirected.
    out = [line for line in rules.splitlines() if line.startswith("-A WEFT-OUT-app")]
    assert "--mark" in out[0] and "REDIRECT" in out[-1]

    # Twice under one id: refused, nothing changed.
    r = ex("--id", "app")
    assert r.returncode == 1 and "already exists" in r.stderr and "--undo --id app" in r.stderr
    assert nat(netns) == rules

    r = ex("--undo", "--id", "app")
    assert r.returncode == 0 and "removed chains WEFT-OUT-app and WEFT-IN-app" in r.stdout
    assert nat(netns) == before
    r = ex("--undo", "--id", "app")
    assert r.returncode == 0 and "nothing to remove" in r.stdout


def test_redirect_refuses_bad_flags(weft_bin, netns):
    for args, msg in ((["--outbound-port", "70000"], "one port"),
                      (["--inbound-ports", "80"], "needs --inbound-port"),
                      (["--proxy-uid", "root"], "numeric uid"),
                      (["--exclude-outbound-cidrs", "not-a-cidr"], "CIDR"),
                      (["--id", "x" * 17], "--id"),
                      (["--outbound-port", "0"], "nothing to do")):
        r = run("ip", "netns", "exec", netns, weft_bin, "redirect", *args, check=False)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr)
    assert "WEFT" not in nat(netns)


def test_a_rule_iptables_refuses_rolls_everything_back(weft_bin, netns):
    before = nat(netns)
    # Passes weft's own check (digits, dots, a slash), not iptables': the
    # outbound chain is half built when it fails.
    r = run("ip", "netns", "exec", netns, weft_bin, "redirect", "--id", "rb", "--inbound-port", "21000",
            "--exclude-outbound-cidrs", "10.0.0.0/8,300.1.1.1/8", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "300.1.1.1/8" in r.stderr and "rolled back; nothing was left installed" in r.stderr, r.stderr
    assert nat(netns) == before
