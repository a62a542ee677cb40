"""The forward-in-time judgement and promotion gate of a retrained model (training/forward_eval.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from testkit.tiny_model import build_tiny_model
from training.forward_eval import forward_cases, gate, run

T = 1_000


def test_cases_start_at_the_cutoff_and_carry_everything_before_as_history() -> None:
    rows = [
        ("u1", "a", 10),
        ("u1", "b", 20),
        ("u1", "c", T),
        ("u1", "d", T + 5),
        ("u2", "x", T + 1),  # nothing before T: no case
        ("u3", "a", 30),
        ("u3", "b", 900),
    ]  # u3: nothing at or after T
    (case,) = forward_cases(rows, T)
    assert (case.history, case.stamps, case.target, case.target_ts) == (["a", "b"], [10, 20], "c", T)
    assert case.now() == 20  # decision time: the newest history event, never the target's own time
    second = forward_cases(rows, T, per_user=2)[1]
    assert (second.history, second.target) == (["a", "b", "c"], "d")


def metrics(ndcg: float, cold_hr: float | None) -> dict[str, object]:
    return {"all": {"NDCG@10": ndcg}, "cold": None if cold_hr is None else {"HR@10": cold_hr}}


def test_the_gate_needs_a_win_by_the_margin_and_no_loss_on_cold_items() -> None:
    assert gate(metrics(0.10, 0.05), metrics(0.12, 0.05), margin=0.01).promote
    assert not gate(metrics(0.10, 0.05), metrics(0.105, 0.05), margin=0.01).promote
    cold_loss = gate(metrics(0.10, 0.05), metrics(0.20, 0.01))
    assert not cold_loss.promote and "loses" in cold_loss.reasons[1]
    assert gate(metrics(0.10, 0.05), metrics(0.20, 0.03), cold_tolerance=0.025).promote
    assert "does not apply" in gate(metrics(0.1, None), metrics(0.1, None)).reasons[1]


def test_run_judges_both_models_as_decide_serves_them(tmp_path: Path) -> None:
    vocab = ["i1", "i2", "i3", "i4"]
    # The champion knows that i1 leads to i2; the challenger only knows that i4 is popular.
    flat = dict.fromkeys(vocab, 0.0)
    champion = build_tiny_model(tmp_path / "champion", vocab, neighbours={"i1": {"i2": 5.0}}, popularity=flat)
    challenger = build_tiny_model(tmp_path / "challenger", vocab, neighbours={}, popularity={**flat, "i4": 1.0})
    rows = [(f"u{n}", "i1", 10) for n in range(5)] + [(f"u{n}", "i2", T + n) for n in range(5)]
    report = run(rows, T, champion, challenger)
    champ, chall = report["models"]["champion"], report["models"]["challenger"]
    assert champ["cases"] == chall["cases"] == 5
    assert champ["all"]["MRR"] == 1.0 and chall["all"]["MRR"] == 0.5  # i2 first; i2 after i4
    assert champ["cold_cases"] == 5  # i2 was never seen before T
    assert report["gate"]["promote"] is False
    # Case by case: the champion ranks i2 first (NDCG 1), the challenger second (1/log2(3)).
    difference = report["difference"]
    assert difference["mean"] == pytest.approx(1 / np.log2(3) - 1)
    assert (difference["champion_better"], difference["challenger_better"], difference["ties"]) == (5, 0, 0)
    assert difference["ci95"][0] == difference["ci95"][1] == pytest.approx(difference["mean"])  # no spread
    assert run(rows, T, challenger, champion)["gate"]["promote"] is True
    with pytest.raises(ValueError, match="no user has events both before"):
        run(rows, 5, champion, challenger)
