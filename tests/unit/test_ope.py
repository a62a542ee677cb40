"""Off-policy estimates on synthetic logs whose true answer is known."""

from __future__ import annotations

import random

import pytest

from training.ope import Logged, doubly_robust, epsilon_greedy, estimate, greedy, logged_from_ledger

ITEMS = ("a", "b", "c", "d")
# True hit probability of each item, the same in every context: the greedy policy (always "a")
# is worth 0.30, uniform over the four is worth the mean, 0.175.
HIT = {"a": 0.30, "b": 0.20, "c": 0.15, "d": 0.05}


def synthetic_logs(n: int, epsilon: float, seed: int) -> list[Logged]:
    """Logged by epsilon-greedy over the four items with the top candidate "a"."""
    rng = random.Random(seed)
    logs = []
    for i in range(n):
        explore = rng.random() < epsilon
        action = rng.choice(ITEMS) if explore else "a"
        propensity = epsilon / len(ITEMS) + (1 - epsilon if action == "a" else 0.0)
        reward = 1.0 if rng.random() < HIT[action] else 0.0
        logs.append(Logged(f"ctx{i}", action, propensity, reward, ITEMS))
    return logs


def uniform(row: Logged) -> float:
    return 1.0 / len(ITEMS)


def test_estimates_recover_the_known_value_of_other_policies() -> None:
    logs = synthetic_logs(40_000, epsilon=0.3, seed=7)
    for target, truth in ((greedy, 0.30), (uniform, 0.175), (epsilon_greedy(0.5, 4), 0.5 * 0.175 + 0.5 * 0.30)):
        result = estimate(logs, target)
        assert result.ips == pytest.approx(truth, abs=0.01)
        assert result.snips == pytest.approx(truth, abs=0.01)
        assert result.ips_ci[0] < truth < result.ips_ci[1]
        assert result.snips_ci[0] < truth < result.snips_ci[1]


def test_intervals_cover_the_truth_about_95_percent_of_the_time() -> None:
    intervals = [estimate(synthetic_logs(2_000, 0.3, seed), uniform).snips_ci for seed in range(100)]
    covered = sum(low < 0.175 < high for low, high in intervals)
    assert 88 <= covered <= 100


def test_the_logging_policy_evaluates_to_its_own_mean_and_weights_are_checked() -> None:
    logs = synthetic_logs(5_000, 0.2, seed=1)
    on_policy = estimate(logs, epsilon_greedy(0.2, 4))
    assert on_policy.snips == pytest.approx(sum(r.reward for r in logs) / len(logs), abs=1e-9)
    assert on_policy.effective_sample_size == pytest.approx(len(logs))
    with pytest.raises(ValueError, match="propensity"):
        estimate([Logged("x", "a", 0.0, 1.0, ITEMS)], greedy)


def test_ledger_rows_become_logged_decisions() -> None:
    rows: list[dict[str, object]] = [
        {
            "decision_id": "d1",
            "action": "push",
            "item_id": "a",
            "propensity": 0.9,
            "candidates": ["a", "b"],
            "outcomes": {"delivered": 1, "converted": 2},
        },
        {
            "decision_id": "d2",
            "action": "push",
            "item_id": "b",
            "propensity": 0.05,
            "candidates": ["a", "b"],
            "outcomes": {"delivered": 1, "dismissed": 2},
        },
        {"decision_id": "d3", "action": "silence", "reasons": ["daily_cap"]},
    ]
    logged = logged_from_ledger(rows)
    assert [(r.action, r.reward, r.propensity) for r in logged] == [("a", 1.0, 0.9), ("b", 0.0, 0.05)]


def test_doubly_robust_is_ips_without_a_model_and_tighter_with_a_good_one() -> None:
    logs = synthetic_logs(20_000, epsilon=0.3, seed=3)
    ips = estimate(logs, uniform)
    blind = doubly_robust(logs, uniform, lambda row: 0.0, lambda row: 0.0)
    assert blind.value == pytest.approx(ips.ips, abs=1e-12)
    assert blind.ci == pytest.approx(ips.ips_ci, abs=1e-12)
    mean_hit = sum(HIT.values()) / len(HIT)
    informed = doubly_robust(logs, uniform, lambda row: HIT[row.action], lambda row: mean_hit)
    assert informed.value == pytest.approx(0.175, abs=0.01)
    assert informed.ci[0] < 0.175 < informed.ci[1]
    assert informed.ci[1] - informed.ci[0] < blind.ci[1] - blind.ci[0]
    # A wrong model is corrected by the reweighted residuals: still unbiased.
    wrong = doubly_robust(logs, uniform, lambda row: 0.5, lambda row: 0.5)
    assert wrong.value == pytest.approx(0.175, abs=0.02)
    with pytest.raises(ValueError, match="propensity"):
        doubly_robust([Logged("x", "a", 1.5, 1.0, ITEMS)], uniform, lambda row: 0.0, lambda row: 0.0)
