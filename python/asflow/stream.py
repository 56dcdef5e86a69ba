"""The transport of a code session: one FlowService.Session stream per
process (docs/sessions.md), owned by one background thread.

Ops (tuples, below) are queued in an outbox by any thread; gRPC's request
thread takes everything queued at once and sends it as one SessionRequest,
so a process with thousands of calls in flight pays a stream message per
batch, not per op. The reader thread hands each SessionResponse's events
to the session (session.py) in one go. When nothing was sent for the
daemon's heartbeat interval, a heartbeat goes.

When the stream breaks (the daemon restarted, the connection dropped) the
thread connects again, for as long as the daemon would wait for this
process (welcome.reattach_ms, at least RECONNECT_MIN seconds): the outbox
is thrown away and the session replays what the new stream needs (runs
resumed, tasks declared, calls without a final state) before anything
else. The epoch names the live stream: ops pushed for an older epoch (the
output of a function started on a stream that is gone) are dropped.

Locking: one threading.Condition (`cv`), shared with the session so that a
replay and the ops that follow it are in order. `cv` also wakes the request
thread (ops queued) and writers waiting for room (outbox drained).
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import grpc

from asflow import __version__
from asflow.connection import ConnectOptions, connect
from asflow.errors import AsflowError
from asflow.v1 import service_pb2_grpc, session_pb2

log = logging.getLogger("asflow.session")

# Op kinds (the first element of an op tuple).
HELLO = 0          # (HELLO,)
OPEN_RUN = 1       # (OPEN_RUN, ref, flow, workspace, params, source, keep_going, resume_run_id, throttle)
DECLARE = 2        # (DECLARE, run_ref, TaskSpec)
CALL = 3           # (CALL, run_ref, call_id, task, params as (name, value) pairs, output)
OUTPUT = 4         # (OUTPUT, call_id, bytes)
RESULT = 5         # (RESULT, call_id, ok, error_types, error_text, cancelled, started_next)
PROGRESS = 6       # (PROGRESS, call_id, total, completed, description)
CLOSE_RUN = 7      # (CLOSE_RUN, run_ref, RunState, error)
HEARTBEAT = 8      # (HEARTBEAT,)
DROP = 9           # (DROP, run_ref, call_id, task, params, output): the caller stopped waiting

# A request carries at most this much (well under gRPC's 4 MiB message limit).
MESSAGE_BYTES = 1 << 20
MESSAGE_OPS = 8192
# Writers wait while this much output is queued (flow control).
OUTBOX_BYTES = 16 << 20
# Until the welcome says otherwise.
DEFAULT_HEARTBEAT_S = 5.0
DEFAULT_CHUNK_BYTES = 256 * 1024
RECONNECT_MIN = 30.0
# Codes that reconnecting would only repeat.
FATAL = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
         grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED,
         grpc.StatusCode.FAILED_PRECONDITION)


class Handler(Protocol):
    """What the stream needs of the session; every method but on_events is
    called with `cv` held."""

    def replay_locked(self) -> list[tuple[Any, ...]]:
        """Ops a new stream needs after hello (runs resumed, tasks, calls)."""

    def lost_locked(self, error: AsflowError, fatal: bool) -> None:
        """The stream is gone: functions started on it are stale; fatal: no
        stream will follow (every waiter gets `error`)."""

    def on_events(self, events: Any, epoch: int) -> None:
        """A SessionResponse's events, in order (called without `cv`)."""


def _op_size(op: tuple[Any, ...]) -> int:
    kind = op[0]
    if kind == OUTPUT:
        return len(op[2]) + 16
    if kind == CALL or kind == DROP:
        return 64 + sum(len(k) + len(v) for k, v in op[4]) + len(op[5])
    if kind == RESULT:
        return 64 + len(op[4])
    if kind == DECLARE:
        return op[2].ByteSize() + 16
    return 64


