"""Logger, metrics and tracer for a handler module, the Powertools way.

The tracer is the one exception to "just instantiate Powertools": its X-Ray provider imports
the X-Ray SDK, which opens a UDP socket and costs cold-start time even when tracing is
disabled. Where POWERTOOLS_TRACE_DISABLED is set (local runs, tests) a pass-through tracer
with the same decorators is used instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics

F = TypeVar("F", bound=Callable[..., Any])


class HandlerTracer(Protocol):
    def capture_lambda_handler(self, handler: F) -> F: ...

    def capture_method(self, method: F) -> F: ...


class PassThroughTracer:
    """The subset of Powertools' Tracer the handlers use, doing nothing."""

    def capture_lambda_handler(self, handler: F) -> F:
        return handler

    def capture_method(self, method: F) -> F:
        return method


def _tracing_disabled() -> bool:
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in {"1", "true", "yes"}


def handler_tools() -> tuple[Logger, Metrics, HandlerTracer]:
    """(logger, metrics, tracer) for one function, configured from its environment."""
    tracer: HandlerTracer
    if _tracing_disabled():
        tracer = PassThroughTracer()
    else:
        from aws_lambda_powertools import Tracer

        tracer = cast(HandlerTracer, Tracer())
    return Logger(), Metrics(), tracer
