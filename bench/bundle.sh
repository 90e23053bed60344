#!/usr/bin/env bash
# Copies programs and every shared library they load into one folder that
# runs on another Linux machine without installing anything: each program
# goes to real/, a wrapper in bin/ starts it through the bundled loader.
#   bash bench/bundle.sh OUT_DIR PROGRAM...
set -euo pipefail
OUT=$1; shift
mkdir -p "$OUT/bin" "$OUT/real" "$OUT/lib"
for prog in "$@"; do
  path=$(command -v "$prog" || echo "$prog")
  name=$(basename "$path")
  cp -L "$path" "$OUT/real/$name"
  ldd "$path" | awk '/=> \//{print $3} /^\t\/lib/{print $1}' | while read -r lib; do
    cp -Ln "$lib" "$OUT/lib/" 2>/dev/null || true
  done
  cat > "$OUT/bin/$name" <<'SH'
#!/bin/sh
D=$(cd "$(dirname "$0")/.." && pwd)
exec "$D/lib/ld-linux-x86-64.so.2" --library-path "$D/lib" "$D/real/$(basename "$0")" "$@"
SH
  chmod +x "$OUT/bin/$name"
done
cp -Ln /lib64/ld-linux-x86-64.so.2 "$OUT/lib/" 2>/dev/null || true
du -sh "$OUT"
