"""A typed client of asflowd's FlowService: what asflowctl does, from Python.

    from asflow.client import Client
    with Client() as c:                       # the local daemon (started if needed)
        run = c.submit("flow.yaml", {"channel": "https://..."})
        for event in c.watch(run.run_id, run.watch_from_seq):
            ...                               # Snapshot, RunChanged, InstanceChanged
        failed = list(c.tasks(run.run_id, state="failed"))

Runs, instances, counters and workers are the asflow.v1 messages
(flow_pb2.Run, flow_pb2.Instance, worker_pb2.WorkerInfo; typed through the
generated .pyi files). Every failure is an AsflowError with the gRPC code
and message. Thread-safe as far as the gRPC channel is (calls from several
threads share it).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar, Union

import grpc

from asflow.connection import ConnectOptions, connect
from asflow.errors import AsflowError
from asflow.flowfile import FlowFileError
from asflow.flowimports import load_flow_file
from asflow.v1 import flow_pb2, service_pb2, service_pb2_grpc, worker_pb2

__all__ = ["AsflowError", "Client", "Submitted", "Snapshot", "RunChanged", "InstanceChanged", "WatchEvent",
           "InstanceEventKind", "FlowFileError", "ThrottleStatus", "Resumed"]

Run = flow_pb2.Run
Instance = flow_pb2.Instance
TaskCounters = flow_pb2.TaskCounters
WorkerInfo = worker_pb2.WorkerInfo
ThrottleStatus = service_pb2.ThrottleStatus
StateLike = Union[str, int]

T = TypeVar("T")


@dataclass(frozen=True)
class Resumed:
    """Client.resume's answer: the gate as it is now, and whether it was
    paused (resuming what is not paused is no error)."""

    status: service_pb2.ThrottleStatus
    was_paused: bool


@dataclass(frozen=True)
class Submitted:
    run_id: int
    # Watch from here to see every event of the run from its start.
    watch_from_seq: int


class InstanceEventKind(Enum):
    QUEUED = service_pb2.InstanceEvent.QUEUED
    STARTED = service_pb2.InstanceEvent.STARTED
    PROGRESS = service_pb2.InstanceEvent.PROGRESS
    FINISHED = service_pb2.InstanceEvent.FINISHED


@dataclass(frozen=True)
class Snapshot:
    """The state at `seq`: runs with their per-task counters, running
    instances. `gap`: events after the from_seq asked for were no longer
    buffered; this snapshot replaces them."""

    seq: int
    time_ms: int
    runs: list[flow_pb2.Run]
    running: list[flow_pb2.Instance]
    gap: bool


@dataclass(frozen=True)
class RunChanged:
    """A run started, changed state or finished (`run` after the change)."""

    seq: int
    time_ms: int
    run: flow_pb2.Run


@dataclass(frozen=True)
class InstanceChanged:
    """An instance was queued, started, made progress or finished;
    `counters` are its task's in its run after the event."""

    seq: int
    time_ms: int
    kind: InstanceEventKind
    instance: flow_pb2.Instance
    counters: flow_pb2.TaskCounters


WatchEvent = Union[Snapshot, RunChanged, InstanceChanged]


def event_from_proto(event: service_pb2.Event) -> WatchEvent | None:
    """The typed form of one (unbatched) Event; None for an empty body."""
    body = event.WhichOneof("body")
    if body == "snapshot":
        s = event.snapshot
        return Snapshot(event.seq, event.time_ms, list(s.runs), list(s.running), s.gap)
    if body == "run":
        return RunChanged(event.seq, event.time_ms, event.run.run)
    if body == "instance":
        i = event.instance
        return InstanceChanged(event.seq, event.time_ms, InstanceEventKind(i.kind), i.instance, i.counters)
    return None


def decode_events(message: service_pb2.Event) -> list[WatchEvent]:
    """A Watch message's events: each of a batch (encoded Events), or the
    message itself."""
    if len(message.batch) == 0:
        one = event_from_proto(message)
        return [one] if one is not None else []
    out: list[WatchEvent] = []
    for encoded in message.batch:
        inner = service_pb2.Event.FromString(encoded)
        one = event_from_proto(inner)
        if one is not None:
            out.append(one)
    return out


