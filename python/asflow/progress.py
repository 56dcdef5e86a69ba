"""AsFlow-style progress on stderr: on a terminal, rich bars (Debian's
python3-rich) — `@flow name()` (its total is unknown, so it stays at 0%
until the flow ends), ` @task name()` per task function with the count of
instances finished/started and an ETA, and a line per running instance
labelled with its arguments (`encode_params`), moved by
flow.task.progress(total=N).advance(); off a terminal, plain lines (a line
per flow start and end and per finished instance).

The view knows nothing of the daemon: phase 2's session calls it as
instances start, progress and finish (the same events `asflowctl watch`
shows). Thread-safe (one lock; rich redraws from its own thread).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeRemainingColumn

# Instance states that end an instance, as the daemon names them.
FINAL_STATES = ("done", "cached", "skipped", "suppressed", "failed", "cancelled")


@dataclass
class _TaskLine:
    label: str
    started: int = 0
    finished: int = 0
    bar: TaskID | None = None


@dataclass
class _InstanceLine:
    task: str
    label: str
    started: float
    bar: TaskID | None = None
    total: float | None = None
    completed: float = 0.0


@dataclass
class _FlowLine:
    label: str
    started: float
    bar: TaskID | None = None


class InstanceProgress:
    """What flow.task.progress() returns inside a running task: moves that
    instance's bar (a context manager, as AsFlow's). `on_change(total,
    completed, description)` is called after each change (phase 2 sends it
    to the daemon as a ProgressOp)."""

    def __init__(self, view: "ProgressView | None", key: Any, description: str | None = None,
                 on_change: Callable[[float, float, str], None] | None = None) -> None:
        self._view = view
        self._key = key
        self._on_change = on_change
        self.total: float | None = None
        self.completed = 0.0
        self.description = description or ""
        if description is not None:
            self._changed()

    def update(self, total: float | None = None, completed: float | None = None, advance: float | None = None,
               description: str | None = None, **_: Any) -> None:
        if total is not None:
            self.total = float(total)
        if completed is not None:
            self.completed = float(completed)
        if advance is not None:
            self.completed += advance
        if description is not None:
            self.description = description
        self._changed()

    def advance(self, n: float = 1) -> None:
        self.update(advance=n)

    def _changed(self) -> None:
        if self._view is not None:
            self._view.instance_progress(self._key, self.total, self.completed, self.description or None)
        if self._on_change is not None:
            self._on_change(self.total or 0.0, self.completed, self.description)

    def __enter__(self) -> "InstanceProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class ProgressView:
    """The bars (or plain lines) of one process's flows. `plain=None`
    decides by whether the stream is a terminal."""

    def __init__(self, stream: IO[str] | None = None, plain: bool | None = None, max_instances: int = 8,
                 console: Console | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console or Console(file=stream or sys.stderr)
        self.plain = (not self.console.is_terminal) if plain is None else plain
        self.max_instances = max_instances
        self._clock = clock
        self._lock = threading.Lock()
        self._flows: dict[Any, _FlowLine] = {}
        self._tasks: dict[str, _TaskLine] = {}
        self._instances: dict[Any, _InstanceLine] = {}
        self._progress: Progress | None = None
        if not self.plain:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                TimeRemainingColumn(), TextColumn("{task.fields[counts]}"),
                console=self.console, transient=False, auto_refresh=True, refresh_per_second=8)

    # Plain output.

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def _started(self) -> Progress | None:
        if self._progress is not None and not self._progress.live.is_started:
            self._progress.start()
        return self._progress

    # Flows.

    def flow_started(self, key: Any, label: str) -> None:
        """`label`: "playlist()" (shown as "@flow playlist()")."""
        with self._lock:
            line = _FlowLine(label, self._clock())
            self._flows[key] = line
            progress = self._started()
            if progress is None:
                self._line(f"@flow {label} started")
            else:
                # total unknown: 0% (and no ETA) until the flow ends, as AsFlow shows it.
                line.bar = progress.add_task(f"@flow {label}", total=1, counts="")

    def flow_finished(self, key: Any, state: str = "succeeded") -> None:
        with self._lock:
            line = self._flows.pop(key, None)
            if line is None:
                return
            elapsed = self._clock() - line.started
            if self._progress is None:
                self._line(f"@flow {line.label} {state} in {elapsed:.1f}s")
            elif line.bar is not None:
                self._progress.update(line.bar, total=1, completed=1 if state == "succeeded" else 0,
                                      counts=state if state != "succeeded" else "")
                self._progress.stop_task(line.bar)

    # Instances (and their task's bar).

    def _task(self, task: str, label: str) -> _TaskLine:
        line = self._tasks.get(task)
        if line is None:
            line = self._tasks[task] = _TaskLine(label)
            if self._progress is not None:
                self._started()
                line.bar = self._progress.add_task(f" @task {label}", total=0, counts="0/0")
        return line

    def _update_task(self, line: _TaskLine) -> None:
        if self._progress is not None and line.bar is not None:
            self._progress.update(line.bar, total=line.started, completed=line.finished,
                                  counts=f"{line.finished}/{line.started}")

    def instance_queued(self, task: str, task_label: str, key: Any, label: str) -> None:
        """A call was made: counted in its task's total, not shown running
        until instance_started."""
        with self._lock:
            t = self._task(task, task_label)
            t.started += 1
            self._update_task(t)
            self._instances[key] = _InstanceLine(task, label, self._clock())

    def instance_started(self, task: str, task_label: str, key: Any, label: str) -> None:
        """`task`: the task's key; `task_label`: "extract()"; `label`: the
        instance's arguments ("F6PqxbvOCUI"). Counts it unless it was queued."""
        with self._lock:
            inst = self._instances.get(key)
            if inst is None:
                t = self._task(task, task_label)
                t.started += 1
                self._update_task(t)
                inst = self._instances[key] = _InstanceLine(task, label, self._clock())
            else:
                inst.started = self._clock()
            if self._progress is not None and inst.bar is None and self._shown() < self.max_instances:
                inst.bar = self._progress.add_task(f"       {inst.label}", total=1, counts="")

    def _shown(self) -> int:
        return sum(1 for i in self._instances.values() if i.bar is not None)

    def instance_progress(self, key: Any, total: float | None, completed: float,
                          description: str | None = None) -> None:
        with self._lock:
            inst = self._instances.get(key)
            if inst is None:
                return
            inst.total, inst.completed = total, completed
            if description is not None:
                inst.label = description
            if self._progress is not None and inst.bar is not None:
                self._progress.update(inst.bar, total=total or 1, completed=completed if total else 0,
                                      description=f"       {inst.label}")

    def instance_finished(self, key: Any, state: str = "done", error: str = "") -> None:
        """An instance ended (`state` as the daemon names it); a cached one
        may finish without having started."""
        with self._lock:
            inst = self._instances.pop(key, None)
            if inst is None:
                return
            t = self._tasks[inst.task]
            t.finished += 1
            self._update_task(t)
            elapsed = self._clock() - inst.started
            if self._progress is None:
                tail = f": {error}" if error else ""
                label = f" {inst.label}" if inst.label else ""
                self._line(f" @task {t.label}{label}: {state} in {elapsed:.1f}s "
                           f"({t.finished}/{t.started}){tail}")
                return
            if inst.bar is not None:
                self._progress.remove_task(inst.bar)

    def instance_cached(self, task: str, task_label: str, key: Any, label: str) -> None:
        """An instance whose output was already there: counted, never shown running."""
        self.instance_started(task, task_label, key, label)
        self.instance_finished(key, "cached")

    def counts(self, task: str) -> tuple[int, int]:
        """(finished, started) of a task, for tests and summaries."""
        with self._lock:
            t = self._tasks.get(task)
            return (t.finished, t.started) if t else (0, 0)

    def close(self) -> None:
        with self._lock:
            if self._progress is not None and self._progress.live.is_started:
                self._progress.refresh()
                self._progress.stop()
