"""Flow files (YAML, JSON or protobuf text) -> asflow.v1.FlowSpec, as
asflowctl reads them (common/spec_parser.cc), with the position of every
field so that the daemon's validation messages can be given a place:
"flow.yaml:12:5: tasks[1].on: unknown parameter 'vid'".

YAML maps onto FlowSpec by reflection over the generated descriptors, by
the same rules as the C++ parser: keys are the fields' JSON names where the
proto sets one explicitly (ForEach.bind is `as`) and the proto names
otherwise; a scalar where a list is expected is a one-element list (except
a `run:` string with spaces: argv, never a shell); durations need a unit;
for_each.values items keep scalars as text and mappings/lists as compact
JSON; `as: name` means {name: ""}. Semantic checks (names, templates, the
task graph) are the daemon's: SubmitFlow validates every spec and answers
INVALID_ARGUMENT with field paths, which `locate_errors` turns into
file:line:col.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from google.protobuf import descriptor as _descriptor
from google.protobuf import json_format, text_format
from google.protobuf.message import Message

from asflow.v1 import flow_pb2

MAX_SPEC_BYTES = 4 << 20
# Conversions past this many YAML nodes stop (alias expansion).
MAX_NODES = 200_000
MAX_JSON_DEPTH = 64

_NULL = "tag:yaml.org,2002:null"
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_INT = re.compile(r"\s*[-+]?[0-9]+\s*")
# absl::ParseDuration: a signed sequence of decimal numbers with units.
_DURATION = re.compile(r"[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|ms|s|m|h)")
_UNIT_NANOS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}

FD = _descriptor.FieldDescriptor


class FlowFileError(ValueError):
    """A flow file that cannot be read or parsed; the message lists every
    problem, one per line, each "FILE:LINE:COL: field.path: message"."""


@dataclass
class SourceMap:
    """Where each field came from: field path -> (line, column), 1-based.
    Paths use the YAML keys: "tasks[1].for_each.as.video_id"."""

    source: str
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: str) -> str:
        """"flow.yaml:12:5" for path or its nearest recorded ancestor."""
        p = path
        while p:
            if p in self.positions:
                line, col = self.positions[p]
                return f"{self.source}:{line}:{col}"
            cut = max(p.rfind("."), p.rfind("["))
            if cut < 0:
                break
            p = p[:cut]
        return self.source


@dataclass
class ParsedFlow:
    spec: flow_pb2.FlowSpec
    where: SourceMap


def _default_json_name(name: str) -> str:
    parts = name.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def yaml_key(f: FD) -> str:
    """A field's YAML key: its explicit json_name (ForEach.bind -> "as"), else its name."""
    return f.json_name if f.json_name != _default_json_name(f.name) else f.name


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        return "null" if node.tag == _NULL else _quote(node.value)
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    return "nothing"


def _quote(s: str) -> str:
    return "'" + s.encode("unicode_escape").decode("ascii").replace("'", "\\'") + "'"


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL


def _is_map_field(f: FD) -> bool:
    return (f.type == FD.TYPE_MESSAGE and f.message_type.GetOptions().map_entry)


def _is_repeated(f: FD) -> bool:
    return f.label == FD.LABEL_REPEATED


