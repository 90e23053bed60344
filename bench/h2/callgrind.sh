#!/usr/bin/env bash
# Instructions per request through `weft proxy` (one worker) under
# callgrind: (Ir after N2 requests - Ir after N1) / (N2 - N1), so that
# start-up and shutdown cancel out. h2load, 1 connection x 10 streams.
#   bench/h2/callgrind.sh grpc [WEFT]   h2c gRPC unary -> weft -> bench's nghttp2 echo server (http2 cluster)
#   bench/h2/callgrind.sh h2   [WEFT]   h2c GET -> weft -> nginx over h2
# Needs valgrind, h2load, nginx; BUILD (default build) with weft_h2_echo_server.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
MODE=${1:-grpc}
WEFT=${2:-$BUILD/weft}
N1=${N1:-1000} N2=${N2:-6000}
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; [ -f "$tmp/nginx.pid" ] && kill -QUIT "$(cat "$tmp/nginx.pid" 2>/dev/null)" 2>/dev/null; rm -rf "$tmp"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
front=$(port) back=$(port)
if [ "$MODE" = grpc ]; then
  "$BUILD/bench/weft_h2_echo_server" --port "$back" >/dev/null &
  python3 -c 'import struct,sys; p=b"x"*64; sys.stdout.buffer.write(b"\0"+struct.pack(">I",len(p))+p)' >"$tmp/req.bin"
  load=(-d "$tmp/req.bin" -H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:$front/weft.bench.Echo/Unary")
else
  cat >"$tmp/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $tmp/nginx.pid; error_log $tmp/nginx.err;
events {} http { access_log off; client_body_temp_path $tmp; http2_max_requests 1000000;
  server { listen 127.0.0.1:$back http2; location / { return 200 "ok"; } } }
NGINX
  nginx -c "$tmp/nginx.conf" &
  load=("http://127.0.0.1:$front/")
fi
cat >"$tmp/weft.yaml" <<YAML
workers: 1
listeners:
  - name: public
    address: 127.0.0.1:$front
    routes: [{match: {prefix: /}, cluster: be}]
clusters:
  - name: be
    protocol: http2
    endpoints: [127.0.0.1:$back]
YAML
run() {
  valgrind --tool=callgrind --callgrind-out-file="$tmp/out.$1" "$WEFT" proxy --config "$tmp/weft.yaml" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do sleep 0.2; (echo >"/dev/tcp/127.0.0.1/$front") 2>/dev/null && break; done
  h2load -n "$1" -c 1 -m 10 "${load[@]}" | grep -q "$1 succeeded" || { echo "h2load: not all $1 requests succeeded" >&2; exit 1; }
  kill -INT "$pid"; wait "$pid" || true
  grep -m1 '^summary:\|^totals:' "$tmp/out.$1" | awk '{print $2}'
}
a=$(run "$N1"); b=$(run "$N2")
echo "$MODE: $(( (b - a) / (N2 - N1) )) instructions per request ($WEFT)"
