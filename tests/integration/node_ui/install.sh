#!/usr/bin/env bash
# Installs the npm dependencies of weft's headless browser driver
# (browser.js: puppeteer-core over the DevTools protocol) into
# node_ui/node_modules. Idempotent: does nothing when they are already there.
# Uses `npm ci` (exactly the versions of package-lock.json, which is
# committed), never prompting. Never downloads a browser: the driver runs the
# system's Chromium (Debian: chromium; scripts/deps.sh installs it). Needs
# node and npm (Debian: nodejs, npm) and the npm registry.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# puppeteer-core never fetches a browser; these keep any package that might
# (puppeteer itself, were it ever pulled in) from trying.
export PUPPETEER_SKIP_DOWNLOAD=1 PUPPETEER_SKIP_CHROMIUM_DOWNLOAD=1

if [ -f node_modules/puppeteer-core/package.json ] &&
   [ -f node_modules/puppeteer-core/lib/cjs/puppeteer/puppeteer-core.js ]; then
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
