"""@flow.task: what AsFlow's task decorator checks when it is applied
(TaskDef), the running instance that flow.task.write() fills (TaskRun),
and `flow.task` itself (Task: the decorator plus write / progress / run).

Calling a decorated task goes through the Flow's engine (engine.py): the
daemon-backed session of phase 2. A Python handler worker (asflow.worker)
runs the undecorated function inside a TaskRun whose sink is its stream.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asflow.compressors import Compressor, compressor_for
from asflow.exceptions import qualified_name, rule_name
from asflow.naming import bind_arguments, check_on, encode_params, err_path_for, render_on, template_names
from asflow.progress import InstanceProgress, ProgressView
from asflow.retry import Retry
from asflow.serializers import JSONLSerializer, Serializer, serializer_for
from asflow.throttle import Cooldown
from asflow.throttle import parse_rate as _parse_rate
from asflow.v1 import flow_pb2

if TYPE_CHECKING:
    from asflow.flow import Flow

_current_run: contextvars.ContextVar["TaskRun | None"] = contextvars.ContextVar("asflow_task_run", default=None)


class Skipped(Exception):
    """Internal: an instance abandoned by a `skip` rule (the call returns None)."""


class TaskCancelled(RuntimeError):
    """flow.task.write() after the task was cancelled (fail fast, asflowctl cancel)."""


def is_async_callable(fn: Any) -> bool:
    """An async def function, or an object whose __call__ is one."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def _exception_classes(value: Any, what: str) -> tuple[type[BaseException], ...]:
    classes = value if isinstance(value, (tuple, list)) else (value,)
    for c in classes:
        if not (isinstance(c, type) and issubclass(c, BaseException)):
            raise TypeError(f"{what}: {c!r} is not an exception class")
    return tuple(classes)


