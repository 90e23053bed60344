#!/usr/bin/env bash
# Runs each libFuzzer target for N seconds on a copy of its seed corpus.
# Usage: scripts/fuzz.sh BUILD_DIR SECONDS
set -euo pipefail
BUILD=${1:-build-fuzz}
SECS=${2:-60}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGETS=${*:3}
for t in ${TARGETS:-http1_request http1_response chunked config manifest catalog dns csr http2}; do
  work=$(mktemp -d)
  cp -r "$ROOT/tests/fuzz/corpus/$t/." "$work/"
  echo "fuzz: $t for ${SECS}s"
  # No at-exit leak check: LeakSanitizer scanning a fuzzer's large heap takes
  # longer than the run; memory growth is bounded by -rss_limit_mb instead.
  ASAN_OPTIONS=alloc_dealloc_mismatch=0:detect_leaks=0 "$BUILD/tests/fuzz_$t" -max_total_time="$SECS" -max_len=8192 -timeout=10 -rss_limit_mb=1024 -detect_leaks=0 \
    -print_final_stats=1 "$work" 2>&1 | grep -E "^(stat::number_of_executed_units|stat::peak_rss|==.*ERROR|SUMMARY)" || true
  rm -rf "$work"
done
