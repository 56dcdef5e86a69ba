"""asflow.retry.Retry, as in AsFlow: at most `total` retries (so up to
total + 1 calls) of the listed exceptions, sleeping
backoff_factor * 2**k + uniform(0, backoff_jitter) before retry k + 1
(k = 0 for the first retry). On the daemon that is a retry rule:
attempts = total, backoff = backoff_factor, jitter = backoff_jitter, errors
= the exception types' names (`to_rule`)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from google.protobuf import duration_pb2

from asflow.exceptions import rule_name
from asflow.v1 import flow_pb2


class Retry:
    def __init__(self, total: int = 10, backoff_factor: float = 0.0, backoff_jitter: float = 1.0,
                 exceptions: Sequence[type[BaseException]] = (Exception,)) -> None:
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise ValueError(f"Retry(total={total!r}): expected an int >= 0")
        if backoff_factor < 0 or backoff_jitter < 0:
            raise ValueError("Retry: backoff_factor and backoff_jitter must be >= 0")
        exceptions = tuple(exceptions)
        for e in exceptions:
            if not (isinstance(e, type) and issubclass(e, BaseException)):
                raise TypeError(f"Retry(exceptions=...): {e!r} is not an exception class")
        self.total = total
        self.backoff_factor = float(backoff_factor)
        self.backoff_jitter = float(backoff_jitter)
        self.exceptions = exceptions

    def __repr__(self) -> str:
        names = ", ".join(e.__name__ for e in self.exceptions)
        return (f"Retry(total={self.total}, backoff_factor={self.backoff_factor}, "
                f"backoff_jitter={self.backoff_jitter}, exceptions=({names},))")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Retry) and (self.total, self.backoff_factor, self.backoff_jitter,
                                             self.exceptions) == (other.total, other.backoff_factor,
                                                                  other.backoff_jitter, other.exceptions)

    def retries(self, error: BaseException, retries_done: int) -> bool:
        """Whether a call that raised `error` after `retries_done` retries runs again."""
        return retries_done < self.total and isinstance(error, self.exceptions)

    def sleep_time(self, k: int, rng: random.Random | None = None) -> float:
        """Seconds to sleep before retry k + 1 (k = 0 for the first)."""
        u = (rng or random).uniform(0, self.backoff_jitter)
        return self.backoff_factor * 2**k + u

    def to_rule(self) -> flow_pb2.RetryRule:
        """The daemon's retry rule for this policy (phase 2 declares it)."""
        rule = flow_pb2.RetryRule(attempts=self.total, errors=[rule_name(e) for e in self.exceptions])
        rule.backoff.CopyFrom(_duration(self.backoff_factor))
        rule.jitter.CopyFrom(_duration(self.backoff_jitter))
        return rule


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d
