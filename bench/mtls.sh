#!/usr/bin/env bash
# Mesh TLS and authorization benchmark: handshakes through one worker, bulk
# through one mTLS hop, latency at a fixed rate (direct, plaintext hop, mesh
# path), authorization with 100 rules. Writes bench/RESULTS-mtls.md.
# Env: PIN_PROXY / PIN_LOAD (cores; default 0 and 1).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
cmake --build "$BUILD" -j2 --target weft weft_rate_client weft_authz_bench >/dev/null
exec /usr/bin/python3 "$ROOT/bench/mtls.py" --weft "${1:-$BUILD/weft}" --build "$BUILD" "${@:2}"
