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
for port in 8080 15000 6380 9001 9002 8500 8502 9080 15001 15100 8501 8600; do
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

say "the control plane: weft server --dev (embedded store, API on :8500, config stream on :8502)"
"$WEFT" server --dev --http 127.0.0.1:8500 --grpc 127.0.0.1:8502 >"$TMP/server.out" 2>"$TMP/server.log" &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$TMP/server.out" 2>/dev/null && break; sleep 0.05; done
cat "$TMP/server.out"
export WEFT_SERVER=http://127.0.0.1:8500

say "register two instances of reviews (Consul's API) and a sidecar for web that calls reviews on :9080"
reg() { curl -fsS -X PUT http://127.0.0.1:8500/v1/catalog/register -H 'Content-Type: application/json' -d "$1" >/dev/null; }
reg '{"Node":"node-1","Address":"127.0.0.1","Service":{"Service":"reviews","ID":"reviews-1","Port":9001}}'
reg '{"Node":"node-2","Address":"127.0.0.1","Service":{"Service":"reviews-v2","ID":"reviews-v2-1","Port":9002}}'
reg '{"Node":"node-web","Address":"127.0.0.1","Service":{"Service":"web-sidecar","ID":"web-sc","Kind":"connect-proxy","Port":15100,"Proxy":{"DestinationServiceName":"web","LocalServicePort":9001,"Upstreams":[{"DestinationName":"reviews","LocalBindPort":9080}]}}}'
curl -fsS 'http://127.0.0.1:8500/v1/health/service/reviews?passing' |
  python3 -c 'import json,sys; [print("healthy:", e["Service"]["ID"], e["Node"]["Address"], e["Service"]["Port"]) for e in json.load(sys.stdin)]'

say "weft proxy --server 127.0.0.1:8502 --service web (its config streams from the server)"
"$WEFT" proxy --server 127.0.0.1:8502 --service web --admin 127.0.0.1:15001 --workers 1 >/dev/null 2>"$TMP/sidecar.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -fsS -o /dev/null http://127.0.0.1:15001/ready 2>/dev/null && break; sleep 0.05; done
count() {
  for i in $(seq 20); do curl -sS -D - -o /dev/null http://127.0.0.1:9080/ | tr -d '\r' | grep -i '^x-backend:'; done | sort | uniq -c
}
count

say "weft apply: a Route that sends 50% of reviews traffic to reviews-v2"
cat > "$TMP/route.yaml" <<'YAML'
kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
    - backends: [{service: reviews, weight: 50}, {service: reviews-v2, weight: 50}]
YAML
"$WEFT" apply -f "$TMP/route.yaml"
sleep 0.3
count
"$WEFT" get routes
"$WEFT" members

say "weft delete route reviews: back to reviews only"
"$WEFT" delete route reviews
sleep 0.3
count

say "the node agent: weft agent (the catalog cached on the node: Consul's API on :8501, DNS on :8600)"
"$WEFT" agent --server 127.0.0.1:8502 --node quickstart-node --data-dir "$TMP/agent" \
  --http 127.0.0.1:8501 --dns 127.0.0.1:8600 >"$TMP/agent.out" 2>"$TMP/agent.log" &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$TMP/agent.out" 2>/dev/null && break; sleep 0.05; done
cat "$TMP/agent.out"
# Writes to the agent carry its agent token (made on first start, 0600).
AGENT_TOKEN="X-Consul-Token: $(cat "$TMP/agent/agent-token")"
curl -fsS -X PUT http://127.0.0.1:8501/v1/agent/service/register -H 'Content-Type: application/json' -H "$AGENT_TOKEN" \
  -d '{"Name":"ratings","Port":9002,"Check":{"HTTP":"http://127.0.0.1:9002/status/200","Interval":"1s"}}'
sleep 1.5
echo "dig @127.0.0.1 -p 8600 reviews.service.weft  -> $(dig +short @127.0.0.1 -p 8600 reviews.service.weft | tr '\n' ' ')"
echo "dig @127.0.0.1 -p 8600 SRV ratings.service.weft -> $(dig +short @127.0.0.1 -p 8600 SRV ratings.service.weft | tr '\n' ' ')"
curl -fsS http://127.0.0.1:8501/v1/agent/checks | python3 -c 'import json,sys; [print("check", k, "->", v["Status"], "|", v["Output"]) for k, v in json.load(sys.stdin).items()]'

say "zero trust: a ratings sidecar behind the agent (its key made on the node, its certificate from the server's CA)"
curl -fsS -X PUT http://127.0.0.1:8501/v1/agent/service/register -H 'Content-Type: application/json' -H "$AGENT_TOKEN" \
  -d '{"Name":"ratings-sidecar","ID":"ratings-sc","Kind":"connect-proxy","Port":15200,"Proxy":{"DestinationServiceName":"ratings","LocalServicePort":9002}}'
"$WEFT" proxy --agent "unix:$TMP/agent/weft.sock" --service ratings --admin 127.0.0.1:15002 --workers 1 \
  >/dev/null 2>"$TMP/ratings-sidecar.log" &
PIDS+=($!)
reg '{"Node":"node-web","Address":"127.0.0.1","Service":{"Service":"web-sidecar","ID":"web-sc","Kind":"connect-proxy","Port":15100,"Proxy":{"DestinationServiceName":"web","LocalServicePort":9001,"Upstreams":[{"DestinationName":"reviews","LocalBindPort":9080},{"DestinationName":"ratings","LocalBindPort":9081}]}}}'
for _ in $(seq 200); do curl -fsS -o /dev/null http://127.0.0.1:15002/ready 2>/dev/null && curl -fsS -o /dev/null http://127.0.0.1:9081/ 2>/dev/null && break; sleep 0.05; done
curl -fsS -o /dev/null http://127.0.0.1:9081/ || { echo "ratings via the mesh failed:"; curl -sS http://127.0.0.1:9081/; tail -n 5 "$TMP/ratings-sidecar.log" "$TMP/sidecar.log" "$TMP/agent.log"; exit 1; }
echo "web -> ratings over mutual TLS; what the ratings app was told about its caller:"
curl -sS http://127.0.0.1:9081/ | python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ", [v for k, v in d["headers"] if k.lower() == "x-forwarded-client-cert"][0])'
echo "plaintext straight into the ratings sidecar (strict mTLS): $(curl -sS -m 2 http://127.0.0.1:15200/ 2>&1 | head -c 60)"
echo "the certificate it presents: $(openssl s_client -connect 127.0.0.1:15200 </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName 2>/dev/null | tail -1 | tr -d ' ')"

say "weft apply: an AuthorizationPolicy for ratings (default deny, allow web to GET /ratings/*)"
cat > "$TMP/authz.yaml" <<'YAML'
kind: AuthorizationPolicy
metadata: {name: ratings}
spec:
  service: ratings
  default: deny
  rules:
    - action: allow
      from: [spiffe://weft.local/ns/default/sa/web]
      to: {methods: [GET], paths: [/ratings/*]}
YAML
"$WEFT" apply -f "$TMP/authz.yaml"
sleep 0.5
echo "GET /ratings/1 -> $(curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.1:9081/ratings/1)"
echo "GET /admin     -> $(curl -sS http://127.0.0.1:9081/admin)"

echo
echo "quickstart done: weft proxied HTTP and TCP traffic, a sidecar followed the control plane live,"
echo "the node agent answered DNS from its cache, and sidecars spoke mutual TLS under an"
echo "authorization policy. Try next: weft get routes, weft members, docs/api.md, docs/security.md."
