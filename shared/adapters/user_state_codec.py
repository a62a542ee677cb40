"""User state <-> its two DynamoDB items.

**Two items per user** (issue 16). Every behaviour event rewrites the user's state, and DynamoDB bills
a write by the started KB of the larger of the item before and after, so the item every event writes
holds only what every event changes or decide needs on every trigger, and stays under 1 KB for a
typical user: the **hot item** (key ``<user id>``: history, counters, active hours, genre affinities,
the shard watermarks, the decision bookkeeping and the newest consumed items). What changes rarely
is the **profile item** in the same table (key ``<user id>#profile``; "#" is not allowed in a user id,
shared/domain/contract.py): consent, time zone, push token and delivery's endpoint records,
attributes, the push-outcome counters and keys feedback keeps, and the consumed items but the newest.
It is written when a profile event arrives, when feedback counts an outcome, when delivery records an
endpoint, and when the consumed items riding in the hot item pass CONSUMED_TAIL_BYTES (then they move
to the profile item in one write). It carries no ``asks_decision``, so decide's stream filter never
passes its changes. A user's state is the hot item with the profile item's fields over it.

**Read old, write new.** An item written before the split holds everything under the user id. It is
read as it is (no profile item: all its fields count); the next write of that user writes the
profile item from it (features' save, feedback's count, delivery's record) and the next fold's put
replaces the old item by a hot one. Once a profile item exists, its fields win over any left in the
hot item.

The long lists (consumed items, recent items, feedback keys, the hour histogram) are stored as
single space-separated strings (recent items with time deltas in base 36). A list attribute costs a type tag
and framing per element; packed, a user with 1,000 consumed items is one attribute, which
keeps the item (and every stream record of it) small: fewer write units per update and
much less to (de)serialise on every read. Identifiers cannot contain spaces or "|"
(see shared/domain/contract.py), so the packing is unambiguous.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from typing import Any

from shared.adapters.dynamo_codec import from_dynamo, to_dynamo
from shared.domain.errors import PoisonRecord
from shared.domain.user_state import MAX_CONSUMED_ITEMS, RecentItem, UserState

PROFILE_SUFFIX = "#profile"
# Written by feedback's count and by delivery (the device's SNS endpoint, a token the platform refused):
# no event folds into them.
FEEDBACK_FIELDS = frozenset(
    {"pushes_delivered", "pushes_opened", "pushes_dismissed", "pushes_converted", "last_feedback_at", "feedback_seen"}
)
DELIVERY_FIELDS = frozenset({"push_endpoint", "push_endpoint_token", "push_token_disabled"})
# The fields the profile item holds (and ``consumed``, but its newest entries).
PROFILE_FIELDS = (
    frozenset({"timezone", "consent", "push_token", "push_platform", "attributes"}) | FEEDBACK_FIELDS | DELIVERY_FIELDS
)
# Where the state is stored, kept on the state but in no item as such.
PLACEMENT_FIELDS = frozenset({"profile_version", "consumed_flushed"})
# Packed consumed items the hot item may carry before they move to the profile item: with short
# catalog ids (MovieLens: 1-4 digits) 12-30 new items, so the profile item is rewritten about once
# per 20 behaviour events of a typical user, and the hot item keeps 1 KB even with a catalog's genres
# (docs/cost.md, "User state": 128 bytes left a genre-rich user's item 30 bytes over).
CONSUMED_TAIL_BYTES = 64

# ``profile_version`` of a state read from its hot item alone (features reads the profile item only
# when it writes it): the user has a profile item, not read. shared/adapters/user_state_store.py
# reads it before writing it, and its put stays conditional on the version it read.
PROFILE_UNREAD = -1

_PACKED_LISTS = ("consumed", "feedback_seen")
# What items written before the event-id registry kept of the user's last event ids (fingerprints, or
# before those the ids themselves): read past, never written (see UserState.shard_watermarks).
_RETIRED = ("recent_event_marks", "recent_event_ids")
# The model's history as "item|dt|k": dt the seconds since the previous entry in base 36 (the first
# since the epoch), k one letter for the behaviour. About 9 bytes an entry instead of 21, which
# takes a typical user from 3 write units per event to 2.
_RECENT = "recent"
_KIND_CODES = {"view": "v", "click": "c", "add_to_cart": "a", "purchase": "p", "rate": "r"}
_KINDS = {code: kind for kind, code in _KIND_CODES.items()}
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def pack_list(values: list[str]) -> str:
    return " ".join(values)


def unpack_list(packed: Any) -> list[str]:
    if isinstance(packed, list):  # items written before packing, or by hand
        return [str(v) for v in packed]
    return str(packed or "").split()


def _base36(n: int) -> str:
    if n < 0:
        return "-" + _base36(-n)
    out = ""
    while True:
        n, digit = divmod(n, 36)
        out = _DIGITS[digit] + out
        if n == 0:
            return out


def pack_recent(items: list[RecentItem]) -> str:
    entries, previous = [], 0
    for item in items:
        entries.append(f"{item.item_id}|{_base36(item.ts - previous)}|{_KIND_CODES.get(item.type, item.type)}")
        previous = item.ts
    return " ".join(entries)


def unpack_recent(packed: str) -> list[RecentItem]:
    items, at = [], 0
    for entry in packed.split():
        item_id, delta, kind = entry.split("|")
        at += int(delta, 36)
        items.append(RecentItem(item_id=item_id, ts=at, type=_KINDS.get(kind, kind)))
    return items


def profile_key(user_id: str) -> str:
    return user_id + PROFILE_SUFFIX


def is_profile_key(key: str) -> bool:
    return key.endswith(PROFILE_SUFFIX)


def _packed(data: dict[str, Any]) -> dict[str, Any]:
    # DynamoDB refuses empty strings in key attributes only, but empty values say nothing: drop them.
    return {k: v for k, v in to_dynamo(data).items() if v != ""}


def encode_hot(state: UserState) -> dict[str, Any]:
    """The hot item to put (boto3 resource types: floats as Decimal)."""
    item = state.model_dump(exclude_none=True, exclude=set(PROFILE_FIELDS | PLACEMENT_FIELDS | {"recent_items"}))
    item["consumed"] = pack_list(state.consumed[state.consumed_flushed :])
    item[_RECENT] = pack_recent(state.recent_items)
    item["active_hours"] = " ".join(str(n) for n in state.active_hours)
    return _packed(item)


def encode_profile(state: UserState, version: int, writer: str) -> dict[str, Any]:
    """The profile item to put, holding all of ``consumed``, at ``version`` (at least 1)."""
    item = state.model_dump(exclude_none=True, include=set(PROFILE_FIELDS))
    item["feedback_seen"] = pack_list(state.feedback_seen)
    item.update(user_id=profile_key(state.user_id), version=version, last_writer=writer)
    item["consumed"] = pack_list(state.consumed)
    return _packed(item)


def encode_items(state: UserState, writer: str) -> list[dict[str, Any]]:
    """Both items of a state, as a first write stores them (a backfill, a fake table)."""
    version = max(1, state.profile_version)
    return [
        encode_hot(state.model_copy(update={"consumed_flushed": len(state.consumed)})),
        encode_profile(state, version, writer),
    ]


def tail_is_full(state: UserState) -> bool:
    """Whether the consumed items riding in the hot item should move to the profile item now."""
    return len(pack_list(state.consumed[state.consumed_flushed :])) > CONSUMED_TAIL_BYTES


def decode_user_state(item: dict[str, Any], profile: dict[str, Any] | None = None) -> UserState:
    """From a hot item (or one written before the split) and the user's profile item when there is
    one, as table items or deserialised stream images (boto3 resource types).

    An item that cannot be read (written by hand, by a bug, or by a version that packed it otherwise)
    raises PoisonRecord: no retry will read it, so the records that need it are quarantined.
    """
    try:
        return _decode(item, profile)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise PoisonRecord("undecodable_user_state", type(exc).__name__) from exc


def with_profile(state: UserState, profile: dict[str, Any] | None) -> UserState:
    """A state read from the hot item alone (a stream image, a read that left the profile item out)
    completed with the profile item; without one, the state is the user's whole state (version 0)."""
    if profile is None:
        return state.model_copy(update={"profile_version": 0}) if state.profile_version == PROFILE_UNREAD else state
    return decode_user_state(encode_hot(state), profile)