def build_request(ops: list[tuple[Any, ...]]) -> session_pb2.SessionRequest:
    """One SessionRequest holding `ops`, in order."""
    request = session_pb2.SessionRequest()
    add = request.ops.add
    for op in ops:
        kind = op[0]
        m = add()
        if kind == OUTPUT:
            o = m.output
            o.call_id = op[1]
            o.data = op[2]
        elif kind == CALL:
            c = m.call
            c.run = op[1]
            c.call_id = op[2]
            c.task = op[3]
            c.params.update(op[4])
            if op[5]:
                c.output = op[5]
        elif kind == DROP:
            c = m.drop
            c.run = op[1]
            c.call_id = op[2]
            c.task = op[3]
            c.params.update(op[4])
            if op[5]:
                c.output = op[5]
        elif kind == RESULT:
            r = m.result
            r.call_id = op[1]
            if op[2]:
                r.ok = True
            if op[3]:
                r.error_types.extend(op[3])
            if op[4]:
                r.error_text = op[4]
            if op[5]:
                r.cancelled = True
            if op[6]:
                r.started_next = op[6]
        elif kind == PROGRESS:
            p = m.progress
            p.call_id = op[1]
            p.total = op[2]
            p.completed = op[3]
            if op[4]:
                p.description = op[4]
        elif kind == DECLARE:
            d = m.declare_task
            d.run = op[1]
            d.spec.CopyFrom(op[2])
        elif kind == OPEN_RUN:
            r = m.open_run
            r.ref = op[1]
            r.flow = op[2]
            r.workspace = op[3]
            r.params.update(op[4])
            r.source = op[5]
            r.keep_going = op[6]
            r.resume_run_id = op[7]
            for name, key in op[8].items():
                r.throttle[name].CopyFrom(key)
        elif kind == CLOSE_RUN:
            c = m.close_run
            c.run = op[1]
            c.state = op[2]
            c.error = op[3]
        elif kind == HEARTBEAT:
            m.heartbeat.sent_ms = int(time.time() * 1000)
        elif kind == HELLO:
            m.hello.client = f"asflow-python/{__version__}"
            m.hello.hostname = socket.gethostname()
            m.hello.pid = os.getpid()
            m.hello.chained_starts = True
    return request


