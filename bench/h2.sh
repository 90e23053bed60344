#!/usr/bin/env bash
# HTTP/2 and gRPC benchmarks: gRPC unary through one proxy (weft, HAProxy,
# nginx, direct), HTTP/2 clients to HTTP/1.1 and HTTP/2 upstreams, the mesh
# path for gRPC at a fixed rate (weft sidecars against an HAProxy mTLS pair),
# and memory per held stream and per idle HTTP/2 connection. Writes
# bench/RESULTS-h2.md. Env: PIN_PROXY / PIN_LOAD (cores; default 0 and 1),
# BUILD (default build), JOBS (default 1).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
cmake --build "$BUILD" -j"${JOBS:-1}" --target weft weft_grpc_echo_server weft_h2_echo_server weft_grpc_rate_client >/dev/null
exec /usr/bin/python3 "$ROOT/bench/h2.py" --weft "${1:-$BUILD/weft}" --build "$BUILD" "${@:2}"
