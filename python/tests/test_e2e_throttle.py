"""Issue 16 from Python, against a real asflowd: throttle keys a Flow
declares, a cooldown rule on a task fed by a loopback server answering 429
with Retry-After (examples/youtube's fixture server, --throttle), and
pause / resume from asflow.client.Client."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from asflow.client import Client, instance_state_name, run_state_name
from asflow.errors import AsflowError
from asflow.flow import Flow
from asflow.throttle import Cooldown

from conftest import PYTHON, REPO, stop, wait_for

FIXTURE = REPO / "examples" / "youtube" / "offline" / "fixture_server.py"


def start_fixture(*flags: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([PYTHON, str(FIXTURE), *flags], stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), url
    return proc, url


class Throttled(Exception):
    """What a client library raises for a 429 (its text carries the header)."""


def test_a_429_cools_the_key_down_without_counting_an_attempt(daemon, engine, workspace: Path, tmp_path: Path):
    log = tmp_path / "requests.log"
    # The first 3 transcript requests of the test get 429, Retry-After: 2.
    server, url = start_fixture("--throttle", "3", "--window", "600", "--retry-after", "2", "--delay", "0.1",
                                "--log", str(log))
    flow = Flow(workspace, engine=engine, throttle={"api": {"limit": 1}})
    videos = ["vid01", "vid02", "vid04", "vid06"]

    # `message` alone: matched on the exception's text (its traceback).
    @flow.task(on="t/{video_id}.json", uses=["api"],
               cooldown=Cooldown(message=r"HTTP 429 Too Many Requests", retry_after=r"Retry-After: (\d+)"))
    def transcript(video_id):
        try:
            with urllib.request.urlopen(f"{url}/transcript/{video_id}", timeout=10) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise Throttled(f"HTTP {e.code} {e.reason}; Retry-After: {e.headers.get('Retry-After')}") from None
        flow.task.write(body)

    seen: list[tuple[str, str, str]] = []
    stop_polling = threading.Event()

    def poll() -> None:
        with Client(server=daemon.server) as c:
            while not stop_polling.is_set():
                seen.extend((k.name, k.state, k.note) for k in c.throttle() if k.name == "api")
                time.sleep(0.1)

    @flow(progress=False)
    async def polite():
        await asyncio.gather(*(asyncio.to_thread(transcript, v) for v in videos))
        return flow.run.run_id

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        run_id = asyncio.run(polite())
    finally:
        stop_polling.set()
        poller.join()
        stop(server)

    with Client(server=daemon.server) as c:
        # (the flow returned: its run is closed as it returns)
        assert wait_for(lambda: run_state_name(c.run(run_id).state) == "succeeded"), (c.run(run_id), list(c.tasks(run_id)))
        instances = list(c.tasks(run_id))
    assert sorted(i.params["video_id"] for i in instances) == videos
    assert all(instance_state_name(i.state) == "done" and i.attempts == 1 for i in instances), instances
    for v in videos:
        assert json.loads((workspace / "t" / f"{v}.json").read_text())[0]["text"] == f"{v} line 0"

    requests = [line.split() for line in log.read_text().splitlines()]
    requests.sort(key=lambda r: float(r[0]))
    assert [r[2] for r in requests].count("429") == 3 and len(requests) == 7, requests
    for i, r in enumerate(requests):
        if r[2] == "429" and i + 1 < len(requests):
            # Nothing reached the server while the key cooled down.
            assert float(requests[i + 1][0]) >= float(r[1]) + 2.0 - 0.01, (r, requests[i + 1])
    cooling = [note for _, state, note in seen if state == "cooling down"]
    assert cooling and "429" in cooling[0] and "transcript(video_id=vid0" in cooling[0], seen


def test_a_key_the_flow_declares_holds_two_tasks_to_its_limit(engine, workspace: Path, daemon):
    flow = Flow(workspace, engine=engine, throttle={"pair": {"limit": 2}})
    flow.throttle("paced", rate="auto(max: 50/s, min: 1/s)")
    running = peak = 0
    keys: list = []

    async def hold():
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    @flow.task(limit=8, uses=["pair", "paced"])
    async def a(i):
        await hold()
        if i == 0:
            keys.extend(await asyncio.to_thread(lambda: Client(server=daemon.server).throttle()))

    @flow.task(limit=8, uses=["pair"])
    async def b(i):
        await hold()

    @flow(progress=False)
    async def pairs():
        async with asyncio.TaskGroup() as tg:
            for i in range(6):
                tg.create_task(a(i))
                tg.create_task(b(i))

    asyncio.run(pairs())
    assert peak == 2  # two tasks, each limit 8, one key of limit 2
    by_name = {k.name: k for k in keys}
    assert by_name["pair"].limit == 2 and by_name["pair"].defined_by == "flow pairs"
    assert 1 <= by_name["pair"].in_flight <= 2
    assert by_name["paced"].rate == "auto(max: 50/s, min: 1/s)" and by_name["paced"].effective_rate == 50

    # Another flow defining the key differently while none of pairs' runs is
    # active may: the definition belongs to the active runs.
    other = Flow(workspace, engine=engine, throttle={"pair": {"limit": 3}})

    @other.task(uses=["pair"])
    async def c():
        return "ok"

    @other(progress=False)
    async def again():
        return await c()

    assert asyncio.run(again()) == "ok"
    with pytest.raises(ValueError, match="only use"):
        Flow(throttle={"a b": {"limit": 1}})
    with pytest.raises(ValueError, match="min is above max"):
        flow.throttle("x", rate="auto(max: 1/s, min: 2/s)")
    with pytest.raises(TypeError, match="cooldown"):
        flow.task(cooldown={"for": 5})(lambda: None)
    with pytest.raises(ValueError, match="one capture group"):
        Cooldown(errors=[Throttled], retry_after=r"(\d+)-(\d+)")


def test_pause_from_the_client_holds_a_task_and_resume_lets_it_finish(daemon, engine, workspace: Path):
    flow = Flow(workspace, engine=engine)
    release = threading.Event()
    started: list[int] = []

    @flow.task(on="p/{i}.json", limit=1)
    def step(i):
        started.append(i)
        if i == 0:
            release.wait(30)
        flow.task.write({"i": i})

    @flow(progress=False)
    async def paused():
        await asyncio.gather(*(asyncio.to_thread(step, i) for i in range(3)))
        return flow.run.run_id

    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(run_id=asyncio.run(paused())))
    runner.start()
    try:
        assert wait_for(lambda: started == [0])
        with Client(server=daemon.server) as c:
            status = c.pause(step)  # the task's qualified name
            assert status.name == step.task.qualname and status.is_task and status.state == "paused"
            assert status.paused_until_ms == 0
            release.set()
            assert wait_for(lambda: (workspace / "p" / "0.json").exists())
            time.sleep(1.0)  # a paused task starts nothing: the other two wait
            assert started == [0]
            listed = {k.name: k for k in c.throttle()}
            assert listed[step.task.qualname].state == "paused"
            assert "paused" in listed[step.task.qualname].note
            out = daemon.ctl("throttle")
            assert step.task.qualname in out.stdout and "paused" in out.stdout, out.stdout
            resumed = c.resume(step)
            assert resumed.was_paused and resumed.status.state == "open"
            assert not c.resume(step).was_paused
            # With a duration: it lifts on its own.
            timed = c.pause("no-such-key-yet.task", for_=60)
            assert timed.paused_until_ms > time.time() * 1000 + 50_000
            c.resume("no-such-key-yet.task")
            with pytest.raises(AsflowError) as e:
                c.pause("nothing_named_so")
            assert "no throttle key or task named 'nothing_named_so'" in e.value.message
            with pytest.raises(ValueError):
                c.pause(step, for_=-1)
        runner.join(30)
        assert not runner.is_alive()
    finally:
        release.set()
        runner.join(30)
    assert sorted(started) == [0, 1, 2]
    with Client(server=daemon.server) as c:
        assert wait_for(lambda: run_state_name(c.run(result["run_id"]).state) == "succeeded")
