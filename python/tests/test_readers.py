"""Files the package makes through asflowd, read by DuckDB and Polars (the
tools the tutorial reads them with): @duckdb/node-api and nodejs-polars
from npm (python/tests/readers/package.json and its lock), installed once
into the build tree by `npm install`. Skipped, saying why, when npm or the
registry is not there."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from asflow.connection import ConnectOptions
from asflow.flow import Flow
from asflow.session import SessionEngine

from conftest import BUILD

READERS = Path(__file__).resolve().parent / "readers"


@pytest.fixture(scope="module")
def node_readers() -> Path:
    """build/python-readers with node_modules matching the committed lock."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed: cannot check the files with DuckDB and Polars")
    where = BUILD / "python-readers"
    where.mkdir(parents=True, exist_ok=True)
    lock = (READERS / "package-lock.json").read_bytes()
    stamp = where / "node_modules" / ".asflow-lock"
    for name in ("package.json", "package-lock.json", "read.mjs"):
        shutil.copy(READERS / name, where / name)
    if not (stamp.exists() and stamp.read_bytes() == lock):
        # `npm install` follows the lock (npm ci refuses it: the platform packages
        # of nodejs-polars are optional and only linux-x64-gnu is locked).
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save", "--loglevel=error"], cwd=where,
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            pytest.skip(f"npm install of @duckdb/node-api and nodejs-polars failed (no registry?): {r.stderr[-500:]}")
        stamp.write_bytes(lock)
    return where


def test_duckdb_and_polars_read_what_the_package_wrote(daemon, workspace: Path, node_readers: Path):
    engine = SessionEngine(ConnectOptions.resolve(server=daemon.server))
    flow = Flow(workspace, engine=engine)
    rows = [{"a": i, "s": f"row {i}"} for i in range(1, 6)]

    @flow.task(on="r/{name}")
    def write(name):
        if name.startswith("doc.json"):
            flow.task.write(rows)
        else:
            for row in rows:
                flow.task.write(row)

    names = ["t.jsonl", "t.jsonl.gz", "t.jsonl.zst", "t.parquet", "doc.json", "doc.json.zst"]

    @flow(progress=False)
    async def main():
        for n in names:
            write(n)

    try:
        asyncio.run(main())
    finally:
        engine.close(5.0)
    files = [str(workspace / "r" / n) for n in names]
    r = subprocess.run(["node", str(node_readers / "read.mjs"), *files], cwd=node_readers, capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, NODE_NO_WARNINGS="1"))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    expected = {"n": 5, "s": 15}
    for f in files:
        assert got[f]["duckdb"] == expected, (f, got[f])
        if ".jsonl" in f or f.endswith(".parquet"):
            assert got[f]["polars"] == expected, (f, got[f])
