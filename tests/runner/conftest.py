"""Fixtures for the local runner's tests: toy templates and handlers under fixtures/."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.pipeline import LocalPipeline
from tests.runner.runner_testlib import TOY_TEMPLATE

PipelineFactory = Callable[..., LocalPipeline]


@pytest.fixture
def record_file(tmp_path: Path) -> Path:
    path = tmp_path / "records.jsonl"
    path.touch()
    return path


@pytest.fixture
def read_invocations(record_file: Path) -> Callable[..., list[dict[str, Any]]]:
    """What the toy handler wrote: one dict per invocation, optionally for one function only."""

    def read(function: str | None = None) -> list[dict[str, Any]]:
        entries = [json.loads(line) for line in record_file.read_text().splitlines() if line]
        if function is not None:
            entries = [e for e in entries if f"-{function}-" in e["function"]]
        return entries

    return read


@pytest.fixture
def toy(record_file: Path) -> Iterator[PipelineFactory]:
    """Start a pipeline on the toy template for the given functions (closed after the test)."""
    started: list[LocalPipeline] = []

    def make(*functions: str, **kwargs: Any) -> LocalPipeline:
        env = dict(kwargs.pop("env_overrides", {}))
        env["*"] = {"RECORD_FILE": str(record_file), **env.get("*", {})}
        pipeline = LocalPipeline(
            TOY_TEMPLATE,
            stack_name=kwargs.pop("stack_name", "toy"),
            functions=list(functions),
            env_overrides=env,
            **kwargs,
        )
        started.append(pipeline)
        return pipeline.start()

    yield make
    for pipeline in reversed(started):
        pipeline.close()
