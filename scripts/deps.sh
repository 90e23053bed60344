#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of weft from Debian's
# packages. Idempotent and non-interactive: packages already present are skipped.
set -euo pipefail

PKGS=(
  # build
  build-essential cmake ninja-build pkg-config clang clang-format clang-tidy
  libclang-rt-14-dev
  # libraries
  libasio-dev libssl-dev libsqlite3-dev libyaml-cpp-dev nlohmann-json3-dev libfmt-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc libnghttp2-dev
  # tests
  libgtest-dev libgmock-dev libbenchmark-dev python3 python3-pytest python3-pytest-timeout curl openssl
  nginx-light haproxy redis-server redis-tools prometheus bind9-dnsutils
  etcd-server etcd-client python3-consul python3-grpcio tcpdump python3-cryptography iptables
  nghttp2-client python3-h2 chromium fonts-dejavu-core
  # benchmarks and tooling
  wrk procps iproute2 valgrind
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Node.js and npm (the grpc-js test peer): the machine's own when present
# (its npm may come with nodejs from another repository), else Debian's.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

# The npm-installed test peers: grpc-js, the OpenTelemetry SDK and
# decoder of the tracing tests, and puppeteer-core, which drives the system's
# chromium (above) in the browser UI tests (it never downloads a browser).
node_peer() {
  bash "$(dirname "${BASH_SOURCE[0]}")/../tests/integration/node_grpc/install.sh" >/dev/null
  bash "$(dirname "${BASH_SOURCE[0]}")/../tests/integration/node_otel/install.sh" >/dev/null
  bash "$(dirname "${BASH_SOURCE[0]}")/../tests/integration/node_ui/install.sh" >/dev/null
}

if [ "${#missing[@]}" -eq 0 ]; then
  node_peer
  echo "deps: all ${#PKGS[@]} packages present"
  exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts these services on install; weft's tests and benchmarks start
# their own instances on loopback with port 0-style free ports instead.
for svc in nginx haproxy redis-server prometheus etcd; do
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
  if command -v service >/dev/null 2>&1; then $SUDO service "$svc" stop >/dev/null 2>&1 || true; fi
done
node_peer
echo "deps: done"
