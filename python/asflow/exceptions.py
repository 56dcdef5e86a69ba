"""How an exception is described to the daemon: its type and bases as
"module.QualName" (builtins without a module), most derived first, and the
traceback as traceback.print_exception writes it. `errors:` rules match a
qualified name or its last component (TranscriptsDisabled)."""

from __future__ import annotations

import asyncio
import os
import traceback

# Frames of the package's own machinery (the worker, a task wrapper) and of
# asyncio (wait_for) at the top of a traceback are not the user's story.
_OWN_DIRS = (os.path.dirname(os.path.abspath(__file__)) + os.sep,
             os.path.dirname(os.path.abspath(asyncio.__file__)) + os.sep)


def qualified_name(cls: type) -> str:
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", cls.__name__)
    if not module or module == "builtins":
        return name
    return f"{module}.{name}"


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
