"""The seam between the decorators and whatever runs a call.

`Flow.engine` implements it; the default is asflow.session.SessionEngine,
which runs every call through asflowd's FlowService.Session (a flow call
opens a run, a task call is an instance the daemon schedules). Tests give a
Flow another engine (Flow(base, engine=...)).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from asflow.flow import Flow, FlowRun
    from asflow.task import TaskDef


class Engine(Protocol):
    async def run_flow(self, flow: "Flow", run: "FlowRun") -> Any:
        """Runs run.flow_def.fn(*run.args, **run.kwargs) as (part of) a daemon run."""

    def call_sync(self, task: "TaskDef", args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A call of a plain-function task: its return value, None if cached
        / skipped / suppressed; raises what the function raised on failure."""

    async def call_async(self, task: "TaskDef", args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """As call_sync, for an async task."""
