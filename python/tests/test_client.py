"""asflow.client.Client against a real asflowd: every RPC it wraps."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest

from asflow.client import (AsflowError, Client, InstanceChanged, InstanceEventKind, RunChanged, Snapshot,
                           instance_state_name, run_state_name)
from asflow.flowfile import FlowFileError
from asflow.v1 import flow_pb2

from conftest import REPO, wait_for

FANOUT = """\
name: fanout
params:
  n: "3"
tasks:
  - name: item
    for_each: {values: [a, b, c, gone], as: id}
    on: data/{id}.jsonl.gz
    run: [sh, -c, 'if [ "$0" = gone ]; then echo "TranscriptsDisabled: $0" >&2; exit 3; fi; echo "{{\\"id\\": \\"$0\\"}}"', "{id}"]
    suppress: {exit_codes: [3]}
"""

SLOW = """\
name: slow
tasks:
  - name: wait
    for_each: {values: [x, y], as: id}
    on: out/{id}.txt
    run: [sleep, "30"]
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def finished(client: Client, run_id: int, timeout: float = 20.0) -> flow_pb2.Run:
    assert wait_for(lambda: client.run(run_id).state != flow_pb2.RUN_RUNNING, timeout)
    return client.run(run_id)


def test_submit_watch_run_runs_tasks_show(daemon, workspace):
    flow = write(workspace / "fanout.flow.yaml", FANOUT)
    with Client(server=daemon.server) as c:
        submitted = c.submit(flow, {"n": "4"}, workspace=workspace)
        events = list(c.watch(submitted.run_id, submitted.watch_from_seq))
        run = c.run(submitted.run_id)
        assert run_state_name(run.state) == "succeeded"
        assert run.params["n"] == "4"
        finished_ids = sorted(e.instance.params["id"] for e in events
                              if isinstance(e, InstanceChanged) and e.kind == InstanceEventKind.FINISHED)
        assert finished_ids == ["a", "b", "c", "gone"]
        assert isinstance(events[-1], RunChanged)
        assert events[-1].run.state == flow_pb2.RUN_SUCCEEDED
        seqs = [e.seq for e in events]
        assert seqs == sorted(seqs)

        assert [r.id for r in c.runs()] == [submitted.run_id]
        by_state = {i.params["id"]: instance_state_name(i.state) for i in c.tasks(submitted.run_id)}
        assert by_state == {"a": "done", "b": "done", "c": "done", "gone": "suppressed"}
        assert [i.params["id"] for i in c.tasks(submitted.run_id, state="suppressed")] == ["gone"]
        assert [i.params["id"] for i in c.tasks(submitted.run_id, task="item", state=["done"])] == ["a", "b", "c"]
        gone = c.show(submitted.run_id, "item", {"id": "gone"})
        assert gone.state == flow_pb2.SUPPRESSED
        assert "TranscriptsDisabled: gone" in gone.error
        assert (workspace / "data" / "gone.err").exists()
        with pytest.raises(AsflowError) as e:
            c.show(submitted.run_id, "item", {"id": "nope"})
        assert e.value.code == grpc.StatusCode.NOT_FOUND
        assert e.value.message == f"run {submitted.run_id} has no instance item(id=nope)"


def test_watch_of_a_finished_run_starts_with_its_snapshot(daemon, workspace):
    flow = write(workspace / "fanout.flow.yaml", FANOUT)
    with Client(server=daemon.server) as c:
        run_id = c.submit(flow, workspace=workspace).run_id
        finished(c, run_id)
        events = list(c.watch(run_id))
        assert isinstance(events[0], Snapshot)
        assert [r.id for r in events[0].runs] == [run_id]
        counters = {t.task: t for t in events[0].runs[0].tasks}
        assert counters["item"].done == 3 and counters["item"].suppressed == 1


def test_tasks_pages_through_every_page(daemon, workspace):
    values = ", ".join(f"v{i:03d}" for i in range(250))
    flow = write(workspace / "many.flow.yaml", f"""\
name: many
tasks:
  - name: noop
    for_each: {{values: [{values}], as: id}}
    handler: builtin.noop
""")
    with Client(server=daemon.server) as c:
        run_id = c.submit(flow, workspace=workspace).run_id
        finished(c, run_id)
        listed = list(c.tasks(run_id, page_size=100))
        assert [i.seq for i in listed] == list(range(250))
        assert sorted(i.params["id"] for i in listed) == [f"v{i:03d}" for i in range(250)]


