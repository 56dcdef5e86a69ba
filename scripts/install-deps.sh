#!/usr/bin/env bash
# Installs the Debian 12 packages asflow needs to build and test, only those
# missing (idempotent). Uses sudo when not run as root.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config ccache
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libsqlite3-dev libzstd-dev zlib1g-dev libspdlog-dev
  libgtest-dev libgmock-dev libyaml-cpp-dev libre2-dev libcli11-dev nlohmann-json3-dev
  zstd gzip util-linux procps tmux sqlite3 python3 openssl
  iproute2                         # tests/e2e/worker_test (network namespaces)
  python3-grpcio python3-protobuf python3-yaml python3-rich   # the asflow Python package (python/)
  python3-pytest python3-venv python3-pip python3-setuptools python3-wheel  # its tests
  python3-zstandard python3-pandas # its tests (reading outputs; the tutorial's DataFrame in examples/youtube/flows)
  gcc make parallel findutils bc   # bench/ (its smoke test runs in ctest)
  clang                            # the sanitizer pass and the fuzzers (CMakePresets.json: asan, fuzz; libFuzzer and the ASan runtime come with it)
  libcpp-httplib-dev               # asflowd --http (dashboard, JSON API, /metrics)
  prometheus curl                  # tests/web/prometheus_test.sh: promtool, a real scrape
  chromium nodejs                  # tests/web/dashboard_test.mjs: headless Chromium, playwright-core
  # the deploy tests (deploy/tests): rootful podman with runc (crun refuses
  # hybrid cgroups), its pause binary, network stack and iptables; the
  # base image; compose; dpkg-shlibdeps for cpack's .deb
  podman runc catatonit netavark aardvark-dns iptables debootstrap podman-compose dpkg-dev
)

missing=()
# node and npm for the Kubernetes manifest checks, unless some node is
# installed already (a node from elsewhere bundles its own npm, which
# Debian's npm package would conflict with).
if ! command -v npm >/dev/null; then
  packages+=(nodejs npm)
fi
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# npm comes with nodejs from some sources (NodeSource), as its own Debian
# package with Debian's nodejs.
if ! command -v npm >/dev/null && ! dpkg-query -W -f='${Status}' npm 2>/dev/null | grep -q "install ok installed"; then
  missing+=(npm)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "installing: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
