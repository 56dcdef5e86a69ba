"""How an exception is described to the daemon: its type and bases as
"module.QualName" (builtins without a module), most derived first, and the
traceback as traceback.print_exception writes it. `errors:` rules match a
qualified name or its last component (TranscriptsDisabled)."""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
from typing import Any

# Frames of the package's own machinery (the worker, a task wrapper) and of
# asyncio (wait_for) at the top of a traceback are not the user's story.
_OWN_DIRS = (os.path.dirname(os.path.abspath(__file__)) + os.sep,
             os.path.dirname(os.path.abspath(asyncio.__file__)) + os.sep)


def module_name(module: str | None) -> str:
    """A module's name as other processes import it: `__main__` is named
    from its __spec__ (`python -m flows.playlist` -> flows.playlist) or, run
    as a script, from its path relative to the working directory
    (flows/playlist.py -> flows.playlist; outside it: the file's stem)."""
    if module != "__main__":
        return module or ""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None) and spec.name != "__main__":
        return str(spec.name).removesuffix(".__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return "__main__"  # an interactive session, python -c
    rel = os.path.relpath(os.path.abspath(path), os.getcwd())
    stem = os.path.splitext(rel)[0]
    if stem.startswith(".." + os.sep) or stem == ".." or os.path.isabs(stem):
        stem = os.path.splitext(os.path.basename(path))[0]
    return stem.replace(os.sep, ".")


def qualified_name(cls: Any) -> str:
    """module.QualName (the module named as module_name() names it);
    builtins bare."""
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", type(cls).__name__)
    if not module or module == "builtins":
        return name
    return f"{module_name(module)}.{name}"


def rule_name(cls: type) -> str:
    """The name an `errors:` rule gives an exception class: its qualified
    name, or its bare name when the class cannot be named from outside
    (defined inside a function: `mod.f.<locals>.E`). The daemon matches a
    rule on a type's qualified name or its last component."""
    name = qualified_name(cls)
    return cls.__name__ if "<" in name else name


def error_types(error: BaseException) -> list[str]:
    """type(error) and its bases (object left out), most derived first."""
    return [qualified_name(c) for c in type(error).__mro__ if c is not object]


def error_text(error: BaseException) -> str:
    """The formatted traceback as traceback.print_exception writes it, from
    the user's first frame on: what a suppressed instance's .err holds."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith(_OWN_DIRS):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))


def last_line(text: str) -> str:
    """The last non-empty line of a traceback ("Type: message")."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class RunEnded(Exception):
    """asflowd ended the run this call belongs to (asflowctl cancel, fail
    fast after a failed instance, its process gone too long) or it could not
    be opened (a workspace outside the daemon's allowed roots): no more
    calls can be made in it."""

    def __init__(self, run_id: int, state: str, reason: str) -> None:
        what = f"run {run_id}" if run_id else "the run"
        super().__init__(f"{what} {state}" + (f": {reason}" if reason else ""))
        self.run_id = run_id
        self.state = state
        self.reason = reason


class TaskFailed(Exception):
    """A call failed without raising in this process: it joined an
    execution of the same output elsewhere (another run, process or a flow
    file) that failed, or asflowd refused its task. `error` is the text
    asflowd recorded."""

    def __init__(self, label: str, error: str) -> None:
        super().__init__(f"{label}: {last_line(error) or 'failed'}")
        self.label = label
        self.error = error


class CallCancelled(asyncio.CancelledError):
    """asflowd cancelled the call (its run failed fast or was cancelled).
    A CancelledError, so a TaskGroup treats it as it treats a sibling
    cancelled after a failure."""
