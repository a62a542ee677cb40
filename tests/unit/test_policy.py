from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from shared.domain.catalog import CatalogItem
from shared.domain.decision import Action, Reason
from shared.domain.engagement import Calibration
from shared.domain.policy import (
    PastPush,
    PolicyConfig,
    RulesPolicy,
    Situation,
    Verdict,
    in_quiet_hours,
    quiet_hours_end_after,
)
from shared.domain.recommendation import Recommendation
from shared.domain.user_state import RecentItem, UserState

NOON = int(datetime(2026, 11, 27, 12, tzinfo=UTC).timestamp())
CATALOG = {
    "1": CatalogItem(item_id="1", title="Toy Story (1995)", genres=["Animation", "Comedy"]),
    "2": CatalogItem(item_id="2", title="GoldenEye (1995)", genres=["Action"]),
    "3": CatalogItem(item_id="3", title="Four Rooms (1995)", genres=["Comedy"]),
    "4": CatalogItem(item_id="4", title="Get Shorty (1995)", genres=["Comedy"], available=False),
}
CONFIG = PolicyConfig(daily_push_cap=2, score_threshold=0.1, quiet_hours_start=21, quiet_hours_end=8)


def user(**overrides: object) -> UserState:
    base: dict[str, object] = {
        "user_id": "u1",
        "consent": True,
        "push_token": "tok",
        "recent_items": [RecentItem(item_id="1", ts=NOON - 60, type="rate")],
        "consumed": ["1"],
    }
    return UserState.model_validate({**base, **overrides})


def cands(*pairs: tuple[str, float]) -> list[Recommendation]:
    return [Recommendation(item_id, score) for item_id, score in pairs]


def decide(
    state: UserState,
    candidates: list[Recommendation],
    catalog: dict[str, CatalogItem],
    past: list[PastPush],
    now: int,
    config: PolicyConfig,
    draws: tuple[float, float] = (1.0, 0.0),
    calibration: Calibration | None = None,
) -> Verdict:
    return RulesPolicy(config)(Situation(state, candidates, catalog, past, now, draws, calibration))


def test_pushes_best_eligible_item_with_explanation() -> None:
    verdict = decide(user(), cands(("4", 0.9), ("1", 0.8), ("3", 0.5), ("2", 0.4)), CATALOG, [], NOON, CONFIG)
    # 4 is unavailable, 1 consumed: 3 is the best eligible.
    assert (verdict.action, verdict.item_id, verdict.reasons) == (Action.PUSH, "3", [Reason.SCORE])
    assert verdict.supporting_items == ["1"]


@pytest.mark.parametrize(
    ("state", "reason"),
    [(user(consent=False), Reason.NO_CONSENT), (user(push_token=None), Reason.NO_PUSH_TOKEN)],
)
def test_no_consent_or_token_means_silence(state: UserState, reason: Reason) -> None:
    verdict = decide(state, cands(("3", 0.9)), CATALOG, [], NOON, CONFIG)
    assert (verdict.action, verdict.reasons) == (Action.SILENCE, [reason])


def test_already_pushed_unknown_and_weak_candidates() -> None:
    past = [PastPush("3", NOON - 10 * 86400)]
    assert decide(user(), cands(("3", 0.9), ("99", 0.8)), CATALOG, past, NOON, CONFIG).reasons == [Reason.NO_CANDIDATE]
    assert decide(user(), cands(("3", 0.05)), CATALOG, [], NOON, CONFIG).reasons == [Reason.BELOW_THRESHOLD]


def test_daily_cap_counts_the_users_calendar_day_like_the_counters() -> None:
    two_today = [PastPush("2", NOON - 3600), PastPush("9", NOON - 7200)]
    assert decide(user(), cands(("3", 0.9)), CATALOG, two_today, NOON, CONFIG).reasons == [Reason.DAILY_CAP]
    one_today = [PastPush("2", NOON - 3600), PastPush("9", NOON - 25 * 3600)]
    assert decide(user(), cands(("3", 0.9)), CATALOG, one_today, NOON, CONFIG).action is Action.PUSH
    # 23:30 yesterday and 00:30 today in Tokyo, decided at 10:00 Tokyo: within 24 hours, but one today.
    at = int(datetime(2026, 11, 27, 1, tzinfo=UTC).timestamp())  # 10:00 in Tokyo
    around_midnight = [PastPush("2", at - int(10.5 * 3600)), PastPush("9", at - int(9.5 * 3600))]
    tokyo = user(timezone="Asia/Tokyo")
    assert decide(tokyo, cands(("3", 0.9)), CATALOG, around_midnight, at, CONFIG).action is Action.PUSH