def holds_profile_fields(item: dict[str, Any]) -> bool:
    """Whether an item is one written before the split (the hot item never holds these)."""
    return not PROFILE_FIELDS.isdisjoint(item)


def states_of(
    items: Iterable[dict[str, Any]], profiles_unread: Container[str] = frozenset()
) -> dict[str, UserState | PoisonRecord]:
    """The states held by a set of items (a batch read, a scan), each user's two items together;
    a user whose items cannot be read maps to the PoisonRecord saying so.

    ``profiles_unread``: users whose profile item was left out of the read. Their hot item alone is
    their state with ``profile_version`` PROFILE_UNREAD, unless it is an item written before the split
    (it holds everything; version 0, as for a user with no profile item)."""
    hot: dict[str, dict[str, Any]] = {}
    profiles: dict[str, dict[str, Any]] = {}
    for item in items:
        key = str(item["user_id"])
        if is_profile_key(key):
            profiles[key.removesuffix(PROFILE_SUFFIX)] = item
        else:
            hot[key] = item
    out: dict[str, UserState | PoisonRecord] = {}
    for user_id in hot.keys() | profiles.keys():
        # A profile item without its hot item: the first fold's put did not land; the profile stands.
        try:
            item = hot.get(user_id, {"user_id": user_id})
            state = decode_user_state(item, profiles.get(user_id))
            if user_id in profiles_unread and not holds_profile_fields(item):
                state.profile_version = PROFILE_UNREAD
            out[user_id] = state
        except PoisonRecord as poison:
            out[user_id] = poison
    return out


