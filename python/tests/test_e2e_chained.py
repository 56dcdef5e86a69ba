"""Chained starts against a real asflowd (docs/sessions.md): a process
running many short calls of one task is handed the next calls ahead
(StartCall.after) and begins each where the one before it ends, without a
round trip. What must hold: the limit (measured, in one process and across
two), every call run exactly once, failures and revoked chains losing
nothing."""

from __future__ import annotations

import asyncio
import queue
import subprocess
import threading
import time
from pathlib import Path

import grpc

from asflow.client import Client, instance_state_name
from asflow.flow import Flow
from asflow.session import SessionEngine
from asflow.v1 import flow_pb2, service_pb2_grpc, session_pb2

from conftest import PYTHON, PYTHONPATH, stop, wait_for


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


class RawSession:
    """The Session protocol spoken by hand, as a client that chains: for
    orders of events the package's engine only meets by chance."""

    def __init__(self, server: str) -> None:
        self.channel = grpc.insecure_channel(server)
        self._requests: queue.Queue[session_pb2.SessionRequest | None] = queue.Queue()
        self._events: queue.Queue[session_pb2.SessionEvent | None] = queue.Queue()
        self.seen: list[session_pb2.SessionEvent] = []
        call = service_pb2_grpc.FlowServiceStub(self.channel).Session(iter(self._requests.get, None))
        self._reader = threading.Thread(target=self._read, args=(call,), daemon=True)
        self._reader.start()

    def _read(self, call) -> None:
        try:
            for response in call:
                for event in response.events:
                    self._events.put(event)
        except grpc.RpcError:
            pass
        self._events.put(None)

    def send(self, *ops: session_pb2.SessionOp) -> None:
        self._requests.put(session_pb2.SessionRequest(ops=list(ops)))

    def expect(self, kind: str) -> session_pb2.SessionEvent:
        """The next event of `kind`; the others are kept in `seen`."""
        while True:
            event = self._events.get(timeout=20)
            assert event is not None, f"the stream ended while waiting for {kind}"
            if event.WhichOneof("event") == kind:
                return event
            self.seen.append(event)

    def close(self) -> None:
        self._requests.put(None)
        self._reader.join(10)
        self.channel.close()


def _op(**kw) -> session_pb2.SessionOp:
    return session_pb2.SessionOp(**kw)


def _call(i: int) -> session_pb2.SessionOp:
    return _op(call=session_pb2.CallOp(run=1, call_id=i + 1, task="t", params={"i": str(i)}, output=f"r/{i}.txt"))


def _ends_well(i: int, started_next: int = 0) -> list[session_pb2.SessionOp]:
    return [_op(output=session_pb2.OutputOp(call_id=i + 1, data=f"{i}\n".encode())),
            _op(result=session_pb2.ResultOp(call_id=i + 1, ok=True, started_next=started_next))]


def _chain_of_two(daemon, workspace: Path, calls: int = 4) -> tuple[RawSession, int]:
    """Task t (limit 1): call 0 runs (for 50 ms: slower than a call the
    daemon chains 16 deep behind) while calls 1-3 queue; it ends without a
    chain, so the daemon starts call 1 with call 2 chained after it.
    (the session, the run id)"""
    raw = RawSession(daemon.server)
    raw.send(_op(hello=session_pb2.SessionHello(client="raw-test", chained_starts=True)),
             _op(open_run=session_pb2.OpenRun(ref=1, flow="raw", workspace=str(workspace))),
             _op(declare_task=session_pb2.DeclareTask(run=1, spec=flow_pb2.TaskSpec(name="t", on="r/{i}.txt",
                                                                                     limit=1))))
    assert raw.expect("welcome").welcome.chained_late_begin
    run_id = raw.expect("run_opened").run_opened.run_id
    raw.send(_call(0))
    assert raw.expect("start").start.call_id == 1
    began = time.monotonic()
    raw.send(*(_call(i) for i in range(1, calls)))
    with Client(server=daemon.server) as c:
        assert wait_for(lambda: sum(instance_state_name(i.state) == "queued" for i in c.tasks(run_id)) == calls - 1)
    time.sleep(max(0.0, 0.05 - (time.monotonic() - began)))  # a lower bound on its duration, not a wait for a race
    raw.send(*_ends_well(0))
    s1, s2 = raw.expect("start").start, raw.expect("start").start
    assert (s1.call_id, s1.after) == (2, 0)
    assert (s2.call_id, s2.after) == (3, s1.call_id)
    return raw, run_id


