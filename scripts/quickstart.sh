#!/usr/bin/env bash
# The quickstart: two backends and redis behind `weft proxy` with
# examples/proxy.yaml, traffic through it, and what the proxy reports.
set -euo pipefail
WEFT=${1:-build/weft}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in 8080 15000 6380 9001 9002; do
  if busy "$port"; then echo "quickstart: port $port is in use; stop what holds it and retry" >&2; exit 1; fi
done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "starting two backends (9001, 9002) and redis (6379)"
python3 "$ROOT/tests/integration/backend.py" 9001 --name backend-1 >/dev/null & PIDS+=($!)
python3 "$ROOT/tests/integration/backend.py" 9002 --name backend-2 >/dev/null & PIDS+=($!)
if ! busy 6379; then
  redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" >/dev/null & PIDS+=($!)
fi
for port in 9001 9002 6379; do
  for _ in $(seq 100); do busy "$port" && break; sleep 0.05; done
done

say "weft proxy --config examples/proxy.yaml"
"$WEFT" proxy --config "$ROOT/examples/proxy.yaml" >"$TMP/access.log" 2>"$TMP/weft.log" &
WEFT_PID=$!
PIDS+=($WEFT_PID)
for _ in $(seq 100); do
  curl -fsS -o /dev/null http://127.0.0.1:15000/ready 2>/dev/null && break
  sleep 0.05
done
head -n1 "$TMP/access.log"

say "6 requests to http://127.0.0.1:8080/ (round robin, backend-2 has weight 2)"
for i in $(seq 6); do
  curl -sS "http://127.0.0.1:8080/hello/$i" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["target"], "->", d["backend"])'
done

say "canary route: /v2 with x-canary: 1 goes to cluster api-v2"
curl -sS -H 'x-canary: 1' http://127.0.0.1:8080/v2/items | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["target"], "->", d["backend"], "| headers added:", {k:v for k,v in d["headers"] if k.startswith("x-")})'

say "a request smuggling attempt is refused"
printf 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' |
  python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1",8080)); s.sendall(sys.stdin.buffer.read()); print(s.recv(4096).decode().strip())'

say "redis through the tcp listener (127.0.0.1:6380)"
redis-cli -p 6380 set weft quickstart >/dev/null && echo "GET weft -> $(redis-cli -p 6380 get weft)"

say "load: wrk -t1 -c16 -d2s through the proxy"
wrk -t1 -c16 -d2s http://127.0.0.1:8080/bytes/100 | grep -E 'Requests/sec|Latency'

say "metrics (curl http://127.0.0.1:15000/stats)"
curl -sS http://127.0.0.1:15000/stats | grep -E '^weft_(listener_downstream_rq_total|cluster_upstream_cx_total|listener_downstream_rq_rejected_total)' | grep -v ' 0$'

say "access log (JSON lines, last 2)"
sleep 0.2
tail -n 2 "$TMP/access.log"

say "SIGTERM: drain and exit"
kill -TERM "$WEFT_PID"
wait "$WEFT_PID" && echo "weft exited with status 0"
tail -n 2 "$TMP/weft.log"
echo
echo "quickstart done: weft proxied HTTP and TCP traffic, see above."
