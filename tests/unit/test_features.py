from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.admission import StreamPosition
from shared.domain.contract import BehaviourEvent, ProfileEvent
from shared.domain.fold import GENRE_HALF_LIFE_SECONDS, apply_event, decision_request
from shared.domain.user_state import MAX_RECENT_ITEMS, UserState

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
GENRES = {"1": ["Comedy"], "2": ["Drama", "Romance"], "3": ["Comedy", "Drama"]}


def genres_of(item_id: str) -> list[str]:
    return GENRES.get(item_id, [])


def rate(event_id: str, item: str, value: float, at: datetime = T0) -> BehaviourEvent:
    return BehaviourEvent(
        schema_version=1,
        event_id=event_id,
        user_id="u1",
        timestamp=at,
        type="rate",
        item_id=item,
        value=value,
    )


def test_behaviour_updates_every_feature() -> None:
    state = UserState(user_id="u1")
    assert apply_event(state, rate("e1", "2", 5.0), genres_of)
    assert state.history() == ["2"]
    assert state.consumed == ["2"]
    assert state.counters == {"rate": 1}
    assert state.genre_affinity == pytest.approx({"Drama": 0.5, "Romance": 0.5})
    assert state.active_hours[9] == 1 and sum(state.active_hours) == 1
    assert state.last_seen == int(T0.timestamp())


def test_affinity_halves_after_one_half_life() -> None:
    state = UserState(user_id="u1")
    apply_event(state, rate("e1", "1", 5.0), genres_of)
    later = T0 + timedelta(seconds=GENRE_HALF_LIFE_SECONDS)
    apply_event(state, rate("e2", "2", 5.0, later), genres_of)
    assert state.genre_affinity["Comedy"] == pytest.approx(0.5)
    assert state.genre_affinity["Drama"] == pytest.approx(0.5)


def test_profile_sets_consent_timezone_and_token() -> None:
    state = UserState(user_id="u1")
    profile = ProfileEvent(
        schema_version=1,
        event_id="p1",
        user_id="u1",
        timestamp=T0,
        type="profile",
        consent=True,
        timezone="Asia/Tokyo",
        push_token="tok",
        attributes={"age": 30},
    )
    apply_event(state, profile, genres_of)
    assert (state.consent, state.timezone, state.push_token, state.attributes) == (
        True,
        "Asia/Tokyo",
        "tok",
        {"age": 30},
    )


def test_a_reference_fold_applies_what_it_is_given() -> None:
    # Without a stream position nothing is skipped: the state keeps no event ids, because admission
    # lets one record of an id through (tests/unit/test_admission.py) and watermarks skip its retries.
    state = UserState(user_id="u1")
    assert apply_event(state, rate("e1", "1", 4.0), genres_of)
    assert apply_event(state, rate("e1", "1", 4.0), genres_of)
    assert state.counters == {"rate": 2}


def test_replayed_stream_position_is_skipped_even_with_new_event_id() -> None:
    state = UserState(user_id="u1")
    apply_event(state, rate("e1", "1", 4.0), genres_of, StreamPosition("shard-0", "100"))
    assert not apply_event(state, rate("e2", "2", 4.0), genres_of, StreamPosition("shard-0", "99"))
    assert apply_event(state, rate("e3", "2", 4.0), genres_of, StreamPosition("shard-1", "5"))
    assert state.shard_watermarks == {"shard-0": "100", "shard-1": "5"}


def test_histories_are_bounded_and_time_ordered() -> None:
    state = UserState(user_id="u1")
    for i in range(MAX_RECENT_ITEMS + 10):
        apply_event(state, rate(f"e{i}", str(i), 3.0, T0 + timedelta(minutes=i)), genres_of)
    late = rate("late", "late-item", 3.0, T0 + timedelta(minutes=MAX_RECENT_ITEMS + 5, seconds=30))
    apply_event(state, late, genres_of)
    assert len(state.recent_items) == MAX_RECENT_ITEMS
    timestamps = [item.ts for item in state.recent_items]
    assert timestamps == sorted(timestamps)
    assert "late-item" in state.history()


