"""The champion/challenger read-out from ledger rows (training/version_outcomes.py)."""

from __future__ import annotations

from typing import Any

import pytest

from training.version_outcomes import by_version, hit_rate_difference, wilson


def row(version: str, n: int, *, push: bool = True, outcomes: tuple[str, ...] = (), top: bool = True) -> dict[str, Any]:
    candidates = ["a", "b", "c"]
    return {
        "decision_id": f"{version}-{n}",
        "model_version": version,
        "action": "push" if push else "silence",
        "item_id": ("a" if top else "b") if push else None,
        "propensity": 0.8 if top else 0.1,
        "candidates": candidates,
        "outcomes": {o: 1 for o in outcomes},
    }


def test_wilson_matches_the_textbook_values_and_stays_inside_0_1() -> None:
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_each_version_is_counted_from_its_own_rows() -> None:
    rows = [
        row("v1", 1, outcomes=("delivered", "opened", "converted")),
        row("v1", 2, outcomes=("delivered", "dismissed")),
        row("v1", 3, push=False),
        row("v2", 1, outcomes=("delivered",), top=False),
    ]
    report = by_version(rows)
    assert list(report) == ["v1", "v2"]
    v1 = report["v1"]
    assert (v1["decisions"], v1["pushes"], v1["push_rate"]) == (3, 2, pytest.approx(0.6667))
    assert (v1["delivered"]["count"], v1["opened"]["count"], v1["hit"]["count"]) == (2, 1, 1)
    assert v1["hit"]["rate"] == 0.5 and v1["hit"]["ci95"] == [pytest.approx(0.0945, abs=1e-4), 0.9055]
    # The greedy policy (top candidate) of v1: both pushes were its top item, one a hit, weights 1/0.8.
    assert v1["greedy_value"]["ips"] == pytest.approx(0.625) and v1["greedy_value"]["snips"] == pytest.approx(0.5)
    # v2 pushed its second candidate only: its greedy policy never took that action, so it is valued at 0.
    assert report["v2"]["greedy_value"]["ips"] == 0.0 and report["v2"]["hit"]["count"] == 0


def test_the_difference_says_not_yet_known_until_the_interval_leaves_zero() -> None:
    def version(hits: int, pushes: int) -> dict[str, Any]:
        return {"pushes": pushes, "hit": {"count": hits}}

    small = hit_rate_difference(version(3, 10), version(2, 10))
    assert small is not None and small["difference"] == pytest.approx(0.1) and small["verdict"] == "not yet known"
    large = hit_rate_difference(version(300, 1000), version(200, 1000))
    assert large is not None and large["verdict"] == "challenger better" and large["ci95"][0] > 0
    worse = hit_rate_difference(version(100, 1000), version(200, 1000))
    assert worse is not None and worse["verdict"] == "champion better"
    assert hit_rate_difference(version(0, 0), version(2, 10)) is None
