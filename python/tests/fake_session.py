"""A small in-process stand-in for asflowd's FlowService.Session
(docs/sessions.md), for the session engine's unit tests: a real gRPC
server on a unix socket, speaking the real protocol, with the daemon's
rules kept as simple as the tests need:

- runs (new or resumed by id), workspaces below `allowed` only;
- tasks declared per run, `limit` per task name across sessions (0: 2);
- calls by identity (task, params, output): cached when the output or its
  .err exists, joined while pending, queued under the limit, started;
- output chunks (refused above max_chunk_bytes), written gzip/zstd by
  suffix on an ok result; retry (no backoff), skip, suppress (.err with
  the traceback), fail fast (cancel started calls, CANCELLED the rest,
  run_closed FAILED);
- drop: a call forgotten, its queued instance cancelled when nobody waits;
- a stream that ends detaches: its started calls are queued again and its
  runs wait for a resume_run_id.

`cut()` ends every open stream (as a daemon restart would); every request
and op is counted so tests can check batching."""

from __future__ import annotations

import collections
import gzip
import os
import queue
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import zstandard

from asflow.naming import err_path_for
from asflow.v1 import flow_pb2, service_pb2_grpc, session_pb2

FINAL = {flow_pb2.DONE, flow_pb2.CACHED, flow_pb2.SKIPPED, flow_pb2.SUPPRESSED, flow_pb2.FAILED, flow_pb2.CANCELLED}


@dataclass(eq=False)
class Instance:
    run: "Run"
    task: str
    params: dict[str, str]
    output: str
    state: int = flow_pb2.QUEUED
    attempts: int = 0
    error: str = ""
    waiters: list[tuple["Conn", int]] = field(default_factory=list)  # (session, call_id)
    runner: tuple["Conn", int] | None = None  # started on
    data: bytearray = field(default_factory=bytearray)
    progress: tuple[float, float, str] | None = None
    cancel_sent: bool = False


@dataclass
class Run:
    id: int
    flow: str
    workspace: str
    params: dict[str, str]
    state: int = flow_pb2.RUN_RUNNING
    error: str = ""
    conn: "Conn | None" = None
    ref: int = 0
    specs: dict[str, flow_pb2.TaskSpec] = field(default_factory=dict)
    instances: dict[tuple[Any, ...], Instance] = field(default_factory=dict)


class Conn:
    """One Session stream."""

    def __init__(self, fake: "FakeDaemon", sid: int) -> None:
        self.fake = fake
        self.id = sid
        self.out: queue.Queue[list[session_pb2.SessionEvent] | None] = queue.Queue()
        self.runs: dict[int, Run] = {}  # by ref
        self.calls: dict[int, Instance] = {}
        self.alive = True

    def send(self, *events: session_pb2.SessionEvent) -> None:
        if self.alive:
            self.out.put(list(events))


def _ev(**kw: Any) -> session_pb2.SessionEvent:
    return session_pb2.SessionEvent(**kw)


def _matches(rule: Any, types: list[str]) -> bool:
    for name in rule.errors:
        for t in types:
            if t == name or t.rsplit(".", 1)[-1] == name:
                return True
    return False


class ProtocolError(Exception):
    pass


