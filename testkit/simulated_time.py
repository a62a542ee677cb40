"""Powertools idempotency on the scenario's simulated clock.

The idempotency utility reads ``datetime.now()`` for its records' expiry and for an in-progress
record's deadline (now + the invocation's remaining time). Under a simulated clock that jumps
minutes a step while a scenario takes seconds of real time, an in-progress record left by a crashed
send would never expire, and the due sweep could never try that push again as it does in the cloud
once the Lambda timeout has passed. Inside ``following`` those modules see the simulated time.
"""

from __future__ import annotations

import contextlib
import datetime as real_dt
import importlib
import types
from collections.abc import Iterator
from typing import Any

from runner.clock import Clock

_MODULES = (
    "aws_lambda_powertools.utilities.idempotency.persistence.base",
    "aws_lambda_powertools.utilities.idempotency.persistence.datarecord",
    "aws_lambda_powertools.utilities.idempotency.persistence.dynamodb",
)


def _datetime_module(clock: Clock) -> types.ModuleType:
    class SimulatedDatetime(real_dt.datetime):
        @classmethod
        def now(cls, tz: real_dt.tzinfo | None = None) -> SimulatedDatetime:
            return cls.fromtimestamp(clock.now(), tz)

    module = types.ModuleType("datetime")
    module.__dict__.update(real_dt.__dict__)
    module.datetime = SimulatedDatetime  # type: ignore[attr-defined]
    return module


@contextlib.contextmanager
def following(clock: Clock) -> Iterator[None]:
    """Powertools idempotency reads ``clock`` (when it is simulated) while inside."""
    if not clock.simulated:
        yield
        return
    modules: list[Any] = [importlib.import_module(name) for name in _MODULES]
    saved = [module.dt for module in modules]  # each imports ``datetime as dt``
    simulated = _datetime_module(clock)
    for module in modules:
        module.dt = simulated
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            module.dt = original
