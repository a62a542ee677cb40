"""Local runner: a SAM stack deployed to moto, its functions driven in-process (no Docker)."""

from runner.clock import Clock, RealClock, SimulatedClock
from runner.lambda_invoke import FunctionStats, InvocationResult, LambdaContext
from runner.pipeline import LocalPipeline, PipelineStats, PumpResult
from runner.specs import EventSourceSpec, FunctionSpec

__all__ = [
    "Clock",
    "EventSourceSpec",
    "FunctionSpec",
    "FunctionStats",
    "InvocationResult",
    "LambdaContext",
    "LocalPipeline",
    "PipelineStats",
    "PumpResult",
    "RealClock",
    "SimulatedClock",
]