class TaskDef:
    """One @flow.task-decorated function, checked at decoration time:
    ValueError for a bad `on` (two `*`, a URL), TypeError for a bad
    `retry`, `skip`, `suppress`, `serializer` or `compressor`. Immutable."""

    def __init__(self, fn: Callable[..., Any], base: Path, *, on: str | None = None, limit: int | None = None,
                 skip: Any = (), suppress: Any = (), retry: None | int | Retry = None,
                 retry_exceptions: Any = (Exception,), serializer: Any = None, compressor: Any = None,
                 rate: str | float | int | None = None, uses: Any = (), cooldown: Cooldown | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"@flow.task: {fn!r} is not callable")
        self.fn = fn
        self.name: str = getattr(fn, "__name__", type(fn).__name__)
        # The limit's key on the daemon: shared by every process using it.
        self.qualname = qualified_name(fn if inspect.isroutine(fn) else type(fn))
        self.is_async = is_async_callable(fn)
        self.flow: Any = None  # the Flow whose decorator made it (verbose)
        self.signature = inspect.signature(fn)
        # A signature of plain parameters only (no defaults, *args, **kwargs,
        # keyword- or positional-only): a call giving each one positionally
        # binds without inspect (bind(), the hot path of a fan-out).
        params = self.signature.parameters.values()
        self._plain: tuple[str, ...] | None = tuple(p.name for p in params) if all(
            p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params) else None
        self.base = base
        self.on = on
        self.template = check_on(on) if on is not None else None
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise ValueError(f"@flow.task(limit={limit!r}): expected None or an int >= 1")
        self.limit = limit
        self.rate = parse_rate(rate)
        # Throttle keys (asflowd --throttle) every call also needs room in.
        if isinstance(uses, str) or not all(isinstance(k, str) and k for k in uses):
            raise TypeError(f"@flow.task(uses={uses!r}): expected a list of throttle key names")
        self.uses = tuple(uses)
        if cooldown is not None and not isinstance(cooldown, Cooldown):
            raise TypeError(f"@flow.task(cooldown={cooldown!r}): expected asflow.throttle.Cooldown(...)")
        self.cooldown = cooldown
        self.skip = _exception_classes(skip, "@flow.task(skip=...)")
        self.suppress = _exception_classes(suppress, "@flow.task(suppress=...)")
        retry_exceptions = _exception_classes(retry_exceptions, "@flow.task(retry_exceptions=...)")
        if retry is None:
            self.retry: Retry | None = None
        elif isinstance(retry, Retry):
            self.retry = retry
        elif isinstance(retry, int) and not isinstance(retry, bool):
            self.retry = Retry(total=retry, exceptions=retry_exceptions)
        else:
            raise TypeError(f"@flow.task(retry={retry!r}): expected None, an int or asflow.retry.Retry")
        sample = on or ""
        self.serializer: Serializer = serializer_for(sample, serializer)
        self.compressor: Compressor = compressor_for(sample, compressor)
        # Whether the suffixes (so the serializer) are the same for every
        # call: `data/{id}.jsonl.zst` yes, `out/{name}` no (chosen per call).
        self._serializer_option = serializer
        name = sample.rsplit("/", 1)[-1]
        self._fixed_suffix = "{" not in name[name.rfind("}") + 1:] and "." in name[name.rfind("}") + 1:] \
            if "}" in name else True
        if self.template is not None:
            unknown = [n for n in template_names(self.template) if n != "hash" and n not in self.signature.parameters]
            has_var_kw = any(p.kind == p.VAR_KEYWORD for p in self.signature.parameters.values())
            if unknown and not has_var_kw:
                raise ValueError(f"@flow.task(on={on!r}): {self.name}() has no parameter {unknown[0]!r}")
            parent = Path(self.template).parent
            if not template_names(str(parent)):
                (base / parent).mkdir(parents=True, exist_ok=True)

    def serializer_for(self, output: str | None) -> Serializer:
        """The serializer of one call's output path: the one chosen when
        decorating, unless the suffixes come from the arguments."""
        if self._fixed_suffix or output is None or isinstance(self._serializer_option, (str, Serializer, type)):
            return self.serializer
        return serializer_for(output, self._serializer_option)

    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> "Call":
        """One call: its bound arguments (defaults applied; TypeError as the
        call itself would raise), output path and label."""
        plain = self._plain
        if plain is not None and not kwargs and len(args) == len(plain):
            # Bound as written, so the label is the params joined: made when
            # first asked (most calls never are).
            arguments = dict(zip(plain, args))
            label = None
        else:
            arguments = bind_arguments(self.signature, args, kwargs)
            label = encode_params(args, kwargs)
        output = None
        if self.template is not None:
            output = render_on(self.template, self.name, arguments, args, kwargs)
        return Call(self, arguments, output, label)

    def to_spec(self) -> flow_pb2.TaskSpec:
        """The TaskSpec phase 2 declares (DeclareTask): name, on, limit and
        the rules as `errors` matchers on qualified exception names."""
        spec = flow_pb2.TaskSpec(name=self.qualname, on=self.on or "", limit=self.limit or 0, rate=self.rate)
        spec.uses.extend(self.uses)
        if self.compressor.level is not None:
            spec.compression_level = self.compressor.level
        if self.retry is not None and self.retry.total > 0:
            spec.retry.CopyFrom(self.retry.to_rule())
        spec.skip.errors.extend(rule_name(e) for e in self.skip)
        spec.suppress.errors.extend(rule_name(e) for e in self.suppress)
        if self.cooldown is not None:
            spec.cooldown.CopyFrom(self.cooldown.to_rule())
        return spec

    def __repr__(self) -> str:
        return f"TaskDef({self.qualname}, on={self.on!r})"


class Call:
    """One call of a task: identity (task + `params`: (name, str(value))
    pairs in the signature's order), output path relative to the flow's
    base (None without `on`), label."""

    # Pairs, not a dict: 20,000 calls wait at once in a fan-out, and a
    # one-entry dict is 184 bytes, the pairs 104.
    __slots__ = ("task", "params", "output", "_label")

    def __init__(self, task: TaskDef, arguments: dict[str, Any], output: str | None, label: str | None) -> None:
        self.task = task
        self.params: tuple[tuple[str, str], ...] = tuple((k, str(v)) for k, v in arguments.items())
        self.output = output
        self._label = label  # None: the params joined (every argument given positionally)

    @property
    def label(self) -> str:
        """`a1, a2, k=v` as the call was written (naming.encode_params)."""
        if self._label is None:
            self._label = params_label(self.params)
        return self._label

    @property
    def err_path(self) -> str | None:
        """Where a suppressed instance's traceback goes (None without `on`)."""
        if self.output is None or self.task.on is None:
            return None
        return err_path_for(self.output, self.task.on)

    def cached(self) -> bool:
        """The output or its .err exists under the base: not run again."""
        if self.output is None:
            return False
        return (self.task.base / self.output).exists() or (self.task.base / str(self.err_path)).exists()


def params_label(params: tuple[tuple[str, str], ...]) -> str:
    """The label of a call that gave every argument positionally."""
    return ", ".join(v for _, v in params)


