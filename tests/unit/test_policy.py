from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.adapters.catalog import CatalogItem
from shared.decision import Action, Reason
from shared.model import Recommendation
from shared.policy import PastPush, PolicyConfig, decide, in_quiet_hours, quiet_hours_end_after
from shared.user_state import RecentItem, UserState

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


def test_daily_cap_counts_only_the_last_24_hours() -> None:
    two_today = [PastPush("2", NOON - 3600), PastPush("9", NOON - 7200)]
    assert decide(user(), cands(("3", 0.9)), CATALOG, two_today, NOON, CONFIG).reasons == [Reason.DAILY_CAP]
    one_today = [PastPush("2", NOON - 3600), PastPush("9", NOON - 25 * 3600)]
    assert decide(user(), cands(("3", 0.9)), CATALOG, one_today, NOON, CONFIG).action is Action.PUSH


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
