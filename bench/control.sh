#!/usr/bin/env bash
# Control-plane benchmark (bench/control/control_bench.cc): API writes/s on
# the embedded store and on etcd (with raw etcd writes/s in the same run),
# propagation of catalog changes to 1,000 config-stream subscribers on a
# 10,000-instance catalog, and the server's RSS. Prints JSON per run and
# writes bench/RESULTS-control.md.
#   bash bench/control.sh [BUILD_DIR]
# On a many-core machine, pin the parts apart so they do not share cores:
#   PIN_ETCD=0-3 PIN_WEFT=4-7 PIN_BENCH=8-15 RESULTS=bench/RESULTS-control-16core.md
# (WEFT, BENCH, ETCD, TASKSET name the programs, for a bundled copy.)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
WEFT=${WEFT:-$BUILD/weft}
BENCH=${BENCH:-$BUILD/bench/weft_control_bench}
ETCD=${ETCD:-etcd}
TASKSET=${TASKSET:-taskset}
RESULTS=${RESULTS:-$ROOT/bench/RESULTS-control.md}
# The taskset prefix for a core list (empty: no pinning). Used unquoted, so
# a background start's $! is the program itself.
pin() { if [ -n "$1" ]; then echo "$TASKSET -c $1"; fi; }
INSTANCES=${INSTANCES:-10000}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
BURST=${BURST:-1000}
WRITERS=${WRITERS:-16}
WORK=$(mktemp -d /tmp/weft-control-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_server() {  # $1: name, rest: store flags
  local name=$1; shift
  # The bench's subscribers all come from 127.0.0.1: lift the per-address stream limit.
  $(pin "${PIN_WEFT:-}") "$WEFT" server --name "$name" --http 127.0.0.1:0 --grpc 127.0.0.1:0 --log-level warn \
    --max-streams-per-peer 100000 "$@" \
    > "$WORK/$name.out" 2> "$WORK/$name.err" &
  PIDS+=($!)
  SERVER_PID=$!
  for _ in $(seq 100); do grep -q listening "$WORK/$name.out" 2>/dev/null && break; sleep 0.1; done
  HTTP=$(grep -o 'http=[0-9.:]*' "$WORK/$name.out" | cut -d= -f2)
  GRPC=$(grep -o 'grpc=[0-9.:]*' "$WORK/$name.out" | cut -d= -f2)
}

echo "== embedded store (SQLite, WAL, synchronous=FULL)" >&2
start_server sqlite --data-dir "$WORK/sqlite"
# ACLs are on (no --dev): the bench writes with the bootstrap management token.
$(pin "${PIN_BENCH:-}") "$BENCH" --http "$HTTP" --grpc "$GRPC" --token "$(cat "$WORK/sqlite/bootstrap-token")" \
  --server-ca "$WORK/sqlite/ca.pem" --server-pid "$SERVER_PID" --instances "$INSTANCES" \
  --subscribers "$SUBSCRIBERS" --burst "$BURST" --writers "$WRITERS" > "$WORK/sqlite.json"
cat "$WORK/sqlite.json"
kill -9 "$SERVER_PID"

echo "== etcd (one member on loopback, Debian's etcd-server)" >&2
EC=$(free_port); EP=$(free_port)
$(pin "${PIN_ETCD:-}") "$ETCD" --name b --data-dir "$WORK/etcd" --listen-client-urls "http://127.0.0.1:$EC" \
  --advertise-client-urls "http://127.0.0.1:$EC" --listen-peer-urls "http://127.0.0.1:$EP" \
  --initial-advertise-peer-urls "http://127.0.0.1:$EP" --initial-cluster "b=http://127.0.0.1:$EP" \
  > "$WORK/etcd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$EC/health', timeout=1)" 2>/dev/null && break
  sleep 0.1
done
# A shared store needs the CA's key-encryption key from a file.
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/ca-kek")
start_server etcd --store "etcd://127.0.0.1:$EC" --data-dir "$WORK/etcd-local" --ca-kek-file "$WORK/ca-kek"
$(pin "${PIN_BENCH:-}") "$BENCH" --http "$HTTP" --grpc "$GRPC" --token "$(cat "$WORK/etcd-local/bootstrap-token")" \
  --server-ca "$WORK/etcd-local/ca.pem" --server-pid "$SERVER_PID" --instances "$INSTANCES" \
  --subscribers "$SUBSCRIBERS" --burst "$BURST" --writers "$WRITERS" --raw-etcd "127.0.0.1:$EC" \
  > "$WORK/etcd.json"
cat "$WORK/etcd.json"

python3 - "$WORK/sqlite.json" "$WORK/etcd.json" "$RESULTS" \
  "$INSTANCES" "$SUBSCRIBERS" "$BURST" "$WRITERS" "${PIN_ETCD:-}" "${PIN_WEFT:-}" "${PIN_BENCH:-}" <<'PY'
import json, os, sys, datetime
sq, et = (json.load(open(p)) for p in sys.argv[1:3])
out, inst, subs, burst, writers, pe, pw, pb = sys.argv[3], *sys.argv[4:11]
cpu = os.cpu_count()
layout = (f"pinned: etcd on cores {pe}, weft on {pw}, the load and subscribers on {pb}" if pe
          else "server, store, load and subscribers share the CPUs")
def row(name, r):
    s, b = r["single_change_ms"], r["burst"]
    c = b["converged_after_last_write_ms"]
    return (f"| {name} | {r['api_writes_per_s']:.0f} | {s['p50']:.0f} / {s['p99']:.0f} / {s['max']:.0f} | "
            f"{b['write_s']:.2f} s, +{c['p99']:.0f} ms | {r['server_rss_mb_catalog']:.0f} | "
            f"{r['server_rss_mb_with_subscribers']:.0f} | {r['server_rss_mb_end']:.0f} |")
ratio = et["api_writes_per_s"] / et["raw_etcd_writes_per_s"]
with open(out, "w") as f:
    f.write(f"""# Control-plane benchmark

`bash bench/control.sh` ({datetime.date.today()}, {cpu} cores, {layout}).
{inst} instances (100 services, 10 instances per node document), {subs}
config-stream subscribers (each a proxy identity calling svc-0 and one other
service, one TCP connection each, in one process), {writers} concurrent API
writers. Latencies are from sending the write to each subscriber holding the
change; single change: 5 rounds of one svc-0 instance moving, all {subs}
subscribers measured; burst: {burst} changes to svc-0 instances, then the
time until every subscriber holds the last one.

| store | API writes/s | single change p50 / p99 / max (ms) | burst of {burst}: writing, then all converged (p99) | RSS MB: catalog | + subscribers | end |
| --- | --- | --- | --- | --- | --- | --- |
{row("SQLite (embedded)", sq)}
{row("etcd (1 member)", et)}

etcd: raw writes through its JSON gateway, same count, same value size and
concurrency, in the same run: {et['raw_etcd_writes_per_s']:.0f}/s; weft's API
on etcd: {et['api_writes_per_s']:.0f}/s = **{ratio:.0%}** of raw (target ≥ 50%).
Each API write is one compare-and-swap transaction on the node document
(starting from this replica's view of it), which etcd then also delivers to
every replica's watch, and the API answers once its own replica has seen it
(read your writes); a raw put is a put. Where etcd, weft and the load share
the same cores, weft's own CPU per write is taken from etcd.

Targets: p99 propagation ≤ 1 s; server RSS ≤ 200 MB with 10,000 instances and
1,000 subscribers.
""")
print(open(out).read())
PY
