#!/usr/bin/env python3
"""A real browser for weft's UI tests: the system's Chromium, headless,
driven over the DevTools protocol by node_ui/browser.js (puppeteer-core,
npm-installed on first use by node_ui/install.sh; no browser is ever
downloaded).

    with Browser() as b:
        b.goto(url)                      # ms the load took
        b.wait("#nodes tr")              # ms waited (timeout_ms=5000)
        assert b.eval("document.title") == "weft"
        b.type("#filter", "api"); b.click("#apply")
        b.set_local_storage("theme", "dark")
        b.screenshot("/tmp/ui.png")      # {"path", "bytes", "ms"}
        assert b.console() == []         # errors, warnings, uncaught
                                         # exceptions, failed requests and
                                         # HTTP >= 400 since the last call

Every call waits at most `timeout` seconds (the Browser's, 30 by default, or
the call's own) and raises AssertionError with the driver's error text when
the command fails or does not answer. What is missing to run it (node, npm,
the npm packages, Chromium) raises RuntimeError naming it and how to install
it (scripts/deps.sh): these tests fail, they never skip.

eval(js) runs `js` in the page's main frame as a REPL would: an expression or
statements (the value of the last), top-level `await` allowed, a Promise
result awaited; the value comes back through JSON (undefined: None; NaN,
Infinity, BigInt: their text).

The driver runs with the parent-death signal set to SIGKILL and talks to
Chromium over a pipe, so neither outlives the test run even when pytest is
killed. Its stderr (and Chromium's) is kept in a temporary file and shown in
the errors raised here (stderr_text() reads it). Environment: CHROMIUM, the
browser executable (default /usr/bin/chromium).
"""
import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time

from node_peer import ensure_npm_dir

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node_ui")
BROWSER_JS = os.path.join(NODE_DIR, "browser.js")
DEFAULT_CHROMIUM = "/usr/bin/chromium"

# Files whose presence means node_ui's dependencies are installed.
_INSTALLED_MARKERS = (
    "node_modules/puppeteer-core/package.json",
    "node_modules/puppeteer-core/lib/cjs/puppeteer/puppeteer-core.js",
)

# How much longer than a command's own limit to wait for the driver's answer
# (the driver reports its own timeout first).
_GRACE_S = 5.0

# Browsers started here and not closed yet.
_LIVE = set()


# --------------------------------------------------------------- install --

def chromium_path():
    """The Chromium executable the driver will run: $CHROMIUM, else
    /usr/bin/chromium. Raises RuntimeError when it is not there."""
    path = os.environ.get("CHROMIUM") or DEFAULT_CHROMIUM
    if os.sep not in path:
        path = shutil.which(path) or path
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeError(f"Chromium is required for the browser UI tests and {path} is not an executable "
                           "(Debian: chromium; run scripts/deps.sh, or set CHROMIUM)")
    return path


def ensure_node_ui():
    """Installs node_ui's npm dependencies (see node_peer.py) and checks for
    Chromium (Debian: chromium), raising RuntimeError naming what is
    missing."""
    chromium_path()
    ensure_npm_dir("node_ui", _INSTALLED_MARKERS, "the browser UI tests")


# ------------------------------------------------------------- processes --

def _die_with_parent():
    """preexec_fn: SIGKILL this child when the process that started it
    exits (prctl PR_SET_PDEATHSIG), so no driver is left behind."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
    except Exception:
        pass


def _proc_start(pid):
    """The start time of process pid (/proc/PID/stat), None when it is gone
    or a zombie: with pid, it names one process even if pids are reused."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def close_all():
    """Closes every Browser started here and still open."""
    for b in list(_LIVE):
        b.close()


atexit.register(close_all)


