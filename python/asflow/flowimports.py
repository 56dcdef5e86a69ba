"""`imports:` for the Python client, as asflowctl resolves them
(common/flow_imports.cc, docs/flows.md "Imports"): the flow's own tasks and
every task of an imported flow file they reach (needs, for_each.lines_of),
named "FLOW.TASK" with TaskSpec.flow set, upstream first, in one FlowSpec
without imports. The daemon reads no flow file. Structural problems
(cycles, missing files, name clashes, unknown references) raise
FlowFileError at the importing file's FILE:LINE:COL; the rest of the
validation is the daemon's, located by `ResolvedFlow.locate`.
"""

from __future__ import annotations

import os
import re
from collections import deque
from dataclasses import dataclass, field

from asflow.flowfile import FlowFileError, ParsedFlow, SourceMap, parse_flow_file
from asflow.v1 import flow_pb2

_TASK_PATH = re.compile(r"^tasks\[(\d+)\](.*)$")
_PATH_AT_START = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?(?:\.[^\s:]+?)*): ")


@dataclass
class ResolvedFlow:
    spec: flow_pb2.FlowSpec
    files: list[ParsedFlow]
    # For each task of spec: (index into files, index in that file).
    task_origin: list[tuple[int, int]] = field(default_factory=list)

    def locate(self, path: str) -> str:
        """FILE:LINE:COL of a field path of `spec` in the file it came from."""
        m = _TASK_PATH.match(path)
        if m and int(m.group(1)) < len(self.task_origin):
            f, own = self.task_origin[int(m.group(1))]
            return self.files[f].where.locate(f"tasks[{own}]{m.group(2)}")
        return self.files[0].where.locate(path)

    def locate_errors(self, message: str) -> str:
        """The daemon's message, each line prefixed by its field's place."""
        lines = []
        for line in message.split("\n"):
            m = _PATH_AT_START.match(line)
            lines.append(f"{self.locate(m.group(1))}: {line}" if m else line)
        return "\n".join(lines)


def _real(path: str) -> str:
    return os.path.realpath(path)


