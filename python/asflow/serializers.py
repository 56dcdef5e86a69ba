"""What flow.task.write(data) turns data into, chosen by the output
path's suffixes as AsFlow chooses: `.json` -> json.dumps(data); `.jsonl`
(and `.parquet`, written as JSON lines: there is no Parquet writer) ->
one JSON line per write (bytes as they are, str plus "\\n"); anything else
-> text (str.encode(); bytes as they are). A dict of options goes to the
chosen serializer (json.dumps keyword arguments, or the text encoding)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from asflow.naming import suffixes


class Serializer:
    """Turns one write's data into bytes."""

    name = "serializer"

    def __init__(self, **options: Any) -> None:
        self.options = options

    def dumps(self, data: Any) -> bytes:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"


class JSONSerializer(Serializer):
    """json.dumps(data), no newline (one document per file)."""

    name = "json"

    def dumps(self, data: Any) -> bytes:
        return json.dumps(data, **self.options).encode()


class JSONLSerializer(Serializer):
    """One line per write: bytes as they are (a line read from a
    subprocess keeps its newline), str plus "\\n", else json.dumps + "\\n"."""

    name = "jsonl"

    def dumps(self, data: Any) -> bytes:
        if isinstance(data, (bytes, bytearray, memoryview)):
            return bytes(data)
        if isinstance(data, str):
            return (data + "\n").encode()
        return (json.dumps(data, **self.options) + "\n").encode()


class TextSerializer(Serializer):
    """str.encode() (options: encoding, errors); bytes as they are."""

    name = "text"

    def dumps(self, data: Any) -> bytes:
        if isinstance(data, (bytes, bytearray, memoryview)):
            return bytes(data)
        return data.encode(**self.options)


SERIALIZERS: dict[str, type[Serializer]] = {
    "json": JSONSerializer, "jsonl": JSONLSerializer, "text": TextSerializer}


def serializer_class_for(path: str) -> type[Serializer]:
    s = suffixes(path)
    if ".json" in s:
        return JSONSerializer
    if ".jsonl" in s or ".parquet" in s:
        return JSONLSerializer
    return TextSerializer


def serializer_for(path: str, serializer: Any = None) -> Serializer:
    """The serializer of an output path. `serializer`: None (by suffix), a
    dict (options for the one chosen by suffix), a name ("json", "jsonl",
    "text"), a Serializer class or instance. TypeError/ValueError otherwise
    (at decoration time)."""
    if serializer is None:
        return serializer_class_for(path)()
    if isinstance(serializer, Mapping):
        return serializer_class_for(path)(**serializer)
    if isinstance(serializer, str):
        if serializer not in SERIALIZERS:
            raise ValueError(f"serializer={serializer!r}: expected one of {', '.join(SERIALIZERS)}")
        return SERIALIZERS[serializer]()
    if isinstance(serializer, type) and issubclass(serializer, Serializer):
        return serializer()
    if isinstance(serializer, Serializer):
        return serializer
    raise TypeError(f"serializer={serializer!r}: expected None, a dict of options, a name or a Serializer")
