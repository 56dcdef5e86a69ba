"""Python handler workers: `python3 -m asflow.worker --pool py --module mymod`.

Joins one pool of an asflowd over WorkerService.Connect (the protocol of
asflow-worker, docs/workers.md) and serves the public functions of each
--module as handlers named MODULE.FUNCTION, so that a flow file can say

    - name: extract
      for_each: {file: data/playlist.jsonl.zst, as: {video_id: id}}
      on: data/transcripts/{video_id}.jsonl.zst
      handler: mymod.extract
      pool: py
      suppress: {errors: [TranscriptsDisabled]}

An assignment calls the function with the instance's parameters (strings,
by keyword: those its signature names, or all of them if it takes
**kwargs); what it writes with flow.task.write() is serialized by the
output path's suffixes (.json, .jsonl, .parquet as JSON lines, else text)
and streamed back; the daemon compresses and commits the file. An
exception is reported with its type and bases ("module.QualName") and its
traceback, which `errors:` rules match and a suppressed instance's .err
holds. Async functions run on one event loop, plain ones on `slots`
threads. A @flow.task-decorated function is served undecorated (the daemon
does the caching).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import importlib
import inspect
import json
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from asflow import __version__
from asflow.connection import ConnectOptions, connect
from asflow.errors import AsflowError
from asflow.exceptions import error_text, error_types, last_line
from asflow.serializers import Serializer, serializer_for
from asflow.task import TaskDef, TaskRun, is_async_callable, task_def_of
from asflow.v1 import worker_pb2, worker_pb2_grpc

log = logging.getLogger("asflow.worker")

# Largest output message (as asflow-worker): well under gRPC's 4 MiB.
CHUNK_BYTES = 256 * 1024
# Writes are gathered up to this much before a message is sent.
FLUSH_BYTES = 64 * 1024
# The stderr tail the daemon keeps (its `stderr:` matchers see it).
STDERR_TAIL = 16 * 1024
# Messages waiting for the stream; a writer blocks past this (flow control).
OUTBOX = 64
REFUSALS = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED)


@dataclass
class Handler:
    name: str  # MODULE.FUNCTION
    fn: Callable[..., Any]
    is_async: bool
    serializer: Any = None  # a @flow.task's serializer option, else by suffix
    accepts_all: bool = False  # takes **kwargs
    names: frozenset[str] = frozenset()


def handlers_of(module_name: str) -> dict[str, Handler]:
    """The module's public functions (defined in it, not imported) and
    @flow.task wrappers, as MODULE.NAME. ImportError/ValueError if the
    module cannot be imported or serves nothing."""
    module = importlib.import_module(module_name)
    out: dict[str, Handler] = {}
    for attr, value in vars(module).items():
        if attr.startswith("_"):
            continue
        task: TaskDef | None = task_def_of(value)
        fn = task.fn if task is not None else value
        if task is None and not (inspect.isfunction(value) and value.__module__ == module.__name__):
            continue
        params = inspect.signature(fn).parameters.values()
        out[f"{module_name}.{attr}"] = Handler(
            f"{module_name}.{attr}", fn, is_async_callable(fn),
            task.serializer if task is not None else None,
            any(p.kind == p.VAR_KEYWORD for p in params),
            frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)))
    if not out:
        raise ValueError(f"module {module_name} ({module.__file__}) defines no public function to serve")
    return out


@dataclass
class Assignment:
    spec: worker_pb2.Assignment
    run: TaskRun | None = None
    cancelled: bool = False
    timed_out: bool = False
    future: Any = None  # asyncio.Task or concurrent Future
    started: float = field(default_factory=time.monotonic)


class Session:
    """One Connect stream: an outbox feeding the request iterator, a reader
    (the caller's thread), heartbeats."""

    def __init__(self) -> None:
        self.outbox: queue.Queue[worker_pb2.WorkerMessage | None] = queue.Queue(OUTBOX)
        self.open: dict[int, Assignment] = {}
        self.closed = threading.Event()
        self.lock = threading.Lock()

    def requests(self) -> Iterator[worker_pb2.WorkerMessage]:
        while True:
            message = self.outbox.get()
            if message is None:
                return
            yield message

    def send(self, message: worker_pb2.WorkerMessage) -> bool:
        """Blocks while the stream is behind; False once the session is over."""
        while not self.closed.is_set():
            try:
                self.outbox.put(message, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def try_send(self, message: worker_pb2.WorkerMessage) -> None:
        try:
            self.outbox.put_nowait(message)
        except queue.Full:
            pass  # a write is pending: that renews the lease too

    def end_writes(self) -> None:
        while True:
            try:
                self.outbox.put(None, timeout=0.2)
                return
            except queue.Full:
                if self.closed.is_set():
                    return


class Output:
    """A TaskRun's sink: gathers writes, sends OutputChunks of at most
    CHUNK_BYTES, counts what was sent."""

    def __init__(self, session: Session, spec: worker_pb2.Assignment) -> None:
        self.session = session
        self.id = spec.id
        self.wanted = spec.wants_output
        self.buffer = bytearray()
        self.sent = 0
        self.produced = 0

    def write(self, data: bytes) -> None:
        self.produced += len(data)
        if not self.wanted:
            return
        self.buffer += data
        if len(self.buffer) >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        while self.buffer:
            piece = bytes(self.buffer[:CHUNK_BYTES])
            del self.buffer[:CHUNK_BYTES]
            message = worker_pb2.WorkerMessage(output=worker_pb2.OutputChunk(id=self.id, data=piece))
            if not self.session.send(message):
                raise ConnectionError("the stream to asflowd closed")
            self.sent += len(piece)


class Worker:
    def __init__(self, options: ConnectOptions, pool: str, handlers: dict[str, Handler], slots: int = 1,
                 name: str = "", drain_grace: float = 60.0) -> None:
        self.options = options
        self.pool = pool
        self.handlers = handlers
        self.slots = slots
        self.hostname = socket.gethostname()
        self.name = name or f"{self.hostname}:{os.getpid()}"
        self.drain_grace = drain_grace
        self.draining = threading.Event()
        self.stop_now = threading.Event()
        self.threads = concurrent.futures.ThreadPoolExecutor(max_workers=slots, thread_name_prefix="slot")
        self.loop = asyncio.new_event_loop()
        self.loop_thread = threading.Thread(target=self.loop.run_forever, name="asyncio", daemon=True)
        self.loop_thread.start()
        self.session: Session | None = None
        self.call: Any = None

    # Serving.

    def run(self) -> int:
        """Serves sessions until drained (0) or refused (2)."""
        backoff = 0.2
        while True:
            welcomed, code = self.serve()
            if self.draining.is_set() or self.stop_now.is_set():
                return 0
            if code in REFUSALS:
                return 2
            if welcomed:
                backoff = 0.2
            log.warning("%s; reconnecting in %.1fs", "session ended" if welcomed else
                        f"cannot join {self.options.where()}", backoff)
            if self.draining.wait(backoff):
                return 0
            backoff = min(backoff * 2, 5.0)

    def serve(self) -> tuple[bool, grpc.StatusCode | None]:
        try:
            channel = connect(self.options, wait=5.0)
        except AsflowError as e:
            log.warning("%s", e.message)
            return False, e.code
        session = Session()
        self.session = session
        hello = worker_pb2.WorkerHello(pools=[self.pool], slots=self.slots, hostname=self.hostname,
                                       version=__version__, name=self.name, handlers=sorted(self.handlers))
        session.send(worker_pb2.WorkerMessage(hello=hello))
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        self.call = stub.Connect(session.requests(), metadata=self.options.metadata())
        welcomed = False
        code: grpc.StatusCode | None = None
        supervisor: threading.Thread | None = None
        try:
            for message in self.call:
                kind = message.WhichOneof("msg")
                if kind == "welcome":
                    welcomed = True
                    w = message.welcome
                    log.info("joined asflowd %s at %s as %s (session %d, pool '%s', %d slots, handlers %s)",
                             w.daemon_version, self.options.where(), self.name, w.session_id, self.pool,
                             self.slots, ", ".join(sorted(self.handlers)))
                    supervisor = threading.Thread(target=self.supervise, args=(session, max(0.1, w.heartbeat_ms / 1000)),
                                                  name="supervisor", daemon=True)
                    supervisor.start()
                elif kind == "assign":
                    self.start(session, message.assign)
                elif kind == "cancel":
                    with session.lock:
                        a = session.open.get(message.cancel.id)
                    if a is not None:
                        self.cancel(a)
        except grpc.RpcError as e:
            code = e.code()
            if code in REFUSALS:
                why = ("missing or wrong token (--token-file)" if code == grpc.StatusCode.UNAUTHENTICATED
                       else e.details())
                log.error("asflowd at %s refused this worker: %s", self.options.where(), why)
            elif not (self.draining.is_set() or self.stop_now.is_set()):
                log.warning("stream: %s %s", code.name, e.details())
        finally:
            session.closed.set()
            with session.lock:
                leftover = list(session.open.values())
            for a in leftover:  # the daemon has queued them again
                self.cancel(a)
            channel.close()
            if supervisor is not None:
                supervisor.join()
        return welcomed, code

    def supervise(self, session: Session, heartbeat: float) -> None:
        """Heartbeats; drain (tell the daemon, wait for what runs, say goodbye)."""
        drain_sent = False
        deadline = 0.0
        next_beat = 0.0
        while not session.closed.wait(min(heartbeat, 0.1)):
            now = time.monotonic()
            if now >= next_beat:
                beat = worker_pb2.Heartbeat(sent_ms=int(time.time() * 1000))
                session.try_send(worker_pb2.WorkerMessage(heartbeat=beat))
                next_beat = now + heartbeat
            if self.stop_now.is_set():
                self.call.cancel()
                return
            if self.draining.is_set():
                if not drain_sent:
                    session.send(worker_pb2.WorkerMessage(drain=worker_pb2.Drain(reason="asflow.worker got SIGTERM")))
                    drain_sent = True
                    deadline = now + self.drain_grace
                with session.lock:
                    idle = not session.open
                if idle:
                    session.end_writes()  # goodbye: the daemon ends the stream with OK
                    return
                if now > deadline:
                    log.warning("handing %d running instances back to asflowd", len(session.open))
                    self.call.cancel()
                    return

    # Assignments.

    def start(self, session: Session, spec: worker_pb2.Assignment) -> None:
        a = Assignment(spec)
        with session.lock:
            session.open[spec.id] = a
        handler = self.handlers.get(spec.handler)
        if handler is None:
            what = f"handler '{spec.handler}'" if spec.handler else f"command {list(spec.argv)[:1]}"
            self.finish(session, a, None, worker_pb2.AssignmentResult(
                spawn_error=f"{what} is not offered by worker {self.name} (python3 -m asflow.worker serves "
                            "handlers only)", exit_code=-1))
            return
        if handler.is_async:
            a.future = asyncio.run_coroutine_threadsafe(self.run_async(session, a, handler), self.loop)
        else:
            a.future = self.threads.submit(self.run_sync, session, a, handler)

    def prepare(self, session: Session, a: Assignment, handler: Handler) -> tuple[Output, dict[str, Any]]:
        output = Output(session, a.spec)
        path = a.spec.output or None
        serializer: Serializer = serializer_for(path or ".jsonl", handler.serializer)
        a.run = TaskRun(a.spec.label, path, output.write, serializer)
        params = json.loads(a.spec.params_json) if a.spec.params_json else {}
        if not isinstance(params, dict):
            raise TypeError(f"params_json is not an object: {a.spec.params_json!r}")
        kwargs = params if handler.accepts_all else {k: v for k, v in params.items() if k in handler.names}
        return output, kwargs

    def run_sync(self, session: Session, a: Assignment, handler: Handler) -> None:
        output: Output | None = None
        timer = None
        if a.spec.timeout_ms > 0:
            timer = threading.Timer(a.spec.timeout_ms / 1000, self.expire, args=(a,))
            timer.daemon = True
            timer.start()
        try:
            output, kwargs = self.prepare(session, a, handler)
            with a.run:
                handler.fn(**kwargs)
            output.flush()
            self.finish(session, a, output, None)
        except BaseException as e:  # noqa: BLE001 (reported to the daemon, the worker goes on)
            self.finish(session, a, output, e)
        finally:
            if timer is not None:
                timer.cancel()

    async def run_async(self, session: Session, a: Assignment, handler: Handler) -> None:
        output: Output | None = None
        try:
            output, kwargs = self.prepare(session, a, handler)
            with a.run:
                coro = handler.fn(**kwargs)
                if a.spec.timeout_ms > 0:
                    await asyncio.wait_for(coro, a.spec.timeout_ms / 1000)
                else:
                    await coro
            # Sending may block on flow control: not on the event loop.
            await asyncio.to_thread(output.flush)
            await asyncio.to_thread(self.finish, session, a, output, None)
        except (asyncio.TimeoutError, TimeoutError) as e:
            if a.spec.timeout_ms > 0 and not a.cancelled:
                a.timed_out = True
            await asyncio.to_thread(self.finish, session, a, output, e)
        except BaseException as e:  # noqa: BLE001 (CancelledError too: reported as cancelled)
            await asyncio.to_thread(self.finish, session, a, output, e)

    def expire(self, a: Assignment) -> None:
        """A plain function past its timeout cannot be stopped: its next
        write raises and its result says timed out."""
        a.timed_out = True
        if a.run is not None:
            a.run.cancelled = True

    def cancel(self, a: Assignment) -> None:
        a.cancelled = True
        if a.run is not None:
            a.run.cancelled = True
        handler = self.handlers.get(a.spec.handler)
        if handler is not None and handler.is_async and a.future is not None:
            # Cancels the coroutine's asyncio task (CancelledError inside it).
            # A plain function's thread cannot be stopped: its next write
            # raises TaskCancelled.
            a.future.cancel()

    def finish(self, session: Session, a: Assignment, output: Output | None,
               error: BaseException | worker_pb2.AssignmentResult | None) -> None:
        if isinstance(error, worker_pb2.AssignmentResult):
            result = error
        else:
            result = worker_pb2.AssignmentResult(exit_code=0)
            if a.timed_out:
                result.exit_code = -1
                result.timed_out = True
                result.timeout_ms = a.spec.timeout_ms
            elif a.cancelled or isinstance(error, asyncio.CancelledError):
                result.exit_code = -1
                result.cancelled = True
            elif isinstance(error, ConnectionError) and session.closed.is_set():
                result.exit_code = -1
                result.output_error = str(error)
            elif error is not None:
                # The daemon adds the newline when it writes the .err file.
                text = error_text(error).rstrip("\n")
                result.exit_code = -1
                result.error_types.extend(error_types(error))
                result.error_text = text
                result.stderr_tail = text[-STDERR_TAIL:]
                log.info("%s raised %s", a.spec.label, last_line(text))
        result.id = a.spec.id
        result.elapsed_ms = int((time.monotonic() - a.started) * 1000)
        if output is not None:
            result.stdout_bytes = output.sent if a.spec.wants_output else output.produced
        with session.lock:
            session.open.pop(a.spec.id, None)
        session.send(worker_pb2.WorkerMessage(result=result))

    def request_drain(self) -> None:
        if not self.draining.is_set():
            log.info("draining: no new instances; waiting up to %gs for the running ones", self.drain_grace)
            self.draining.set()
        else:
            log.info("stopping now: running instances are handed back to asflowd")
            self.stop_now.set()
            if self.call is not None:
                self.call.cancel()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m asflow.worker",
                                description="Serve Python functions as asflow handlers (handler: MODULE.FUNCTION)")
    p.add_argument("--server", default=None,
                   help="HOST:PORT of asflowd's --listen address, or unix:PATH (env ASFLOW_SERVER; "
                        "default: the local daemon's socket)")
    p.add_argument("--socket", default=None, help="Unix socket of the local asflowd")
    p.add_argument("--token-file", default=None, help="File with the worker token (env ASFLOW_TOKEN_FILE)")
    p.add_argument("--tls-ca", default=None, help="PEM CA of asflowd's certificate: use TLS (env ASFLOW_TLS_CA)")
    p.add_argument("--tls-cert", default=None, help="PEM client certificate for mutual TLS")
    p.add_argument("--tls-key", default=None, help="PEM client key for mutual TLS")
    p.add_argument("--pool", required=True, help="The pool to serve (tasks choose it with pool:)")
    p.add_argument("--module", action="append", required=True,
                   help="Module whose public functions become handlers MODULE.FUNCTION (repeatable)")
    p.add_argument("--slots", type=int, default=os.cpu_count() or 1, help="Instances run at once (default: CPUs)")
    p.add_argument("--name", default="", help="Label in listings (default hostname:pid)")
    p.add_argument("--drain-grace", type=float, default=60.0,
                   help="Seconds a drain (SIGTERM) waits for running instances")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = p.parse_args(argv)
    if args.slots < 1:
        p.error("--slots must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    # The module is looked up like `python3 -m`: the current directory first.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        handlers: dict[str, Handler] = {}
        for module in args.module:
            handlers.update(handlers_of(module))
        options = ConnectOptions.resolve(args.server, args.token_file, args.tls_ca, args.tls_cert, args.tls_key,
                                         args.socket, autostart=False)
    except (ImportError, ValueError, AsflowError) as e:
        print(f"asflow.worker: {e}", file=sys.stderr)
        return 2
    worker = Worker(options, args.pool, handlers, args.slots, args.name, args.drain_grace)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.request_drain())
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