def instance_state(state: StateLike) -> int:
    """flow_pb2.InstanceState value of "failed", "FAILED" or the number."""
    if isinstance(state, int):
        flow_pb2.InstanceState.Name(state)  # ValueError if unknown
        return state
    try:
        value = flow_pb2.InstanceState.Value(state.upper())
    except ValueError:
        value = 0
    if value == flow_pb2.INSTANCE_STATE_UNSPECIFIED:
        raise ValueError(f"unknown instance state {state!r} (expected queued, running, done, cached, "
                         "skipped, suppressed, failed, cancelled or reset)")
    return value


def _states(state: StateLike | Iterable[StateLike] | None) -> list[int]:
    if state is None:
        return []
    if isinstance(state, (str, int)):
        return [instance_state(state)]
    return [instance_state(s) for s in state]


def _gate_name(target: object) -> str:
    """A key or task name, or a @flow.task function (its qualified name)."""
    task = getattr(target, "task", None)
    name = getattr(task, "qualname", None)
    if isinstance(name, str):
        return name
    if not isinstance(target, str) or not target:
        raise TypeError(f"expected a throttle key or task name, or a @flow.task function, got {target!r}")
    return target


def run_state_name(state: int) -> str:
    """"succeeded" for RUN_SUCCEEDED, as asflowctl prints it."""
    return flow_pb2.RunState.Name(state).removeprefix("RUN_").lower()


def instance_state_name(state: int) -> str:
    return flow_pb2.InstanceState.Name(state).lower()


