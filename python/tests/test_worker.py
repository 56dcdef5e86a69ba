"""python3 -m asflow.worker against a real asflowd: YAML flows whose tasks
are Python functions (handler: MODULE.FUNCTION, pool: py), with `errors:`
matchers on the exception types the worker reports."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from asflow.client import Client, instance_state_name
from asflow.v1 import flow_pb2

from conftest import PYTHON, stop, wait_for

MODULE = '''\
import asyncio
import json
import os
import xml.etree.ElementTree as ET

from asflow import flow


class CouldNotRetrieveTranscript(Exception):
    pass


class TranscriptsDisabled(CouldNotRetrieveTranscript):
    pass


def _count(name):
    path = os.path.join(os.environ["CALLS_DIR"], name)
    with open(path, "a") as f:
        f.write("x")
    return os.path.getsize(path)


def extract(video_id):
    _count(video_id)
    if video_id == "off":
        raise TranscriptsDisabled(f"Transcripts are disabled for the video {video_id}")
    if video_id == "bad":
        ET.fromstring("<unclosed")
    if video_id == "boom":
        raise ValueError("boom")
    for i in range(3):
        flow.task.write({"video_id": video_id, "i": i})


@flow.task(on="data/ignored/{video_id}.json")
async def summary(video_id, lang="en"):
    await asyncio.sleep(0.01)
    flow.task.write({"video_id": video_id, "lang": lang})


def flaky(video_id):
    if _count("flaky-" + video_id) < 3:
        raise ConnectionResetError("connection reset by peer")
    flow.task.write("third time lucky")


def _private():
    pass
'''


def flow_file(ws: Path, name: str, task: str) -> Path:
    path = ws / f"{name}.flow.yaml"
    path.write_text(f"name: {name}\ntasks:\n" + textwrap.indent(textwrap.dedent(task), "  "))
    return path


@pytest.fixture
def worker(daemon, tmp_path, env):
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "mymod.py").write_text(MODULE)
    calls = tmp_path / "calls"
    calls.mkdir()
    log = tmp_path / "worker.log"
    proc = subprocess.Popen([PYTHON, "-m", "asflow.worker", "--server", daemon.server, "--pool", "py", "--module",
                             "mymod", "--slots", "2", "--name", "py1"], cwd=mods, env=dict(env, CALLS_DIR=str(calls)),
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    with Client(server=daemon.server) as c:
        assert wait_for(lambda: len(c.workers()) == 1 or proc.poll() is not None), log.read_text()
    assert proc.poll() is None, log.read_text()
    yield calls
    stop(proc)
    assert proc.returncode == 0, log.read_text()


def calls(d: Path, name: str) -> int:
    p = d / name
    return p.stat().st_size if p.exists() else 0


def run(c: Client, flow: Path, ws: Path) -> tuple[flow_pb2.Run, dict[str, flow_pb2.Instance]]:
    submitted = c.submit(flow, workspace=ws)
    for _ in c.watch(submitted.run_id, submitted.watch_from_seq):
        pass
    instances = {i.params.get("video_id", str(i.seq)): i for i in c.tasks(submitted.run_id)}
    return c.run(submitted.run_id), instances


def test_errors_matchers_suppress_and_skip_python_exceptions(daemon, worker, workspace):
    flow = flow_file(workspace, "transcripts", """\
        - name: extract
          for_each: {values: [v1, v2, off, bad], as: video_id}
          on: data/transcripts/{video_id}.jsonl.zst
          handler: mymod.extract
          pool: py
          skip: {errors: [xml.etree.ElementTree.ParseError]}
          suppress: {errors: [TranscriptsDisabled]}
        """)
    with Client(server=daemon.server) as c:
        [w] = c.workers()
        assert set(w.handlers) == {"mymod.extract", "mymod.summary", "mymod.flaky"}

        first, inst = run(c, flow, workspace)
        assert first.state == flow_pb2.RUN_SUCCEEDED
        assert {k: instance_state_name(i.state) for k, i in inst.items()} == {
            "v1": "done", "v2": "done", "off": "suppressed", "bad": "skipped"}
        out = subprocess.run(["zstd", "-dc", workspace / "data/transcripts/v1.jsonl.zst"], capture_output=True,
                             check=True).stdout.decode()
        assert [json.loads(line) for line in out.splitlines()] == [{"video_id": "v1", "i": i} for i in range(3)]
        assert inst["v1"].lines == 3
        # The .err holds the traceback alone, as AsFlow writes it; the stored
        # error starts with its last line.
        err = (workspace / "data/transcripts/off.err").read_text()
        assert err.startswith("Traceback (most recent call last):\n")
        assert 'raise TranscriptsDisabled(f"Transcripts are disabled for the video {video_id}")' in err
        assert err.endswith("mymod.TranscriptsDisabled: Transcripts are disabled for the video off\n")
        shown = c.show(first.id, "extract", {"video_id": "off"})
        assert shown.error.split("\n")[0] == "mymod.TranscriptsDisabled: Transcripts are disabled for the video off"
        assert "Traceback (most recent call last):" in shown.error
        assert inst["bad"].error.startswith("xml.etree.ElementTree.ParseError: unclosed token")
        assert not (workspace / "data/transcripts/bad.err").exists()
        assert not (workspace / "data/transcripts/bad.jsonl.zst").exists()

        second, inst = run(c, flow, workspace)
        assert second.state == flow_pb2.RUN_SUCCEEDED
        assert {k: instance_state_name(i.state) for k, i in inst.items()} == {
            "v1": "cached", "v2": "cached", "off": "cached", "bad": "skipped"}
    assert (calls(worker, "v1"), calls(worker, "off"), calls(worker, "bad")) == (1, 1, 2)


def test_an_unmatched_exception_fails_the_run_with_its_traceback(daemon, worker, workspace):
    flow = flow_file(workspace, "boom", """\
        - name: extract
          for_each: {values: [boom], as: video_id}
          on: data/{video_id}.txt
          handler: mymod.extract
          pool: py
          suppress: {errors: [TranscriptsDisabled]}
        """)
    with Client(server=daemon.server) as c:
        result, inst = run(c, flow, workspace)
        assert result.state == flow_pb2.RUN_FAILED
        assert result.error == "extract(video_id=boom): ValueError: boom"
        assert instance_state_name(inst["boom"].state) == "failed"
        full = c.show(result.id, "extract", {"video_id": "boom"}).error
        assert full.startswith("ValueError: boom\nTraceback (most recent call last):\n")
        assert not (workspace / "data/boom.err").exists()


def test_retry_on_a_base_class_then_serializers_by_suffix(daemon, worker, workspace):
    flow = flow_file(workspace, "misc", """\
        - name: flaky
          for_each: {values: [a], as: video_id}
          on: data/flaky-{video_id}.txt.gz
          handler: mymod.flaky
          pool: py
          retry: {attempts: 2, backoff: 10ms, errors: [ConnectionError]}
        - name: summary
          for_each: {values: [a, b], as: video_id}
          on: data/summary-{video_id}.json
          handler: mymod.summary
          pool: py
        """)
    with Client(server=daemon.server) as c:
        result, _ = run(c, flow, workspace)
        assert result.state == flow_pb2.RUN_SUCCEEDED, result.error
        flaky = c.show(result.id, "flaky", {"video_id": "a"})
        assert (instance_state_name(flaky.state), flaky.attempts) == ("done", 3)
    assert calls(worker, "flaky-a") == 3
    text = subprocess.run(["gzip", "-dc", workspace / "data/flaky-a.txt.gz"], capture_output=True, check=True).stdout
    assert text == b"third time lucky"
    # .json: one json.dumps per write, no newline; the async @flow.task is
    # served undecorated (its own `on` is the daemon's business, not used).
    assert json.loads((workspace / "data/summary-b.json").read_text()) == {"video_id": "b", "lang": "en"}
    assert not (workspace / "data/ignored").exists() or not any((workspace / "data/ignored").iterdir())


def test_worker_refuses_a_module_without_functions(daemon, tmp_path, env):
    (tmp_path / "empty_mod.py").write_text("X = 1\n")
    r = subprocess.run([PYTHON, "-m", "asflow.worker", "--server", daemon.server, "--pool", "py", "--module",
                        "empty_mod"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr == f"asflow.worker: module empty_mod ({tmp_path}/empty_mod.py) defines no public function to serve\n"
