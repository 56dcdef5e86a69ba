"""The Engine behind @flow and @flow.task: calls run through asflowd over
the process's code session (FlowService.Session, docs/sessions.md).

- The outermost @flow call opens a run (flow name: the function's name;
  workspace: the absolute `base`; params: the call's bound arguments); a
  nested flow call shares its parent's run; a task called outside any flow
  gets a run of its own, named after the task.
- A task call declares the task in its run once (TaskDef.to_spec), sends a
  call (params: the arguments bound to the signature, str() of each; output:
  the rendered `on` path) and waits: a final state at once (cached, or
  joined an execution elsewhere), or `start`, when the daemon's limit and
  rate let it run. The function then runs in a TaskRun whose writes are
  serialized and streamed as output chunks; its end is a result (ok, or
  the exception's types and traceback, or cancelled). The daemon applies
  retry / skip / suppress / fail fast and answers with the final state:
  DONE returns the function's value, CACHED / SKIPPED / SUPPRESSED return
  None, FAILED raises the exception the function raised (TaskFailed when
  it ran elsewhere), CANCELLED raises CallCancelled.
- An async call waits on an asyncio future resolved from the stream's
  thread (loop.call_soon_threadsafe, once per response and loop); a plain
  call waits on a threading.Event, so a sync task called from inside an
  async flow blocks only its own caller, never the stream.
- When the stream breaks, functions started on it are stopped (an async
  one cancelled, a plain one's next write raises) and the new stream
  resumes every run (resume_run_id), declares its tasks again and calls
  again every call without a final state: a finished one answers at once,
  the others start again.

Thread-safety: the engine's state is guarded by `cv` (shared with the
stream); a call's events are consumed by its own caller.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from asflow.connection import ConnectOptions
from asflow.errors import AsflowError
from asflow.exceptions import CallCancelled, RunEnded, TaskFailed, error_text, error_types, last_line
from asflow.naming import bind_arguments
from asflow.progress import ProgressView
from asflow.stream import CALL, CLOSE_RUN, DECLARE, DROP, OPEN_RUN, OUTPUT, PROGRESS, RESULT, Stream
from asflow.task import TaskRun, params_label
from asflow.v1 import flow_pb2

if TYPE_CHECKING:
    from asflow.flow import Flow, FlowRun
    from asflow.task import Call, TaskDef

# Call event kinds: (START, attempt, epoch), (FINAL, CallState, epoch), (FAIL, exception, 0).
START, FINAL, FAIL = 0, 1, 2
_NO_KWARGS: dict[str, Any] = {}  # never changed: ** copies it
# Writes are gathered up to this much before an output op is queued.
FLUSH_BYTES = 64 * 1024
STATE_NAMES = {v: k.lower() for k, v in flow_pb2.InstanceState.items()}
RUN_STATE_NAMES = {flow_pb2.RUN_SUCCEEDED: "succeeded", flow_pb2.RUN_FAILED: "failed",
                   flow_pb2.RUN_CANCELLED: "cancelled", flow_pb2.RUN_RUNNING: "running"}


class _Waitable:
    """Something a caller waits on: events appended by the stream thread,
    a wake-up through the caller's loop (async) or an Event (plain)."""

    __slots__ = ("loop", "future", "event", "events")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] | None = None
        self.event: threading.Event | None = None
        # A call gets one to three events in its life: a tuple replaced on
        # each change, so a waiting call holds none (20,000 calls wait at
        # once in a fan-out).
        self.events: tuple[tuple[Any, Any, int], ...] = ()


class _Run(_Waitable):
    __slots__ = ("ref", "flow", "workspace", "params", "source", "view", "run_id", "opened", "tasks",
                 "close", "closed", "ended", "error", "flow_task", "cancels", "standalone", "throttle")

    def __init__(self, ref: int, flow: str, workspace: str, params: dict[str, str], source: str,
                 loop: asyncio.AbstractEventLoop | None, view: ProgressView | None) -> None:
        super().__init__(loop)
        self.ref = ref
        self.flow = flow
        self.workspace = workspace
        self.params = params
        self.source = source
        self.view = view
        self.run_id = 0
        self.opened = False
        self.tasks: dict[str, tuple[TaskDef, flow_pb2.TaskSpec]] = {}
        self.close: tuple[int, str] | None = None    # what we asked (close_run)
        self.closed: Any = None                      # run_closed, once it came
        self.ended: Any = None                       # run_closed the daemon sent on its own
        self.error: BaseException | None = None      # the session failed for good
        self.flow_task: asyncio.Task[Any] | None = None
        self.cancels = 0  # cancels the engine delivered to flow_task
        self.standalone = False  # a task called outside any flow
        self.throttle: dict[str, flow_pb2.ThrottleKey] = {}  # OpenRun.throttle: the Flow's keys


