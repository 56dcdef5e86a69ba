"""The seam between the decorators and whatever runs a call.

Phase 2 of issue 14 implements Engine over FlowService.Session
(proto/asflow/v1/session.proto): run_flow opens a run (OpenRun; a nested
flow shares its parent's), call_sync / call_async declare the task once
(TaskDef.to_spec), send a CallOp with Call.params and Call.output, wait for
StartCall or a final CallState, run the function inside a TaskRun whose
sink sends OutputOps, and report a ResultOp built with asflow.exceptions.
Until then a decorated flow or task cannot be called: SessionRequired
says so instead of running anything behind the daemon's back.
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


class SessionRequired:
    """The engine until the daemon's Session is served: every call raises
    NotImplementedError naming what is missing."""

    MESSAGE = ("calling a @flow / @flow.task function needs asflowd's FlowService.Session "
               "(phase 2 of issue 14, not in this build); meanwhile serve the function with "
               "`python3 -m asflow.worker --module MODULE --pool POOL` and name it in a flow file "
               "(handler: MODULE.FUNCTION, pool: POOL)")

    async def run_flow(self, flow: "Flow", run: "FlowRun") -> Any:
        raise NotImplementedError(self.MESSAGE)

    def call_sync(self, task: "TaskDef", args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError(self.MESSAGE)

    async def call_async(self, task: "TaskDef", args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError(self.MESSAGE)