class Client:
    """FlowService of one asflowd. Connects on the first call: `server`
    (HOST:PORT or unix:PATH; else ASFLOW_SERVER; else the local socket,
    where asflowd is started if nothing listens), `token_file` (else
    ASFLOW_TOKEN_FILE), `tls_ca` (else ASFLOW_TLS_CA; with tls_cert and
    tls_key for mutual TLS)."""

    def __init__(self, server: str | None = None, token_file: str | None = None, tls_ca: str | None = None, *,
                 tls_cert: str | None = None, tls_key: str | None = None, socket: str | None = None,
                 autostart: bool = True, timeout: float = 60.0) -> None:
        self.options = ConnectOptions.resolve(server, token_file, tls_ca, tls_cert, tls_key, socket, autostart)
        # Deadline of each unary call, in seconds.
        self.timeout = timeout
        self._channel: grpc.Channel | None = None
        self._stub: service_pb2_grpc.FlowServiceStub | None = None

    # Connection.

    def _flow(self, autostart: bool = True) -> service_pb2_grpc.FlowServiceStub:
        if self._stub is None:
            options = self.options if autostart else dataclasses.replace(self.options, autostart=False)
            self._channel = connect(options)
            self._stub = service_pb2_grpc.FlowServiceStub(self._channel)
        return self._stub

    def _call(self, method: str, request: object) -> T:
        stub = self._flow()
        try:
            return getattr(stub, method)(request, timeout=self.timeout, metadata=self.options.metadata())
        except grpc.RpcError as e:
            raise AsflowError.from_rpc(e) from None

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._stub = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # FlowService.

    def submit(self, flow_file: str | os.PathLike[str], params: Mapping[str, str] | None = None, *,
               workspace: str | os.PathLike[str] | None = None, keep_going: bool = False,
               env: Mapping[str, str] | None = None) -> Submitted:
        """Submits a flow file (YAML, JSON or protobuf text, read as asflowctl
        reads it) with parameter overrides (only names the flow declares).
        The workspace defaults to the current directory; `env` defaults to
        {"PATH": $PATH} as asflowctl sends. FlowFileError for a file that
        cannot be read or parsed; AsflowError(INVALID_ARGUMENT) with
        file:line:col for a spec the daemon refuses, PERMISSION_DENIED for a
        workspace outside its allowed roots."""
        # Imported flow files are read here and their tasks sent: the
        # daemon reads no flow file (docs/flows.md, "Imports").
        parsed = load_flow_file(str(flow_file))
        request = service_pb2.SubmitFlowRequest(spec=parsed.spec, source=str(flow_file), keep_going=keep_going)
        for name, value in (params or {}).items():
            if name not in parsed.spec.params:
                known = ", ".join(sorted(parsed.spec.params))
                raise FlowFileError(f"{flow_file}: -p {name}: the flow has no parameter '{name}' (it has: {known})")
            request.params[name] = str(value)
        request.workspace = os.path.abspath(workspace if workspace is not None else os.getcwd())
        if env is None:
            env = {"PATH": os.environ["PATH"]} if "PATH" in os.environ else {}
        request.env.update(env)
        try:
            response = self._call("SubmitFlow", request)
        except AsflowError as e:
            if e.code == grpc.StatusCode.INVALID_ARGUMENT:
                raise AsflowError(e.code, parsed.locate_errors(e.message)) from None
            raise
        return Submitted(response.run_id, response.watch_from_seq)

    def run(self, run_id: int) -> flow_pb2.Run:
        """One run with its per-task counters (NOT_FOUND if unknown)."""
        return self._call("GetRun", service_pb2.GetRunRequest(run_id=run_id))

    def runs(self, limit: int = 50) -> list[flow_pb2.Run]:
        """The most recent runs, newest first."""
        return list(self._call("ListRuns", service_pb2.ListRunsRequest(limit=limit)).runs)

    def tasks(self, run_id: int, task: str | None = None, state: StateLike | Iterable[StateLike] | None = None,
              *, page_size: int = 1000) -> Iterator[flow_pb2.Instance]:
        """Every instance of a run (optionally of one task, in some states:
        "failed" or ["skipped", "failed"]) in seq order, page after page."""
        request = service_pb2.ListTasksRequest(run_id=run_id, task=task or "", states=_states(state),
                                               page_size=page_size)
        while True:
            response = self._call("ListTasks", request)
            yield from response.instances
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    def show(self, run_id: int, task: str, params: Mapping[str, str] | None = None) -> flow_pb2.Instance:
        """The instance of `task` with exactly these identity parameters in
        a run, with its full error text; NOT_FOUND if there is none."""
        request = service_pb2.ListTasksRequest(run_id=run_id, task=task, page_size=1)
        for k, v in (params or {}).items():
            request.params[k] = str(v)
        response = self._call("ListTasks", request)
        if not response.instances:
            args = ", ".join(f"{k}={v}" for k, v in (params or {}).items())
            raise AsflowError(grpc.StatusCode.NOT_FOUND, f"run {run_id} has no instance {task}({args})")
        return response.instances[0]

    def cancel(self, run_id: int) -> int:
        """Cancels a run; returns its state after (flow_pb2.RunState)."""
        return self._call("CancelRun", service_pb2.CancelRunRequest(run_id=run_id)).state

    def reset(self, run_id: int = 0, task: str | None = None, path: str | os.PathLike[str] | None = None,
              states: StateLike | Iterable[StateLike] | None = None, *,
              workspace: str | os.PathLike[str] | None = None, all_workspaces: bool = False) -> int:
        """Clears suppressed (and failed) instances so the next run runs
        them again (their .err files are removed); at least one of run_id,
        task, path. A relative path is relative to the current directory.
        By task, only runs in `workspace` (default: the current directory)
        are touched, as `asflowctl reset` does, unless `all_workspaces`.
        Returns how many were reset."""
        request = service_pb2.ResetTasksRequest(run_id=run_id, task=task or "", states=_states(states))
        if not run_id and path is None and not all_workspaces:
            request.workspace = os.path.realpath(workspace if workspace is not None else os.getcwd())
        if path is not None:
            p = os.path.abspath(path)
            # The output itself usually does not exist: resolve its directory.
            request.path = os.path.join(os.path.realpath(os.path.dirname(p)), os.path.basename(p))
        return self._call("ResetTasks", request).reset

    def workers(self) -> list[worker_pb2.WorkerInfo]:
        """Connected remote worker sessions, by session id."""
        return list(self._call("ListWorkers", worker_pb2.ListWorkersRequest()).workers)

    def throttle(self) -> list[service_pb2.ThrottleStatus]:
        """Every throttle key, and the task gates that are paused, cooling
        down or paced (`asflowctl throttle`): name, limit, in flight, rate
        and effective_rate (`rate: auto`), state ("open", "cooling down",
        "paused"), the note the runs show, cooldown_until_ms /
        paused_until_ms (epoch ms; 0: none, or paused until resumed),
        queued."""
        return list(self._call("ListThrottle", service_pb2.ListThrottleRequest()).keys)

    def pause(self, target: "str | object", for_: float | datetime.timedelta | None = None) -> service_pb2.ThrottleStatus:
        """Pauses a throttle key, a task definition ("flow.task", a Python
        task's qualified name) or a task name one active run's flow has:
        running instances finish, nothing new starts through it until
        resume(target) or, with `for_` (seconds or a timedelta), until that
        time has passed. A @flow.task function names its task. Kept across
        a daemon restart. AsflowError NOT_FOUND when nothing has that name."""
        target = _gate_name(target)
        if isinstance(for_, datetime.timedelta):
            for_ = for_.total_seconds()
        if for_ is not None and (isinstance(for_, bool) or not isinstance(for_, (int, float)) or not for_ > 0):
            raise ValueError(f"pause(for_={for_!r}): expected None (until resumed) or seconds > 0")
        request = service_pb2.PauseRequest(target=target, for_ms=0 if for_ is None else max(1, round(for_ * 1000)))
        return self._call("Pause", request).status

    def resume(self, target: "str | object") -> Resumed:
        """Lifts a pause (as `asflowctl resume`); `target` as for pause."""
        answer = self._call("Resume", service_pb2.ResumeRequest(target=_gate_name(target)))
        return Resumed(answer.status, answer.was_paused)

    def shutdown(self) -> None:
        """Stops the daemon gracefully (running runs resume at its next start)."""
        self._call("Shutdown", service_pb2.ShutdownRequest())
        self.close()

    def watch(self, run_id: int = 0, from_seq: int = 0, *, batch_interval_ms: int = 0,
              reconnect: float = 60.0) -> Iterator[WatchEvent]:
        """Events of one run (0: all runs) after `from_seq` (0: a snapshot
        first), until the run ends (the daemon then ends the stream). A
        broken stream (the daemon restarting) is resumed from the last event
        seen for up to `reconnect` seconds, as `asflowctl watch` does; then
        AsflowError(UNAVAILABLE)."""
        last_seq = from_seq
        give_up: float | None = None
        resuming = False
        while True:
            request = service_pb2.WatchRequest(run_id=run_id, from_seq=last_seq, batch=True,
                                               batch_interval_ms=batch_interval_ms)
            try:
                # While resuming (the daemon restarting) never start another one.
                stream = self._flow(autostart=not resuming).Watch(request, metadata=self.options.metadata())
                for message in stream:
                    for event in decode_events(message):
                        last_seq = max(last_seq, event.seq)
                        give_up = None
                        yield event
                return
            except grpc.RpcError as e:
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL,
                                    grpc.StatusCode.CANCELLED) or reconnect <= 0:
                    raise AsflowError.from_rpc(e) from None
                error = AsflowError.from_rpc(e)
            except AsflowError as e:  # reconnecting failed
                if e.code != grpc.StatusCode.UNAVAILABLE:
                    raise
                error = e
            now = time.monotonic()
            if give_up is None:
                give_up = now + reconnect
            if now > give_up:
                raise AsflowError(grpc.StatusCode.UNAVAILABLE,
                                  f"lost the Watch of run {run_id} and could not resume it within "
                                  f"{reconnect:g}s: {error.message}")
            self.close()
            resuming = True
            time.sleep(0.2)