def test_quiet_hours_defer_to_local_morning() -> None:
    # 12:00 UTC is 21:00 in Tokyo: quiet; due at 08:00 Tokyo = 23:00 UTC.
    verdict = decide(user(timezone="Asia/Tokyo"), cands(("3", 0.9)), CATALOG, [], NOON, CONFIG)
    assert (verdict.action, verdict.reasons) == (Action.DEFER, [Reason.QUIET_HOURS])
    assert verdict.due_at == int(datetime(2026, 11, 27, 23, tzinfo=UTC).timestamp())


def test_quiet_hours_window_arithmetic() -> None:
    assert in_quiet_hours(22, 21, 8) and in_quiet_hours(3, 21, 8) and not in_quiet_hours(8, 21, 8)
    assert in_quiet_hours(13, 12, 14) and not in_quiet_hours(14, 12, 14)
    assert not in_quiet_hours(5, 0, 0)
    # DST change in New York on 2026-11-01: the 08:00 local after a 23:00 local is 13:00 UTC.
    late = int(datetime(2026, 11, 1, 3, tzinfo=UTC).timestamp())
    assert quiet_hours_end_after(late, "America/New_York", 8) == int(datetime(2026, 11, 1, 13, tzinfo=UTC).timestamp())


def test_exploration_is_epsilon_greedy_with_recorded_propensity() -> None:
    explore = PolicyConfig(
        daily_push_cap=5, exploration_share=0.2, explore_top_k=4, quiet_hours_start=0, quiet_hours_end=0
    )
    ranked = cands(("2", 0.9), ("3", 0.8))
    # No draw below epsilon: the best item, propensity (1 - e) + e / k (k = the 2 eligible items).
    greedy = decide(user(), ranked, CATALOG, [], NOON, explore, draws=(0.5, 0.9))
    assert (greedy.item_id, greedy.reasons) == ("2", [Reason.SCORE]) and greedy.propensity == pytest.approx(0.9)
    explored = decide(user(), ranked, CATALOG, [], NOON, explore, draws=(0.1, 0.9))
    assert (explored.item_id, explored.reasons) == ("3", [Reason.EXPLORATION])
    assert explored.propensity == pytest.approx(0.1)
    # The same draws give the same choice: a retried decision explores the same way.
    assert decide(user(), ranked, CATALOG, [], NOON, explore, draws=(0.1, 0.9)) == explored


def test_diversity_skips_a_third_push_of_the_same_leading_genre() -> None:
    catalog = {
        **CATALOG,
        "5": CatalogItem(item_id="5", title="Babe", genres=["Comedy"]),
        "6": CatalogItem(item_id="6", title="Heat", genres=["Action"]),
    }
    config = PolicyConfig(daily_push_cap=9, quiet_hours_start=0, quiet_hours_end=0)
    two_comedies = [PastPush("3", NOON - 9 * 86400, ("Comedy",)), PastPush("7", NOON - 8 * 86400, ("Comedy",))]
    verdict = decide(user(), cands(("5", 0.9), ("6", 0.5)), catalog, two_comedies, NOON, config)
    assert verdict.item_id == "6"


def test_deferred_push_goes_to_the_users_busiest_hour_after_quiet_hours() -> None:
    hours = [0] * 24
    hours[18] = 30  # this user is active at 18:00 UTC = 19:00 in Berlin (winter)
    hours[9] = 5
    state = user(timezone="Europe/Berlin", active_hours=hours)
    night = int(datetime(2026, 11, 27, 22, tzinfo=UTC).timestamp())  # 23:00 in Berlin: quiet
    verdict = decide(state, cands(("3", 0.9)), CATALOG, [], night, CONFIG)
    assert verdict.action is Action.DEFER
    assert verdict.due_at == int(datetime(2026, 11, 28, 18, tzinfo=UTC).timestamp())
    # Too little history: the end of quiet hours (08:00 Berlin = 07:00 UTC).
    sparse = decide(user(timezone="Europe/Berlin"), cands(("3", 0.9)), CATALOG, [], night, CONFIG)
    assert sparse.due_at == int(datetime(2026, 11, 28, 7, tzinfo=UTC).timestamp())


