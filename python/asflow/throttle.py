"""Polite extraction from Python (issue 16): throttle keys a Flow declares,
the cooldown rule of a task, and the rates both take.

    from asflow import Flow
    from asflow.throttle import Cooldown

    flow = Flow(throttle={"youtube": {"limit": 4, "rate": "auto"}})

    @flow.task(on="data/{video_id}.json", uses=["youtube"],
               cooldown=Cooldown(errors=[urllib.error.HTTPError], message=r"429|Too Many Requests",
                                 retry_after=r"Retry-After: (\\d+)", for_=60))
    def extract(video_id): ...

The daemon does the rest, as for a flow file's keys and rules
(docs/flows.md, "Throttle keys", "Cooldown", "Adaptive pacing"): this
module only checks what is given when it is given, so a mistake is a
TypeError/ValueError at the line that made it, and builds the messages.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
from typing import Any, Union

from google.protobuf import duration_pb2

from asflow.exceptions import rule_name
from asflow.v1 import flow_pb2

RateLike = Union[str, float, int, None]

_RATE = re.compile(r"^([0-9][0-9.]*)/(s|min|h)$")
_KEY_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_PER = {"s": 1.0, "min": 60.0, "h": 3600.0}


def _per_second(text: str) -> float | None:
    """Starts per second of "N/s", "N/min", "N/h" (N > 0), else None."""
    m = _RATE.match(text)
    if m is None:
        return None
    try:
        n = float(m.group(1))
    except ValueError:
        return None
    return n / _PER[m.group(2)] if n > 0 else None


def parse_rate(rate: RateLike, what: str) -> str:
    """A `rate` of a task or a throttle key as the daemon reads it: "N/s",
    "N/min", "N/h", a number of starts per second, "auto" or
    "auto(max: 5/s, min: 0.1/s)" (either bound, any order, `=` for `:`),
    or None/"" for none. `what` names the option in the error, "{}"
    standing for the value (ValueError/TypeError)."""
    if rate is None or rate == "":
        return ""
    label = what.format(repr(rate))
    if isinstance(rate, bool) or not isinstance(rate, (str, int, float)):
        raise TypeError(f"{label}: expected 'N/s', 'N/min', 'N/h', 'auto' or a number per second")
    if isinstance(rate, (int, float)):
        if not rate > 0 or rate != rate or rate == float("inf"):
            raise ValueError(f"{label}: must be > 0")
        return f"{rate!r}/s"
    text = rate.strip()
    if text.startswith("auto"):
        bounds = {"max": 5.0, "min": 0.1}
        inner = text[len("auto"):].strip()
        if inner:
            if not (inner.startswith("(") and inner.endswith(")")):
                raise ValueError(f"{label}: bounds go in ( ): auto(max: 5/s, min: 0.1/s)")
            for part in filter(None, (p.strip() for p in inner[1:-1].split(","))):
                name, _, value = _split_bound(part)
                name = name.strip()
                if name not in bounds:
                    raise ValueError(f"{label}: unknown bound {name!r}; expected auto(max: 5/s, min: 0.1/s)")
                per = _per_second(value.strip())
                if per is None:
                    raise ValueError(f"{label}: {name}: expected N/s, N/min or N/h with N > 0")
                bounds[name] = per
        if bounds["min"] > bounds["max"]:
            raise ValueError(f"{label}: min is above max")
        return text
    if _per_second(text) is None:
        raise ValueError(f"{label}: expected N/s, N/min or N/h with N > 0, or auto")
    return text


def _split_bound(part: str) -> tuple[str, str, str]:
    for i, ch in enumerate(part):
        if ch in ":=":
            return part[:i], ch, part[i + 1:]
    return part, "", ""


def throttle_key(name: str, limit: int | None = None, rate: RateLike = None) -> flow_pb2.ThrottleKey:
    """One checked key: a name of [A-Za-z0-9_.-], limit None/0 (no cap of
    its own) or an int >= 1, a rate as parse_rate."""
    if not isinstance(name, str) or not _KEY_NAME.match(name):
        raise ValueError(f"throttle key {name!r}: names may only use [A-Za-z0-9_.-]")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ValueError(f"throttle key {name!r}: limit={limit!r}: expected None or an int >= 0")
    return flow_pb2.ThrottleKey(limit=limit or 0, rate=parse_rate(rate, f"throttle key {name!r}: rate={{}}"))


def throttle_keys(keys: Mapping[str, Any] | None) -> dict[str, flow_pb2.ThrottleKey]:
    """`Flow(throttle={"youtube": {"limit": 4, "rate": "2/s"}})`: each value a
    mapping with `limit` and/or `rate`, or a ThrottleKey message."""
    if keys is None:
        return {}
    if not isinstance(keys, Mapping):
        raise TypeError(f"Flow(throttle={keys!r}): expected a mapping of key name to {{'limit': N, 'rate': ...}}")
    out: dict[str, flow_pb2.ThrottleKey] = {}
    for name, value in keys.items():
        if isinstance(value, flow_pb2.ThrottleKey):
            out[name] = throttle_key(name, value.limit, value.rate)
            continue
        if not isinstance(value, Mapping):
            raise TypeError(f"Flow(throttle=...): key {name!r}: expected {{'limit': N, 'rate': ...}}, got {value!r}")
        unknown = sorted(set(value) - {"limit", "rate"})
        if unknown:
            raise TypeError(f"Flow(throttle=...): key {name!r}: unknown field {unknown[0]!r} (limit, rate)")
        out[name] = throttle_key(name, value.get("limit"), value.get("rate"))
    return out


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what}={value!r}): expected seconds (a number) or a datetime.timedelta")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{what}={value!r}): must be > 0")
    return float(value)


class Cooldown:
    """A task's cooldown rule: the server said "slow down". When a call
    raises an exception that matches (`errors`: exception classes, or
    their names, a base class matching its subclasses; or `message`: an
    RE2 searched in the exception's text — its formatted traceback, whose
    last line is `module.Type: message`), the daemon queues the call
    again without counting an attempt, and nothing starts through the
    task's keys (the task itself if it uses none) until the cooldown
    ends: `retry_after` (an RE2 with one capture, seconds or an HTTP date,
    searched in the same text) when it matches, else `for_` seconds
    (default 60). `max_cooldowns` (default 5) in a row without a success
    fail the call as an unmatched error would. Checked before retry, skip
    and suppress. Immutable."""

    def __init__(self, errors: Iterable[Any] = (), message: str | None = None, *,
                 for_: float | datetime.timedelta | None = None, retry_after: str | None = None,
                 max_cooldowns: int | None = None) -> None:
        if isinstance(errors, (str, type)):
            errors = (errors,)
        names: list[str] = []
        for e in errors:
            if isinstance(e, type) and issubclass(e, BaseException):
                names.append(rule_name(e))
            elif isinstance(e, str) and e:
                names.append(e)
            else:
                raise TypeError(f"Cooldown(errors=...): {e!r} is not an exception class or name")
        if message is not None:
            _check_regex(message, "Cooldown(message=...)")
        if not names and not message:
            raise ValueError("Cooldown: matches nothing: give errors=[...] (exception classes) and/or message=r'...'")
        if retry_after is not None:
            if _check_regex(retry_after, "Cooldown(retry_after=...)").groups != 1:
                raise ValueError(f"Cooldown(retry_after={retry_after!r}): needs exactly one capture group, "
                                 r"e.g. r'Retry-After: (\d+)'")
        if max_cooldowns is not None and (not isinstance(max_cooldowns, int) or isinstance(max_cooldowns, bool)
                                          or max_cooldowns < 1):
            raise ValueError(f"Cooldown(max_cooldowns={max_cooldowns!r}): expected None (5) or an int >= 1")
        self.errors = tuple(names)
        self.message = message
        self.for_ = None if for_ is None else _seconds(for_, "Cooldown(for_")
        self.retry_after = retry_after
        self.max_cooldowns = max_cooldowns

    def to_rule(self) -> flow_pb2.CooldownRule:
        """The daemon's cooldown rule (DeclareTask): `message` is the
        rule's `stderr` matcher (a code session's exception text is what
        the daemon matches it on)."""
        rule = flow_pb2.CooldownRule(errors=list(self.errors), stderr=self.message or "",
                                     retry_after=self.retry_after or "", max_cooldowns=self.max_cooldowns or 0)
        if self.for_ is not None:
            d = duration_pb2.Duration()
            d.FromNanoseconds(round(self.for_ * 1e9))
            rule.duration.CopyFrom(d)
        return rule

    def __repr__(self) -> str:
        return (f"Cooldown(errors={list(self.errors)!r}, message={self.message!r}, for_={self.for_!r}, "
                f"retry_after={self.retry_after!r}, max_cooldowns={self.max_cooldowns!r})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cooldown) and repr(self) == repr(other)


def _check_regex(pattern: Any, what: str) -> re.Pattern[str]:
    """Python's re as a first check (the daemon's RE2 is stricter: a
    backreference passes here and is refused when the task is declared)."""
    if not isinstance(pattern, str):
        raise TypeError(f"{what}: expected a regular expression string, got {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"{what}: invalid regular expression {pattern!r}: {e}") from None
