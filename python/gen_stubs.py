#!/usr/bin/env python3
"""Generates the asflow.v1 Python stubs from proto/ with protoc and
grpc_python_plugin (Debian: protobuf-compiler, protobuf-compiler-grpc).

Writes OUT/asflow/v1/{flow,service,session,worker}_pb2.py (+ .pyi) and
*_pb2_grpc.py, plus OUT/asflow/v1/__init__.py. Used by the CMake target
`asflow_python` (OUT = build/python) and by the pip build (setup.py, OUT =
the wheel's build directory).

Usage: gen_stubs.py --proto-dir proto --out-dir build/python
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

PROTOS = ("flow", "service", "session", "worker")


def find_tool(name: str, env: str) -> str:
    """The tool named by $env, else `name` on PATH; exits naming both."""
    path = os.environ.get(env) or shutil.which(name)
    if not path:
        sys.exit(f"gen_stubs.py: {name} not found on PATH (set {env}, or install "
                 "protobuf-compiler and protobuf-compiler-grpc)")
    return path


def generate(proto_dir: Path, out_dir: Path) -> list[Path]:
    """Runs protoc once over every proto; returns the files written."""
    protoc = find_tool("protoc", "PROTOC")
    plugin = find_tool("grpc_python_plugin", "GRPC_PYTHON_PLUGIN")
    sources = [proto_dir / "asflow" / "v1" / f"{name}.proto" for name in PROTOS]
    for source in sources:
        if not source.is_file():
            sys.exit(f"gen_stubs.py: {source}: no such file (is --proto-dir the repository's proto/?)")
    package = out_dir / "asflow" / "v1"
    package.mkdir(parents=True, exist_ok=True)
    cmd = [protoc, f"--proto_path={proto_dir}", f"--python_out={out_dir}", f"--pyi_out={out_dir}",
           f"--grpc_python_out={out_dir}", f"--plugin=protoc-gen-grpc_python={plugin}",
           *[str(s) for s in sources]]
    subprocess.run(cmd, check=True)
    init = package / "__init__.py"
    init.write_text('"""asflow.v1 messages and gRPC stubs, generated from proto/ by gen_stubs.py."""\n')
    written = [init]
    for name in PROTOS:
        written += [package / f"{name}_pb2.py", package / f"{name}_pb2.pyi", package / f"{name}_pb2_grpc.py"]
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proto-dir", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args()
    generate(args.proto_dir.resolve(), args.out_dir.resolve())


if __name__ == "__main__":
    main()
