"""The template's stack, run in-process on a simulated clock with a tiny model: how the integration tests build it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from runner.clock import SimulatedClock
from runner.pipeline import LocalPipeline
from testkit.tiny_encoder import build_tiny_encoder
from testkit.tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[2]


def tiny_model_pipeline(
    tmp_path: Path,
    stack_name: str,
    start: datetime,
    vocab: Sequence[str],
    parameters: Mapping[str, Any] | None = None,
) -> LocalPipeline:
    """Not started: use it as a context manager. Decide serves a tiny model over ``vocab``, the catalog
    function encodes with a tiny encoder (testkit/tiny_encoder.py); logs go to tmp_path."""
    model_dir = build_tiny_model(tmp_path / "model", vocab=list(vocab))
    encoder_dir = build_tiny_encoder(tmp_path / "encoder")
    return LocalPipeline(
        ROOT / "template.yaml",
        stack_name=stack_name,
        clock=SimulatedClock(start),
        env_overrides={
            "DecideFunction": {"MODEL_DIR": str(model_dir)},
            "CatalogFunction": {"ENCODER_DIR": str(encoder_dir)},
        },
        parameter_overrides=parameters or {},
        log_dir=tmp_path / "logs",
    )
