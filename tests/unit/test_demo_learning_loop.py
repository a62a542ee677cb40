"""The demo's learning-loop read-out (demo/summary.py ``learning_loop``): the gate's report, hit rates per version."""

from __future__ import annotations

import numpy as np

from demo.outcomes import RatingLog
from demo.replay import RunResult
from demo.summary import learning_loop
from testkit.feedback import Push
from training.movielens import Interactions

DAY = 86_400


def test_each_served_version_gets_its_own_pushes_and_7_day_hit_rate() -> None:
    # User 1 rates item 10 a day after its push (a hit); item 11 is never rated; item 12 only 9 days later.
    log = RatingLog(
        Interactions(
            user=np.asarray([1, 1], dtype=np.int64),
            item=np.asarray([10, 12], dtype=np.int64),
            rating=np.asarray([5, 5], dtype=np.int64),
            timestamp=np.asarray([DAY, 9 * DAY], dtype=np.int64),
        )
    )
    pushes = [Push("d1", "1", "10", 0), Push("d2", "1", "11", 10), Push("d3", "1", "12", 20)]
    ledger = [
        {"decision_id": "d1", "model_version": "old"},
        {"decision_id": "d2", "model_version": "new"},
        {"decision_id": "d3", "model_version": "new"},
        {"decision_id": "d4", "model_version": "new", "action": "silence"},  # no push: not counted
    ]
    report = {
        "at": 5,
        "decision": "promoted",
        "reasons": ["NDCG@10 0.2 vs champion 0.1: wins by at least 0.0050"],
        "champion_before": {"version": "old"},
        "challenger": {"version": "new"},
        "metrics": {"champion": {}, "challenger": {}},
        "events": 100,
        "window": {"since": None, "cutoff": 1, "until": 5},
        "seconds": {"train": 1.0},
    }
    run = RunResult(policy="full", pushes=pushes, ledger=ledger, retrain=report)
    loop = learning_loop(run, log)
    assert (loop["decision"], loop["champion_before"], loop["challenger"]) == ("promoted", "old", "new")
    assert loop["by_model_version"] == {
        "old": {"pushes": 1, "hits_7d": 1, "push_hit_rate_7d": 1.0},
        "new": {"pushes": 2, "hits_7d": 0, "push_hit_rate_7d": 0.0},
    }
    assert list(loop["by_model_version"]) == ["old", "new"]  # in the order they were first served
