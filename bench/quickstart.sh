#!/usr/bin/env bash
# The quickstart's frontend -> reviews call through two mTLS sidecars at a
# fixed rate, against the same call direct: latency, sidecar CPU per 1000
# requests/s, sidecar memory idle and under load. Writes
# bench/RESULTS-quickstart.md. Env: PIN_PROXY / PIN_LOAD (default 0 and 1).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
cmake --build "$BUILD" -j2 --target weft weft_rate_client >/dev/null
exec /usr/bin/python3 "$ROOT/bench/quickstart.py" --weft "${1:-$BUILD/weft}" --build "$BUILD" "${@:2}"