def _fields(item: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = from_dynamo(item)
    for name in _PACKED_LISTS:
        if name in data:
            data[name] = unpack_list(data[name])
    for name in _RETIRED:
        data.pop(name, None)
    recent = data.get("recent_items")
    if _RECENT in data:
        data["recent_items"] = unpack_recent(str(data.pop(_RECENT)))
    elif isinstance(recent, str):  # written before the compact form: absolute times, full names
        data["recent_items"] = [
            RecentItem(item_id=item_id, ts=int(ts), type=kind)
            for item_id, ts, kind in (entry.split("|") for entry in recent.split())
        ]
    elif recent is None:
        data["recent_items"] = []
    hours = data.get("active_hours")
    if isinstance(hours, str):
        data["active_hours"] = [int(n) for n in hours.split()]
    elif hours is None:
        data.pop("active_hours", None)
    data.pop("due_shard", None)
    for name in PLACEMENT_FIELDS:
        data.pop(name, None)
    return data


def _decode(item: dict[str, Any], profile: dict[str, Any] | None) -> UserState:
    data = _fields(item)
    if profile is not None:
        cold = _fields(profile)
        version = int(cold["version"])
        if version < 1:
            raise ValueError("profile item version below 1")
        for name in PROFILE_FIELDS:
            data.pop(name, None)
            if name in cold:
                data[name] = cold[name]
        # The hot item's consumed items are the newer ones; after a crash between the two puts of a
        # flush they may be in both, and are counted once.
        archived: list[str] = cold.get("consumed", [])
        known = set(archived)
        merged = list(archived)
        for item_id in data.get("consumed", []):
            if item_id not in known:
                known.add(item_id)
                merged.append(item_id)
        dropped = max(0, len(merged) - MAX_CONSUMED_ITEMS)
        data.update(
            consumed=merged[dropped:], consumed_flushed=max(0, len(archived) - dropped), profile_version=version
        )
    return UserState.model_validate(data)
