"""Off-policy evaluation: a candidate policy's hit rate, estimated from what the live policy logged.

Every ledger row records the action taken and the probability (propensity) with which the
logging policy takes it; feedback says whether the push was a hit. Inverse propensity scoring
reweights the logged rewards by target / logging probability: unbiased when every action the
target takes had a positive logging probability. The self-normalised variant (SNIPS) divides by
the sum of the weights instead of n: slightly biased, far lower variance. Doubly robust (DR) adds
a reward model's prediction for the target's actions and reweights only the model's residual on
the logged one: unbiased when the propensities are right, whatever the model. Intervals are normal
approximations (with the delta method for SNIPS), reported with the effective sample size so
a reader can see when there is too little overlap to trust them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

Z_95 = 1.959963984540054
# Feedback outcomes that make a push a hit (the reward of off-policy evaluation and calibration).
HIT_OUTCOMES = frozenset({"converted"})


def is_hit(row: Mapping[str, object], hit_outcomes: frozenset[str] = HIT_OUTCOMES) -> bool:
    """Whether a ledger row's recorded feedback shows a hit."""
    outcomes = row.get("outcomes") or {}
    assert isinstance(outcomes, dict)
    return bool(hit_outcomes & set(outcomes))


@dataclass(frozen=True)
class Logged:
    """One logged decision: what was done, how likely it was, and how it turned out."""

    context_id: str
    action: str
    propensity: float
    reward: float
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class Estimate:
    n: int
    ips: float
    ips_ci: tuple[float, float]
    snips: float
    snips_ci: tuple[float, float]
    effective_sample_size: float


@dataclass(frozen=True)
class DoublyRobust:
    n: int
    value: float
    ci: tuple[float, float]


TargetProbability = Callable[[Logged], float]
# A reward model's prediction for a logged row: of its logged action, or its mean over the target's.
RowPrediction = Callable[[Logged], float]


def estimate(logs: Sequence[Logged], target: TargetProbability) -> Estimate:
    """IPS and SNIPS estimates of the target policy's mean reward, with 95 % intervals."""
    weights = importance_weights(logs, target)
    rewards = [row.reward for row in logs]
    n = len(logs)
    terms = [w * r for w, r in zip(weights, rewards, strict=True)]
    ips = sum(terms) / n
    ips_se = _std(terms) / math.sqrt(n)
    weight_sum = sum(weights)
    if weight_sum == 0:
        snips, snips_se = 0.0, float("inf")
    else:
        snips = sum(terms) / weight_sum
        # Delta method: the SNIPS error is the weighted residual's mean over the mean weight.
        residuals = [w * (r - snips) for w, r in zip(weights, rewards, strict=True)]
        snips_se = _std(residuals) / math.sqrt(n) / (weight_sum / n)
    ess = weight_sum**2 / sum(w * w for w in weights) if weight_sum else 0.0
    return Estimate(
        n=n,
        ips=ips,
        ips_ci=(ips - Z_95 * ips_se, ips + Z_95 * ips_se),
        snips=snips,
        snips_ci=(snips - Z_95 * snips_se, snips + Z_95 * snips_se),
        effective_sample_size=ess,
    )


def doubly_robust(
    logs: Sequence[Logged], target: TargetProbability, predicted: RowPrediction, baseline: RowPrediction
) -> DoublyRobust:
    """DR estimate of the target's mean reward, with a 95 % interval.

    ``predicted(row)`` is the reward model's prediction for the logged action, ``baseline(row)`` its
    expectation under the target (the sum over actions of target probability x prediction). Each
    term is baseline + weight x (reward - predicted); with a model that predicts 0 it is IPS.
    """
    weights = importance_weights(logs, target)
    terms = [baseline(row) + w * (row.reward - predicted(row)) for row, w in zip(logs, weights, strict=True)]
    n = len(terms)
    value = sum(terms) / n
    se = _std(terms) / math.sqrt(n)
    return DoublyRobust(n=n, value=value, ci=(value - Z_95 * se, value + Z_95 * se))


def importance_weights(logs: Sequence[Logged], target: TargetProbability) -> list[float]:
    """target / logging probability of each logged action; refuses an empty log or a propensity outside (0, 1]."""
    if not logs:
        raise ValueError("no logged decisions to evaluate")
    for row in logs:
        if not 0.0 < row.propensity <= 1.0:
            raise ValueError(f"propensity must be in (0, 1], got {row.propensity} for {row.context_id}")
    return [target(row) / row.propensity for row in logs]


def _std(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def greedy(row: Logged) -> float:
    """Target: always the logging policy's top candidate (exploration switched off)."""
    return 1.0 if row.candidates and row.action == row.candidates[0] else 0.0


def epsilon_greedy(epsilon: float, top_k: int) -> TargetProbability:
    """Target: the same epsilon-greedy rule the policy uses, with another epsilon or k."""

    def probability(row: Logged) -> float:
        k = min(top_k, len(row.candidates))
        if k == 0:
            return 0.0
        top = row.candidates[:k]
        if row.action not in top:
            return 0.0
        eps = epsilon if k > 1 else 0.0
        return eps / k + (1.0 - eps if row.action == top[0] else 0.0)

    return probability


def logged_from_ledger(rows: Iterable[dict[str, object]], hit_outcomes: frozenset[str] = HIT_OUTCOMES) -> list[Logged]:
    """Ledger push rows as logged decisions; the reward is 1 when feedback shows a hit."""
    out: list[Logged] = []
    for row in rows:
        if row.get("action") != "push" or not row.get("item_id"):
            continue
        candidates = row.get("candidates") or []
        assert isinstance(candidates, list)
        out.append(
            Logged(
                context_id=str(row["decision_id"]),
                action=str(row["item_id"]),
                propensity=float(str(row.get("propensity", 1.0))),
                reward=1.0 if is_hit(row, hit_outcomes) else 0.0,
                candidates=tuple(str(c) for c in candidates),
            )
        )
    return out
