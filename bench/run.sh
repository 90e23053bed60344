#!/usr/bin/env bash
# Macro benchmark: direct, weft, nginx and HAProxy in front of the same nginx
# backend, same wrk load, 1 and 2 workers. Writes bench/RESULTS.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
exec /usr/bin/python3 "$ROOT/bench/run.py" --weft "${1:-$ROOT/build/weft}" "${@:2}"
