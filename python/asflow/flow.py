"""asflow.flow: Flow (the `flow` object users import), FlowRun.

    from asflow import flow

    @flow.task(on="data/transcripts/{video_id}.jsonl.zst", limit=4)
    async def extract(video_id): ...

    @flow
    async def transcripts(): ...

Decoration checks what AsFlow checks when the decorator is applied
(AssertionError for @flow on a plain function; see task.TaskDef for
@flow.task). Calling a decorated flow or task goes through `flow.engine`
(engine.Engine): by default the process's code session with asflowd
(session.SessionEngine, connected on first use).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asflow.engine import Engine
from asflow.naming import encode_params
from asflow.task import Task
from asflow.throttle import RateLike, throttle_key, throttle_keys
from asflow.v1 import flow_pb2

_current_flow: contextvars.ContextVar["FlowRun | None"] = contextvars.ContextVar("asflow_flow_run", default=None)


class FlowDef:
    """One @flow-decorated coroutine function."""

    def __init__(self, fn: Callable[..., Any], progress: bool) -> None:
        if not inspect.iscoroutinefunction(fn):
            # AsFlow asserts; raised explicitly so that -O keeps the check.
            raise AssertionError(f"@flow: {getattr(fn, '__qualname__', fn)!r} must be an async def function")
        self.fn = fn
        self.name: str = fn.__name__
        self.qualname = f"{fn.__module__}.{fn.__qualname__}"
        self.progress = progress


class FlowRun:
    """The current @flow call (flow.run): its definition, arguments and,
    once the daemon opened it, its run id. A nested flow call has the
    outer one as `parent` and shares its run."""

    def __init__(self, flow_def: FlowDef, args: tuple[Any, ...], kwargs: dict[str, Any],
                 parent: "FlowRun | None" = None) -> None:
        self.flow_def = flow_def
        self.args = args
        self.kwargs = kwargs
        self.parent = parent
        self.label = f"{flow_def.name}({encode_params(args, kwargs)})"
        self.run_id: int | None = parent.run_id if parent is not None else None
        # The engine's handle of the daemon run (shared by nested flows).
        self.session: Any = parent.session if parent is not None else None

    @property
    def root(self) -> "FlowRun":
        """The outermost flow call: its run is this one's."""
        run = self
        while run.parent is not None:
            run = run.parent
        return run

    def __enter__(self) -> "FlowRun":
        self._token = _current_flow.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _current_flow.reset(self._token)


class Flow:
    """`base`: the directory `on` paths are relative to; `verbose`: a line
    per finished task with its duration; `throttle`: throttle keys its
    runs declare, {"youtube": {"limit": 4, "rate": "2/s"}} (more with
    flow.throttle(...)), which tasks name in @flow.task(uses=[...])."""

    def __init__(self, base: str | os.PathLike[str] = ".", verbose: bool = False,
                 engine: Engine | None = None, throttle: Any = None) -> None:
        self.base = Path(base)
        self.verbose = verbose
        self._engine = engine
        self._throttle = throttle_keys(throttle)
        self.task = Task(self)

    def throttle(self, name: str, *, limit: int | None = None, rate: RateLike = None) -> None:
        """Declares (or redefines) throttle key `name` for the runs this Flow
        opens from now on: at most `limit` calls in flight through it (None:
        no cap of its own) and starts paced at `rate` ("2/s", "30/min",
        "auto", "auto(max: 5/s, min: 0.1/s)"), shared with every process,
        flow file and worker using the key (docs/flows.md). ValueError
        for a bad name, limit or rate."""
        self._throttle[name] = throttle_key(name, limit, rate)

    @property
    def throttle_keys(self) -> dict[str, flow_pb2.ThrottleKey]:
        """The keys declared so far (a copy), as OpenRun.throttle sends them."""
        return {k: flow_pb2.ThrottleKey(limit=v.limit, rate=v.rate) for k, v in self._throttle.items()}

    @property
    def engine(self) -> Engine:
        """What runs calls: the one given, else the process's session with
        asflowd (asflow.session.default_engine())."""
        if self._engine is not None:
            return self._engine
        from asflow.session import default_engine
        return default_engine()

    @engine.setter
    def engine(self, engine: Engine | None) -> None:
        self._engine = engine

    def path(self, p: str | os.PathLike[str]) -> Path:
        return self.base / p

    @property
    def run(self) -> FlowRun | None:
        """The current FlowRun, None outside a flow."""
        return _current_flow.get()

    def __call__(self, fn: Callable[..., Any] | None = None, /, *, progress: bool = True) -> Any:
        if fn is None:
            return lambda f: self._decorate(f, progress)
        return self._decorate(fn, progress)

    def _decorate(self, fn: Callable[..., Any], progress: bool) -> Callable[..., Any]:
        flow_def = FlowDef(fn, progress)

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            with FlowRun(flow_def, args, kwargs, parent=_current_flow.get()) as run:
                return await self.engine.run_flow(self, run)

        wrapper.flow = flow_def  # type: ignore[attr-defined]
        return wrapper
