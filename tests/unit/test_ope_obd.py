"""bench/ope_obd.py's glue from obp's arrays to training/ope.py, on small arrays (obp itself is not needed)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.ope_obd import binomial_interval, logged_rounds, report, reward_model, target_from_action_dist
from training.ope import doubly_robust, estimate

ROOT = Path(__file__).resolve().parents[2]
# 2 rounds, 3 items, 2 positions: action_dist[round, item, position], each position's column sums to 1.
ACTION_DIST = np.array(
    [
        [[0.5, 0.1], [0.3, 0.6], [0.2, 0.3]],
        [[0.5, 0.1], [0.3, 0.6], [0.2, 0.3]],
    ]
)


def test_logged_rounds_carry_item_position_and_the_target_reads_the_matching_probability() -> None:
    logs = logged_rounds(action=[1, 2], position=[1, 0], reward=[1.0, 0.0], pscore=[1 / 3, 1 / 3])
    assert [(r.context_id, r.action, r.reward) for r in logs] == [("0", "1@1", 1.0), ("1", "2@0", 0.0)]
    target = target_from_action_dist(ACTION_DIST)
    assert [target(r) for r in logs] == [0.6, 0.2]
    result = estimate(logs, target)
    # IPS: (0.6 / (1/3) x 1 + 0) / 2; SNIPS divides by the weights' sum, 3 x (0.6 + 0.2).
    assert result.ips == pytest.approx(0.9)
    assert result.snips == pytest.approx(1.8 / 2.4)


def test_reward_model_gives_the_logged_prediction_and_the_target_expectation_at_the_logged_position() -> None:
    rewards = np.array(
        [
            [[0.1, 0.4], [0.2, 0.5], [0.3, 0.6]],
            [[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]],
        ]
    )
    logs = logged_rounds(action=[1, 2], position=[1, 0], reward=[1.0, 0.0], pscore=[1 / 3, 1 / 3])
    predicted, baseline = reward_model(rewards, ACTION_DIST)
    assert predicted(logs[0]) == 0.5
    assert baseline(logs[0]) == pytest.approx(0.1 * 0.4 + 0.6 * 0.5 + 0.3 * 0.6)
    assert baseline(logs[1]) == pytest.approx(0.3)
    dr = doubly_robust(logs, target_from_action_dist(ACTION_DIST), predicted, baseline)
    expected = ((0.52 + 1.8 * 0.5) + (0.3 + 0.6 * (0.0 - 0.0))) / 2
    assert dr.value == pytest.approx(expected)


def test_report_scores_relative_errors_and_compares_nudge_with_obp_snipw() -> None:
    estimates = {
        "nudge_ips": {"estimate": 0.0045},
        "nudge_snips": {"estimate": 0.0048},
        "obp_ipw": {"estimate": 0.0045},
        "obp_snipw": {"estimate": 0.0048},
    }
    result = report(0.004, 10_000, estimates, {"seconds": 1.0})
    assert result["estimators"]["nudge_ips"]["relative_error"] == pytest.approx(0.125)
    assert result["nudge_best_relative_error"] == pytest.approx(0.125)
    assert result["goal_met"] is True
    assert result["nudge_minus_obp"] == {"nudge_ips": 0.0, "nudge_snips": 0.0}
    worse = report(
        0.004, 10_000, {**estimates, "nudge_ips": {"estimate": 0.006}, "nudge_snips": {"estimate": 0.006}}, {}
    )
    assert worse["goal_met"] is False


def test_binomial_interval_of_the_ground_truth() -> None:
    low, high = binomial_interval(42, 10_000)
    assert low == pytest.approx(0.0042 - 1.96 * (0.0042 * 0.9958 / 10_000) ** 0.5, abs=1e-6)
    assert high == pytest.approx(0.0042 + 1.96 * (0.0042 * 0.9958 / 10_000) ** 0.5, abs=1e-6)


def test_the_estimators_need_only_the_standard_library_and_the_script_imports_without_obp() -> None:
    tree = ast.parse((ROOT / "training" / "ope.py").read_text())
    imported = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}
    assert "obp" not in sys.modules
