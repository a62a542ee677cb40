"""Clocks for the local runner.

A simulated clock lets a replay of historical events run in compressed time: the runner stamps
record arrival times and schedule times from it, so record-age limits and `rate(...)` schedules
behave as they would have at the original pace.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Wall-clock time as epoch seconds (UTC)."""

    @property
    def simulated(self) -> bool: ...

    def now(self) -> float: ...


class RealClock:
    @property
    def simulated(self) -> bool:
        return False

    def now(self) -> float:
        return time.time()


class SimulatedClock:
    """A clock that only moves when told to; it never goes backwards."""

    def __init__(self, start: float | datetime = 0.0) -> None:
        self._now = to_epoch(start)

    @property
    def simulated(self) -> bool:
        return True

    def now(self) -> float:
        return self._now

    def set(self, when: float | datetime) -> None:
        target = to_epoch(when)
        # A replay may hand over slightly out-of-order timestamps; time must stay monotonic
        # or schedules would fire twice and record ages would go negative.
        self._now = max(self._now, target)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a simulated clock cannot go backwards")
        self._now += seconds


def to_epoch(when: float | datetime) -> float:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    return float(when)


def iso_z(epoch: float, *, millis: bool = True) -> str:
    """ISO-8601 in UTC with a trailing Z, the form AWS uses in event payloads."""
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
