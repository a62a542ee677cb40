"""Schedule rules (EventBridge `rate(...)` targeting a function), fired on the runner's clock."""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from runner.clock import Clock, iso_z
from runner.lambda_invoke import FunctionContainer, InvocationResult
from runner.specs import EventSourceSpec
from runner.streams import MappingStats

log = logging.getLogger(__name__)

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def parse_rate(expression: str) -> float:
    """Seconds between firings of a `rate(N unit)` expression."""
    match = _RATE.match(expression.strip())
    if match is None:
        raise ValueError(f"unsupported schedule expression {expression!r} (only rate(...) is emulated)")
    value, unit = int(match.group(1)), match.group(2)
    if value <= 0:
        raise ValueError(f"rate must be positive: {expression!r}")
    if (value == 1) == unit.endswith("s"):
        raise ValueError(f"EventBridge rejects {expression!r}: use 1 minute / N minutes")
    return float(value * _UNIT_SECONDS[unit.rstrip("s")])


class ScheduleMapping:
    """An EventBridge schedule rule targeting the function (an asynchronous invoke)."""

    kind = "schedule"
    # Lambda retries a failed asynchronous invocation twice by default.
    async_retries = 2
    # A simulated clock that jumps far ahead (e.g. from a default start to a replay's first
    # event) would otherwise fire every missed occurrence; beyond this many, only the latest fires.
    max_catch_up = 1000

    def __init__(self, spec: EventSourceSpec, container: FunctionContainer, *, clock: Clock) -> None:
        self.spec = spec
        self.container = container
        self.stats = MappingStats(spec.key, self.kind)
        self.period = parse_rate(spec.schedule_expression or "")
        self._clock = clock
        self._region, self._account = str(spec.rule_arn).split(":")[3:5]
        # A new rate rule first fires one period after it is created.
        self.next_due = clock.now() + self.period

    def tick(self, now: float | None = None) -> int:
        """Fire every occurrence due at or before `now`; returns how many fired."""
        if not self.spec.enabled:
            return 0
        current = self._clock.now() if now is None else now
        missed = int((current - self.next_due) // self.period)
        if missed >= self.max_catch_up:
            log.warning("%s: skipping %d missed occurrences after a clock jump", self.spec.key, missed)
            self.stats.schedules_skipped += missed
            self.next_due += missed * self.period
        fired = 0
        while self.next_due <= current:
            self.fire(self.next_due if self._clock.simulated else current)
            fired += 1
            self.next_due += self.period
        return fired

    def scheduled_event(self, when: float) -> Any:
        if self.spec.schedule_input is not None:
            return json.loads(self.spec.schedule_input)
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self._account,
            "time": iso_z(when, millis=False),
            "region": self._region,
            "resources": [self.spec.rule_arn],
            "detail": {},
        }

    def fire(self, when: float) -> InvocationResult:
        event = self.scheduled_event(when)
        self.stats.schedules_fired += 1
        for attempt in range(self.async_retries + 1):
            result = self.container.invoke(event, records=0)
            self.stats.invocations += 1
            if result.ok:
                self.stats.records_succeeded += 1
                return result
            self.stats.function_errors += 1
            self.stats.retries += attempt < self.async_retries
        self.stats.records_discarded += 1
        log.warning("%s: scheduled invocation failed after %d retries", self.spec.key, self.async_retries)
        return result
