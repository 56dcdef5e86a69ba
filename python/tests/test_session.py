"""The session engine (asflow.session, asflow.stream) against the fake
Session service of fake_session.py: what a decorated call sends, waits
for, runs, returns and raises; batching; chunking; reconnecting."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import zstandard

from asflow.connection import ConnectOptions
from asflow.exceptions import RunEnded, module_name
from asflow.flow import Flow
from asflow.retry import Retry
from asflow.session import SessionEngine
from asflow.v1 import flow_pb2

from conftest import PYTHONPATH, wait_for
from fake_session import FakeDaemon


@pytest.fixture
def fake(tmp_path: Path):
    d = FakeDaemon(str(tmp_path / "fake.sock"), str(tmp_path)).start()
    yield d
    d.stop()


@pytest.fixture
def engine(fake: FakeDaemon):
    e = SessionEngine(ConnectOptions.resolve(server=f"unix:{fake.socket_path}"))
    yield e
    e.close(2.0)


@pytest.fixture
def flow(tmp_path: Path, engine: SessionEngine) -> Flow:
    return Flow(tmp_path / "ws", engine=engine)


def zst(path: Path) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes())


def test_caching_on_the_second_run(flow: Flow, fake: FakeDaemon, tmp_path: Path):
    calls = []

    @flow.task(on="data/{n}.jsonl.zst")
    async def extract(n, lang="en"):
        calls.append(n)
        for i in range(3):
            flow.task.write({"n": n, "i": i, "lang": lang})
        return n * 10

    @flow(progress=False)
    async def main():
        async with asyncio.TaskGroup() as tg:
            ts = [tg.create_task(extract(n)) for n in range(5)]
        return [t.result() for t in ts]

    assert asyncio.run(main()) == [0, 10, 20, 30, 40]
    assert sorted(calls) == [0, 1, 2, 3, 4]
    lines = zst(tmp_path / "ws/data/3.jsonl.zst").decode().splitlines()
    assert [json.loads(x) for x in lines] == [{"n": 3, "i": i, "lang": "en"} for i in range(3)]
    run = fake.runs[1]
    assert run.flow == "main" and run.workspace == str(tmp_path / "ws") and run.state == flow_pb2.RUN_SUCCEEDED
    inst = sorted(fake.instances(1), key=lambda i: i.params["n"])[0]
    assert inst.task == extract.task.qualname and extract.task.qualname.startswith("test_session.") and inst.params == {"n": "0", "lang": "en"}
    assert inst.output == "data/0.jsonl.zst"

    calls.clear()
    assert asyncio.run(main()) == [None] * 5  # cached: not called, None
    assert calls == []
    assert all(i.state == flow_pb2.CACHED for i in fake.instances(2))


def test_ops_are_batched(flow: Flow, fake: FakeDaemon):
    @flow.task(on="b/{n}.jsonl", limit=4)
    async def t(n):
        flow.task.write({"n": n})

    @flow(progress=False)
    async def main():
        async with asyncio.TaskGroup() as tg:
            for n in range(400):
                tg.create_task(t(n))

    asyncio.run(main())
    ops = sum(fake.ops.values())
    assert ops >= 400 * 3  # call, output, result per call
    # Far fewer messages than ops both ways (a message per op would be 1,200+).
    assert fake.requests < ops / 3, (fake.requests, ops)
    assert fake.responses < fake.events / 2, (fake.responses, fake.events)
    assert fake.max_running[t.task.qualname] == 4


def test_output_chunks_respect_max_chunk_bytes(tmp_path: Path):
    fake = FakeDaemon(str(tmp_path / "f.sock"), str(tmp_path), chunk_bytes=1000).start()
    engine = SessionEngine(ConnectOptions.resolve(server=f"unix:{fake.socket_path}"))
    try:
        flow = Flow(tmp_path, engine=engine)

        @flow.task(on="big.txt.gz")
        def big():
            for i in range(3000):
                flow.task.write(f"line {i}\n")

        @flow(progress=False)
        async def main():
            big()

        asyncio.run(main())
        assert not fake.violations
        text = gzip.decompress((tmp_path / "big.txt.gz").read_bytes()).decode()
        assert text == "".join(f"line {i}\n" for i in range(3000))
        assert fake.ops["output"] >= len(text) // 1000
    finally:
        engine.close(2.0)
        fake.stop()


def test_exceptions_map_to_the_rules(flow: Flow, fake: FakeDaemon, tmp_path: Path):
    class Disabled(Exception):
        pass

    calls: dict[str, int] = {}
    boom = ValueError("boom")

    @flow.task(on="t/{v}.jsonl", skip=(KeyError,), suppress=(Disabled,))
    def extract(v):
        calls[v] = calls.get(v, 0) + 1
        if v == "off":
            raise Disabled(f"disabled {v}")
        if v == "flaky":
            raise KeyError(v)
        if v == "boom":
            raise boom
        flow.task.write({"v": v})

    @flow(progress=False)
    async def main(*vs):
        return [extract(v) for v in vs]

    assert asyncio.run(main("ok", "off", "flaky")) == [None, None, None]
    err = tmp_path / "ws/t/off.err"
    assert "Traceback" in err.read_text() and "Disabled: disabled off" in err.read_text()
    assert asyncio.run(main("ok", "off", "flaky")) == [None, None, None]
    assert calls == {"ok": 1, "off": 1, "flaky": 2}  # suppressed: not again; skipped: again
    with pytest.raises(ValueError) as raised:
        asyncio.run(main("boom"))
    assert raised.value is boom  # the original object
    types_seen = fake.instances(3)[0].error
    assert "ValueError: boom" in types_seen and "Traceback" in types_seen
    assert fake.runs[3].state == flow_pb2.RUN_FAILED


def test_retry_counts(flow: Flow):
    calls = {"once": 0, "four": 0}

    @flow.task(retry=0)
    def once():
        calls["once"] += 1
        raise RuntimeError("no")

    @flow.task(retry=Retry(total=3, backoff_factor=0, backoff_jitter=0))
    async def four():
        calls["four"] += 1
        raise RuntimeError("again")

    @flow(progress=False)
    async def main():
        for fn in (once, four):
            try:
                r = fn()
                if asyncio.iscoroutine(r):
                    await r
            except RuntimeError:
                pass

    with pytest.raises(RunEnded):  # fail fast ended the run after `once` failed
        asyncio.run(main())
    assert calls == {"once": 1, "four": 0}

    @flow(progress=False)
    async def only_four():
        await four()

    with pytest.raises(RuntimeError, match="again"):
        asyncio.run(only_four())
    assert calls["four"] == 4


def test_fail_fast_cancels_siblings(flow: Flow, fake: FakeDaemon):
    started = threading.Event()
    cancelled = []

    @flow.task(limit=8)
    async def slow(n):
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise

    @flow.task
    async def bad():
        while not started.is_set():
            await asyncio.sleep(0.01)
        raise ValueError("bad")

    @flow(progress=False)
    async def main():
        async with asyncio.TaskGroup() as tg:
            for n in range(3):
                tg.create_task(slow(n))
            tg.create_task(bad())

    with pytest.raises(ExceptionGroup) as eg:
        asyncio.run(main())
    assert [type(e) for e in eg.value.exceptions] == [ValueError]
    assert sorted(cancelled) == [0, 1, 2]
    assert fake.runs[1].state == flow_pb2.RUN_FAILED


def test_nested_flow_shares_the_run_and_standalone_task_has_its_own(flow: Flow, fake: FakeDaemon):
    @flow.task(on="p/{x}.txt")
    def part(x):
        flow.task.write(f"{x}\n")
        assert flow.task.run is not None
        return flow.task.progress()

    @flow(progress=False)
    async def inner():
        part("a")
        return flow.run.run_id

    @flow(progress=False)
    async def outer():
        inner_id = await inner()
        part("b")
        return inner_id, flow.run.run_id

    inner_id, outer_id = asyncio.run(outer())
    assert inner_id == outer_id == 1
    assert {i.params["x"] for i in fake.instances(1)} == {"a", "b"}
    assert part("c") is None  # outside any flow: a run of its own; no progress handle
    assert fake.runs[2].flow == "part" and fake.runs[2].params == {"x": "c"}
    assert fake.runs[2].state == flow_pb2.RUN_SUCCEEDED


def test_sync_task_inside_async_flow_does_not_block_the_stream(flow: Flow):
    @flow.task(limit=4)
    async def a(n):
        await asyncio.sleep(0.001)
        return n

    @flow.task
    def s(n):
        return n * 2

    @flow(progress=False)
    async def main():
        async with asyncio.TaskGroup() as tg:
            ts = [tg.create_task(a(n)) for n in range(50)]
            # A plain task called on the loop's thread, while async calls wait.
            doubled = [s(n) for n in range(5)]
        return [t.result() for t in ts], doubled

    assert asyncio.run(main()) == (list(range(50)), [0, 2, 4, 6, 8])


def test_progress_reaches_the_daemon(flow: Flow, fake: FakeDaemon):
    seen = threading.Event()

    @flow.task
    async def t():
        p = flow.task.progress(total=5, description="fetching")
        for _ in range(3):
            p.advance()
        await asyncio.to_thread(seen.wait, 10)

    @flow(progress=False)
    async def main():
        await t()

    def watch():
        assert wait_for(lambda: 1 in fake.runs and any(i.progress for i in fake.instances(1)))
        seen.set()

    threading.Thread(target=watch).start()
    asyncio.run(main())
    assert fake.instances(1)[0].progress == (5.0, 3.0, "fetching")


def test_reconnect_resumes_the_run(flow: Flow, fake: FakeDaemon, engine: SessionEngine, tmp_path: Path):
    calls: dict[int, int] = {}
    gate = threading.Event()

    @flow.task(on="r/{n}.txt", limit=8)
    async def t(n):
        calls[n] = calls.get(n, 0) + 1
        if n == 0 and calls[n] == 1:
            await asyncio.to_thread(gate.wait, 10)  # running when the stream breaks
        flow.task.write(f"{n}\n")

    @flow(progress=False)
    async def main():
        async with asyncio.TaskGroup() as tg:
            for n in range(5):
                tg.create_task(t(n))
        return flow.run.run_id

    def cut_when_running():
        wait_for(lambda: calls.get(0) == 1 and all(calls.get(n) for n in range(1, 5)))
        wait_for(lambda: all(i.state != flow_pb2.RUNNING for i in fake.runs[1].instances.values()
                             if i.params["n"] != "0"))
        fake.cut()
        gate.set()

    threading.Thread(target=cut_when_running).start()
    assert asyncio.run(main()) == 1
    assert engine.stream is not None and engine.stream.connects >= 2
    assert calls[0] == 2 and all(calls[n] == 1 for n in range(1, 5))  # only the one running ran again
    assert all((tmp_path / f"ws/r/{n}.txt").read_text() == f"{n}\n" for n in range(5))
    assert fake.runs[1].state == flow_pb2.RUN_SUCCEEDED and len(fake.runs) == 1


def test_refused_workspace_and_cancelled_run(tmp_path: Path, fake: FakeDaemon, engine: SessionEngine):
    outside = Flow("/", engine=engine)

    @outside(progress=False)
    async def nowhere():
        pass

    with pytest.raises(RunEnded, match="not below an allowed root"):
        asyncio.run(nowhere())

    flow = Flow(tmp_path, engine=engine)
    started = threading.Event()

    @flow.task
    async def forever():
        started.set()
        await asyncio.sleep(30)

    @flow(progress=False)
    async def main():
        await forever()

    threading.Thread(target=lambda: (started.wait(10), fake.cancel_run(1))).start()
    with pytest.raises(RunEnded, match="cancelled"):
        asyncio.run(main())


def test_a_caller_cancelling_a_queued_call(flow: Flow, fake: FakeDaemon):
    ran = []

    @flow.task
    async def t():
        ran.append(1)

    @flow(progress=False)
    async def main():
        fake.hold = True
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(t(), 0.2)
        with fake.lock:
            fake.hold = False
            fake._schedule()
        # The start that comes later is answered as cancelled, never run.
        assert await asyncio.to_thread(wait_for, lambda: fake.instances(1)[0].state == flow_pb2.CANCELLED)
        return ran

    assert asyncio.run(main()) == []


def test_heartbeats_when_idle(tmp_path: Path):
    fake = FakeDaemon(str(tmp_path / "f.sock"), str(tmp_path), heartbeat_ms=20).start()
    engine = SessionEngine(ConnectOptions.resolve(server=f"unix:{fake.socket_path}"))
    try:
        flow = Flow(tmp_path, engine=engine)

        @flow(progress=False)
        async def idle():
            assert await asyncio.to_thread(wait_for, lambda: fake.ops["heartbeat"] >= 3)

        asyncio.run(idle())
        assert fake.ops["heartbeat"] >= 3
    finally:
        engine.close(2.0)
        fake.stop()


def test_unreachable_daemon_says_where_it_looked(tmp_path: Path):
    engine = SessionEngine(ConnectOptions.resolve(server=f"unix:{tmp_path}/nothing.sock"))
    flow = Flow(tmp_path, engine=engine)

    @flow.task
    def t():
        pass

    from asflow.errors import AsflowError
    with pytest.raises(AsflowError, match="nothing.sock"):
        t()


def test_main_module_names(tmp_path: Path):
    pkg = tmp_path / "flows"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "playlist.py").write_text(textwrap.dedent("""\
        from asflow.exceptions import qualified_name
        def extract(): pass
        class E(Exception): pass
        print(qualified_name(extract), qualified_name(E))
    """))
    env = {"PYTHONPATH": PYTHONPATH, "PATH": "/usr/bin:/bin"}
    for argv in (["-m", "flows.playlist"], ["flows/playlist.py"],
                 ["-c", "import flows.playlist"]):
        out = subprocess.run([sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert out.stdout.split() == ["flows.playlist.extract", "flows.playlist.E"], (argv, out.stderr)
    assert module_name("os.path") == "os.path"


def test_the_default_flow_uses_asflow_server(fake: FakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import asflow
    from asflow.session import default_engine

    monkeypatch.setenv("ASFLOW_SERVER", f"unix:{fake.socket_path}")
    monkeypatch.chdir(tmp_path)

    @asflow.flow.task(on="d/{x}.json")
    def t(x):
        asflow.flow.task.write({"x": x})

    t("a")
    assert json.loads((tmp_path / "d/a.json").read_text()) == {"x": "a"}
    assert asflow.flow.engine is default_engine() and fake.runs[1].workspace == str(tmp_path)


class _StubStream:
    """What _chain_locked needs of a Stream: its epoch, the welcome's
    chained_late_begin, and the ops it queues."""

    def __init__(self, late: bool) -> None:
        self.epoch = 2
        self.live = True
        self.chained_late_begin = late
        self.ops: list[tuple] = []

    def push_locked(self, ops, epoch: int) -> bool:
        self.ops.extend(ops)
        return True


def _chained_start(late: bool, prev_state: str):
    """Calls 1 and 2 of one run; call 1 is `prev_state`; a start for call 2
    chained after call 1 arrives. (engine, the two calls, the stub stream)."""
    from asflow.session import _Call, _Run
    from asflow.task import Call
    from asflow.v1 import session_pb2

    engine = SessionEngine(ConnectOptions.resolve(server="unix:/nonexistent.sock"))
    stream = engine.stream = _StubStream(late)  # type: ignore[assignment]
    run = _Run(1, "f", "/", {}, "", None, None)
    calls = {i: _Call(i, run, None, Call(None, {}, None, ""), (), {}, None) for i in (1, 2)}  # type: ignore[arg-type]
    engine._calls.update(calls)
    if prev_state == "running":
        calls[1].running = True
    elif prev_state == "ended well":
        calls[1].ok_epoch = stream.epoch
    elif prev_state == "ended well on the stream before":
        calls[1].ok_epoch = stream.epoch - 2
    event = session_pb2.SessionEvent()
    event.start.call_id, event.start.attempt, event.start.after = 2, 1, 1
    engine.on_events([event], stream.epoch)
    return engine, calls, stream


def test_a_chained_start_after_a_running_call_waits_for_it():
    from asflow.session import START
    engine, calls, stream = _chained_start(True, "running")
    assert calls[1].next is calls[2] and calls[2].chained == (1, 2)
    assert calls[2].events == () and stream.ops == []
    # It ends well: the chained call begins, named in its result.
    assert engine._begin_next_locked(calls[1], {}) == 2
    assert calls[2].events == ((START, 1, 2),)
    assert engine.chained_begun == 1


def test_a_chained_start_arriving_after_its_call_ended_well_begins_at_once():
    from asflow.session import START
    engine, calls, stream = _chained_start(True, "ended well")
    assert calls[2].events == ((START, 1, 2),)  # delivered: the daemon passed the slot on
    assert stream.ops == []
    assert engine.chained_late == 1 and engine.chained_refused == 0


@pytest.mark.parametrize("late,prev_state", [
    (True, "failed"),                           # not ended well: the slot was freed
    (True, "ended well on the stream before"),  # that result never reached this daemon
    (False, "ended well"),                      # a daemon without chained_late_begin freed the slot
])
def test_a_chained_start_is_refused_when_the_slot_was_not_passed_on(late: bool, prev_state: str):
    from asflow.stream import RESULT
    engine, calls, stream = _chained_start(late, prev_state)
    assert calls[2].events == ()
    assert stream.ops == [(RESULT, 2, False, (), "", True, 0)]  # cancelled: back to its queue
    assert engine.chained_refused == 1 and engine.chained_late == 0


def test_a_revoke_refuses_a_chained_call_not_begun_and_leaves_a_begun_one_alone():
    from asflow.session import START
    from asflow.stream import RESULT
    from asflow.v1 import session_pb2

    def cancel(engine, stream, call_id: int, unless_begun: bool) -> None:
        event = session_pb2.SessionEvent()
        event.cancel.call_id, event.cancel.unless_begun = call_id, unless_begun
        engine.on_events([event], stream.epoch)

    engine, calls, stream = _chained_start(True, "running")  # call 2 waits on call 1
    cancel(engine, stream, 2, True)
    assert stream.ops == [(RESULT, 2, False, (), "", True, 0)] and calls[1].next is None

    engine, calls, stream = _chained_start(True, "ended well")  # call 2 began at once
    cancel(engine, stream, 2, True)
    assert stream.ops == [] and calls[2].events == ((START, 1, 2),) and calls[2].cancel_by is None
    cancel(engine, stream, 2, False)  # a cancel proper stops it
    assert calls[2].cancel_by == "daemon"
