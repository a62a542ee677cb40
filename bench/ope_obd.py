"""Nudge's off-policy estimators on real logged bandit data: the Open Bandit Dataset sample.

    make ope    (or: .venv-obp/bin/python -m bench.ope_obd [--out out/ope/obd.json])

The Open Bandit Dataset (ZOZOTOWN fashion recommendations, via the Open Bandit Pipeline package,
``obp``) logged the same campaign twice: under a uniform-random policy and under Bernoulli
Thompson sampling (BTS). Each round shows 3 of 80 items, one per position; the reward is a click.
From the random logs, ``training/ope.py`` (IPS, SNIPS, DR) estimates the click rate of the BTS
policy, whose action distribution obp computes the way its own OBD examples do (BernoulliTS with
the ZOZOTOWN prior, Monte Carlo). The ground truth is the BTS policy's own on-policy click rate,
the mean reward of its logs. obp's IPW, SNIPW, DM and DR run on the same inputs as a reference.

obp and its PyTorch/pandas/scikit-learn stack live only in ``.venv-obp`` (requirements/ope.txt);
this module imports obp inside ``main`` so that its helpers, and ``training.ope`` (stdlib only),
import and are tested in the project's own venv.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.ope import Logged, RowPrediction, TargetProbability, doubly_robust, estimate

ROOT = Path(__file__).resolve().parents[1]
SEED = 12345
N_SIM = 100_000  # Monte Carlo draws for the BTS action distribution, as in obp's OBD examples
# Nudge "meets the goal" when its best relative error is no worse than obp's SNIPW, up to rounding:
# IPS and SNIPS are the same formulas in both, so they agree to floating-point precision.
TOLERANCE = 1e-9
# The same estimator in both libraries, for the agreement check.
COUNTERPARTS = {"nudge_ips": "obp_ipw", "nudge_snips": "obp_snipw", "nudge_dr": "obp_dr"}
Z_95 = 1.959963984540054


def logged_rounds(
    action: Sequence[int], position: Sequence[int], reward: Sequence[float], pscore: Sequence[float]
) -> list[Logged]:
    """obp bandit feedback as Nudge's logged decisions: context = round index, action = item@position."""
    return [
        Logged(context_id=str(i), action=f"{int(a)}@{int(p)}", propensity=float(s), reward=float(r))
        for i, (a, p, r, s) in enumerate(zip(action, position, reward, pscore, strict=True))
    ]


def _round_item_position(row: Logged) -> tuple[int, int, int]:
    item, position = row.action.split("@")
    return int(row.context_id), int(item), int(position)


def target_from_action_dist(action_dist: NDArray[np.float64]) -> TargetProbability:
    """The evaluation policy's probability of each logged (item, position): action_dist[round, item, position]."""

    def probability(row: Logged) -> float:
        i, item, position = _round_item_position(row)
        return float(action_dist[i, item, position])

    return probability


def reward_model(
    estimated_rewards: NDArray[np.float64], action_dist: NDArray[np.float64]
) -> tuple[RowPrediction, RowPrediction]:
    """(prediction for the logged item, expectation under the evaluation policy) at the logged position."""
    expected = (estimated_rewards * action_dist).sum(axis=1)  # (rounds, positions)

    def predicted(row: Logged) -> float:
        i, item, position = _round_item_position(row)
        return float(estimated_rewards[i, item, position])

    def baseline(row: Logged) -> float:
        i, _, position = _round_item_position(row)
        return float(expected[i, position])

    return predicted, baseline


def relative_error(value: float, truth: float) -> float:
    return abs(value - truth) / truth


def binomial_interval(clicks: int, n: int) -> tuple[float, float]:
    """Normal-approximation 95 % interval of a click rate: how exact the on-policy "truth" itself is."""
    rate = clicks / n
    half = Z_95 * (rate * (1.0 - rate) / n) ** 0.5
    return rate - half, rate + half