def test_push_only_when_engagement_beats_fatigue() -> None:
    from shared.domain.engagement import Calibration, FatigueConfig, fatigue_cost

    calibration = Calibration(model_version="m", upper=[0.5, 1.0], probability=[0.01, 0.20])
    config = PolicyConfig(
        daily_push_cap=9,
        quiet_hours_start=0,
        quiet_hours_end=0,
        exploration_share=0.0,
        fatigue=FatigueConfig(base=0.03),
    )
    strong, weak = cands(("3", 0.9)), cands(("3", 0.4))
    pushed = decide(user(), strong, CATALOG, [], NOON, config, calibration=calibration)
    assert pushed.action is Action.PUSH and pushed.engagement == 0.20 and pushed.fatigue == pytest.approx(0.03)
    quiet = decide(user(), weak, CATALOG, [], NOON, config, calibration=calibration)
    assert (quiet.action, quiet.reasons) == (Action.SILENCE, [Reason.BELOW_FATIGUE])
    # A tired user: six pushes this week, most dismissed. With a fatigue cost that grows with both,
    # the strong candidate that a fresh user gets is not worth it for them.
    tiring = dataclasses.replace(config, fatigue=FatigueConfig(base=0.03, per_recent_push=0.02, dismissal_weight=0.2))
    week = [PastPush(str(90 + i), NOON - i * 86400, (f"G{i}",)) for i in range(1, 7)]
    assert decide(user(), strong, CATALOG, week, NOON, tiring, calibration=calibration).action is Action.PUSH
    tired = user(pushes_delivered=10, pushes_dismissed=9)
    assert fatigue_cost(6, 0, 0, tiring.fatigue) < 0.20 < fatigue_cost(6, 10, 9, tiring.fatigue)
    verdict = decide(tired, strong, CATALOG, week, NOON, tiring, calibration=calibration)
    assert verdict.reasons == [Reason.BELOW_FATIGUE] and verdict.fatigue == pytest.approx(0.03 + 6 * 0.02 + 0.2 * 0.9)
    # Without a calibration the model's scores are not probabilities: no engagement test at all.
    assert decide(tired, strong, CATALOG, week, NOON, tiring).action is Action.PUSH


def test_calibration_must_be_monotone() -> None:
    from pydantic import ValidationError

    from shared.domain.engagement import Calibration

    with pytest.raises(ValidationError):
        Calibration(model_version="m", upper=[0.5, 1.0], probability=[0.3, 0.1])


def test_pacing_raises_the_bar_for_each_push_already_sent_today() -> None:
    from shared.domain.engagement import Calibration, FatigueConfig

    calibration = Calibration(model_version="m", upper=[0.5, 1.0], probability=[0.25, 0.40])
    paced = PolicyConfig(
        daily_push_cap=3,
        quiet_hours_start=0,
        quiet_hours_end=0,
        exploration_share=0.0,
        fatigue=FatigueConfig(base=0.20, per_recent_push=0.0, per_push_today=0.10),
    )
    strong = cands(("3", 0.9))
    first = decide(user(), strong, CATALOG, [], NOON, paced, calibration=calibration)
    assert first.action is Action.PUSH and first.fatigue == pytest.approx(0.20)
    # One push earlier today: 0.40 still beats 0.30; two pushes today: 0.40 does not beat 0.40.
    one = [PastPush("2", NOON - 3600, ("Action",))]
    assert decide(user(), strong, CATALOG, one, NOON, paced, calibration=calibration).action is Action.PUSH
    two = [*one, PastPush("9", NOON - 1800, ("Drama",))]
    second = decide(user(), strong, CATALOG, two, NOON, paced, calibration=calibration)
    assert second.reasons == [Reason.BELOW_FATIGUE] and second.fatigue == pytest.approx(0.40)
    # Yesterday's pushes do not count toward today's pacing.
    old = [PastPush("2", NOON - 2 * 86400, ("Action",)), PastPush("9", NOON - 3 * 86400, ("Drama",))]
    assert decide(user(), strong, CATALOG, old, NOON, paced, calibration=calibration).action is Action.PUSH
