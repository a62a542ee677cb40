"""User state <-> its DynamoDB item.

The long lists (consumed items, recent items, feedback keys, the hour histogram) are stored as
single space-separated strings (recent items with time deltas in base 36). A list attribute costs a type tag
and framing per element; packed, a user with 1,000 consumed items is one attribute, which
keeps the item (and every stream record of it) small: fewer write units per update and
much less to (de)serialise on every read. Identifiers cannot contain spaces or "|"
(see shared/domain/contract.py), so the packing is unambiguous.
"""

from __future__ import annotations

from typing import Any

from shared.adapters.dynamo_codec import from_dynamo, to_dynamo
from shared.domain.errors import PoisonRecord
from shared.domain.user_state import RecentItem, UserState

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


def encode_user_state(state: UserState) -> dict[str, Any]:
    """The item to put (boto3 resource types: floats as Decimal)."""
    item = state.model_dump(exclude_none=True)
    for name in _PACKED_LISTS:
        item[name] = pack_list(item[name])
    del item["recent_items"]
    item[_RECENT] = pack_recent(state.recent_items)
    item["active_hours"] = " ".join(str(n) for n in state.active_hours)
    # DynamoDB refuses empty strings in key attributes only, but empty values say nothing: drop them.
    return {k: v for k, v in to_dynamo(item).items() if v != ""}


def decode_user_state(item: dict[str, Any]) -> UserState:
    """From a table item or a deserialised stream image (boto3 resource types).

    An item that cannot be read (written by hand, by a bug, or by a version that packed it otherwise)
    raises PoisonRecord: no retry will read it, so the records that need it are quarantined.
    """
    try:
        return _decode(item)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise PoisonRecord("undecodable_user_state", type(exc).__name__) from exc


def _decode(item: dict[str, Any]) -> UserState:
    data = from_dynamo(item)
    for name in _PACKED_LISTS:
        data[name] = unpack_list(data.get(name))
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
    return UserState.model_validate(data)
