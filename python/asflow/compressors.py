"""Which compression an output gets, by its last suffix as AsFlow
chooses: `.gz` gzip, `.zst` zstandard (one frame, default level), else
none. The daemon writes the files (atomically, through common/codec), so
the package only chooses and checks options; a dict gives the chosen
compressor's options (`level`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from asflow.naming import suffixes

LEVELS = {"gzip": range(0, 10), "zstd": range(-7, 23)}


@dataclass(frozen=True)
class Compressor:
    name: str  # "gzip", "zstd" or "none"
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def level(self) -> int | None:
        return self.options.get("level")


def compressor_name_for(path: str) -> str:
    s = suffixes(path)
    last = s[-1] if s else ""
    return {".gz": "gzip", ".zst": "zstd"}.get(last, "none")


def compressor_for(path: str, compressor: Any = None) -> Compressor:
    """None (by suffix), a dict of options for the one chosen by suffix,
    or a name ("gzip", "zstd", "none"). ValueError/TypeError otherwise."""
    if compressor is None:
        return Compressor(compressor_name_for(path))
    if isinstance(compressor, str):
        if compressor not in ("gzip", "zstd", "none"):
            raise ValueError(f"compressor={compressor!r}: expected gzip, zstd or none")
        return Compressor(compressor)
    if isinstance(compressor, Mapping):
        name = compressor_name_for(path)
        unknown = set(compressor) - {"level"}
        if unknown:
            raise ValueError(f"compressor options {sorted(unknown)}: only 'level' is supported")
        level = compressor.get("level")
        if level is not None and (name == "none" or not isinstance(level, int) or level not in LEVELS[name]):
            raise ValueError(f"compressor level {level!r} does not fit {name} ({path})")
        return Compressor(name, dict(compressor))
    raise TypeError(f"compressor={compressor!r}: expected None, a dict of options or a name")