class _Call(_Waitable):
    # The Call's fields are copied in (not the Call kept): one object less
    # per waiting call.
    __slots__ = ("id", "run", "task", "params", "output", "_label", "args", "kwargs", "value", "has_value", "raised", "running",
                 "cancel_by", "cancel_sent", "task_run", "attempt_task", "abandoned", "shown", "started_at", "gen",
                 "chained", "after", "next", "ok_epoch")

    def __init__(self, call_id: int, run: _Run, task: "TaskDef", call: "Call", args: tuple[Any, ...],
                 kwargs: dict[str, Any], loop: asyncio.AbstractEventLoop | None) -> None:
        super().__init__(loop)
        self.id = call_id
        self.run = run
        self.task = task
        self.params = call.params
        self.output = call.output
        self._label = call._label
        self.args = args
        self.kwargs = kwargs or None  # an empty dict is 64 bytes a call
        self.value: Any = None
        self.has_value = False
        self.raised: BaseException | None = None
        self.running = False
        self.cancel_by: str | None = None   # "daemon" (cancel) or "lost" (the stream broke)
        self.cancel_sent = False            # we cancelled attempt_task
        self.task_run: TaskRun | None = None
        self.attempt_task: asyncio.Task[Any] | None = None
        self.abandoned = False
        self.shown = False
        self.started_at = 0.0  # set when it starts (or is submitted, for verbose)
        self.gen = 0  # attempts run here
        # Chained starts (StartCall.after): the start this call holds until
        # the call `after` ends well, (attempt, epoch); `next` is the call
        # chained after this one.
        self.chained: tuple[int, int] | None = None
        self.after: _Call | None = None
        self.next: _Call | None = None
        # The stream on which its last attempt ended well (0: it did not):
        # a start chained after it that arrives only now begins at once.
        self.ok_epoch = 0

    @property
    def label(self) -> str:
        if self._label is None:
            self._label = params_label(self.params)
        return self._label


class _Sink:
    """A TaskRun's sink for one attempt: gathers writes, queues output ops."""

    __slots__ = ("engine", "call", "epoch", "buf", "wanted")

    def __init__(self, engine: "SessionEngine", call: _Call, epoch: int) -> None:
        self.engine = engine
        self.call = call
        self.epoch = epoch
        self.buf = bytearray()
        self.wanted = call.output is not None

    def __call__(self, data: bytes) -> None:
        if self.wanted:
            self.buf += data
            if len(self.buf) >= FLUSH_BYTES:
                self.engine._flush(self)


def _wake(items: list[_Waitable]) -> None:
    for w in items:
        f = w.future
        if f is not None and not f.done():
            f.set_result(None)


def _source_of(fn: Callable[..., Any]) -> str:
    try:
        path = inspect.getsourcefile(fn) or ""
    except TypeError:
        return ""
    if not path:
        return ""
    rel = os.path.relpath(os.path.abspath(path), os.getcwd())
    return path if rel.startswith("..") else rel


def _str_params(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, str]:
    try:
        bound = bind_arguments(inspect.signature(fn), args, kwargs)
    except (TypeError, ValueError):
        return {}
    return {k: str(v) for k, v in bound.items()}