def _run_the_rest(raw: RawSession, starts: list[session_pb2.StartCall], ended: set[int], calls: int = 4) -> None:
    """Answers starts as the package does: a start runs when it is not
    chained or the call it follows has ended well (here: at once, ok)."""
    while len(ended) < calls:
        for s in list(starts):
            if s.after == 0 or s.after in ended:
                raw.send(*_ends_well(s.call_id - 1))
                ended.add(s.call_id)
                starts.remove(s)
        if len(ended) < calls:
            starts.append(raw.expect("start").start)


def _all_done(daemon, raw: RawSession, run_id: int, workspace: Path, calls: int = 4) -> None:
    """Every call DONE (its call_state), its file written, one attempt each."""
    states = {e.call_state.call_id: e.call_state.state for e in raw.seen if e.WhichOneof("event") == "call_state"}
    while len(states) < calls:
        cs = raw.expect("call_state").call_state
        states[cs.call_id] = cs.state
    assert states == {i: flow_pb2.DONE for i in range(1, calls + 1)}
    assert [(workspace / f"r/{i}.txt").read_text() for i in range(calls)] == [f"{i}\n" for i in range(calls)]
    with Client(server=daemon.server) as c:
        assert [(instance_state_name(i.state), i.attempts) for i in c.tasks(run_id)] == [("done", 1)] * calls


def test_a_chained_call_whose_start_arrives_after_its_call_ended_well_keeps_the_slot(daemon, workspace: Path):
    raw, run_id = _chain_of_two(daemon, workspace)
    try:
        # Call 1 ends well before the start of call 2 (chained after it)
        # was read: no started_next. The slot is call 2's all the same, so
        # call 3 is not started beside it but chained after it.
        raw.send(*_ends_well(1))
        s3 = raw.expect("start").start
        assert (s3.call_id, s3.after) == (4, 3)
        raw.send(*_ends_well(2, started_next=4), *_ends_well(3))
        _all_done(daemon, raw, run_id, workspace)
    finally:
        raw.close()


def test_a_refused_chained_call_does_not_take_the_slot_of_the_call_before(daemon, workspace: Path):
    raw, run_id = _chain_of_two(daemon, workspace)
    try:
        # Call 2 is refused (as a client does when a cancel came for it),
        # then call 1 ends well: the slot is free again, not call 2's; call
        # 2 goes back to its queue, not as an attempt, and starts afresh.
        raw.send(_op(result=session_pb2.ResultOp(call_id=3, cancelled=True)), *_ends_well(1))
        fresh = raw.expect("start").start
        assert fresh.after == 0 and fresh.call_id in (3, 4)
        _run_the_rest(raw, [fresh], {1, 2})
        _all_done(daemon, raw, run_id, workspace)
    finally:
        raw.close()


def test_no_call_is_chained_after_a_call_whose_result_is_already_read(daemon, workspace: Path):
    raw, run_id = _chain_of_two(daemon, workspace, calls=6)
    try:
        # Call 2 (chained after call 1) begins and ends at once, in the same
        # message as call 1's result: the daemon may read call 2's result
        # before it chains anything after call 2. A start chained after it
        # then would be begun by the client (call 2 ended well) while call
        # 2's slot is free for a fresh start: two running under limit 1.
        raw.send(*_ends_well(1, started_next=3), *_ends_well(2))
        ended = {1, 2, 3}
        runnable: set[int] = set()
        chained: list[session_pb2.StartCall] = []
        deadline = time.monotonic() + 1.0  # starts that would break the limit come at once
        while time.monotonic() < deadline:
            try:
                event = raw._events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            assert event is not None
            if event.WhichOneof("event") != "start":
                raw.seen.append(event)
                continue
            s = event.start
            if s.after == 0 or s.after in ended:
                runnable.add(s.call_id)  # what the client runs now
            else:
                chained.append(s)  # waits for the call it follows
            assert len(runnable) <= 1, f"calls {sorted(runnable)} may run at once under limit 1"
        assert len(runnable) == 1
        # The rest, one at a time.
        first = runnable.pop()
        raw.send(*_ends_well(first - 1))
        ended.add(first)
        _run_the_rest(raw, chained, ended, 6)
        _all_done(daemon, raw, run_id, workspace, 6)
    finally:
        raw.close()