class _Converter:
    """YAML nodes -> positioned protobuf fields; collects every error. In
    lenient mode (positions for a JSON file) it records positions only."""

    def __init__(self, where: SourceMap, lenient: bool) -> None:
        self.where = where
        self.lenient = lenient
        self.nodes = 0
        self.errors: list[str] = []

    def error(self, node: yaml.Node | None, path: str, message: str) -> None:
        if self.lenient:
            return
        if node is not None:
            loc = f"{self.where.source}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"
        else:
            loc = self.where.locate(path)
        self.errors.append(f"{loc}: {path}: {message}" if path else f"{loc}: {message}")

    def count(self, node: yaml.Node) -> bool:
        self.nodes += 1
        if self.nodes == MAX_NODES + 1:
            self.error(node, "", f"more than {MAX_NODES} YAML nodes (alias expansion?)")
        return self.nodes <= MAX_NODES

    def record(self, path: str, node: yaml.Node) -> None:
        self.where.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)

    @staticmethod
    def client_set_only(f: FD) -> bool:
        """TaskSpec.flow: set by the client on the imported tasks it sends,
        never written in a flow file (as common/spec_parser.cc)."""
        return f.containing_type.full_name == "asflow.v1.TaskSpec" and f.name == "flow"

    def find_field(self, d: _descriptor.Descriptor, key: str) -> FD | None:
        for f in d.fields:
            if self.client_set_only(f):
                continue
            if yaml_key(f) == key or (self.lenient and key in (f.name, f.json_name)):
                return f
        return None

    def message(self, node: yaml.Node, path: str, msg: Message) -> None:
        if not self.count(node):
            return
        if not isinstance(node, yaml.MappingNode):
            self.error(node, path, f"expected a mapping, got {_describe(node)}")
            return
        d = msg.DESCRIPTOR
        seen: set[str] = set()
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                self.error(key, path, "keys must be plain words")
                continue
            name = key.value
            f = self.find_field(d, name)
            if f is None:
                known = ", ".join(yaml_key(x) for x in d.fields if not self.client_set_only(x))
                self.error(key, f"{path}.{name}" if path else name,
                           f"unknown field {_quote(name)} (expected one of: {known})")
                continue
            field_path = f"{path}.{yaml_key(f)}" if path else yaml_key(f)
            if f.name in seen:
                self.error(key, field_path, f"duplicate key {_quote(name)}")
                continue
            seen.add(f.name)
            self.record(field_path, key)
            self.field(value, key, field_path, msg, f)

    def field(self, value: yaml.Node, at: yaml.Node, path: str, msg: Message, f: FD) -> None:
        if not self.count(value):
            return
        if _is_map_field(f):
            self.map(value, at, path, msg, f)
            return
        if _is_repeated(f):
            if _is_null(value):
                return
            if isinstance(value, yaml.SequenceNode):
                for i, item in enumerate(value.value):
                    item_path = f"{path}[{i}]"
                    self.record(item_path, item)
                    self.element(item, item, item_path, msg, f)
                return
            if isinstance(value, yaml.ScalarNode):
                if f.full_name == "asflow.v1.TaskSpec.run" and " " in value.value:
                    self.error(at, path, f"expected a list of arguments (argv, never a shell), got "
                               f"{_describe(value)}; write run: [prog, arg, ...]")
                    return
                self.record(f"{path}[0]", value)
                self.element(value, value, f"{path}[0]", msg, f)
                return
            self.error(at, path, f"expected a list, got {_describe(value)}")
            return
        if f.type == FD.TYPE_MESSAGE:
            sub = getattr(msg, f.name)
            sub.SetInParent()
            if _is_null(value):
                return
            if f.message_type.full_name == "google.protobuf.Duration":
                self.duration(value, at, path, sub)
            else:
                self.message(value, path, sub)
            return
        if _is_null(value):
            return
        if not isinstance(value, yaml.ScalarNode):
            self.error(at, path, f"expected a single value, got {_describe(value)}{self.hint(value)}")
            return
        self.scalar(value, at, path, msg, f)

    @staticmethod
    def hint(value: yaml.Node) -> str:
        # An unquoted "{x}" in a flow list is a YAML mapping, not a template.
        if isinstance(value, yaml.MappingNode) and len(value.value) == 1 and _is_null(value.value[0][1]):
            return f' (quote templates: "{{{value.value[0][0].value}}}")'
        return ""

    def element(self, item: yaml.Node, at: yaml.Node, path: str, msg: Message, f: FD) -> None:
        if not self.count(item):
            return
        repeated = getattr(msg, f.name)
        if f.type == FD.TYPE_MESSAGE:
            sub = repeated.add()
            if f.message_type.full_name == "google.protobuf.Duration":
                self.duration(item, at, path, sub)
            elif not _is_null(item):
                self.message(item, path, sub)
            return
        if f.full_name == "asflow.v1.ForEach.values":
            if _is_null(item):
                self.error(at, path, "expected a value, got null")
                return
            repeated.append(item.value if isinstance(item, yaml.ScalarNode) else self.json(item, path, 0))
            return
        if not isinstance(item, yaml.ScalarNode):
            self.error(at, path, f"expected a single value, got {_describe(item)}{self.hint(item)}")
            return
        self.scalar(item, at, path, msg, f)

    def json(self, node: yaml.Node, path: str, depth: int) -> str:
        if not self.count(node):
            return ""
        if depth > MAX_JSON_DEPTH:
            self.error(node, path, "value nested too deeply")
            return ""
        if _is_null(node):
            return "null"
        if isinstance(node, yaml.ScalarNode):
            s = node.value
            if node.style is None:  # plain: numbers and booleans are literals
                if _NUMBER.fullmatch(s):
                    return s
                if s in ("true", "True", "TRUE"):
                    return "true"
                if s in ("false", "False", "FALSE"):
                    return "false"
            return json.dumps(s, ensure_ascii=False)
        if isinstance(node, yaml.SequenceNode):
            return "[" + ",".join(self.json(n, path, depth + 1) for n in node.value) + "]"
        if isinstance(node, yaml.MappingNode):
            parts = []
            for k, v in node.value:
                if not isinstance(k, yaml.ScalarNode):
                    self.error(k, path, "mapping keys must be plain values")
                    return ""
                parts.append(json.dumps(k.value, ensure_ascii=False) + ":" + self.json(v, path, depth + 1))
            return "{" + ",".join(parts) + "}"
        return "null"

    def map(self, value: yaml.Node, at: yaml.Node, path: str, msg: Message, f: FD) -> None:
        target = getattr(msg, f.name)
        value_field = f.message_type.fields_by_name["value"]
        if _is_null(value):
            return
        if isinstance(value, yaml.ScalarNode) and f.full_name == "asflow.v1.ForEach.bind":
            target[value.value] = ""  # `as: video_id` binds the whole value
            self.record(f"{path}.{value.value}", value)
            return
        if not isinstance(value, yaml.MappingNode):
            self.error(at, path, f"expected a mapping, got {_describe(value)}")
            return
        seen: set[str] = set()
        for k, v in value.value:
            if not self.count(k) or not self.count(v):
                return
            if not isinstance(k, yaml.ScalarNode):
                self.error(k, path, "keys must be plain words")
                continue
            entry_path = f"{path}.{k.value}"
            if k.value in seen:
                self.error(k, entry_path, f"duplicate key {_quote(k.value)}")
                continue
            seen.add(k.value)
            self.record(entry_path, k)
            if _is_null(v):
                target[k.value]  # noqa: B018 (creates the entry: binds the whole value)
                continue
            if value_field.type == FD.TYPE_MESSAGE:
                self.message(v, entry_path, target[k.value])
            elif not isinstance(v, yaml.ScalarNode):
                self.error(k, entry_path, f"expected a single value, got {_describe(v)}")
            else:
                converted = self.convert(v, k, entry_path, value_field)
                if converted is not None:
                    target[k.value] = converted

    def duration(self, value: yaml.Node, at: yaml.Node, path: str, d: Message) -> None:
        if not isinstance(value, yaml.ScalarNode):
            self.error(at, path, f"expected a duration like 120s, got {_describe(value)}")
            return
        s = value.value
        try:
            float(s)
            self.error(at, path, f"{_quote(s)} needs a unit, e.g. {s}s")
            return
        except ValueError:
            pass
        if not _DURATION.fullmatch(s):
            self.error(at, path, f"expected a duration like 120s, 2m or 500ms, got {_quote(s)}")
            return
        nanos = 0
        for number, unit in _DURATION_PART.findall(s):
            nanos += round(float(number) * _UNIT_NANOS[unit])
        if s.startswith("-"):
            nanos = -nanos
        seconds = int(nanos / 10**9)
        d.seconds = seconds
        d.nanos = nanos - seconds * 10**9

    def convert(self, value: yaml.ScalarNode, at: yaml.Node, path: str, f: FD) -> object | None:
        s = value.value
        if f.type == FD.TYPE_STRING or f.type == FD.TYPE_BYTES:
            return s if f.type == FD.TYPE_STRING else s.encode()
        if f.type in (FD.TYPE_INT32, FD.TYPE_INT64, FD.TYPE_SINT32, FD.TYPE_SINT64, FD.TYPE_SFIXED32,
                      FD.TYPE_SFIXED64, FD.TYPE_UINT32, FD.TYPE_UINT64, FD.TYPE_FIXED32, FD.TYPE_FIXED64):
            unsigned = f.type in (FD.TYPE_UINT32, FD.TYPE_UINT64, FD.TYPE_FIXED32, FD.TYPE_FIXED64)
            if not _INT.fullmatch(s) or (unsigned and s.strip().startswith("-")):
                self.error(at, path, f"expected {'a non-negative integer' if unsigned else 'an integer'}, "
                           f"got {_quote(s)}")
                return None
            v = int(s)
            bits = 32 if f.type in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32, FD.TYPE_UINT32,
                                    FD.TYPE_FIXED32) else 64
            lo, hi = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
            if not lo <= v <= hi:
                self.error(at, path, f"{_quote(s)} is out of range")
                return None
            return v
        if f.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
            try:
                return float(s)
            except ValueError:
                self.error(at, path, f"expected a number, got {_quote(s)}")
                return None
        if f.type == FD.TYPE_BOOL:
            if s in ("true", "True", "TRUE", "yes"):
                return True
            if s in ("false", "False", "FALSE", "no"):
                return False
            self.error(at, path, f"expected true or false, got {_quote(s)}")
            return None
        if f.type == FD.TYPE_ENUM:
            e = f.enum_type.values_by_name.get(s)
            if e is None:
                self.error(at, path, f"unknown value {_quote(s)}")
                return None
            return e.number
        return None

    def scalar(self, value: yaml.ScalarNode, at: yaml.Node, path: str, msg: Message, f: FD) -> None:
        converted = self.convert(value, at, path, f)
        if converted is None:
            return
        if _is_repeated(f):
            getattr(msg, f.name).append(converted)
        else:
            setattr(msg, f.name, converted)


