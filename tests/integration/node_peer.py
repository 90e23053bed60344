"""The npm-installed test peers (node_otel/, node_ui/): each directory's
install.sh installs its locked packages, and does nothing when they are
there. One check for all of them, failing loudly with what is missing."""
import os
import shutil
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def ensure_npm_dir(name, markers, purpose):
    """Runs NAME/install.sh unless every path of `markers` (relative to
    NAME/) exists. Raises RuntimeError naming what is missing: node or npm
    (Debian: nodejs, npm; scripts/deps.sh), or the install's output when npm
    failed. `purpose` says what the packages are for, in that error."""
    node_dir = os.path.join(HERE, name)
    missing = [t for t in ("node", "npm") if not shutil.which(t)]
    if "node" in missing:
        raise RuntimeError(f"node is required for {purpose} (Debian: nodejs; run scripts/deps.sh)")
    if all(os.path.exists(os.path.join(node_dir, m)) for m in markers):
        return
    if missing:
        raise RuntimeError(f"{name}'s npm packages are not installed and npm is missing "
                           f"(Debian: npm; run scripts/deps.sh, then {name}/install.sh)")
    r = subprocess.run(["bash", os.path.join(node_dir, "install.sh")], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{name}/install.sh failed (exit {r.returncode}): {r.stdout}{r.stderr}")
    absent = [m for m in markers if not os.path.exists(os.path.join(node_dir, m))]
    if absent:
        raise RuntimeError(f"{name}/install.sh ran but these are missing: {', '.join(absent)}")
