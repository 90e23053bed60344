#!/usr/bin/env bash
# Installs the npm dependencies of weft's grpc-js test peer (peer.js) into
# node_grpc/node_modules. Idempotent: does nothing when @grpc/grpc-js is
# already there. Uses `npm ci` (the exact versions of package-lock.json)
# when the lock file exists, `npm install` otherwise. Needs node and npm
# (Debian: nodejs, npm) and the npm registry.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [ -d node_modules/@grpc/grpc-js ]; then
  exit 0
fi
for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install.sh: $tool is required" >&2; exit 1; }
done
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi
