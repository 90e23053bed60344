#!/usr/bin/env bash
# Installs the npm dependencies of weft's OpenTelemetry test peers
# (collector.js, app.js) into node_otel/node_modules. Idempotent: does
# nothing when they are already there. Uses `npm ci` (exactly the versions
# of package-lock.json, which is committed), never prompting. Needs node and
# npm (Debian: nodejs, npm) and the npm registry.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# The generated OTLP decoder collector.js uses, and the SDK app.js uses.
if [ -f node_modules/@opentelemetry/otlp-transformer/build/src/generated/root.js ] &&
   [ -f node_modules/@opentelemetry/exporter-trace-otlp-proto/package.json ] &&
   [ -f node_modules/@opentelemetry/sdk-trace-node/package.json ]; then
  exit 0
fi
for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install.sh: $tool is required" >&2; exit 1; }
done
if [ ! -f package-lock.json ]; then
  echo "install.sh: package-lock.json is missing (it is committed with package.json)" >&2
  exit 1
fi
npm ci --no-audit --no-fund