def report(
    truth: float, n_rounds: int, estimates: Mapping[str, Mapping[str, Any]], extra: Mapping[str, Any]
) -> dict[str, Any]:
    """The obd.json document: each estimate with its relative error, and whether Nudge's best matches obp's SNIPW."""
    estimators = {
        name: {**entry, "relative_error": relative_error(float(entry["estimate"]), truth)}
        for name, entry in estimates.items()
    }
    nudge_best = min(e["relative_error"] for name, e in estimators.items() if name.startswith("nudge_"))
    return {
        "ground_truth": truth,
        "n_rounds": n_rounds,
        "estimators": estimators,
        "nudge_best_relative_error": nudge_best,
        "nudge_minus_obp": {
            name: float(estimators[name]["estimate"]) - float(estimators[other]["estimate"])
            for name, other in COUNTERPARTS.items()
            if name in estimators and other in estimators
        },
        "goal_met": nudge_best <= estimators["obp_snipw"]["relative_error"] + TOLERANCE,
        **extra,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "ope" / "obd.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    from obp.dataset import OpenBanditDataset
    from obp.ope import (
        DirectMethod,
        DoublyRobust,
        InverseProbabilityWeighting,
        OffPolicyEvaluation,
        RegressionModel,
        SelfNormalizedInverseProbabilityWeighting,
    )
    from obp.policy import BernoulliTS
    from sklearn.linear_model import LogisticRegression

    # No data_path: the small sample of the dataset that ships inside the obp package.
    dataset = OpenBanditDataset(behavior_policy="random", campaign="all")
    feedback = dataset.obtain_batch_bandit_feedback()
    truth = float(OpenBanditDataset.calc_on_policy_policy_value_estimate(behavior_policy="bts", campaign="all"))
    bts_rewards = OpenBanditDataset(behavior_policy="bts", campaign="all").obtain_batch_bandit_feedback()["reward"]
    bts_clicks, bts_rounds = int(np.sum(bts_rewards)), len(bts_rewards)
    n = int(feedback["n_rounds"])
    policy = BernoulliTS(
        n_actions=dataset.n_actions,
        len_list=dataset.len_list,
        is_zozotown_prior=True,
        campaign="all",
        random_state=SEED,
    )
    action_dist = np.tile(policy.compute_batch_action_dist(n_sim=N_SIM), (n, 1, 1))
    regression = RegressionModel(
        n_actions=dataset.n_actions,
        len_list=dataset.len_list,
        action_context=dataset.action_context,
        base_model=LogisticRegression(C=100, max_iter=10_000, random_state=SEED),
    )
    estimated_rewards = regression.fit_predict(
        context=feedback["context"],
        action=feedback["action"],
        reward=feedback["reward"],
        position=feedback["position"],
        pscore=feedback["pscore"],
        n_folds=3,
        random_state=SEED,
    )

    logs = logged_rounds(feedback["action"], feedback["position"], feedback["reward"], feedback["pscore"])
    target = target_from_action_dist(action_dist)
    nudge = estimate(logs, target)
    nudge_dr = doubly_robust(logs, target, *reward_model(estimated_rewards, action_dist))

    ope = OffPolicyEvaluation(
        bandit_feedback=feedback,
        ope_estimators=[
            InverseProbabilityWeighting(),
            SelfNormalizedInverseProbabilityWeighting(),
            DirectMethod(),
            DoublyRobust(),
        ],
    )
    obp_values = ope.estimate_policy_values(action_dist=action_dist, estimated_rewards_by_reg_model=estimated_rewards)
    obp_intervals = ope.estimate_intervals(
        action_dist=action_dist,
        estimated_rewards_by_reg_model=estimated_rewards,
        n_bootstrap_samples=1000,
        random_state=SEED,
    )

    def obp_entry(name: str) -> dict[str, Any]:
        interval = obp_intervals[name]
        return {
            "estimate": float(obp_values[name]),
            "ci95_bootstrap": [float(interval["95.0% CI (lower)"]), float(interval["95.0% CI (upper)"])],
        }

    estimates: dict[str, dict[str, Any]] = {
        "nudge_ips": {"estimate": nudge.ips, "ci95": list(nudge.ips_ci)},
        "nudge_snips": {"estimate": nudge.snips, "ci95": list(nudge.snips_ci)},
        "nudge_dr": {"estimate": nudge_dr.value, "ci95": list(nudge_dr.ci)},
        "obp_ipw": obp_entry("ipw"),
        "obp_snipw": obp_entry("snipw"),
        "obp_dm": obp_entry("dm"),
        "obp_dr": obp_entry("dr"),
    }
    extra: dict[str, Any] = {
        "logged_policy": "random (uniform, 80 items x 3 positions)",
        "evaluation_policy": f"BernoulliTS, ZOZOTOWN prior, campaign all, {N_SIM} Monte Carlo draws, seed {SEED}",
        "logged_clicks": int(np.sum(feedback["reward"])),
        "logged_click_rate": float(np.mean(feedback["reward"])),
        "ground_truth_clicks": bts_clicks,
        "ground_truth_rounds": bts_rounds,
        "ground_truth_ci95": list(binomial_interval(bts_clicks, bts_rounds)),
        "nudge_effective_sample_size": nudge.effective_sample_size,
        "reward_model": "obp RegressionModel, LogisticRegression(C=100), 3-fold cross-fitting",
        "seconds": round(time.perf_counter() - started, 1),
    }
    result = report(truth, n, estimates, extra)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    low, high = extra["ground_truth_ci95"]
    print(
        f"ground truth (BTS on-policy click rate): {truth:.6f}, {bts_clicks} clicks in {bts_rounds} rounds"
        f" (95 % interval {low:.6f} to {high:.6f})"
    )
    print(
        f"random logs: {extra['logged_clicks']} clicks in {n} rounds;"
        f" effective sample {nudge.effective_sample_size:.0f}"
    )
    for name, entry in result["estimators"].items():
        interval = entry.get("ci95") or entry.get("ci95_bootstrap")
        print(
            f"{name:12s} {entry['estimate']:.6f}  relative error {entry['relative_error']:.4f}"
            f"  95 % interval {interval[0]:.6f} to {interval[1]:.6f}"
        )
    print("Nudge minus obp: " + ", ".join(f"{k} {v:.1e}" for k, v in result["nudge_minus_obp"].items()))
    print(f"goal met (Nudge's best relative error <= obp SNIPW's): {result['goal_met']}  -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
