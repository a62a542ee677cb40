"""Refitting the engagement calibration from logged feedback (the ledger), not from the replay."""

from __future__ import annotations

import random

import pytest

from training.calibration import fit_from_ledger


def ledger_rows(n: int, version: str = "m1", seed: int = 7) -> list[dict[str, object]]:
    """Pushes whose true conversion probability equals their score (a perfectly informative score)."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for i in range(n):
        score = rng.random()
        outcomes = {"delivered": 1, "converted": 1} if rng.random() < score else {"delivered": 1, "dismissed": 1}
        rows.append(
            {"action": "push", "score": score, "model_version": version, "decided_at": 1_000 + i, "outcomes": outcomes}
        )
    return rows


def test_refit_recovers_the_logged_conversion_rates() -> None:
    calibration = fit_from_ledger(ledger_rows(4_000), "m1")
    assert calibration.samples == 4_000
    for score in (0.15, 0.5, 0.85):
        assert calibration(score) == pytest.approx(score, abs=0.08)


def test_refit_ignores_silences_other_models_and_later_decisions() -> None:
    rows = ledger_rows(600)
    noise = [
        {"action": "silence", "score": 0.9, "model_version": "m1", "decided_at": 1, "outcomes": {}},
        {**rows[0], "model_version": "m0"},
    ]
    calibration = fit_from_ledger([*rows, *noise], "m1", before=1_000 + 400)
    assert calibration.samples == 400


def test_refit_refuses_too_few_outcomes() -> None:
    with pytest.raises(ValueError, match="at least 200"):
        fit_from_ledger(ledger_rows(50), "m1")


def test_refit_counts_every_registry_version_of_the_graph() -> None:
    """A registry version (``<graph>.<digest>``) scores like its graph; another graph's pushes stay out."""
    rows = [*ledger_rows(300, "m1.0123456789ab"), *ledger_rows(300, "m1.ba9876543210", seed=8)]
    other = ledger_rows(300, "m2.0123456789ab", seed=9)
    assert fit_from_ledger([*rows, *other], "m1").samples == 600
