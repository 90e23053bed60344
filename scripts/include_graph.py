#!/usr/bin/env python3
"""The module graph of docs/architecture.md, enforced on includes.

Each directory under src/ is a module (one CMake library). A file may include
headers of its own module and of the modules listed for it below, nothing
else; unit tests under tests/unit/MODULE/ follow their module's rule. The
generated control-plane protocol (weft/v1/..., grpc/health/...) and gRPC's
and protobuf's own headers count as the module `proto`.

Usage: include_graph.py [ROOT]   exit 0: clean; 1: violations (one per line).
"""
import os
import re
import sys

# module -> the modules it may include (besides itself). Keep in step with
# the target_link_libraries of CMakeLists.txt and docs/architecture.md.
ALLOWED = {
    "base": set(),
    "io": {"base"},
    "http": {"base", "io"},
    "mesh": {"base"},
    "identity": {"base"},
    "proxy": {"base", "io", "http", "mesh", "identity"},
    "xds": {"base", "mesh", "identity", "proxy", "proto"},
    "control": {"base", "io", "http", "mesh", "identity", "proto"},
    "agent": {"base", "io", "http", "mesh", "identity", "control", "xds", "proto"},
    "demo": {"base", "io", "http"},
    "cli": {"base", "io", "http", "mesh", "identity", "proxy", "xds", "control", "agent",
            "demo", "proto"},
}
PROTO_PREFIXES = ("weft/v1/", "grpc/health/", "grpcpp/", "grpc++/", "grpc/", "google/protobuf/")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def module_of_include(path, angle):
    if path.startswith(PROTO_PREFIXES):
        return "proto"
    if angle:
        return None  # the system and third-party libraries
    head = path.split("/", 1)[0]
    return head if "/" in path else None


def check(root):
    problems = []
    scan = [("src", os.path.join(root, "src")), ("tests/unit", os.path.join(root, "tests", "unit"))]
    for label, top in scan:
        if not os.path.isdir(top):
            continue
        for dirpath, _, files in os.walk(top):
            rel = os.path.relpath(dirpath, top)
            module = rel.split(os.sep)[0]
            if module == ".":
                continue
            for name in sorted(files):
                if not name.endswith((".h", ".cc")):
                    continue
                path = os.path.join(dirpath, name)
                shown = os.path.relpath(path, root)
                if module not in ALLOWED:
                    problems.append(f"{shown}: module '{module}' is not in the module graph "
                                    "(add it to scripts/include_graph.py and docs/architecture.md)")
                    continue
                with open(path, encoding="utf-8", errors="replace") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        target = module_of_include(m.group(2), m.group(1) == "<")
                        if target is None or target == module or target in ALLOWED[module]:
                            continue
                        if target not in ALLOWED and target != "proto":
                            continue  # not one of ours (e.g. a third-party "x/y.h")
                        problems.append(
                            f"{shown}:{lineno}: {module} may not include {m.group(2)} "
                            f"(module {target}); {module} may use: "
                            f"{', '.join(sorted(ALLOWED[module])) or 'nothing'}")
    return problems


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    problems = check(os.path.abspath(root))
    for p in problems:
        print(p)
    if problems:
        print(f"include graph: {len(problems)} include(s) against the module graph "
              "(docs/architecture.md)")
        return 1
    print("include graph: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