def load_flow_file(path: str) -> ResolvedFlow:
    """Reads the flow file at `path` and the files it imports, resolved."""
    files: list[ParsedFlow] = []
    paths: list[str] = []
    reals: dict[str, int] = {}
    imported: list[dict[str, int]] = []  # per file: flow name -> file
    tasks: list[dict[str, int]] = []
    flow_files: dict[str, int] = {}
    errors: list[str] = []
    failed: set[int] = set()
    stack: list[int] = []

    def add(n: int, fld: str, message: str) -> None:
        errors.append(f"{files[n].where.locate(fld)}: {fld}: {message}")

    def parse(p: str) -> int:
        parsed = parse_flow_file(p)
        for i, t in enumerate(parsed.spec.tasks):
            if t.flow:
                raise FlowFileError(f"{parsed.where.locate(f'tasks[{i}].flow')}: tasks[{i}].flow: not a flow file key "
                                    "(the client sets it on imported tasks)")
        files.append(parsed)
        paths.append(p)
        imported.append({})
        tasks.append({t.name: i for i, t in enumerate(parsed.spec.tasks)})
        reals[_real(p)] = len(files) - 1
        return len(files) - 1

    def reach(n: int, name: str) -> tuple[int, int] | None:
        flow, _, task = name.rpartition(".")
        if not flow or flow not in imported[n] or task not in tasks[imported[n][flow]]:
            return None
        child = imported[n][flow]
        return child, tasks[child][task]

    def check_ref(n: int, fld: str, name: str, reads_output: bool) -> None:
        flow, dot, _ = name.rpartition(".")
        if not dot:
            return
        if flow not in imported[n]:
            if n in failed:
                return
            known = ", ".join(sorted(imported[n])) or "none"
            add(n, fld, f"unknown task '{name}': no imported flow '{flow}' (imported: {known})")
            return
        to = reach(n, name)
        if to is None:
            child = imported[n][flow]
            add(n, fld, f"unknown task '{name}': flow '{flow}' ({paths[child]}) has {', '.join(sorted(tasks[child]))}")
        elif reads_output and not files[to[0]].spec.tasks[to[1]].on:
            add(n, fld, f"task '{name}' has no 'on' output to read")

    def visit(n: int) -> None:
        stack.append(n)
        spec = files[n].spec
        for j, imp in enumerate(spec.imports):
            fld = f"imports[{j}]"
            if not imp:
                continue  # the daemon names it (kept in the spec it gets)
            p = imp if imp.startswith("/") else os.path.join(os.path.dirname(paths[n]), imp)
            real = _real(p)
            on_stack = [s for s in stack if _real(paths[s]) == real]
            if on_stack:
                cycle = [paths[s] for s in stack[stack.index(on_stack[0]):]] + [p]
                add(n, fld, "import cycle: " + " -> ".join(cycle))
                continue
            if real in reals:
                child = reals[real]
            else:
                try:
                    child = parse(p)
                except FlowFileError as e:
                    add(n, fld, f"cannot import '{imp}': {e}")
                    failed.add(n)
                    continue
                visit(child)
            name = files[child].spec.name
            if name == spec.name:
                add(n, fld, f"'{imp}' is flow '{name}', this flow's own name: rename one")
                continue
            first = imported[n].setdefault(name, child)
            owner = flow_files.setdefault(name, child)
            if first != child:
                add(n, fld, f"'{imp}' is flow '{name}', as {paths[first]} is: a flow name reaches one file")
            elif owner != child:
                add(n, fld, f"'{imp}' is flow '{name}', as {paths[owner]} (imported elsewhere) is: "
                            "a flow name reaches one file")
        for i, t in enumerate(spec.tasks):
            for k, need in enumerate(t.needs):
                check_ref(n, f"tasks[{i}].needs[{k}]", need, False)
            if t.for_each.lines_of:
                check_ref(n, f"tasks[{i}].for_each.lines_of", t.for_each.lines_of, True)
        stack.pop()

    parse(str(path))
    flow_files[files[0].spec.name] = 0
    visit(0)
    if errors:
        raise FlowFileError("\n".join(errors))

    def qualify(n: int, name: str) -> str:
        return name if n == 0 or "." in name else f"{files[n].spec.name}.{name}"

    root = files[0].spec
    out = flow_pb2.FlowSpec()
    out.CopyFrom(root)
    out.imports[:] = [imp for imp in root.imports if not imp]
    del out.tasks[:]
    todo: deque[tuple[int, int]] = deque()
    added: set[tuple[int, int]] = set()

    def reach_from(n: int, t: flow_pb2.TaskSpec) -> None:
        refs = list(t.needs) + ([t.for_each.lines_of] if t.for_each.lines_of else [])
        for ref in refs:
            to = reach(n, ref) if "." in ref else ((n, tasks[n][ref]) if n != 0 else None)
            if to is not None and to not in added:
                added.add(to)
                todo.append(to)

    for t in root.tasks:
        reach_from(0, t)
    reached: list[tuple[flow_pb2.TaskSpec, tuple[int, int]]] = []
    used: set[int] = set()
    while todo:
        n, i = todo.popleft()
        used.add(n)
        own = files[n].spec.tasks[i]
        t = flow_pb2.TaskSpec()
        t.CopyFrom(own)
        t.name = qualify(n, own.name)
        t.flow = files[n].spec.name
        t.needs[:] = [qualify(n, x) for x in own.needs]
        if own.for_each.lines_of:
            t.for_each.lines_of = qualify(n, own.for_each.lines_of)
        reached.append((t, (n, i)))
        reach_from(n, own)
    resolved = ResolvedFlow(out, files)
    for t, origin in reversed(reached):  # upstream first
        out.tasks.append(t)
        resolved.task_origin.append(origin)
    for i, t in enumerate(root.tasks):
        out.tasks.append(t)
        resolved.task_origin.append((0, i))
    param_from = {k: 0 for k in root.params}
    key_from = {k: 0 for k in root.throttle}
    for n in sorted(used):
        spec = files[n].spec
        for k in sorted(spec.params):
            if k not in param_from:
                param_from[k] = n
                out.params[k] = spec.params[k]
            elif param_from[k] != 0 and files[param_from[k]].spec.params[k] != spec.params[k]:
                other = param_from[k]
                add(n, f"params.{k}", f"'{spec.params[k]}' here, '{files[other].spec.params[k]}' in {paths[other]}: "
                                      f"declare '{k}' in {paths[0]} to choose")
        for k in sorted(spec.throttle):
            if k not in key_from:
                key_from[k] = n
                out.throttle[k].CopyFrom(spec.throttle[k])
            elif out.throttle[k] != spec.throttle[k]:
                add(n, f"throttle.{k}", f"defined differently in {paths[key_from[k]]}: a throttle key is defined one way")
    if errors:
        raise FlowFileError("\n".join(errors))
    return resolved