def test_user_state_survives_the_packed_item_format() -> None:
    from shared.adapters.user_state_codec import decode_user_state, encode_items

    state = UserState(user_id="u1", consent=True, push_token="t", timezone="Asia/Tokyo")
    for i in range(60):
        apply_event(
            state, rate(f"e{i}", f"item:{i}", 4.5, T0 + timedelta(hours=i)), genres_of, StreamPosition("s", str(i))
        )
    state.feedback_seen = ["d1:opened"]
    hot, profile = encode_items(state, "features")
    assert isinstance(profile["consumed"], str) and isinstance(hot["recent"], str)
    stored = state.model_copy(update={"profile_version": 1, "consumed_flushed": 60})
    assert decode_user_state(hot, profile) == stored
    new = UserState(user_id="new")
    assert decode_user_state(*encode_items(new, "features")) == new.model_copy(update={"profile_version": 1})


def test_recent_items_are_stored_as_time_deltas_and_read_back_exactly() -> None:
    from shared.adapters.user_state_codec import decode_user_state, encode_hot

    state = UserState(user_id="u1")
    for i, kind in enumerate(("view", "click", "add_to_cart", "purchase", "rate")):
        event = rate(f"e{i}", f"item-{i}", 4.0, T0 + timedelta(seconds=37 * i))
        apply_event(state, event.model_copy(update={"type": kind, "value": 4.0 if kind == "rate" else None}), genres_of)
    item = encode_hot(state)
    first = int(T0.timestamp())
    assert item["recent"].split()[:2] == [f"item-0|{base36(first)}|v", "item-1|11|c"]  # 37 s = "11"
    assert len(item["recent"]) <= 0.5 * len(" ".join(f"{r.item_id}|{r.ts}|{r.type}" for r in state.recent_items))
    assert decode_user_state(item).recent_items == state.recent_items
    # Items written before the compact form (absolute times, full names) still read.
    legacy = dict(item)
    del legacy["recent"]
    legacy["recent_items"] = " ".join(f"{r.item_id}|{r.ts}|{r.type}" for r in state.recent_items)
    assert decode_user_state(legacy).recent_items == state.recent_items


def base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, d = divmod(n, 36)
        out = digits[d] + out
    return out


def test_an_item_written_with_event_ids_reads_without_them() -> None:
    from shared.adapters.user_state_codec import decode_user_state, encode_hot

    state = UserState(user_id="u1")
    apply_event(state, rate("e1", "1", 3.0), genres_of, StreamPosition("s", "7"))
    item = encode_hot(state)
    assert "recent_event_marks" not in item and "recent_event_ids" not in item
    for retired in ({"recent_event_marks": "AAAAAAAAAAA="}, {"recent_event_ids": "e0 e1"}):
        assert decode_user_state(item | retired) == state


def _behaviour(event_id: str, kind: str, at: datetime) -> BehaviourEvent:
    return BehaviourEvent(schema_version=1, event_id=event_id, user_id="u1", timestamp=at, type=kind, item_id="1")


def test_a_decision_is_asked_at_most_once_per_interval() -> None:
    asked = int(T0.timestamp())
    within = [_behaviour("v1", "view", T0 + timedelta(seconds=299))]
    after = [_behaviour("v2", "click", T0 + timedelta(seconds=300))]
    assert decision_request(asked, within, 300) is None
    assert decision_request(asked, after, 300) == asked + 300
    assert decision_request(asked, within, 0) == asked + 299  # 0: every change asks
    assert decision_request(0, within, 300) == asked + 299  # never asked before
    assert decision_request(asked, [], 300) is None  # nothing applied (all duplicates)


def test_carts_purchases_and_profile_changes_always_ask() -> None:
    asked = int(T0.timestamp())
    soon = T0 + timedelta(seconds=30)
    for kind in ("add_to_cart", "purchase"):
        assert decision_request(asked, [_behaviour("c", kind, soon)], 300) == asked + 30
    consent = ProfileEvent(schema_version=1, event_id="p", user_id="u1", timestamp=soon, type="profile", consent=True)
    assert decision_request(asked, [consent], 300) == asked + 30
    # A late event never moves the last ask backwards.
    late = T0 - timedelta(hours=1)
    assert decision_request(asked, [_behaviour("c", "purchase", late)], 300) == asked