class SessionEngine:
    """engine.Engine over one FlowService.Session stream (connected on
    first use through asflow.connection: ASFLOW_SERVER, the local socket,
    auto-start)."""

    def __init__(self, options: ConnectOptions | None = None,
                 connect_fn: Callable[[ConnectOptions], grpc.Channel] | None = None) -> None:
        self._options = options
        self._connect_fn = connect_fn
        self.cv = threading.Condition()
        self.stream: Stream | None = None
        self._runs: dict[int, _Run] = {}
        self._calls: dict[int, _Call] = {}
        self._next_ref = 1
        self._next_call = 1
        self._closed = False
        # Chained starts received, begun without a round trip (where the
        # call before ended, or at once: it had ended well already), and
        # refused (the call before did not end well); benchmarks and tests
        # read them.
        self.chained = 0
        self.chained_begun = 0
        self.chained_late = 0
        self.chained_refused = 0

    # The stream's side (stream.Handler).

    def replay_locked(self) -> list[tuple[Any, ...]]:
        ops: list[tuple[Any, ...]] = []
        for run in self._runs.values():
            if run.closed is not None or run.error is not None:
                continue
            ops.append((OPEN_RUN, run.ref, run.flow, run.workspace, run.params, run.source, False, run.run_id,
                        run.throttle))
            for _, spec in run.tasks.values():
                ops.append((DECLARE, run.ref, spec))
        for call in list(self._calls.values()):
            if call.abandoned:
                del self._calls[call.id]
                continue
            ops.append((CALL, call.run.ref, call.id, call.task.qualname, call.params, call.output or ""))
        for run in self._runs.values():
            if run.close is not None and run.closed is None and run.error is None:
                ops.append((CLOSE_RUN, run.ref, run.close[0], run.close[1]))
        return ops

    def lost_locked(self, error: AsflowError, fatal: bool) -> None:
        wake: dict[asyncio.AbstractEventLoop, list[_Waitable]] = {}
        for call in self._calls.values():
            call.events = tuple(e for e in call.events if e[0] != START)
            call.chained = call.after = call.next = None
            if call.running and call.cancel_by is None:
                call.cancel_by = "lost"
                if call.task_run is not None:
                    call.task_run.cancelled = True
                if call.loop is not None:
                    self._post(call.loop, self._cancel_attempt, call, call.gen)
            if fatal:
                call.events += ((FAIL, error, 0),)
                self._wake_locked(call, wake)
        if fatal:
            for run in self._runs.values():
                run.error = error
                self._wake_locked(run, wake)
            self._calls.clear()
            self._runs.clear()
            self.stream = None
        self._flush_wakes(wake)

    def on_events(self, events: Any, epoch: int) -> None:
        wake: dict[asyncio.AbstractEventLoop, list[_Waitable]] = {}
        with self.cv:
            stream = self.stream
            if stream is None or stream.epoch != epoch:
                return
            for event in events:
                kind = event.WhichOneof("event")
                if kind == "start":
                    s = event.start
                    call = self._calls.get(s.call_id)
                    if call is None or call.abandoned:
                        # Dropped meanwhile (the drop crossed this start): stopped at once.
                        stream.push_locked([(RESULT, s.call_id, False, (), "", True, 0)], epoch)
                        continue
                    if s.after and not self._chain_locked(call, s, epoch, stream):
                        continue
                    call.cancel_by = None  # a cancel that follows applies to this start
                    call.events += ((START, s.attempt, epoch),)
                    self._wake_locked(call, wake)
                elif kind == "call_state":
                    cs = event.call_state
                    call = self._calls.pop(cs.call_id, None)
                    if call is None or call.abandoned:
                        continue
                    call.events += ((FINAL, cs, epoch),)
                    self._wake_locked(call, wake)
                elif kind == "cancel":
                    call = self._calls.get(event.cancel.call_id)
                    if call is None:
                        continue
                    if call.abandoned:
                        continue
                    if call.chained is not None:
                        # Not begun: it stands down and goes back to its queue.
                        self._unchain_locked(call, stream, epoch)
                        continue
                    if event.cancel.unless_begun:
                        continue  # a revoke of a chained start that has begun: it runs to its end
                    call.cancel_by = "daemon"
                    if call.task_run is not None:
                        call.task_run.cancelled = True
                    if call.loop is not None and call.running:
                        self._post(call.loop, self._cancel_attempt, call, call.gen)
                elif kind == "run_opened":
                    run = self._runs.get(event.run_opened.ref)
                    if run is not None:
                        run.run_id = event.run_opened.run_id
                        run.opened = True
                        self._wake_locked(run, wake)
                elif kind == "run_closed":
                    self._run_closed_locked(event.run_closed, wake)
                elif kind == "task_declared":
                    td = event.task_declared
                    if td.error:
                        run = self._runs.get(td.run)
                        print(f"asflow: asflowd refused task {td.task}"
                              f"{f' (run {run.run_id})' if run else ''}: {td.error}", file=sys.stderr)
        self._flush_wakes(wake)

    def _run_closed_locked(self, rc: Any, wake: dict[asyncio.AbstractEventLoop, list[_Waitable]]) -> None:
        run = self._runs.get(rc.ref)
        if run is None:
            return
        if run.close is None and run.ended is None:
            run.ended = rc
            if rc.state == flow_pb2.RUN_CANCELLED and run.flow_task is not None and run.loop is not None:
                # asflowctl cancel: stop the flow function too.
                self._post(run.loop, self._cancel_flow, run)
        if run.close is not None or rc.run_id == 0:
            run.closed = rc
            if rc.run_id == 0 and run.ended is None:
                run.ended = rc
            del self._runs[rc.ref]
            self.cv.notify_all()
        if rc.run_id and not run.run_id:
            run.run_id = rc.run_id
        self._wake_locked(run, wake)

    def _wake_locked(self, w: _Waitable, wake: dict[asyncio.AbstractEventLoop, list[_Waitable]]) -> None:
        if w.loop is not None:
            if w.future is not None:
                wake.setdefault(w.loop, []).append(w)
        elif w.event is not None:
            w.event.set()

    def _chain_locked(self, call: _Call, s: Any, epoch: int, stream: Stream) -> bool:
        """A chained start. Held by `call` until the call it follows ends
        well, if that one is running or about to; if it has ended well
        already, the daemon passed its slot on when it read that result:
        True, the start is delivered now. Otherwise refused (a cancelled
        result: it failed, was cancelled or dropped, or is unknown here)."""
        self.chained += 1
        prev = self._calls.get(s.after)
        if prev is not None and not prev.abandoned and prev.next is None and call.chained is None:
            if prev.running or prev.chained is not None or any(e[0] == START for e in prev.events):
                call.chained = (s.attempt, epoch)
                call.after = prev
                prev.next = call
                return False
            if prev.ok_epoch == epoch and stream.chained_late_begin:
                self.chained_late += 1
                return True
        stream.push_locked([(RESULT, call.id, False, (), "", True, 0)], epoch)
        self.chained_refused += 1
        return False

    def _unchain_locked(self, call: _Call, stream: Stream | None, epoch: int) -> None:
        """`call`, chained and not begun, will not begin: it answers
        cancelled (back to its queue, not an attempt), and so does every
        call chained after it."""
        prev = call.after
        if prev is not None and prev.next is call:
            prev.next = None
        ops: list[tuple[Any, ...]] = []
        while call is not None:
            nxt = call.next
            if call.chained is not None:
                ops.append((RESULT, call.id, False, (), "", True, 0))
            call.chained = call.after = call.next = None
            call = nxt  # type: ignore[assignment]
        if stream is not None and ops:
            stream.push_locked(ops, epoch)

    def _begin_next_locked(self, call: _Call, wake: dict[asyncio.AbstractEventLoop, list[_Waitable]]) -> int:
        """`call` ended well: the call chained after it begins now (its
        start is delivered), taking its slot. Its id, or 0."""
        nxt = call.next
        if nxt is None:
            return 0
        call.next = None
        self.chained_begun += 1
        attempt, epoch = nxt.chained  # type: ignore[misc]
        nxt.chained = nxt.after = None
        nxt.cancel_by = None
        nxt.events += ((START, attempt, epoch),)
        self._wake_locked(nxt, wake)
        return nxt.id

    @staticmethod
    def _flush_wakes(wake: dict[asyncio.AbstractEventLoop, list[_Waitable]]) -> None:
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None  # the stream's threads
        for loop, items in wake.items():
            if loop is here:
                loop.call_soon(_wake, items)  # on that loop already: no self-pipe write
            else:
                SessionEngine._post(loop, _wake, items)

    @staticmethod
    def _post(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the loop is closed: nobody waits there any more

    def _cancel_attempt(self, call: _Call, gen: int) -> None:
        """On the call's loop: cancels its running attempt `gen`
        (CancelledError inside the function)."""
        if call.gen == gen and call.running and call.attempt_task is not None and not call.cancel_sent:
            call.cancel_sent = True
            call.attempt_task.cancel("asflowd cancelled the call" if call.cancel_by == "daemon"
                                     else "the session with asflowd was lost")

    # Runs.

    def _stream_locked(self) -> Stream:
        if self._closed:
            raise AsflowError(grpc.StatusCode.CANCELLED, "the asflow session is closed (the process is exiting)")
        if self.stream is None:
            if self._options is None:
                self._options = ConnectOptions.resolve()
            self.stream = Stream(self._options, self.cv, self, self._connect_fn)
            self.stream.start()
        return self.stream

    def _open_run(self, flow: str, workspace: str, params: dict[str, str], source: str,
                  loop: asyncio.AbstractEventLoop | None, view: ProgressView | None,
                  throttle: dict[str, flow_pb2.ThrottleKey] | None = None) -> _Run:
        with self.cv:
            stream = self._stream_locked()
            run = _Run(self._next_ref, flow, workspace, params, source, loop, view)
            run.throttle = dict(throttle or {})
            self._next_ref += 1
            self._runs[run.ref] = run
            stream.push_locked([(OPEN_RUN, run.ref, flow, workspace, params, source, False, 0, run.throttle)],
                               stream.epoch)
        return run

    def _run_error(self, run: _Run) -> BaseException | None:
        if run.error is not None:
            return run.error
        if run.ended is not None:
            rc = run.ended
            state = RUN_STATE_NAMES.get(rc.state, "ended")
            if rc.run_id == 0:
                return RunEnded(0, "could not be opened", rc.error)
            return RunEnded(rc.run_id, state, rc.error)
        return None

    def _close_run(self, run: _Run, state: int, error: str) -> None:
        with self.cv:
            if run.close is not None or run.error is not None:
                return
            run.close = (state, error)
            if run.closed is None and run.ref in self._runs and self.stream is not None:
                self.stream.push_locked([(CLOSE_RUN, run.ref, state, error)], self.stream.epoch)

    async def _await_run(self, run: _Run, done: Callable[[], bool]) -> None:
        while True:
            with self.cv:
                if done() or run.error is not None or (run.ended is not None and run.ended.run_id == 0):
                    return
                run.future = run.loop.create_future()  # type: ignore[union-attr]
            try:
                await run.future
            finally:
                run.future = None

    def _wait_run(self, run: _Run, done: Callable[[], bool], timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.cv:
                if done() or run.error is not None or (run.ended is not None and run.ended.run_id == 0):
                    return
                if run.event is None:
                    run.event = threading.Event()
                run.event.clear()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            run.event.wait(left)

    async def run_flow(self, flow: "Flow", fr: "FlowRun") -> Any:
        fn = fr.flow_def.fn
        key = ("flow", id(fr))
        if fr.parent is not None:
            run: _Run = fr.parent.session
            fr.session = run
            fr.run_id = fr.parent.run_id
            if run.view is not None:
                run.view.flow_started(key, fr.label)
            state = "failed"
            try:
                value = await fn(*fr.args, **fr.kwargs)
                state = "succeeded"
                return value
            finally:
                if run.view is not None:
                    run.view.flow_finished(key, state)
        loop = asyncio.get_running_loop()
        view = ProgressView() if fr.flow_def.progress else None
        run = self._open_run(fr.flow_def.name, os.path.abspath(flow.base), _str_params(fn, fr.args, fr.kwargs),
                             _source_of(fn), loop, view, flow.throttle_keys)
        fr.session = run
        run.flow_task = asyncio.current_task()
        state = "failed"
        try:
            await self._settle(run, lambda: run.opened)
            error = self._run_error(run)
            if error is not None:
                raise error
            fr.run_id = run.run_id
            if view is not None:
                view.flow_started(key, fr.label)
            try:
                value = await fn(*fr.args, **fr.kwargs)
            except asyncio.CancelledError as e:
                state = "cancelled"
                if not (run.cancels or isinstance(e, CallCancelled)):
                    # Cancelled here (Ctrl-C, an enclosing timeout): say so, go on.
                    self._close_run(run, flow_pb2.RUN_CANCELLED, "the flow was cancelled")
                    raise
                # asflowd cancelled the run (asflowctl cancel): the flow ends with RunEnded.
                self._close_run(run, flow_pb2.RUN_CANCELLED, "cancelled by asflowd")
                await self._settle(run, lambda: run.closed is not None)
                raise self._run_error(run) or RunEnded(run.run_id, "cancelled", "") from None
            except BaseException as e:
                self._close_run(run, flow_pb2.RUN_FAILED, last_line(error_text(e)) or type(e).__name__)
                await self._settle(run, lambda: run.closed is not None)
                raise
            self._close_run(run, flow_pb2.RUN_SUCCEEDED, "")
            await self._settle(run, lambda: run.closed is not None)
            if run.error is not None:
                raise run.error
            if run.ended is not None and run.ended.state == flow_pb2.RUN_CANCELLED:
                state = "cancelled"
                raise self._run_error(run)  # type: ignore[misc]
            state = "succeeded"
            return value
        finally:
            run.flow_task = None
            task = asyncio.current_task()
            for _ in range(run.cancels):  # our own cancels, delivered and handled
                if task is not None:
                    task.uncancel()
            run.cancels = 0
            if view is not None:
                view.flow_finished(key, state)
                view.close()

    async def _settle(self, run: _Run, done: Callable[[], bool]) -> None:
        """Waits for the run's answer (opened, closed), absorbing the
        cancels the engine itself sent the flow (the daemon ended the run);
        a cancel from elsewhere propagates."""
        task = asyncio.current_task()
        while True:
            try:
                await self._await_run(run, done)
                return
            except asyncio.CancelledError:
                if task is None or run.cancels == 0 or task.cancelling() > run.cancels:
                    raise

    def _cancel_flow(self, run: _Run) -> None:
        """On the flow's loop: asflowd ended the run on its own (asflowctl
        cancel); the flow function stops at its next await."""
        task = run.flow_task
        if task is not None and not task.done():
            run.cancels += 1
            task.cancel("asflowd cancelled the run")

    # Calls.

    def _submit(self, run: _Run, task: "TaskDef", call: "Call", args: tuple[Any, ...], kwargs: dict[str, Any],
                loop: asyncio.AbstractEventLoop | None) -> _Call:
        with self.cv:
            error = self._run_error(run)
            if error is not None:
                raise error
            stream = self.stream
            if stream is None:
                raise AsflowError(grpc.StatusCode.UNAVAILABLE, "no session with asflowd")
            ops: list[tuple[Any, ...]] = []
            declared = run.tasks.get(task.qualname)
            if declared is None or declared[0] is not task:
                spec = task.to_spec()
                run.tasks[task.qualname] = (task, spec)
                ops.append((DECLARE, run.ref, spec))
            c = _Call(self._next_call, run, task, call, args, kwargs, loop)
            if getattr(task.flow, "verbose", False):
                c.started_at = time.monotonic()
            self._next_call += 1
            self._calls[c.id] = c
            ops.append((CALL, run.ref, c.id, task.qualname, call.params, call.output or ""))
            stream.push_locked(ops, stream.epoch)
        if run.view is not None:
            run.view.instance_queued(task.qualname, f"{task.name}()", c.id, call.label)
        return c

    def _abandon(self, call: _Call) -> None:
        """The caller went away (cancelled, interrupted) before a final state:
        the daemon is told (drop) and forgets the call; a start that crosses
        the drop is answered cancelled. A running attempt drops before it
        sends its result, so the daemon never judges that result."""
        with self.cv:
            abandoned = self._calls.pop(call.id, None) is not None
            if abandoned:
                call.abandoned = True
                stream = self.stream
                if stream is not None:
                    stream.push_locked([(DROP, call.run.ref, call.id, call.task.qualname, call.params,
                                         call.output or "")], stream.epoch)
                    if call.chained is not None:
                        self._unchain_locked(call, stream, stream.epoch)
        if abandoned and call.run.view is not None:
            call.run.view.instance_finished(call.id, "cancelled")

    def _prepare(self, call: _Call, epoch: int) -> tuple[_Sink, TaskRun | None]:
        """The attempt's sink and TaskRun; no TaskRun if a cancel came first."""
        sink = _Sink(self, call, epoch)
        run = call.run
        on_progress = None
        if not run.standalone:
            def on_progress(total: float, completed: float, description: str) -> None:
                with self.cv:
                    if self.stream is not None:
                        self.stream.progress_locked((PROGRESS, call.id, total, completed, description), epoch)
        task_run = TaskRun(lambda: call.label, call.output, sink,
                           call.task.serializer_for(call.output) if call.output is not None else None,
                           run.view, call.id, on_progress, has_progress=not run.standalone)
        with self.cv:
            if call.cancel_by is not None:
                return sink, None
            call.task_run = task_run
            call.running = True
            call.ok_epoch = 0
            call.gen += 1
            call.cancel_sent = False
            call.raised = None
            call.has_value = False
            call.value = None
        if not call.shown:
            call.shown = True
            call.started_at = time.monotonic()
            if run.view is not None:
                run.view.instance_started(call.task.qualname, f"{call.task.name}()", call.id, call.label)
        return sink, task_run

    def _flush(self, sink: _Sink) -> None:
        """Queues what a running function wrote; waits while the outbox is full."""
        with self.cv:
            stream = self.stream
            if stream is None or sink.epoch != stream.epoch or not stream.live:
                sink.buf.clear()
                return
            ops = self._output_ops(sink, stream.chunk_bytes)
            stream.push_locked(ops, sink.epoch)
            stream.wait_room_locked(sink.epoch)

    @staticmethod
    def _output_ops(sink: _Sink, chunk: int) -> list[tuple[Any, ...]]:
        buf = sink.buf
        if not buf:
            return []
        if len(buf) <= chunk:
            ops = [(OUTPUT, sink.call.id, bytes(buf))]
        else:
            view = memoryview(buf)
            ops = [(OUTPUT, sink.call.id, bytes(view[i:i + chunk])) for i in range(0, len(buf), chunk)]
            view.release()
        buf.clear()
        return ops

    def _result(self, call: _Call, sink: _Sink, ok: bool = False, error: BaseException | None = None,
                cancelled: bool = False) -> None:
        wake: dict[asyncio.AbstractEventLoop, list[_Waitable]] = {}
        with self.cv:
            call.running = False
            call.task_run = None
            stream = self.stream
            if stream is None or sink.epoch != stream.epoch or not stream.live:
                return
            ops: list[tuple[Any, ...]] = []
            progress = stream.take_progress_locked(call.id)
            if progress is not None:
                ops.append(progress)
            if ok:
                call.ok_epoch = sink.epoch
                ops.extend(self._output_ops(sink, stream.chunk_bytes))
                ops.append((RESULT, call.id, True, (), "", False, self._begin_next_locked(call, wake)))
            else:
                if call.next is not None:
                    self._unchain_locked(call.next, stream, sink.epoch)
                if cancelled or error is None:
                    ops.append((RESULT, call.id, False, (), "", True, 0))
                else:
                    # The daemon adds the newline when it writes the .err file.
                    ops.append((RESULT, call.id, False, error_types(error), error_text(error).rstrip("\n"), False, 0))
            stream.push_locked(ops, sink.epoch)
        self._flush_wakes(wake)

    def _next_sync(self, w: _Waitable) -> tuple[Any, Any, int]:
        while True:
            with self.cv:
                if w.events:
                    first = w.events[0]
                    w.events = w.events[1:]
                    if first[0] == START:
                        w.running = True  # type: ignore[attr-defined]  # a start chained after it holds
                    return first
                if w.event is None:
                    w.event = threading.Event()
                w.event.clear()
            w.event.wait()

    async def _next_async(self, w: _Waitable) -> tuple[Any, Any, int]:
        while True:
            with self.cv:
                if w.events:
                    first = w.events[0]
                    w.events = w.events[1:]
                    if first[0] == START:
                        w.running = True  # type: ignore[attr-defined]  # a start chained after it holds
                    return first
                future = w.future = w.loop.create_future()  # type: ignore[union-attr]
            try:
                await future
            finally:
                w.future = None

    def _outcome(self, call: _Call, cs: Any) -> Any:
        state = cs.state
        run = call.run
        name = STATE_NAMES.get(state, "unknown")
        if run.view is not None:
            run.view.instance_finished(call.id, name, last_line(cs.error) if state != flow_pb2.DONE else "")
        flow = call.task.flow
        if flow is not None and getattr(flow, "verbose", False):
            print(f"{call.task.name}({call.label}): {name} in {time.monotonic() - call.started_at:.3f}s",
                  file=sys.stderr)
        if state == flow_pb2.DONE:
            return call.value if call.has_value else None
        if state in (flow_pb2.CACHED, flow_pb2.SKIPPED, flow_pb2.SUPPRESSED):
            return None
        if state == flow_pb2.FAILED:
            if call.raised is not None:
                raise call.raised
            raise TaskFailed(f"{call.task.name}({call.label})", cs.error)
        if state == flow_pb2.CANCELLED:
            raise CallCancelled(f"{call.task.name}({call.label}): cancelled by asflowd"
                                + (f" ({last_line(cs.error)})" if cs.error else ""))
        raise TaskFailed(f"{call.task.name}({call.label})", f"unexpected state {name}: {cs.error}")

    def call_sync(self, task: "TaskDef", args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        from asflow.flow import _current_flow
        call = task.bind(args, kwargs)
        fr = _current_flow.get()
        if fr is None:
            return self._standalone_sync(task, call, args, kwargs)
        c = self._submit(fr.session, task, call, args, kwargs, None)
        return self._drive_sync(c)

    def _drive_sync(self, c: _Call) -> Any:
        try:
            while True:
                kind, payload, epoch = self._next_sync(c)
                if kind == START:
                    self._attempt_sync(c, epoch)
                elif kind == FINAL:
                    return self._outcome(c, payload)
                else:
                    raise payload
        except BaseException:
            self._abandon(c)
            raise

    def _attempt_sync(self, c: _Call, epoch: int) -> None:
        sink, task_run = self._prepare(c, epoch)
        if task_run is None:
            self._result(c, sink, cancelled=True)
            return
        try:
            with task_run:
                value = c.task.fn(*c.args, **(c.kwargs or _NO_KWARGS))
        except BaseException as e:  # noqa: BLE001 (reported to the daemon)
            if c.cancel_by is not None:
                self._result(c, sink, cancelled=True)
            elif isinstance(e, (KeyboardInterrupt, SystemExit)):
                self._abandon(c)  # before the result: the daemon must not judge it
                self._result(c, sink, cancelled=True)
                raise
            else:
                c.raised = e
                self._result(c, sink, error=e)
        else:
            if c.cancel_by is not None:
                self._result(c, sink, cancelled=True)
            else:
                c.value, c.has_value = value, True
                self._result(c, sink, ok=True)

    async def call_async(self, task: "TaskDef", args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return await async_call(lambda: self, task)(*args, **kwargs)

    async def _drive_async(self, c: _Call) -> Any:
        try:
            while True:
                kind, payload, epoch = await self._next_async(c)
                if kind == START:
                    await self._attempt_async(c, epoch)
                elif kind == FINAL:
                    return self._outcome(c, payload)
                else:
                    raise payload
        except BaseException:
            self._abandon(c)
            raise

    async def _attempt_async(self, c: _Call, epoch: int) -> None:
        c.attempt_task = asyncio.current_task()
        sink, task_run = self._prepare(c, epoch)
        if task_run is None:
            c.attempt_task = None
            self._result(c, sink, cancelled=True)
            return
        try:
            with task_run:
                value = await c.task.fn(*c.args, **(c.kwargs or _NO_KWARGS))
        except BaseException as e:  # noqa: BLE001 (reported to the daemon)
            ours = c.cancel_sent
            if ours:
                c.cancel_sent = False
                c.attempt_task.uncancel()  # type: ignore[union-attr]
            if c.cancel_by is not None:
                self._result(c, sink, cancelled=True)
                if isinstance(e, asyncio.CancelledError) and not ours:
                    raise  # cancelled by the caller as well
            elif isinstance(e, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                # Cancelled by the caller (a TaskGroup after a sibling failed, a timeout):
                # dropped before the result, so the daemon does not judge it.
                self._abandon(c)
                self._result(c, sink, cancelled=True)
                raise
            else:
                c.raised = e
                self._result(c, sink, error=e)
        else:
            if c.cancel_sent:
                c.cancel_sent = False
                c.attempt_task.uncancel()  # type: ignore[union-attr]
            if c.cancel_by is not None:
                self._result(c, sink, cancelled=True)
            else:
                c.value, c.has_value = value, True
                self._result(c, sink, ok=True)
        finally:
            c.running = False
            c.attempt_task = None

    # A task called outside any flow: a run of its own.

    def _standalone_run(self, task: "TaskDef", call: "Call", loop: asyncio.AbstractEventLoop | None) -> _Run:
        run = self._open_run(task.name, os.path.abspath(task.base), dict(call.params), _source_of(task.fn), loop,
                             None, getattr(task.flow, "throttle_keys", None))
        run.standalone = True
        return run

    def _standalone_sync(self, task: "TaskDef", call: "Call", args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> Any:
        run = self._standalone_run(task, call, None)
        self._wait_run(run, lambda: run.opened)
        error = self._run_error(run)
        if error is not None:
            raise error
        try:
            c = self._submit(run, task, call, args, kwargs, None)
            value = self._drive_sync(c)
        except BaseException as e:
            interrupted = isinstance(e, (KeyboardInterrupt, SystemExit, asyncio.CancelledError))
            self._close_run(run, flow_pb2.RUN_CANCELLED if interrupted else flow_pb2.RUN_FAILED,
                            "interrupted" if interrupted else last_line(error_text(e)) or type(e).__name__)
            if not interrupted:
                self._wait_run(run, lambda: run.closed is not None, 10.0)
            raise
        self._close_run(run, flow_pb2.RUN_SUCCEEDED, "")
        self._wait_run(run, lambda: run.closed is not None)
        return value

    async def _standalone_async(self, task: "TaskDef", call: "Call", args: tuple[Any, ...],
                                kwargs: dict[str, Any]) -> Any:
        run = self._standalone_run(task, call, asyncio.get_running_loop())
        await self._await_run(run, lambda: run.opened)
        error = self._run_error(run)
        if error is not None:
            raise error
        try:
            c = self._submit(run, task, call, args, kwargs, run.loop)
            value = await self._drive_async(c)
        except asyncio.CancelledError:
            self._close_run(run, flow_pb2.RUN_CANCELLED, "cancelled")
            raise
        except BaseException as e:
            self._close_run(run, flow_pb2.RUN_FAILED, last_line(error_text(e)) or type(e).__name__)
            await self._await_run(run, lambda: run.closed is not None)
            raise
        self._close_run(run, flow_pb2.RUN_SUCCEEDED, "")
        await self._await_run(run, lambda: run.closed is not None)
        return value

    # Shutdown.

    def close(self, timeout: float = 5.0) -> None:
        """At exit: runs still open are closed as cancelled (the process is
        going away), what is queued is sent, and the stream ends."""
        with self.cv:
            self._closed = True
            stream = self.stream
            if stream is None:
                return
            for run in list(self._runs.values()):
                if run.close is None and run.error is None:
                    run.close = (flow_pb2.RUN_CANCELLED, "its process exited")
                    stream.push_locked([(CLOSE_RUN, run.ref, run.close[0], run.close[1])], stream.epoch)
            deadline = time.monotonic() + timeout
            while self._runs and stream.live and time.monotonic() < deadline:
                self.cv.wait(deadline - time.monotonic())
        stream.close(max(0.5, deadline - time.monotonic()))
        with self.cv:
            self.stream = None


def async_call(get_engine: Callable[[], Any], task: "TaskDef") -> Callable[..., Any]:
    """The coroutine function that an async task's wrapper is: a call's
    whole life in one coroutine frame, not one frame calling another (in a
    fan-out 20,000 calls wait at once; a frame is ~340 bytes). Engines
    other than SessionEngine get their call_async."""
    from asflow.flow import _current_flow

    async def call(*args: Any, **kwargs: Any) -> Any:
        engine = get_engine()
        if not isinstance(engine, SessionEngine):
            return await engine.call_async(task, args, kwargs)
        bound = task.bind(args, kwargs)
        fr = _current_flow.get()
        if fr is None:
            return await engine._standalone_async(task, bound, args, kwargs)
        c = engine._submit(fr.session, task, bound, args, kwargs, asyncio.get_running_loop())
        # The _Call holds what it needs of these (kwargs if not empty): the
        # frame does not keep them while the call waits (~64 bytes a call).
        bound = kwargs = None  # type: ignore[assignment]
        cv = engine.cv
        try:
            while True:
                with cv:
                    if c.events:
                        kind, payload, epoch = c.events[0]
                        c.events = c.events[1:]
                        if kind == START:
                            c.running = True  # from now a start chained after it holds
                        future = None
                    else:
                        future = c.future = c.loop.create_future()  # type: ignore[union-attr]
                if future is not None:
                    try:
                        await future
                    finally:
                        c.future = None
                    continue
                if kind == START:
                    await engine._attempt_async(c, epoch)
                elif kind == FINAL:
                    return engine._outcome(c, payload)
                else:
                    raise payload
        except BaseException:
            engine._abandon(c)
            raise

    return call


_default: SessionEngine | None = None
_default_lock = threading.Lock()


def default_engine() -> SessionEngine:
    """The process's engine (what `Flow()` uses unless given another),
    connected on first use and closed at exit."""
    global _default
    with _default_lock:
        if _default is None:
            _default = SessionEngine()
            atexit.register(_default.close)
        return _default


def reset_default_engine() -> None:
    """Closes the process's engine; the next call makes a new one (which
    resolves ASFLOW_SERVER and the socket again). For tests and notebooks."""
    global _default
    with _default_lock:
        engine, _default = _default, None
    if engine is not None:
        atexit.unregister(engine.close)
        engine.close()