class Stream:
    """The stream thread and the outbox. `push_locked` from any thread with
    `cv` held; `start` once; `close` at exit."""

    def __init__(self, options: ConnectOptions, cv: threading.Condition, handler: Handler,
                 connect_fn: Callable[[ConnectOptions], grpc.Channel] | None = None) -> None:
        self.options = options
        self.cv = cv
        self.handler = handler
        self._connect = connect_fn or (lambda o: connect(o, wait=5.0))
        # Guarded by cv.
        self.epoch = 0           # the live stream's; odd numbers are never live
        self.live = False
        self.welcome: session_pb2.SessionWelcome | None = None
        self.heartbeat_s = DEFAULT_HEARTBEAT_S
        self.chunk_bytes = DEFAULT_CHUNK_BYTES
        self.reconnect_s = RECONNECT_MIN
        self.chained_late_begin = False  # the welcome says (SessionWelcome)
        self._outbox: collections.deque[tuple[Any, ...]] = collections.deque()
        self._queued_bytes = 0
        self._ending = False      # close(): no reconnect; the request stream ends once drained
        self._fatal: AsflowError | None = None
        self._progress: dict[int, tuple[Any, ...]] = {}  # call_id -> latest PROGRESS op
        self._thread: threading.Thread | None = None
        self._call: Any = None
        # Counters (tests and benchmarks read them).
        self.requests_sent = 0
        self.ops_sent = 0
        self.responses = 0
        self.connects = 0
        # CPU seconds of the reader thread and of gRPC's request thread in
        # our code (benchmarks say where the time goes).
        self.cpu_reader = 0.0
        self.cpu_sender = 0.0

    # Queueing (cv held).

    def push_locked(self, ops: list[tuple[Any, ...]] | tuple[tuple[Any, ...], ...], epoch: int) -> bool:
        """Queues ops for the stream `epoch`; False (dropped) if that stream
        is gone: what they said is replayed or moot."""
        if epoch != self.epoch or not self.live:
            return False
        was_empty = not self._outbox and not self._progress
        for op in ops:
            self._outbox.append(op)
            if op[0] == OUTPUT:
                self._queued_bytes += len(op[2])
        if was_empty:
            self.cv.notify_all()
        return True

    def progress_locked(self, op: tuple[Any, ...], epoch: int) -> None:
        """The latest progress of a call; coalesced until the next request."""
        if epoch != self.epoch or not self.live:
            return
        was_empty = not self._outbox and not self._progress
        self._progress[op[1]] = op
        if was_empty:
            self.cv.notify_all()

    def take_progress_locked(self, call_id: int) -> tuple[Any, ...] | None:
        """A call's pending progress (sent before its result, never after)."""
        return self._progress.pop(call_id, None)

    def wait_room_locked(self, epoch: int) -> bool:
        """Blocks a writer while too much output is queued; False if the
        stream `epoch` went away meanwhile."""
        while self._queued_bytes > OUTBOX_BYTES and epoch == self.epoch and self.live:
            self.cv.wait(1.0)
        return epoch == self.epoch and self.live

    @property
    def fatal(self) -> AsflowError | None:
        return self._fatal

    # The thread.

    def start(self) -> None:
        with self.cv:
            if self._thread is not None and self._thread.is_alive():
                return
            self._fatal = None
            self._ending = False
            self._thread = threading.Thread(target=self._main, name="asflow-session", daemon=True)
            self._thread.start()

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        """Sends what is queued, ends the request stream, waits for the daemon
        to end the stream (at most `timeout`)."""
        with self.cv:
            self._ending = True
            self.cv.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive() and self._call is not None:
                self._call.cancel()
                thread.join(1.0)

    def _main(self) -> None:
        connected_once = False
        lost_at = 0.0
        backoff = 0.05
        error: AsflowError | None = None
        while True:
            with self.cv:
                if self._ending:
                    return
            if connected_once and time.monotonic() - lost_at > self.reconnect_s:
                why = error.message if error else "stream ended"
                self._give_up(AsflowError(grpc.StatusCode.UNAVAILABLE,
                                          f"lost the session with asflowd at {self.options.where()} and could not "
                                          f"reconnect within {self.reconnect_s:.0f}s: {why}"))
                return
            try:
                channel = self._connect(self.options)
            except AsflowError as e:
                if not connected_once:
                    self._give_up(e)
                    return
                error = e
                with self.cv:
                    self.cv.wait_for(lambda: self._ending, backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            try:
                welcomed, error = self._serve(channel)
            finally:
                channel.close()
            with self.cv:
                if self._ending:
                    return
            if error is not None and error.code in FATAL:
                self._give_up(error)
                return
            if welcomed:
                connected_once = True
                lost_at = time.monotonic()
                backoff = 0.05
                log.warning("session with asflowd at %s lost (%s); reconnecting", self.options.where(),
                            error.message if error else "stream ended")
            elif not connected_once:
                self._give_up(error or AsflowError(grpc.StatusCode.UNAVAILABLE,
                                                   f"asflowd at {self.options.where()} ended the session at once"))
                return
            else:
                with self.cv:
                    self.cv.wait_for(lambda: self._ending, backoff)
                backoff = min(backoff * 2, 1.0)

    def _give_up(self, error: AsflowError) -> None:
        with self.cv:
            self._fatal = error
            self.live = False
            self.epoch += 2
            self._outbox.clear()
            self._progress.clear()
            self._queued_bytes = 0
            self.handler.lost_locked(error, fatal=True)
            self.cv.notify_all()

    def _serve(self, channel: grpc.Channel) -> tuple[bool, AsflowError | None]:
        """One stream, until it ends. (welcomed, the error that ended it)."""
        with self.cv:
            self.epoch += 2 - (self.epoch % 2)  # a new even epoch
            epoch = self.epoch
            self.live = True
            self._outbox.clear()
            self._progress.clear()
            self._queued_bytes = 0
            self._outbox.append((HELLO,))
            self._outbox.extend(self.handler.replay_locked())
            self.connects += 1
            self.cv.notify_all()
        stub = service_pb2_grpc.FlowServiceStub(channel)
        welcomed = False
        error: AsflowError | None = None
        cpu0 = time.thread_time()
        try:
            self._call = stub.Session(self._requests(epoch), metadata=self.options.metadata())
            for response in self._call:
                self.responses += 1
                events = response.events
                if not welcomed and len(events) and events[0].WhichOneof("event") == "welcome":
                    welcomed = True
                    self._welcome(events[0].welcome)
                self.handler.on_events(events, epoch)
                now = time.thread_time()
                self.cpu_reader += now - cpu0
                cpu0 = now
        except grpc.RpcError as e:
            error = AsflowError.from_rpc(e)
            if error.code == grpc.StatusCode.UNIMPLEMENTED:
                error = AsflowError(error.code, f"asflowd at {self.options.where()} does not serve code "
                                                f"sessions (FlowService.Session): it is older than this package "
                                                f"({error.message})")
        finally:
            with self.cv:
                if self.epoch == epoch:
                    self.epoch += 1  # odd: no live stream
                    self.live = False
                    self._outbox.clear()
                    self._progress.clear()
                    self._queued_bytes = 0
                    if not self._ending:
                        self.handler.lost_locked(error or AsflowError(grpc.StatusCode.UNAVAILABLE, "stream ended"),
                                                 fatal=False)
                self.cv.notify_all()
        return welcomed, error

    def _welcome(self, w: session_pb2.SessionWelcome) -> None:
        with self.cv:
            self.welcome = w
            if w.heartbeat_ms > 0:
                self.heartbeat_s = w.heartbeat_ms / 1000
            if w.max_chunk_bytes > 0:
                self.chunk_bytes = int(w.max_chunk_bytes)
            if w.reattach_ms > 0:
                self.reconnect_s = max(RECONNECT_MIN, w.reattach_ms / 1000 + 5)
            self.chained_late_begin = w.chained_late_begin
            self.cv.notify_all()  # the request thread waits with the new interval

    def _requests(self, epoch: int) -> Iterator[session_pb2.SessionRequest]:
        """gRPC's request thread: everything queued, one message at a time."""
        cv = self.cv
        last_sent = time.monotonic()
        while True:
            cpu0 = time.thread_time()
            with cv:
                while not self._outbox and not self._progress and self.epoch == epoch and not self._ending:
                    left = last_sent + self.heartbeat_s - time.monotonic()
                    if left <= 0:
                        break
                    cv.wait(left)
                if self.epoch != epoch:
                    return
                if not self._outbox and not self._progress:
                    if self._ending:
                        return
                    ops: list[tuple[Any, ...]] = [(HEARTBEAT,)]
                else:
                    ops = []
                    size = 0
                    outbox = self._outbox
                    while outbox and size < MESSAGE_BYTES and len(ops) < MESSAGE_OPS:
                        op = outbox.popleft()
                        ops.append(op)
                        n = _op_size(op)
                        size += n
                        if op[0] == OUTPUT:
                            self._queued_bytes -= len(op[2])
                    if not outbox and self._progress:
                        ops.extend(self._progress.values())
                        self._progress.clear()
                    cv.notify_all()  # writers waiting for room
            request = build_request(ops)
            last_sent = time.monotonic()
            self.requests_sent += 1
            self.ops_sent += len(ops)
            self.cpu_sender += time.thread_time() - cpu0
            yield request