class FakeDaemon(service_pb2_grpc.FlowServiceServicer):
    def __init__(self, socket_path: str, allowed: str, chunk_bytes: int = 1 << 20, heartbeat_ms: int = 2000,
                 default_limit: int = 2) -> None:
        self.socket_path = socket_path
        self.allowed = os.path.abspath(allowed)
        self.chunk_bytes = chunk_bytes
        self.heartbeat_ms = heartbeat_ms
        self.default_limit = default_limit
        self.lock = threading.RLock()
        self.runs: dict[int, Run] = {}
        self.limits: dict[str, int] = {}
        self.running: collections.Counter[str] = collections.Counter()
        self.max_running: collections.Counter[str] = collections.Counter()
        self.queues: dict[str, collections.deque[Instance]] = collections.defaultdict(collections.deque)
        self.conns: list[Conn] = []
        self.requests = 0
        self.ops: collections.Counter[str] = collections.Counter()
        self.responses = 0
        self.events = 0
        self.violations: list[str] = []
        self.hold = False  # while set, nothing starts (tests of queued calls)
        self._next_run = 1
        self._next_conn = 1
        self.server: grpc.Server | None = None

    # Lifecycle.

    def start(self) -> "FakeDaemon":
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        service_pb2_grpc.add_FlowServiceServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"unix:{self.socket_path}")
        self.server.start()
        return self

    def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.stop(0).wait()
            self.server = None

    def cut(self) -> None:
        """Ends every stream (the process must reconnect and resume)."""
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            self._detach(c)

    # The RPC.

    def Session(self, request_iterator: Iterator[session_pb2.SessionRequest], context: Any) -> Iterator[Any]:
        with self.lock:
            conn = Conn(self, self._next_conn)
            self._next_conn += 1
            self.conns.append(conn)
        context.add_callback(lambda: self._detach(conn))

        def read() -> None:
            try:
                for request in request_iterator:
                    with self.lock:
                        self.requests += 1
                        if not conn.alive:
                            return
                        for op in request.ops:
                            self._op(conn, op)
                        self._schedule()
            except ProtocolError as e:
                with self.lock:
                    self.violations.append(str(e))
                conn.out.put(None)
            except Exception:  # the stream was cancelled
                pass
            finally:
                conn.out.put(None)

        threading.Thread(target=read, daemon=True).start()
        while True:
            batch = conn.out.get()
            if batch is None:
                break
            events = list(batch)
            while True:
                try:
                    more = conn.out.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    conn.out.put(None)
                    break
                events.extend(more)
            with self.lock:
                self.responses += 1
                self.events += len(events)
            yield session_pb2.SessionResponse(events=events)
        self._detach(conn)

    # Ops (lock held).

    def _op(self, conn: Conn, op: session_pb2.SessionOp) -> None:
        kind = op.WhichOneof("op")
        self.ops[kind] += 1
        if kind == "hello":
            conn.send(_ev(welcome=session_pb2.SessionWelcome(
                session_id=conn.id, reattach_ms=10000, max_chunk_bytes=self.chunk_bytes, lease_ms=30000,
                heartbeat_ms=self.heartbeat_ms, daemon_version="fake")))
        elif kind == "open_run":
            self._open_run(conn, op.open_run)
        elif kind == "declare_task":
            run = self._run(conn, op.declare_task.run)
            spec = op.declare_task.spec
            run.specs[spec.name] = spec
            self.limits[spec.name] = spec.limit or self.default_limit
            conn.send(_ev(task_declared=session_pb2.TaskDeclared(run=op.declare_task.run, task=spec.name)))
        elif kind == "call":
            self._call(conn, op.call)
        elif kind == "output":
            inst = self._started(conn, op.output.call_id, "output")
            if len(op.output.data) > self.chunk_bytes:
                raise ProtocolError(f"output of {len(op.output.data)} bytes > max_chunk_bytes")
            inst.data += op.output.data
        elif kind == "progress":
            inst = self._started(conn, op.progress.call_id, "progress")
            inst.progress = (op.progress.total, op.progress.completed, op.progress.description)
        elif kind == "result":
            self._result(conn, op.result)
        elif kind == "drop":
            self._drop(conn, op.drop)
        elif kind == "close_run":
            run = self._run(conn, op.close_run.run)
            if run.state == flow_pb2.RUN_RUNNING:
                self._end_run(run, op.close_run.state, op.close_run.error)
            else:
                conn.send(_ev(run_closed=session_pb2.RunClosed(ref=op.close_run.run, run_id=run.id, state=run.state,
                                                               error=run.error)))
        elif kind == "heartbeat":
            pass

    def _run(self, conn: Conn, ref: int) -> Run:
        run = conn.runs.get(ref)
        if run is None:
            raise ProtocolError(f"unknown run ref {ref}")
        return run

    def _started(self, conn: Conn, call_id: int, what: str) -> Instance:
        inst = conn.calls.get(call_id)
        if inst is None or inst.runner != (conn, call_id):
            raise ProtocolError(f"{what} for call {call_id}, which was not started")
        return inst

    def _open_run(self, conn: Conn, o: session_pb2.OpenRun) -> None:
        if not (o.workspace == self.allowed or o.workspace.startswith(self.allowed + "/")):
            conn.send(_ev(run_closed=session_pb2.RunClosed(
                ref=o.ref, run_id=0, state=flow_pb2.RUN_FAILED,
                error=f"workspace {o.workspace} is not below an allowed root")))
            return
        if o.resume_run_id:
            run = self.runs.get(o.resume_run_id)
            if run is None:
                raise ProtocolError(f"resume of unknown run {o.resume_run_id}")
        else:
            run = Run(self._next_run, o.flow, o.workspace, dict(o.params))
            self._next_run += 1
            self.runs[run.id] = run
        run.conn = conn
        run.ref = o.ref
        conn.runs[o.ref] = run
        conn.send(_ev(run_opened=session_pb2.RunOpened(ref=o.ref, run_id=run.id)))
        if run.state != flow_pb2.RUN_RUNNING:
            conn.send(_ev(run_closed=session_pb2.RunClosed(ref=o.ref, run_id=run.id, state=run.state,
                                                           error=run.error)))

    def _call(self, conn: Conn, c: session_pb2.CallOp) -> None:
        run = self._run(conn, c.run)
        if c.task not in run.specs:
            raise ProtocolError(f"call of undeclared task {c.task}")
        key = (c.task, tuple(sorted(c.params.items())), c.output)
        inst = run.instances.get(key)
        conn.calls[c.call_id] = inst if inst is not None else None  # type: ignore[assignment]
        if inst is not None:
            if inst.state in FINAL:
                self._tell(inst, conn, c.call_id)
            else:
                inst.waiters.append((conn, c.call_id))
                if inst.state == flow_pb2.QUEUED and inst not in self.queues[inst.task]:
                    self.queues[inst.task].append(inst)
            conn.calls[c.call_id] = inst
            return
        inst = Instance(run, c.task, dict(c.params), c.output, waiters=[(conn, c.call_id)])
        run.instances[key] = inst
        conn.calls[c.call_id] = inst
        if run.state != flow_pb2.RUN_RUNNING:
            self._finish(inst, flow_pb2.CANCELLED, "the run is over")
            return
        if c.output:
            spec = run.specs[c.task]
            out = Path(run.workspace) / c.output
            err = Path(run.workspace) / err_path_for(c.output, spec.on)
            if out.exists():
                self._finish(inst, flow_pb2.CACHED, "")
                return
            if err.exists():
                self._finish(inst, flow_pb2.CACHED, "suppressed earlier: " + err.read_text().strip().splitlines()[-1])
                return
        self.queues[c.task].append(inst)

    def _drop(self, conn: Conn, c: session_pb2.CallOp) -> None:
        """The caller stopped waiting: the call is forgotten; its instance is
        cancelled when no other call waits (a started one when its result,
        cancelled, comes)."""
        inst = conn.calls.get(c.call_id)
        if inst is None:
            return
        inst.waiters = [(cn, i) for cn, i in inst.waiters if (cn, i) != (conn, c.call_id)]
        if inst.runner == (conn, c.call_id):
            return  # its result follows
        conn.calls.pop(c.call_id, None)
        if not inst.waiters and inst.state == flow_pb2.QUEUED:
            inst.state = flow_pb2.CANCELLED
            inst.error = "its caller stopped waiting"

    def _schedule(self) -> None:
        if self.hold:
            return
        for task, q in self.queues.items():
            while q and self.running[task] < self.limits.get(task, self.default_limit):
                inst = q.popleft()
                if inst.state != flow_pb2.QUEUED:
                    continue
                live = [(c, i) for c, i in inst.waiters if c.alive]
                if not live:
                    continue  # its process went away: waits for a resume
                conn, call_id = live[0]
                inst.state = flow_pb2.RUNNING
                inst.attempts += 1
                inst.runner = (conn, call_id)
                inst.data = bytearray()
                inst.cancel_sent = False
                self.running[task] += 1
                self.max_running[task] = max(self.max_running[task], self.running[task])
                conn.send(_ev(start=session_pb2.StartCall(call_id=call_id, attempt=inst.attempts)))

    def _result(self, conn: Conn, r: session_pb2.ResultOp) -> None:
        inst = self._started(conn, r.call_id, "result")
        inst.runner = None
        self.running[inst.task] -= 1
        spec = inst.run.specs[inst.task]
        if r.ok:
            self._write(inst)
            self._finish(inst, flow_pb2.DONE, "")
            return
        if r.cancelled:
            # After a cancel, or the client withdrew the call (its caller
            # went away): CANCELLED, not an attempt.
            inst.attempts -= 1
            self._finish(inst, flow_pb2.CANCELLED, "cancelled" if inst.cancel_sent else "withdrawn by its process")
            return
        types = list(r.error_types)
        text = r.error_text
        if spec.HasField("retry") and _matches(spec.retry, types) and inst.attempts <= spec.retry.attempts:
            inst.state = flow_pb2.QUEUED
            self.queues[inst.task].append(inst)
            return
        if _matches(spec.skip, types):
            self._finish(inst, flow_pb2.SKIPPED, text)
        elif _matches(spec.suppress, types):
            err = Path(inst.run.workspace) / err_path_for(inst.output, spec.on)
            err.write_text(text + "\n")
            self._finish(inst, flow_pb2.SUPPRESSED, text)
        else:
            self._finish(inst, flow_pb2.FAILED, text)
            self._end_run(inst.run, flow_pb2.RUN_FAILED, f"{inst.task} failed")

    def _write(self, inst: Instance) -> None:
        if not inst.output:
            return
        path = Path(inst.run.workspace) / inst.output
        path.parent.mkdir(parents=True, exist_ok=True)
        data = bytes(inst.data)
        if path.suffix == ".zst":
            data = zstandard.ZstdCompressor().compress(data)
        elif path.suffix == ".gz":
            data = gzip.compress(data)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.rename(path)

    def _finish(self, inst: Instance, state: int, error: str) -> None:
        inst.state = state
        inst.error = error
        for conn, call_id in inst.waiters:
            self._tell(inst, conn, call_id)
        inst.waiters.clear()

    def _tell(self, inst: Instance, conn: Conn, call_id: int) -> None:
        conn.calls.pop(call_id, None)
        conn.send(_ev(call_state=session_pb2.CallState(call_id=call_id, state=inst.state, error=inst.error,
                                                       run_id=inst.run.id)))

    def _end_run(self, run: Run, state: int, error: str) -> None:
        run.state = state
        run.error = error
        for inst in run.instances.values():
            if inst.state == flow_pb2.RUNNING and inst.runner is not None:
                inst.cancel_sent = True
                conn, call_id = inst.runner
                conn.send(_ev(cancel=session_pb2.CancelCall(call_id=call_id)))
            elif inst.state == flow_pb2.QUEUED:
                self._finish(inst, flow_pb2.CANCELLED, "the run is over")
        if run.conn is not None:
            run.conn.send(_ev(run_closed=session_pb2.RunClosed(ref=run.ref, run_id=run.id, state=state, error=error)))

    def cancel_run(self, run_id: int) -> None:
        """As asflowctl cancel."""
        with self.lock:
            self._end_run(self.runs[run_id], flow_pb2.RUN_CANCELLED, "cancelled by asflowctl")

    def _detach(self, conn: Conn) -> None:
        with self.lock:
            if not conn.alive:
                return
            conn.alive = False
            if conn in self.conns:
                self.conns.remove(conn)
            for inst in {id(i): i for i in conn.calls.values() if i is not None}.values():
                if inst.runner is not None and inst.runner[0] is conn:
                    inst.runner = None
                    self.running[inst.task] -= 1
                    inst.attempts -= 1  # lost, not an attempt
                    if inst.state == flow_pb2.RUNNING:
                        inst.state = flow_pb2.QUEUED
                inst.waiters = [(c, i) for c, i in inst.waiters if c is not conn]
            for run in conn.runs.values():
                if run.conn is conn:
                    run.conn = None
            conn.out.put(None)
            self._schedule()

    # For tests.

    def instances(self, run_id: int) -> list[Instance]:
        with self.lock:
            return list(self.runs[run_id].instances.values())
