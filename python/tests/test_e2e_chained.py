"""Chained starts against a real asflowd (docs/sessions.md): a process
running many short calls of one task is handed the next calls ahead
(StartCall.after) and begins each where the one before it ends, without a
round trip. What must hold: the limit (measured, in one process and across
two), every call run exactly once, failures and revoked chains losing
nothing."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from asflow.client import Client, instance_state_name
from asflow.flow import Flow
from asflow.session import SessionEngine

from conftest import PYTHON, PYTHONPATH, stop


def test_short_calls_are_chained_and_the_limit_holds(flow: Flow, engine: SessionEngine, daemon, workspace: Path):
    running = peak = 0
    calls: dict[int, int] = {}

    @flow.task(on="c/{i}.txt", limit=2)
    async def item(i):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        calls[i] = calls.get(i, 0) + 1
        flow.task.write(f"{i}\n")
        await asyncio.sleep(0)  # let the other slot's call run meanwhile
        running -= 1

    @flow(progress=False)
    async def main():
        async with asyncio.TaskGroup() as tg:
            for i in range(400):
                tg.create_task(item(i))
        return flow.run.run_id

    run_id = asyncio.run(main())
    assert peak <= 2
    assert calls == {i: 1 for i in range(400)}
    assert engine.chained_begun > 0, "no call began chained after another"
    assert all((workspace / f"c/{i}.txt").read_text() == f"{i}\n" for i in range(400))
    with Client(server=daemon.server) as c:
        got = {instance_state_name(i.state) for i in c.tasks(run_id)}
        assert got == {"done"}
        assert all(i.attempts == 1 for i in c.tasks(run_id))


def test_a_failure_sends_the_calls_chained_after_it_back_to_their_queue(flow: Flow, engine: SessionEngine, daemon,
                                                                        workspace: Path):
    class Gone(Exception):
        pass

    calls: dict[int, int] = {}

    @flow.task(on="f/{i}.txt", limit=2, suppress=(Gone,))
    async def item(i):
        calls[i] = calls.get(i, 0) + 1
        if i % 5 == 0:
            raise Gone(f"item {i} is gone")
        flow.task.write(f"{i}\n")

    @flow(progress=False)
    async def main():
        async with asyncio.TaskGroup() as tg:
            for i in range(300):
                tg.create_task(item(i))
        return flow.run.run_id

    run_id = asyncio.run(main())
    assert calls == {i: 1 for i in range(300)}  # a refused chained call is run later, once
    assert engine.chained_refused + engine.chained_begun > 0
    with Client(server=daemon.server) as c:
        by_state: dict[str, int] = {}
        for inst in c.tasks(run_id):
            by_state[instance_state_name(inst.state)] = by_state.get(instance_state_name(inst.state), 0) + 1
            assert inst.attempts == 1, inst
        assert by_state == {"done": 240, "suppressed": 60}
    assert sorted(p.name for p in (workspace / "f").glob("*.err")) == sorted(f"{i}.err" for i in range(0, 300, 5))


CHAIN_SCRIPT = '''\
import asyncio, sys, time
from asflow import Flow

flow = Flow(sys.argv[1])
log = open(sys.argv[2], "a", buffering=1)

@flow.task(on="out/{i}.txt", limit=2)
async def work(i):
    log.write(f"+ {time.monotonic_ns()}\\n")
    flow.task.write(f"{i}\\n")
    log.write(f"- {time.monotonic_ns()}\\n")

@flow(progress=False)
async def fanout():
    async with asyncio.TaskGroup() as tg:
        for i in range(300):
            tg.create_task(work(i))

asyncio.run(fanout())
print(flow.engine.chained_begun)
'''


def test_two_processes_chaining_the_same_task_share_its_limit(daemon, env, tmp_path: Path):
    script = tmp_path / "chained.py"
    script.write_text(CHAIN_SCRIPT)
    log = tmp_path / "events.log"
    environ = dict(env, ASFLOW_SERVER=daemon.server, PYTHONPATH=PYTHONPATH)
    procs = [subprocess.Popen([PYTHON, str(script), str(tmp_path / f"ws{k}"), str(log)], cwd=tmp_path, env=environ,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in (1, 2)]
    try:
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            stop(p)
    events = sorted((int(t), 1 if s == "+" else -1) for s, t in (line.split() for line in log.read_text().splitlines()))
    running = peak = 0
    for _, d in events:
        running += d
        peak = max(peak, running)
    assert len(events) == 1200 and peak <= 2  # one task key, limit 2, shared by both processes
    for k in (1, 2):
        assert sorted((tmp_path / f"ws{k}" / "out").iterdir()) == sorted(
            tmp_path / f"ws{k}" / "out" / f"{i}.txt" for i in range(300))
