#!/usr/bin/env bash
# `pip install ./python` in a venv made with --system-site-packages, offline
# (no build isolation, no index: Debian's setuptools, wheel, grpcio,
# protobuf, yaml and rich), from a copy of the tree so the source stays
# clean; then the installed package (with its generated stubs) is used from
# another directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src"
cp -r "$root/python" "$root/proto" "$tmp/src/"
rm -rf "$tmp/src/python/tests"
# Debian's pip (python3-pip) through the venv's python: no ensurepip, no network.
/usr/bin/python3 -m venv --system-site-packages --without-pip "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --no-build-isolation --no-index "$tmp/src/python"
cd "$tmp"
env -u PYTHONPATH "$tmp/venv/bin/python" - <<'PY'
import asflow, asflow.client, asflow.worker
from asflow.v1 import service_pb2_grpc, session_pb2, worker_pb2
import pathlib
pkg = pathlib.Path(asflow.__file__).parent
assert "site-packages" in str(pkg), pkg
assert (pkg / "v1" / "service_pb2.pyi").exists() and (pkg / "py.typed").exists()
assert worker_pb2.Assignment(output="x.jsonl").output == "x.jsonl"
print("installed", asflow.__version__, "at", pkg)
PY
env -u PYTHONPATH "$tmp/venv/bin/python" -m asflow.worker --help | head -1
echo "pip_install_test: 1 passed, 0 failed"
