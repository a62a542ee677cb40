"""Folding events into user state: pure functions, no AWS.

The features function and the tests' reference fold both use ``apply_event``; what the
function adds is batching, deduplication against retries and the conditional write.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from shared.domain.admission import StreamPosition
from shared.domain.contract import MAX_ATTRIBUTES, BehaviourEvent, ProfileEvent
from shared.domain.user_state import (
    MAX_CONSUMED_ITEMS,
    MAX_RECENT_ITEMS,
    RecentItem,
    UserState,
)

GENRE_HALF_LIFE_SECONDS = 30 * 24 * 3600
# Affinities are kept to 6 significant digits: a ranking signal needs no more, and each value then
# takes 4 bytes of the user's hot item instead of 10 (with a catalog's 18 genres, about 100 bytes:
# the difference between 1 and 2 write units per event, docs/cost.md "User state").
AFFINITY_DIGITS = 6
# How strongly each behaviour says "I like this"; a rating scales by its value.
BEHAVIOUR_WEIGHTS = {"view": 0.2, "click": 0.5, "add_to_cart": 1.0, "purchase": 2.0}

# Behaviour that says "about to buy": worth a decision at once, whatever the interval (an abandoned
# cart is the classic push).
HIGH_INTENT = frozenset({"add_to_cart", "purchase"})

GenreLookup = Callable[[str], Sequence[str]]


def behaviour_weight(event: BehaviourEvent) -> float:
    if event.type == "rate":
        return (event.value or 0.0) / 5.0
    return BEHAVIOUR_WEIGHTS[event.type]


def already_applied(state: UserState, position: StreamPosition | None) -> bool:
    """True when a retried or overlapping batch brings a record again. Another record of the same
    event id (a producer's retry) is stopped before the fold, by admission (shared/domain/admission.py)."""
    if position is None:
        return False
    mark = state.shard_watermarks.get(position.shard_id)
    return mark is not None and int(position.sequence_number) <= int(mark)


def _remember(state: UserState, position: StreamPosition | None) -> None:
    if position is not None:
        mark = state.shard_watermarks.get(position.shard_id)
        if mark is None or int(position.sequence_number) > int(mark):
            state.shard_watermarks[position.shard_id] = position.sequence_number


def _rounded(value: float) -> float:
    return float(f"{value:.{AFFINITY_DIGITS}g}")


def _decay_affinity(state: UserState, at: int) -> float:
    """Bring affinities to time ``at`` and return the factor for a contribution made at ``at``.

    Late events (older than the reference time) are discounted instead of decaying the
    newer history backwards, so the result does not depend on arrival order much.
    """
    if at >= state.affinity_at:
        factor = math.pow(0.5, (at - state.affinity_at) / GENRE_HALF_LIFE_SECONDS)
        for genre in state.genre_affinity:
            state.genre_affinity[genre] = _rounded(state.genre_affinity[genre] * factor)
        state.affinity_at = at
        return 1.0
    return math.pow(0.5, (state.affinity_at - at) / GENRE_HALF_LIFE_SECONDS)


def _apply_behaviour(state: UserState, event: BehaviourEvent, genres_of: GenreLookup) -> None:
    ts = event.epoch_seconds
    state.recent_items.append(RecentItem(item_id=event.item_id, ts=ts, type=event.type))
    # Late events are inserted in time order; the list is nearly sorted so this is cheap.
    state.recent_items.sort(key=lambda item: item.ts)
    del state.recent_items[:-MAX_RECENT_ITEMS]
    if event.item_id not in state.consumed:
        state.consumed.append(event.item_id)
        dropped = max(0, len(state.consumed) - MAX_CONSUMED_ITEMS)
        del state.consumed[:dropped]
        # The oldest entries are the ones the profile item holds: fewer of them are there now.
        state.consumed_flushed = max(0, state.consumed_flushed - dropped)
    genres = genres_of(event.item_id)
    if genres:
        factor = _decay_affinity(state, ts)
        share = behaviour_weight(event) * factor / len(genres)
        for genre in genres:
            state.genre_affinity[genre] = _rounded(state.genre_affinity.get(genre, 0.0) + share)
    state.active_hours[datetime.fromtimestamp(ts, UTC).hour] += 1


def _apply_profile(state: UserState, event: ProfileEvent) -> None:
    if event.consent is not None:
        state.consent = event.consent
    if event.timezone is not None:
        state.timezone = event.timezone
    if event.push_token is not None:
        state.push_token = event.push_token
    if event.platform is not None:
        state.push_platform = event.platform
    for name, value in event.attributes.items():
        # Re-inserted so the dict's order is last-set first-out: the cap keeps the freshest attributes
        # and the item cannot grow with every new attribute name a producer invents.
        state.attributes.pop(name, None)
        state.attributes[name] = value
    for stale in list(state.attributes)[:-MAX_ATTRIBUTES]:
        del state.attributes[stale]


def apply_event(
    state: UserState,
    event: BehaviourEvent | ProfileEvent,
    genres_of: GenreLookup,
    position: StreamPosition | None = None,
) -> bool:
    """Apply one event in place; False (and no change) when its stream position was applied before.
    Without a position (a reference fold) every event is applied: the caller passes each id once."""
    if already_applied(state, position):
        return False
    if isinstance(event, BehaviourEvent):
        _apply_behaviour(state, event, genres_of)
    else:
        _apply_profile(state, event)
    state.counters[event.type] = state.counters.get(event.type, 0) + 1
    state.last_seen = max(state.last_seen, event.epoch_seconds)
    _remember(state, position)
    return True


def decision_request(
    asked_at: int, applied: Sequence[BehaviourEvent | ProfileEvent], interval_seconds: int
) -> int | None:
    """The event time to ask decide for a decision at, or None when this change needs none.

    A burst of clicks 20-90 s apart would otherwise cost a model run, two reads and a ledger write
    each, to reach the same verdict; one decision per interval per user keeps the verdict fresh.
    Profile changes (consent, time zone, token: rare) and high-intent behaviour always ask.
    """
    if not applied:
        return None
    newest = max(event.epoch_seconds for event in applied)
    if interval_seconds <= 0 or any(isinstance(event, ProfileEvent) or event.type in HIGH_INTENT for event in applied):
        return max(newest, asked_at)
    return newest if newest - asked_at >= interval_seconds else None