def test_cancel_then_reset(daemon, workspace):
    flow = write(workspace / "slow.flow.yaml", SLOW)
    with Client(server=daemon.server) as c:
        run_id = c.submit(flow, workspace=workspace).run_id
        assert wait_for(lambda: c.run(run_id).tasks and c.run(run_id).tasks[0].running == 2)
        assert c.cancel(run_id) in (flow_pb2.RUN_CANCELLED, flow_pb2.RUN_RUNNING)
        assert finished(c, run_id).state == flow_pb2.RUN_CANCELLED
        assert {instance_state_name(i.state) for i in c.tasks(run_id)} == {"cancelled"}

        fan = write(workspace / "fanout.flow.yaml", FANOUT)
        fan_id = c.submit(fan, workspace=workspace).run_id
        finished(c, fan_id)
        # By task: scoped to a workspace (another directory has none).
        elsewhere = workspace / "elsewhere"
        elsewhere.mkdir()
        assert c.reset(task="item", workspace=elsewhere) == 0
        assert (workspace / "data" / "gone.err").exists()
        assert c.reset(path=workspace / "data" / "a.jsonl.gz") == 0  # done, not suppressed
        assert c.reset(path=workspace / "data" / "gone.jsonl.gz") == 1
        assert not (workspace / "data" / "gone.err").exists()
        assert c.reset(task="item") == 0
        with pytest.raises(AsflowError) as e:
            c.reset()
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_workers_lists_a_connected_worker(daemon, workspace, env):
    import subprocess
    from conftest import BUILD, stop
    worker = subprocess.Popen([str(BUILD / "worker" / "asflow-worker"), "--server", daemon.server, "--pool",
                               "remote", "--slots", "3", "--name", "w1", "--scratch", str(workspace / "scratch")],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Client(server=daemon.server) as c:
            assert wait_for(lambda: len(c.workers()) == 1)
            [w] = c.workers()
            assert (w.name, list(w.pools), w.slots, w.draining) == ("w1", ["remote"], 3, False)
            assert "builtin.noop" in w.handlers
    finally:
        stop(worker)


def test_submit_errors_name_file_line_and_field(daemon, workspace):
    many = REPO / "tests" / "testdata" / "spec" / "bad_many.yaml"
    with Client(server=daemon.server) as c:
        with pytest.raises(AsflowError) as e:
            c.submit(many, workspace=workspace)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
        lines = e.value.message.split("\n")
        assert lines[0] == f"{many}:1:1: name: 'my flow' may only use [A-Za-z0-9_.-]"
        assert f"{many}:14:5: tasks[2].limit: must be >= 0, got -1" in lines
        assert f"{many}:11:18: tasks[2].needs[1]: unknown task 'ghost'" in lines
        with pytest.raises(FlowFileError) as f:
            c.submit(write(workspace / "f.yaml", FANOUT), {"nope": "1"}, workspace=workspace)
        assert str(f.value) == f"{workspace}/f.yaml: -p nope: the flow has no parameter 'nope' (it has: n)"


def test_submit_outside_the_allowed_roots_is_permission_denied(daemon, workspace, tmp_path):
    flow = write(workspace / "fanout.flow.yaml", FANOUT)
    with Client(server=daemon.server) as c, pytest.raises(AsflowError) as e:
        c.submit(flow, workspace="/usr")
    assert e.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_watch_resumes_across_a_daemon_restart(daemon, workspace):
    flow = write(workspace / "slow.flow.yaml", SLOW.replace('"30"', '"1"'))
    with Client(server=daemon.server) as c:
        submitted = c.submit(flow, workspace=workspace)
        events = []
        it = c.watch(submitted.run_id, submitted.watch_from_seq)
        events.append(next(it))
        daemon.stop()
        restarter = threading.Timer(0.5, daemon.start)
        restarter.start()
        events.extend(it)  # ends when the run does, after the restart
        restarter.join()
        assert isinstance(events[-1], RunChanged)
        assert events[-1].run.state == flow_pb2.RUN_SUCCEEDED
        assert daemon.starts == 2


def test_shutdown_stops_the_daemon(daemon):
    with Client(server=daemon.server) as c:
        c.shutdown()
    assert daemon.proc.wait(10) == 0


def test_submit_resolves_imports_as_asflowctl_does(daemon, workspace):
    (workspace / "flows").mkdir()
    write(workspace / "flows" / "playlist.flow.yaml",
          "name: playlist\nparams: {channel: c1}\ntasks:\n"
          "  - name: playlist\n    on: data/playlist.jsonl\n"
          "    run: [sh, -c, 'printf \"{{\\\"id\\\":\\\"a\\\"}}\\n{{\\\"id\\\":\\\"$0\\\"}}\\n\"', \"{channel}\"]\n"
          "  - name: unused\n    run: [\"true\"]\n")
    flow = write(workspace / "items.flow.yaml",
                 "name: items\nimports: [flows/playlist.flow.yaml]\ntasks:\n"
                 "  - name: item\n    for_each: {lines_of: playlist.playlist, as: {id: id}}\n"
                 "    on: data/items/{id}.txt\n    run: [echo, \"item {id}\"]\n")
    with Client(server=daemon.server) as c:
        submitted = c.submit(flow, {"channel": "zz"}, workspace=workspace)
        run = finished(c, submitted.run_id)
        assert run_state_name(run.state) == "succeeded"
        assert sorted(t.task for t in run.tasks) == ["item", "playlist.playlist"]
        assert (workspace / "data" / "items" / "zz.txt").read_text() == "item zz\n"
        cycle = write(workspace / "cycle.flow.yaml", "name: cycle\nimports: [cycle.flow.yaml]\ntasks:\n"
                                                     "  - {name: x, run: [\"true\"]}\n")
        with pytest.raises(FlowFileError) as f:
            c.submit(cycle, workspace=workspace)
        assert str(f.value) == f"{cycle}:2:11: imports[0]: import cycle: {cycle} -> {cycle}"