class TaskRun:
    """A running instance: flow.task.write() serializes each write and
    hands the bytes to `sink` (phase 2: OutputOps to the daemon; the
    worker: OutputChunks). Counts bytes and lines. Not thread-safe: one
    task writes from one thread at a time."""

    def __init__(self, label: str | Callable[[], str], output: str | None, sink: Callable[[bytes], None],
                 serializer: Serializer | None = None, view: ProgressView | None = None, view_key: Any = None,
                 on_progress: Callable[[float, float, str], None] | None = None, has_progress: bool = True) -> None:
        self._label = label  # or a function that makes it (asked for in errors only)
        self.output = output
        self.serializer = serializer or (serializer_for(output) if output else JSONLSerializer())
        self.sink = sink
        self.bytes = 0
        self.lines = 0
        self.cancelled = False
        self._view = view
        self._view_key = view_key
        self._on_progress = on_progress
        self._progress: InstanceProgress | None = None
        # False for a task called outside any flow: flow.task.progress()
        # has no bar to move and returns None, as in AsFlow.
        self.has_progress = has_progress

    @property
    def label(self) -> str:
        if callable(self._label):
            self._label = self._label()
        return self._label

    def write(self, data: Any) -> None:
        if self.cancelled:
            raise TaskCancelled(f"{self.label}: write after the task was cancelled")
        chunk = self.serializer.dumps(data)
        self.bytes += len(chunk)
        self.lines += chunk.count(b"\n")
        self.sink(chunk)

    def progress(self, description: str | None = None, **kwargs: Any) -> InstanceProgress | None:
        if not self.has_progress:
            return None
        if self._progress is None:
            self._progress = InstanceProgress(self._view, self._view_key, None, self._on_progress)
        if description is not None or kwargs:
            self._progress.update(description=description, **kwargs)
        return self._progress

    def __enter__(self) -> "TaskRun":
        self._token = _current_run.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _current_run.reset(self._token)


class Task:
    """`flow.task`: the decorator (@flow.task, @flow.task(on=...)) and, inside
    a running task, write / progress / run."""

    def __init__(self, flow: "Flow") -> None:
        self._flow = flow

    def __call__(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        if fn is None:
            return lambda f: self._decorate(f, options)
        if options:
            raise TypeError("@flow.task: give options by keyword only")
        return self._decorate(fn, {})

    def _decorate(self, fn: Callable[..., Any], options: dict[str, Any]) -> Callable[..., Any]:
        known = {"on", "limit", "skip", "suppress", "retry", "retry_exceptions", "serializer", "compressor", "rate",
                 "uses", "cooldown"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"@flow.task: unexpected option {unknown[0]!r}")
        task = TaskDef(fn, self._flow.base, **options)
        flow = self._flow
        task.flow = flow
        if task.is_async:
            from asflow.session import async_call  # (session imports this module)
            wrapper: Callable[..., Any] = async_call(lambda: flow.engine, task)
        else:
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                return flow.engine.call_sync(task, args, kwargs)
            wrapper = sync_wrapper
        try:
            functools.update_wrapper(wrapper, fn)
        except AttributeError:
            functools.update_wrapper(wrapper, type(fn), updated=())
        wrapper.task = task  # type: ignore[attr-defined]
        return wrapper

    @property
    def run(self) -> TaskRun | None:
        """The current TaskRun inside a task, else None."""
        return _current_run.get()

    def write(self, data: Any) -> None:
        """Writes data to the running task's output (serializer by suffix).
        RuntimeError outside a running task; TaskCancelled after a cancel."""
        run = _current_run.get()
        if run is None:
            raise RuntimeError("flow.task.write() called outside a running task")
        run.write(data)

    def progress(self, description: str | None = None, **kwargs: Any) -> InstanceProgress | None:
        """The running instance's progress handle (update(total=N),
        advance()); None outside a running task."""
        run = _current_run.get()
        return run.progress(description, **kwargs) if run is not None else None


def parse_rate(rate: str | float | int | None) -> str:
    """`rate=` (an extension of AsFlow's options): "N/s", "N/min", "N/h"
    as in flow files, a number of starts per second, or "auto" /
    "auto(max: 5/s, min: 0.1/s)" (adaptive pacing); "" for none.
    ValueError/TypeError at decoration time."""
    return _parse_rate(rate, "@flow.task(rate={})")


def task_def_of(obj: Any) -> TaskDef | None:
    """The TaskDef behind a @flow.task wrapper, else None."""
    return getattr(obj, "task", None) if isinstance(getattr(obj, "task", None), TaskDef) else None


def default_limit() -> int:
    """AsFlow's default `limit`: the CPU count."""
    return os.cpu_count() or 1
