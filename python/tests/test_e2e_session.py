"""AsFlow-style code against a real asflowd (FlowService.Session): what
issue 14 lists — caching, the library's files found cached, `*` names,
serializers and compressors read by zstd/gzip, skip / suppress / retry /
fail fast, limit across two processes, rate, nested flows, sync tasks,
tasks without `on`, a daemon restarted mid-flow, asflowctl watch.

In-process tests use a SessionEngine on the test's daemon; the ones that
need processes run scripts written as users write them (`from asflow
import flow`), with ASFLOW_SERVER naming the daemon."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from asflow.client import Client, instance_state_name
from asflow.connection import ConnectOptions
from asflow.exceptions import RunEnded
from asflow.flow import Flow
from asflow.retry import Retry
from asflow.session import SessionEngine
from asflow.v1 import flow_pb2

from conftest import ASFLOWCTL, PYTHON, PYTHONPATH, stop, wait_for


def states(daemon, run_id: int) -> dict[str, str]:
    """{label: state} of a run's instances (label: task's last part + params)."""
    with Client(server=daemon.server) as c:
        return {f"{i.task.rsplit('.', 1)[-1]}({','.join(f'{k}={v}' for k, v in sorted(i.params.items()))})":
                instance_state_name(i.state) for i in c.tasks(run_id)}


def run_of(daemon, run_id: int) -> flow_pb2.Run:
    with Client(server=daemon.server) as c:
        return c.run(run_id)


def unzstd(path: Path) -> bytes:
    return subprocess.run(["zstd", "-d", "-c", str(path)], check=True, capture_output=True).stdout


def ungzip(path: Path) -> bytes:
    return subprocess.run(["gzip", "-d", "-c", str(path)], check=True, capture_output=True).stdout


def script_env(env: dict[str, str], daemon, **extra: str) -> dict[str, str]:
    return dict(env, ASFLOW_SERVER=daemon.server, PYTHONPATH=PYTHONPATH, PYTHONUNBUFFERED="1", **extra)


def test_second_run_is_cached_and_the_function_not_called(flow: Flow, daemon, workspace: Path):
    calls = []

    @flow.task(on="data/{video_id}.jsonl.zst", limit=4)
    async def extract(video_id):
        calls.append(video_id)
        for i in range(3):
            flow.task.write({"video_id": video_id, "i": i})
        return len(calls)

    @flow
    async def transcripts(ids):
        async with asyncio.TaskGroup() as tg:
            for v in ids:
                tg.create_task(extract(v))
        return flow.run.run_id

    first = asyncio.run(transcripts(["a", "b", "c"]))
    assert sorted(calls) == ["a", "b", "c"]
    assert unzstd(workspace / "data/b.jsonl.zst").decode().splitlines() == [
        json.dumps({"video_id": "b", "i": i}) for i in range(3)]
    run = run_of(daemon, first)
    assert (run.flow, run.workspace, dict(run.params)) == ("transcripts", str(workspace), {"ids": "['a', 'b', 'c']"})
    assert run.state == flow_pb2.RUN_SUCCEEDED
    assert set(states(daemon, first).values()) == {"done"}

    calls.clear()
    second = asyncio.run(transcripts(["a", "b", "c"]))
    assert calls == [] and second != first
    assert set(states(daemon, second).values()) == {"cached"}


def test_a_directory_the_library_wrote_is_cached(flow: Flow, daemon, workspace: Path):
    # As AsFlow 0.0.5 left it: outputs by `on`, a `*` hash name, an .err.
    (workspace / "data/t").mkdir(parents=True)
    (workspace / "data/t/a.jsonl").write_text('{"x": 1}\n')
    (workspace / "data/t/gone.err").write_text("Traceback ...\nTranscriptsDisabled: gone\n")
    star = hashlib.md5(b"page(2, lang=fr)").hexdigest()
    (workspace / "data/p").mkdir(parents=True)
    (workspace / f"data/p/{star}.json").write_text("{}")
    called = []

    @flow.task(on="data/t/{v}.jsonl")
    def t(v):
        called.append(v)

    @flow.task(on="data/p/*.json")
    async def page(n, lang="en"):
        called.append(n)

    @flow(progress=False)
    async def main():
        t("a")
        t("gone")
        await page(2, lang="fr")
        return flow.run.run_id

    run_id = asyncio.run(main())
    assert called == []
    assert set(states(daemon, run_id).values()) == {"cached"}


def test_star_names_are_the_md5_of_the_call(flow: Flow, workspace: Path):
    @flow.task(on="h/*.json")
    def fetch(url, page=1, lang="en"):
        flow.task.write({"url": url, "page": page})

    @flow(progress=False)
    async def main():
        fetch("http://x/a", 3)
        fetch("http://x/a", page=4, lang="de")

    asyncio.run(main())
    for text, page in (("fetch(http://x/a, 3)", 3), ("fetch(http://x/a, page=4, lang=de)", 4)):
        out = workspace / "h" / (hashlib.md5(text.encode()).hexdigest() + ".json")
        assert json.loads(out.read_text()) == {"url": "http://x/a", "page": page}


@pytest.mark.parametrize("suffix", ["json", "jsonl", "parquet", "txt"])
@pytest.mark.parametrize("compression", ["", ".gz", ".zst"])
def test_every_serializer_and_compressor(flow: Flow, workspace: Path, suffix: str, compression: str):
    items = [{"a": 1}, "text line", b'{"raw": true}\n']

    @flow.task(on=f"s/out.{suffix}{compression}")
    def write_all():
        if suffix == "json":
            flow.task.write({"doc": [1, 2]})
        elif suffix == "txt":
            flow.task.write("hello ")
            flow.task.write(b"bytes\n")
        else:
            for item in items:
                flow.task.write(item)

    @flow(progress=False)
    async def main():
        write_all()

    asyncio.run(main())
    path = workspace / f"s/out.{suffix}{compression}"
    data = {"": path.read_bytes, ".gz": lambda: ungzip(path), ".zst": lambda: unzstd(path)}[compression]()
    expected = {"json": b'{"doc": [1, 2]}', "txt": b"hello bytes\n",
                "jsonl": b'{"a": 1}\ntext line\n{"raw": true}\n'}
    assert data == expected.get(suffix, expected["jsonl"])  # parquet: JSON lines


def test_suppress_writes_err_and_is_not_called_again_skip_is(flow: Flow, daemon, workspace: Path):
    class TranscriptsDisabled(Exception):
        pass

    calls: dict[str, int] = {}

    @flow.task(on="t/{v}.jsonl.zst", skip=(TimeoutError,), suppress=(TranscriptsDisabled,))
    def extract(v):
        calls[v] = calls.get(v, 0) + 1
        if v == "off":
            raise TranscriptsDisabled(f"Transcripts are disabled for the video {v}")
        if v == "slow":
            raise TimeoutError("read timed out")
        flow.task.write({"v": v})

    @flow(progress=False)
    async def main():
        return [extract(v) for v in ("ok", "off", "slow")], flow.run.run_id

    values, first = asyncio.run(main())
    assert values == [None, None, None]
    err = (workspace / "t/off.err").read_text()
    assert err.startswith("Traceback (most recent call last):") and \
        err.rstrip().endswith("TranscriptsDisabled: Transcripts are disabled for the video off")
    assert not (workspace / "t/slow.jsonl.zst").exists() and not (workspace / "t/slow.err").exists()
    assert states(daemon, first) == {"extract(v=ok)": "done", "extract(v=off)": "suppressed",
                                     "extract(v=slow)": "skipped"}
    _, second = asyncio.run(main())
    assert calls == {"ok": 1, "off": 1, "slow": 2}
    assert states(daemon, second) == {"extract(v=ok)": "cached", "extract(v=off)": "cached",
                                      "extract(v=slow)": "skipped"}


def test_retry_counts(flow: Flow, daemon):
    calls = {"zero": 0, "three": 0}

    @flow.task(retry=0)
    def zero():
        calls["zero"] += 1
        raise ConnectionError("refused")

    @flow.task(retry=Retry(total=3, backoff_factor=0))  # default jitter: up to 1 s per retry
    async def three():
        calls["three"] += 1
        raise ConnectionError("refused")

    @flow(progress=False)
    async def main(fn):
        r = fn()
        if asyncio.iscoroutine(r):
            await r

    with pytest.raises(ConnectionError):
        asyncio.run(main(zero))
    with pytest.raises(ConnectionError):
        asyncio.run(main(three))
    assert calls == {"zero": 1, "three": 4}


def test_fail_fast_cancels_siblings(flow: Flow, daemon):
    started = threading.Event()
    cancelled: list[int] = []
    boom = ValueError("boom")

    @flow.task(limit=4)
    async def slow(n):
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise

    @flow.task
    async def bad():
        await asyncio.to_thread(started.wait, 10)
        raise boom

    @flow(progress=False)
    async def main():
        async with asyncio.TaskGroup() as tg:
            for n in range(3):
                tg.create_task(slow(n))
            tg.create_task(bad())

    t0 = time.monotonic()
    with pytest.raises(ExceptionGroup) as eg:
        asyncio.run(main())
    assert eg.value.exceptions == (boom,)
    assert sorted(cancelled) == [0, 1, 2] and time.monotonic() - t0 < 30
    with Client(server=daemon.server) as c:
        run = c.runs()[0]
        assert run.state == flow_pb2.RUN_FAILED
        by_task = {instance_state_name(i.state) for i in c.tasks(run.id) if i.task.endswith(".slow")}
        assert by_task == {"cancelled"}


def test_nested_flow_sync_task_and_a_task_without_on(flow: Flow, daemon, workspace: Path):
    @flow.task(on="n/{x}.txt")
    def part(x):
        flow.task.write(f"{x}\n")

    @flow.task
    def table(rows):
        return {"rows": rows, "n": len(rows)}

    @flow(progress=False)
    async def inner():
        part("a")
        return flow.run.run_id

    @flow(progress=False)
    async def outer():
        inner_id = await inner()
        part("b")
        return inner_id, flow.run.run_id, table(["a", "b"])

    inner_id, outer_id, value = asyncio.run(outer())
    assert inner_id == outer_id and value == {"rows": ["a", "b"], "n": 2}
    assert states(daemon, outer_id) == {"part(x=a)": "done", "part(x=b)": "done", "table(rows=['a', 'b'])": "done"}
    with Client(server=daemon.server) as c:
        assert [r.flow for r in c.runs()] == ["outer"]
    # Outside any flow: a run of its own, named after the task; the value comes back.
    assert table([1]) == {"rows": [1], "n": 1}
    with Client(server=daemon.server) as c:
        assert c.runs()[0].flow == "table"


LIMIT_SCRIPT = '''\
import asyncio, os, sys, time
from asflow import Flow

flow = Flow(sys.argv[1])
log = sys.argv[2]

@flow.task(on="out/{i}.txt", limit=3)
async def work(i):
    with open(log, "a") as f:
        f.write(f"+ {time.monotonic()}\\n")
    await asyncio.sleep(0.15)
    with open(log, "a") as f:
        f.write(f"- {time.monotonic()}\\n")
    flow.task.write(f"{i}\\n")

@flow(progress=False)
async def fanout():
    async with asyncio.TaskGroup() as tg:
        for i in range(12):
            tg.create_task(work(i))

asyncio.run(fanout())
'''


def test_limit_is_held_across_two_processes(daemon, env, tmp_path: Path):
    script = tmp_path / "limited.py"
    script.write_text(LIMIT_SCRIPT)
    log = tmp_path / "events.log"
    procs = [subprocess.Popen([PYTHON, str(script), str(tmp_path / f"ws{k}"), str(log)], cwd=tmp_path,
                              env=script_env(env, daemon), stderr=subprocess.PIPE, text=True) for k in (1, 2)]
    try:
        for p in procs:
            assert p.wait(60) == 0, p.stderr.read()
    finally:
        for p in procs:
            stop(p)
    events = sorted((float(t), 1 if s == "+" else -1) for s, t in (line.split() for line in log.read_text().splitlines()))
    running = peak = 0
    for _, d in sorted(events, key=lambda e: (e[0], e[1])):
        running += d
        peak = max(peak, running)
    assert len(events) == 48 and peak == 3  # one key: limited.work, shared by both


def test_a_daemon_throttle_key_holds_across_tasks(env, tmp_path: Path):
    from conftest import Daemon
    (tmp_path / "k").mkdir()
    d = Daemon(tmp_path, tmp_path / "k.sock", tmp_path / "k" / "state.db", tmp_path / "k" / "asflowd.log", dict(env),
               extra=["--throttle", "api: {limit: 2}"])
    d.start()
    engine = SessionEngine(ConnectOptions.resolve(server=d.server))
    try:
        (tmp_path / "ws").mkdir()
        flow = Flow(tmp_path / "ws", engine=engine)
        running = peak = 0

        async def hold():
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.05)
            running -= 1

        @flow.task(limit=8, uses=["api"])
        async def a(i):
            await hold()

        @flow.task(limit=8, uses=["api"])
        async def b(i):
            await hold()

        @flow(progress=False)
        async def main():
            async with asyncio.TaskGroup() as tg:
                for i in range(6):
                    tg.create_task(a(i))
                    tg.create_task(b(i))

        asyncio.run(main())
        assert peak == 2  # two tasks, each limit 8, one key of limit 2
        with pytest.raises(TypeError, match="uses"):
            flow.task(uses="api")(lambda: None)
    finally:
        engine.close(5.0)
        d.stop()


def test_rate_spaces_the_starts(flow: Flow):
    starts: list[float] = []

    @flow.task(rate="5/s", limit=8)
    async def ping(i):
        starts.append(time.monotonic())

    @flow(progress=False)
    async def main():
        async with asyncio.TaskGroup() as tg:
            for i in range(5):
                tg.create_task(ping(i))

    asyncio.run(main())
    gaps = [b - a for a, b in zip(sorted(starts), sorted(starts)[1:])]
    assert len(gaps) == 4 and min(gaps) > 0.15, gaps


RESTART_SCRIPT = '''\
import asyncio, os, sys
from asflow import Flow

flow = Flow(sys.argv[1])
gate = sys.argv[2]

@flow.task(on="r/{i}.jsonl", limit=2)
async def item(i):
    open(os.path.join(os.path.dirname(gate), f"started-{i}-{os.getpid()}"), "a").close()
    while i == 0 and not os.path.exists(gate):
        await asyncio.sleep(0.05)
    flow.task.write({"i": i})

@flow(progress=False)
async def restartable():
    async with asyncio.TaskGroup() as tg:
        for i in range(6):
            tg.create_task(item(i))
    print("run", flow.run.run_id, flush=True)

asyncio.run(restartable())
'''


def test_daemon_restarted_mid_flow_the_flow_goes_on(daemon, env, tmp_path: Path):
    script = tmp_path / "restart.py"
    script.write_text(RESTART_SCRIPT)
    ws = tmp_path / "ws"
    gate = tmp_path / "gate" / "open"
    gate.parent.mkdir()
    proc = subprocess.Popen([PYTHON, str(script), str(ws), str(gate)], cwd=tmp_path, env=script_env(env, daemon),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: any(p.name.startswith("started-0-") for p in gate.parent.iterdir()), 20)
        # A stop that does not wait for item(0) (it waits for the gate):
        # the second SIGTERM ends asflowd's --stop-grace at once.
        daemon.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        if daemon.proc.poll() is None:
            daemon.proc.send_signal(signal.SIGTERM)
        daemon.proc.wait(20)
        daemon.start()
        gate.touch()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        stop(proc)
    run_id = int(out.split()[1])
    assert all(json.loads((ws / f"r/{i}.jsonl").read_text()) == {"i": i} for i in range(6))
    run = run_of(daemon, run_id)
    assert run.state == flow_pb2.RUN_SUCCEEDED
    got = states(daemon, run_id)
    # item(i=0) was running when the daemon stopped: it ran again. Another
    # whose output was committed just before the stop, but whose DONE the
    # stopping daemon never recorded, is found by its file: cached.
    assert got["item(i=0)"] == "done", got
    assert set(got.values()) <= {"done", "cached"} and len(got) == 6, got


WATCHED_SCRIPT = '''\
import asyncio, os, sys
from asflow import Flow

flow = Flow(sys.argv[1])
gate = sys.argv[2]

@flow.task(on="w/{i}.txt", limit=4)
async def step(i):
    p = flow.task.progress(total=10, description=f"step {i}")
    p.advance(7)
    while not os.path.exists(gate):
        await asyncio.sleep(0.05)
    flow.task.write(f"{i}\\n")

@flow(progress=False)
async def watched():
    print("run", flow.run.run_id, flush=True)
    async with asyncio.TaskGroup() as tg:
        for i in range(3):
            tg.create_task(step(i))

asyncio.run(watched())
'''


def _has_progress(value, total: float, completed: float) -> bool:
    """A dict anywhere in a --json event with these progress fields."""
    if isinstance(value, dict):
        if value.get("progress_total") == total and value.get("progress_completed") == completed:
            return True
        return any(_has_progress(v, total, completed) for v in value.values())
    if isinstance(value, list):
        return any(_has_progress(v, total, completed) for v in value)
    return False


def test_asflowctl_watch_follows_a_python_run(daemon, env, tmp_path: Path):
    script = tmp_path / "watched.py"
    script.write_text(WATCHED_SCRIPT)
    gate = tmp_path / "gate"
    proc = subprocess.Popen([PYTHON, str(script), str(tmp_path / "ws"), str(gate)], cwd=tmp_path,
                            env=script_env(env, daemon), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watch = None
    try:
        run_id = int(proc.stdout.readline().split()[1])
        watch = subprocess.Popen([str(ASFLOWCTL), "--socket", str(daemon.socket), "watch", str(run_id), "--json"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        events = []
        seen_progress = False
        for line in watch.stdout:
            ev = json.loads(line)
            events.append(ev)
            if not seen_progress and _has_progress(ev, 10, 7):
                seen_progress = True
                gate.touch()
        assert watch.wait(30) == 0, watch.stderr.read()
        assert proc.wait(30) == 0, proc.stderr.read()
    finally:
        stop(proc)
        if watch is not None:
            stop(watch)
    assert seen_progress, events[:5]
    done = [e for e in events if (e.get("instance") or {}).get("kind") == "FINISHED"
            and e["instance"]["instance"].get("state") == "DONE"]
    assert sorted(e["instance"]["instance"]["params"]["i"] for e in done) == ["0", "1", "2"]
    assert events[-1]["run"]["run"]["state"] == "RUN_SUCCEEDED"
    assert events[-1]["run"]["run"]["flow"] == "watched"


def test_cancelled_by_asflowctl_stops_the_flow(flow: Flow, daemon):
    started = threading.Event()

    @flow.task
    async def forever():
        started.set()
        await asyncio.sleep(60)

    @flow(progress=False)
    async def main():
        await forever()

    def cancel():
        started.wait(20)
        with Client(server=daemon.server) as c:
            c.cancel(c.runs()[0].id)

    threading.Thread(target=cancel).start()
    with pytest.raises(RunEnded, match="cancelled"):
        asyncio.run(main())


def test_a_call_its_caller_stopped_waiting_for_is_cancelled_not_run(flow: Flow, daemon):
    gate = threading.Event()
    ran: list[str] = []

    @flow.task(limit=1)
    async def slot(name):
        ran.append(name)
        if name == "first":
            await asyncio.to_thread(gate.wait, 20)

    @flow(progress=False)
    async def main():
        first = asyncio.create_task(slot("first"))
        while not ran:
            await asyncio.sleep(0.01)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(slot("late"), 0.3)  # queued behind "first" (limit 1)
        gate.set()
        await first
        return flow.run.run_id

    run_id = asyncio.run(main())
    assert ran == ["first"]
    with Client(server=daemon.server) as c:
        late = c.show(run_id, slot.task.qualname, {"name": "late"})
    assert instance_state_name(late.state) == "cancelled", late.error