def _parse_yaml(text: str, out: ParsedFlow) -> None:
    converter = _Converter(out.where, lenient=False)
    source = out.where.source
    try:
        docs = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        loc = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise FlowFileError(f"{loc}: invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise FlowFileError(f"{source}: invalid YAML: {e}") from None
    if len(docs) > 1:
        converter.error(docs[1], "", "more than one YAML document; a flow file holds one")
    elif not docs or docs[0] is None or _is_null(docs[0]):
        raise FlowFileError(f"{source}:1:1: empty flow file")
    else:
        converter.message(docs[0], "", out.spec)
    if converter.errors:
        raise FlowFileError("\n".join(converter.errors))


def _locate_json_fields(text: str, where: SourceMap) -> None:
    # JSON is YAML: a lenient pass over the same text finds each field.
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None:
            _Converter(where, lenient=True).message(root, "", flow_pb2.FlowSpec())
    except yaml.YAMLError:
        pass  # positions are a nicety; the JSON parser has the final word


def parse_flow_text(text: str, source: str, fmt: str) -> ParsedFlow:
    """Parses text as "yaml", "json" or "text" (protobuf text). FlowFileError
    lists every problem found."""
    out = ParsedFlow(flow_pb2.FlowSpec(), SourceMap(source))
    if len(text.encode()) > MAX_SPEC_BYTES:
        raise FlowFileError(f"{source}: larger than 4 MiB")
    if fmt == "yaml":
        _parse_yaml(text, out)
    elif fmt == "json":
        try:
            json_format.Parse(text, out.spec)
        except json_format.ParseError as e:
            raise FlowFileError(f"{source}: invalid JSON flow spec: {e}") from None
        _locate_json_fields(text, out.where)
    else:
        try:
            text_format.Parse(text, out.spec)
        except text_format.ParseError as e:
            raise FlowFileError(f"{source}:{e}") from None
    return out


def format_for_path(path: str) -> str:
    """.json -> "json"; .textproto/.txtpb/.pbtxt -> "text"; else "yaml"."""
    if path.endswith(".json"):
        return "json"
    if path.endswith((".textproto", ".txtpb", ".pbtxt")):
        return "text"
    return "yaml"


def parse_flow_file(path: str | Path) -> ParsedFlow:
    """Reads and parses a flow file; the format comes from its name."""
    p = str(path)
    try:
        size = Path(p).stat().st_size
        if Path(p).is_dir():
            raise FlowFileError(f"{p}: Is a directory")
        if size > MAX_SPEC_BYTES:
            raise FlowFileError(f"{p}: larger than 4 MiB")
        text = Path(p).read_bytes()[: MAX_SPEC_BYTES + 1].decode("utf-8", errors="replace")
    except OSError as e:
        raise FlowFileError(f"{p}: {e.strerror}") from None
    return parse_flow_text(text, p, format_for_path(p))


_PATH_AT_START = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?(?:\.[^\s:]+?)*): ")


def locate_errors(message: str, where: SourceMap) -> str:
    """The daemon's validation message ("tasks[1].on: ...", one problem a
    line) with each line prefixed by the field's FILE:LINE:COL."""
    lines = []
    for line in message.split("\n"):
        m = _PATH_AT_START.match(line)
        lines.append(f"{where.locate(m.group(1))}: {line}" if m else line)
    return "\n".join(lines)
