"""Local runner: the SAM stack on moto with its functions driven in-process (no Docker)."""

from runner.clock import Clock, RealClock, SimulatedClock
from runner.lambda_invoke import FunctionStats, InvocationResult, LambdaContext
from runner.pipeline import LocalPipeline, PipelineStats, PumpResult
from runner.template import EventSourceSpec, FunctionSpec, Template, load_template

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
    "Template",
    "load_template",
]
