"""The user state's two items (shared/adapters/user_state_codec.py): sizes, and what goes where."""

from __future__ import annotations

from bench.cost_meter import item_size, typed
from bench.state_size import fold_users
from shared.adapters.user_state_codec import (
    CONSUMED_TAIL_BYTES,
    PROFILE_FIELDS,
    decode_user_state,
    encode_hot,
    encode_items,
    encode_profile,
    states_of,
    tail_is_full,
    with_profile,
)
from shared.domain.user_state import MAX_CONSUMED_ITEMS, UserState


def test_a_typical_user_writes_one_unit_per_event() -> None:
    # The cost replay's users (bench/cost_model.py), folded and saved one event at a time.
    sizes = fold_users(users=12, days=2, per_day=30)
    assert max(item_size(typed(item)) for item in sizes.hot) < 1024
    # The profile item is written for each user's profile event and then once per ~15 new items.
    assert sizes.profile_writes <= sizes.saves / 15
    assert sizes.write_units / sizes.saves < 1.1


def test_the_hot_item_holds_nothing_that_moved() -> None:
    state = UserState(user_id="u1", consent=True, push_token="t", pushes_delivered=3, feedback_seen=["d:opened"])
    state.consumed, state.consumed_flushed = ["1", "2", "3"], 2
    hot, profile = encode_hot(state), encode_profile(state, 4, "features")
    assert not PROFILE_FIELDS & hot.keys() and hot["consumed"] == "3"
    assert profile["user_id"] == "u1#profile" and profile["version"] == 4 and profile["consumed"] == "1 2 3"
    assert "asks_decision" not in profile and "recent" not in profile


def test_the_profile_item_wins_over_what_an_old_item_left_in_the_hot_one() -> None:
    old = UserState(user_id="u1", consent=True, push_token="old", pushes_delivered=1, consumed=["1", "2"])
    hot = encode_hot(old.model_copy(update={"consumed_flushed": 0})) | {"consent": True, "push_token": "old"}
    current = old.model_copy(update={"consent": False, "push_token": "new", "consumed": ["1", "2", "5"]})
    state = decode_user_state(hot, encode_profile(current, 2, "feedback"))
    assert (state.consent, state.push_token, state.profile_version) == (False, "new", 2)
    # The hot item's consumed items ("1 2", left by a crash before its put) are counted once.
    assert state.consumed == ["1", "2", "5"] and state.consumed_flushed == 3


def test_consumed_items_move_to_the_profile_item_when_enough_gather() -> None:
    state = UserState(user_id="u1", consumed=[f"item-{i}" for i in range(36)], consumed_flushed=30)
    assert not tail_is_full(state)  # 6 ids riding in the hot item: 47 bytes packed
    state.consumed += [f"item-{i}" for i in range(36, 40)]
    assert len(" ".join(state.consumed[30:])) > CONSUMED_TAIL_BYTES and tail_is_full(state)


def test_the_oldest_consumed_items_drop_from_both_items_alike() -> None:
    full = [str(i) for i in range(MAX_CONSUMED_ITEMS)]
    state = UserState(user_id="u1", consumed=full, consumed_flushed=MAX_CONSUMED_ITEMS)
    hot, profile = encode_items(state, "features")
    newer = decode_user_state(hot, profile)
    newer.consumed += ["new-1", "new-2"]
    newer.consumed_flushed = MAX_CONSUMED_ITEMS  # as stored: the two new ones ride in the hot item
    read = decode_user_state(encode_hot(newer), profile)
    assert read.consumed == [*full[2:], "new-1", "new-2"] and read.consumed_flushed == MAX_CONSUMED_ITEMS - 2


def test_a_stream_image_is_completed_with_the_profile_item() -> None:
    state = UserState(user_id="u1", version=7, consent=True, push_token="t", consumed=["1"])
    hot, profile = encode_items(state, "features")
    image = decode_user_state(hot)  # what decide reads from the stream: no consent, no token
    assert not image.consent and image.push_token is None
    assert with_profile(image, profile) == state.model_copy(update={"profile_version": 1, "consumed_flushed": 1})
    # A user without a profile item (an old item's image) is taken as it is.
    assert with_profile(image, None) is image


def test_a_scan_pairs_each_users_items() -> None:
    a, b = UserState(user_id="a", consent=True), UserState(user_id="b", timezone="Asia/Tokyo")
    items = [*encode_items(a, "features"), *encode_items(b, "features"), {"user_id": "c", "version": 2}]
    states = states_of(items)
    assert set(states) == {"a", "b", "c"}
    sa, sb, sc = states["a"], states["b"], states["c"]
    assert isinstance(sa, UserState) and isinstance(sb, UserState) and isinstance(sc, UserState)
    assert sa.consent and sb.timezone == "Asia/Tokyo" and sc.version == 2 and sc.profile_version == 0
