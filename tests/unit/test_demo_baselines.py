"""The demo's baselines: same-moments popularity (same users, times and count; never a seen item) and the
policies it installs into its local decide function instead of Nudge's."""

from __future__ import annotations

import numpy as np
import pytest

from demo.baselines import ModelOnlyPolicy, RandomItemPolicy
from demo.outcomes import Push, RatingLog, SameMomentsPopularity, hit_rate
from shared.domain.decision import Action
from shared.domain.policy import PastPush, PolicyConfig, RulesPolicy, Situation
from training.movielens import Interactions


def interactions(rows: list[tuple[int, int, int]]) -> Interactions:
    users, items, stamps = (np.asarray(col, dtype=np.int64) for col in zip(*rows, strict=True))
    return Interactions(users, items, np.full(len(rows), 4, dtype=np.int64), stamps)


def test_pushes_the_most_popular_item_not_yet_rated_at_each_moment() -> None:
    # Item 10 is most popular, then 11, then 12.
    train = interactions([(1, 10, 100), (2, 10, 110), (3, 10, 120), (2, 11, 130), (3, 11, 140), (3, 12, 150)])
    replay = interactions([(1, 11, 1_000), (1, 12, 2_000)])
    baseline = SameMomentsPopularity(train, Interactions.concat([train, replay]))
    moments = [Push("d1", "1", "x", 500), Push("d2", "1", "y", 1_500), Push("d3", "2", "z", 500)]
    shadow = baseline.pushes_at(moments)
    assert [(p.user_id, p.at) for p in shadow] == [("1", 500), ("2", 500), ("1", 1_500)]
    # User 1 rated 10 before 500: 11 first; at 1500 they have rated 11 and were pushed nothing else new: 12.
    assert {(p.user_id, p.at): p.item_id for p in shadow} == {("1", 500): "11", ("2", 500): "12", ("1", 1_500): "12"}
    # Judged by the same log as the policies: user 1 rated 11 at 1000 (within 7 days of 500) and 12 at 2000.
    assert hit_rate(shadow, RatingLog(replay))[:2] == (3, 2)


def test_session_depth_counts_the_ratings_of_the_current_session() -> None:
    from demo.push_moments import SESSION_GAP_S, Sessions, bucket_name

    log = interactions([(1, 10, 0), (1, 11, 600), (1, 12, 1_200), (1, 13, 1_200 + SESSION_GAP_S + 1)])
    sessions = Sessions(log)
    assert sessions.depth("1", 1_200) == 3
    assert sessions.depth("1", 1_300) == 3  # still within 30 minutes of the last rating
    assert sessions.depth("1", 1_200 + SESSION_GAP_S + 1) == 1  # a new session began
    assert sessions.depth("1", 10 * SESSION_GAP_S) == 0  # nobody around: not in a session
    assert sessions.depth("2", 1_000) == 0
    assert [bucket_name(d) for d in (0, 1, 3, 10, 11, 31, 500)] == ["0", "1", "2-3", "4-10", "11-30", "31-100", "101+"]


# ---------------------------------------------------------------- the policies the demo installs

NOON = 1_795_780_800  # 2026-11-27 12:00 UTC


def situation(**overrides: object) -> Situation:
    from shared.domain.catalog import CatalogItem
    from shared.domain.recommendation import Recommendation
    from shared.domain.user_state import UserState

    catalog = {i: CatalogItem(item_id=i, title=f"M{i}", genres=["Drama"]) for i in "123"}
    base: dict[str, object] = {
        "state": UserState(user_id="u1", consent=True, push_token="t", timezone="Asia/Tokyo"),
        "candidates": [Recommendation("1", 0.9), Recommendation("2", 0.5), Recommendation("3", 0.1)],
        "catalog": catalog,
        "past_pushes": [],
        "now": NOON,  # 21:00 in Tokyo: quiet hours
    }
    return Situation(**{**base, **overrides})  # type: ignore[arg-type]


def test_model_only_pushes_the_models_choice_whatever_the_rules_say() -> None:
    capped = [PastPush("9", NOON - 60)] * 5
    verdict = ModelOnlyPolicy()(situation(past_pushes=capped))
    assert (verdict.action, verdict.item_id) == (Action.PUSH, "1")
    # Nudge's policy defers the same push out of quiet hours (after refusing it for the cap here).
    assert RulesPolicy(PolicyConfig())(situation()).action is Action.DEFER
    # Consent is not negotiable, even for a baseline.
    from shared.domain.user_state import UserState

    assert ModelOnlyPolicy()(situation(state=UserState(user_id="u1"))).action is Action.SILENCE


def test_random_item_keeps_the_rules_and_draws_the_item_uniformly() -> None:
    daytime = PolicyConfig(quiet_hours_start=0, quiet_hours_end=0)
    policy = RandomItemPolicy(daytime)
    picks = {policy(situation(draws=(0.0, d))).item_id for d in (0.1, 0.5, 0.9)}
    assert picks == {"1", "2", "3"}
    verdict = policy(situation(draws=(0.0, 0.5)))
    assert verdict.propensity == pytest.approx(1 / 3) and verdict.candidates == ("1", "2", "3")
    # The rules still decide whether: in quiet hours it defers like Nudge's policy.
    assert RandomItemPolicy(PolicyConfig())(situation()).action is Action.DEFER
