#!/usr/bin/env bash
# Installs the Debian 12 packages Padlock needs to build, test and run locally.
# Idempotent: only missing packages are installed. Uses sudo when not root.
set -euo pipefail
# shellcheck source=scripts/lib/retry.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/retry.sh"

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates curl procps
  # libraries
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev libhiredis-dev libpqxx-dev libpq-dev
  libsignal-protocol-c-dev libssl-dev libsqlite3-dev libsqlcipher-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # the load generator's h2 device-stream transport (bench/loadgen/h2_transport.h)
  libnghttp2-dev
  # the notifier's Web Push client (libcurl's multi interface, services/notifier)
  libcurl4-openssl-dev
  # servers the local stack and the tests start themselves
  redis-server redis-tools postgresql-15 postgresql-client-15
  # runuser (run PostgreSQL unprivileged when invoked as root)
  util-linux
  # the openssl CLI: the gateway's TLS test makes a throw-away certificate with it, and
  # scripts/lib/internal-certs.sh the internal CA and certificates (local stack, tests)
  openssl
  # ss: scripts/padlock checks that the local stack listens on loopback only
  iproute2
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ] && [ "${PADLOCK_FORCE_APT_UPDATE:-0}" != "1" ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${#missing[@]} package(s): ${missing[*]:-none}"
# Network steps retry (a flaky mirror must not fail a run); apt also retries each download.
retry 5 $SUDO apt-get -o Acquire::Retries=3 update -q
if [ ${#missing[@]} -gt 0 ]; then
  retry 5 $SUDO apt-get -o Acquire::Retries=3 install -y -q --no-install-recommends "${missing[@]}"
fi