class Browser:
    """A headless Chromium with one 1400x900 page, driven by
    node_ui/browser.js. `version` is Chromium's ("Chrome/156.0..."),
    `launch_ms` how long the launch took (as the driver measured it),
    `last_goto` the last goto's {"ms", "status", "url"}."""

    def __init__(self, timeout=30.0, launch_timeout=60.0):
        ensure_node_ui()
        self.timeout = float(timeout)
        self.version = None
        self.launch_ms = None
        self.last_goto = None
        self._chromium = None  # (pid, start time) of Chromium's main process
        self._next_id = 0
        self._buf = b""
        self._closed = False
        self._profile = tempfile.mkdtemp(prefix="weft-ui-profile-")
        self._stderr = tempfile.TemporaryFile(prefix="weft-ui-driver-")
        env = {k: v for k, v in os.environ.items() if k != "NODE_OPTIONS"}
        env["CHROMIUM"] = chromium_path()
        env["UI_PROFILE_DIR"] = self._profile
        env["PUPPETEER_SKIP_DOWNLOAD"] = "1"
        env["PUPPETEER_SKIP_CHROMIUM_DOWNLOAD"] = "1"
        self.proc = subprocess.Popen(["node", BROWSER_JS], cwd=NODE_DIR, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr, env=env,
                                     preexec_fn=_die_with_parent)
        _LIVE.add(self)
        try:
            line = self._readline(time.monotonic() + launch_timeout, "launch")
            ready = self._parse(line)
            if not ready.get("ok") or ready.get("value") != "ready":
                raise AssertionError(f"browser driver failed to start: {ready.get('error', line)}"
                                     f"{self._stderr_suffix()}")
            self.version = ready.get("version")
            self.launch_ms = ready.get("ms")
            pid = ready.get("pid")
            if isinstance(pid, int) and pid > 0:
                self._chromium = (pid, _proc_start(pid))
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------- plumbing --

    def stderr_text(self):
        """What the driver (and Chromium) wrote to stderr so far."""
        try:
            self._stderr.seek(0)
            return self._stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def _stderr_suffix(self):
        text = self.stderr_text().strip()
        return f"\n--- driver stderr ---\n{text[-4000:]}" if text else ""

    def _readline(self, deadline, what):
        """One line of the driver's stdout, waiting until `deadline`."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"browser driver: no answer to {what} in time{self._stderr_suffix()}")
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                rc = self.proc.poll()
                if rc is None:
                    try:
                        rc = self.proc.wait(2)
                    except subprocess.TimeoutExpired:
                        rc = "still running"
                raise AssertionError(f"browser driver exited (status {rc}) during {what}{self._stderr_suffix()}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode("utf-8", "replace")

    @staticmethod
    def _parse(line):
        try:
            msg = json.loads(line)
        except ValueError as e:
            raise AssertionError(f"browser driver wrote a line that is not JSON ({e}): {line[:500]!r}")
        if not isinstance(msg, dict):
            raise AssertionError(f"browser driver wrote a line that is not an object: {line[:500]!r}")
        return msg

    def call(self, cmd, timeout=None, **fields):
        """Sends one command and returns its value; raises AssertionError
        with the driver's error text when it fails or does not answer within
        `timeout` seconds (self.timeout by default). fields go into the JSON
        command as they are; timeout_ms defaults to `timeout`."""
        if self._closed:
            raise AssertionError(f"browser: {cmd} after close()")
        t = self.timeout if timeout is None else float(timeout)
        self._next_id += 1
        msg = {"cmd": cmd, "id": self._next_id, **fields}
        msg.setdefault("timeout_ms", int(t * 1000))
        wait_s = max(t, msg["timeout_ms"] / 1000.0) + _GRACE_S
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise AssertionError(f"browser driver is gone ({e}; status {self.proc.poll()}){self._stderr_suffix()}")
        deadline = time.monotonic() + wait_s
        what = f"{cmd} {json.dumps({k: v for k, v in fields.items() if k != 'timeout_ms'})[:200]}"
        while True:
            reply = self._parse(self._readline(deadline, what))
            if reply.get("id") == msg["id"]:
                break
            # A late answer to an earlier command that timed out here: skip it.
        if not reply.get("ok"):
            raise AssertionError(f"browser: {what} failed: {reply.get('error', reply)}")
        return reply.get("value")

    # ---------------------------------------------------------- commands --

    def goto(self, url, wait_until="load", timeout=None):
        """Navigates to url and waits for wait_until (load,
        domcontentloaded, networkidle0, networkidle2); the ms it took. An
        HTTP error status is not a failure here: see last_goto["status"]
        and console()."""
        self.last_goto = self.call("goto", timeout, url=url, wait_until=wait_until)
        return self.last_goto["ms"]

    def wait(self, selector, timeout_ms=5000, visible=False):
        """Waits until selector matches (and is visible, with visible=True);
        the ms waited."""
        return self.call("wait", max(timeout_ms / 1000.0, 0.001), selector=selector,
                         timeout_ms=int(timeout_ms), visible=bool(visible))

    def eval(self, js, timeout=None):
        """The value of js in the page (see the module's docstring)."""
        return self.call("eval", timeout, js=js)

    def screenshot(self, path, full_page=True, timeout=None):
        """Saves a PNG of the page at path; {"path", "bytes", "ms"}."""
        return self.call("screenshot", timeout, path=os.path.abspath(path), full_page=bool(full_page))

    def type(self, selector, text, clear=False, timeout=None):
        """Types text into the element selector matches (waiting for it),
        after emptying it with clear=True."""
        self.call("type", timeout, selector=selector, text=text, clear=bool(clear))

    def click(self, selector, timeout=None):
        """Clicks the element selector matches (waiting for it)."""
        self.call("click", timeout, selector=selector)

    def console(self):
        """[{"type", "text", "url"}, ...]: the console errors and warnings,
        uncaught exceptions ("pageerror"), failed requests
        ("requestfailed") and HTTP responses >= 400 ("response") since the
        launch or the last console(), which this clears."""
        return self.call("console")

    def set_local_storage(self, key, value, timeout=None):
        """localStorage[key] = value in the current page's origin (a value
        that is not a str is stored as its JSON)."""
        self.call("set_local_storage", timeout, key=key, value=value)

    def close(self):
        """Closes Chromium and ends the driver (quit, then SIGTERM, then
        SIGKILL); removes its profile. Idempotent."""
        if self._closed:
            return
        self._closed = True
        _LIVE.discard(self)
        proc = self.proc if hasattr(self, "proc") else None
        if proc is not None:
            if proc.poll() is None:
                try:
                    proc.stdin.write(b'{"cmd":"quit"}\n')
                    proc.stdin.flush()
                except (BrokenPipeError, OSError):
                    pass
            try:
                proc.stdin.close()
            except OSError:
                pass
            for sig, grace in ((None, 15), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                if sig is not None and proc.poll() is None:
                    proc.send_signal(sig)
                try:
                    proc.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            try:
                proc.stdout.close()
            except OSError:
                pass
        self._end_chromium()
        shutil.rmtree(self._profile, ignore_errors=True)

    def _end_chromium(self):
        """Waits for Chromium to exit (it does when the driver's pipe to it
        closes, however the driver ended), killing its process group when it
        lingers, so that nothing writes into the profile once it is removed."""
        if not self._chromium or self._chromium[1] is None:
            return
        pid, start = self._chromium
        for grace, sig in ((5.0, signal.SIGKILL), (2.0, None)):
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if _proc_start(pid) != start:
                    return
                time.sleep(0.05)
            if sig is not None:
                try:
                    os.killpg(pid, sig)  # puppeteer starts Chromium as a process group's leader
                except OSError:
                    try:
                        os.kill(pid, sig)
                    except OSError:
                        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
