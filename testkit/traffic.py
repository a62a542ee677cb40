"""The traffic kit: what apps put on the stream, for every scenario (tests, demo, reliability, cost).

Events: ``profile`` and ``behaviour`` (a user opening the app, then a few views and ratings),
``app_sessions`` (synthetic days of sessions at local daytime hours), the MovieLens-100k catalog,
profiles and ratings (``catalog_items``, ``profile_event``, ``rating_events``), and ``with_profiles``
(each user's profile a second before their first event). Records: ``Record`` is one thing put on
the stream (an event's wire JSON, or bytes), ``records_of`` makes them, and ``with_noise`` mixes in
producer mistakes (``malformed``) and producer retries (duplicates).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared.domain.catalog import CatalogItem
from shared.domain.contract import AnyEvent, BehaviourEvent, FeedbackEvent, Platform, ProfileEvent, UserEvent
from training.movielens import Interactions, Item, User

VIEW_RATE = ("view", "rate")


def profile(
    user: str,
    at: datetime,
    *,
    tag: str | None = None,
    consent: bool = True,
    timezone: str = "UTC",
    attributes: Mapping[str, Any] | None = None,
    platform: Platform | None = None,
) -> ProfileEvent:
    """``tag`` names the event id and push token (default: the user id; something opaque to hide it);
    ``platform`` is the device's push service (endpoint mode needs it)."""
    name = tag or user
    return ProfileEvent(
        schema_version=1,
        event_id=f"p-{name}",
        user_id=user,
        timestamp=at,
        type="profile",
        consent=consent,
        timezone=timezone,
        push_token=f"tok-{name}",
        platform=platform,
        attributes=dict(attributes or {}),
    )


def outcome(user: str, event_id: str, kind: str, decision_id: str, at: datetime) -> FeedbackEvent:
    """A device's answer to a push (delivered, opened, dismissed, converted), as feedback receives it."""
    return FeedbackEvent(
        schema_version=1, event_id=event_id, user_id=user, timestamp=at, type=kind, decision_id=decision_id
    )


def behaviour(
    user: str,
    n: int,
    at: datetime,
    items: Sequence[str],
    *,
    tag: str | None = None,
    kinds: Sequence[str] = VIEW_RATE,
    item_offset: int | None = None,
    spacing: timedelta = timedelta(minutes=1),
) -> list[BehaviourEvent]:
    """``n`` events ``spacing`` apart cycling through ``kinds`` (a rating is 4 stars), over ``items``."""
    offset = len(user) if item_offset is None else item_offset
    return [
        BehaviourEvent(
            schema_version=1,
            event_id=f"{tag or user}-b{k}",
            user_id=user,
            timestamp=at + k * spacing,
            type=kinds[k % len(kinds)],
            item_id=items[(k * 3 + offset) % len(items)],
            value=4.0 if kinds[k % len(kinds)] == "rate" else None,
        )
        for k in range(n)
    ]


# ---------------------------------------------------------------- synthetic days of app sessions

SESSION_TIMEZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo")
SESSION_KINDS = ("view", "view", "view", "click", "click", "rate", "add_to_cart", "purchase")


def app_sessions(
    users: int, days: int, per_day: int, items: Sequence[str], t0: datetime, seed: int = 7
) -> list[UserEvent]:
    """A profile per user at ``t0``, then each day one or two sessions at a local daytime hour:
    ``per_day`` events 20-90 s apart, 70 % over the user's 40 favourite items. UUID event ids,
    as producers send them. In time order."""
    rng = random.Random(seed)
    events: list[UserEvent] = []
    for u in range(users):
        uid, zone = f"u{u}", SESSION_TIMEZONES[u % len(SESSION_TIMEZONES)]
        events.append(profile(uid, t0, timezone=zone))
        favourites = rng.sample(list(items), min(40, len(items)))
        k = 0
        for day in range(days):
            sessions = rng.choice([1, 1, 2])
            for s in range(sessions):
                hour = rng.randint(9, 19) if s == 0 else rng.randint(12, 20)
                midnight = datetime.combine((t0 + timedelta(days=day)).date(), datetime.min.time(), ZoneInfo(zone))
                at = max((midnight + timedelta(hours=hour, minutes=rng.randint(0, 59))).astimezone(UTC), t0)
                for _ in range(max(1, per_day // sessions)):
                    at += timedelta(seconds=rng.randint(20, 90))
                    kind = rng.choice(SESSION_KINDS)
                    events.append(
                        BehaviourEvent(
                            schema_version=1,
                            event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"nudge-cost/{uid}/{k}")),
                            user_id=uid,
                            timestamp=at,
                            type=kind,
                            item_id=rng.choice(favourites if rng.random() < 0.7 else list(items)),
                            value=float(rng.randint(1, 5)) if kind == "rate" else None,
                        )
                    )
                    k += 1
    events.sort(key=lambda e: (e.timestamp, e.event_id))
    return events


# ---------------------------------------------------------------- MovieLens-100k as Nudge sees it

# A rough US time zone from the first zip digit; good enough to place quiet hours.
_ZIP_TIMEZONES = dict.fromkeys("0123", "America/New_York") | dict.fromkeys("4567", "America/Chicago")
_ZIP_TIMEZONES |= {"8": "America/Denver", "9": "America/Los_Angeles"}


def timezone_for_zip(zip_code: str) -> str:
    # Non-US postcodes in u.user (Canadian ones start with letters) fall back to UTC.
    return _ZIP_TIMEZONES.get(zip_code[:1], "UTC")


def catalog_items(items: Iterable[Item]) -> list[CatalogItem]:
    return [CatalogItem(item_id=i.item_id, title=i.title, genres=list(i.genres)) for i in items]


def profile_event(user: User, at: datetime) -> ProfileEvent:
    return ProfileEvent(
        schema_version=1,
        event_id=f"ml-profile-{user.user_id}",
        user_id=user.user_id,
        timestamp=at,
        type="profile",
        consent=True,
        timezone=timezone_for_zip(user.zip),
        # Synthetic token: the demo's "devices" are the outbox queue.
        push_token=f"demo-token-{user.user_id}",
        attributes={"age": user.age, "gender": user.gender, "occupation": user.occupation},
    )


def rating_events(ratings: Interactions) -> Iterator[BehaviourEvent]:
    """One ``rate`` event per rating, in time order (stable, file order breaks ties)."""
    ordered = ratings.sorted_by_time()
    for user, item, rating, ts in zip(
        ordered.user.tolist(), ordered.item.tolist(), ordered.rating.tolist(), ordered.timestamp.tolist(), strict=True
    ):
        yield BehaviourEvent(
            schema_version=1,
            # Deterministic ids: a re-run replay produces the same events (and dedups the same way).
            event_id=f"ml-{user}-{item}-{ts}",
            user_id=str(user),
            timestamp=datetime.fromtimestamp(ts, UTC),
            type="rate",
            item_id=str(item),
            value=float(rating),
        )


def with_profiles(events: Iterable[BehaviourEvent], users: Iterable[User]) -> list[UserEvent]:
    """The app reports consent, time zone and token when the user opens it: each user's profile a
    second before their first event (not all at the start, which would push to users who are not
    around). In time order; a user without a profile in ``users`` gets none."""
    by_id = {u.user_id: u for u in users}
    out: list[UserEvent] = []
    seen: set[str] = set()
    for event in events:
        if event.user_id not in seen and event.user_id in by_id:
            out.append(profile_event(by_id[event.user_id], event.timestamp - timedelta(seconds=1)))
        seen.add(event.user_id)
        out.append(event)
    return out


# ---------------------------------------------------------------- records on the stream


@dataclass(frozen=True)
class Record:
    """One record to put: due at ``at`` (epoch seconds), partition key ``key``, the valid event it
    carries (None for malformed bytes) and what it is: event, feedback, duplicate or malformed."""

    at: int
    data: dict[str, Any] | bytes
    key: str
    event: AnyEvent | None
    kind: str = "event"


def wire(event: AnyEvent) -> dict[str, Any]:
    """An event as a producer sends it (JSON, no nulls)."""
    out: dict[str, Any] = json.loads(event.model_dump_json(exclude_none=True))
    return out


def records_of(events: Iterable[AnyEvent]) -> list[Record]:
    return [
        Record(e.epoch_seconds, wire(e), e.partition_key, e, "feedback" if isinstance(e, FeedbackEvent) else "event")
        for e in events
    ]


def malformed(n: int, at: datetime) -> bytes:
    """A rotating set of producer mistakes, all of which must end in quarantine."""
    stamp = at.isoformat()
    cases: list[bytes] = [
        b"rating,196,242,3",
        json.dumps({"schema_version": 2, "event_id": f"bad-{n}", "type": "rate"}).encode(),
        json.dumps(
            {"schema_version": 1, "event_id": f"bad-{n}", "user_id": "1", "type": "like", "timestamp": stamp}
        ).encode(),
        json.dumps({"schema_version": 1, "event_id": f"bad-{n}", "type": "view", "timestamp": stamp}).encode(),
        b"\xc3\x28 not utf-8",
    ]
    return cases[n % len(cases)]


def with_noise(records: Iterable[Record], *, malformed_every: int = 0, duplicate_every: int = 0) -> list[Record]:
    """After every ``malformed_every``-th record a malformed one (same key and time), after every
    ``duplicate_every``-th a producer retry of it (the same event again). 0 turns either off."""
    out: list[Record] = []
    for n, record in enumerate(records, start=1):
        out.append(record)
        if malformed_every and n % malformed_every == 0:
            bad = malformed(n // malformed_every, datetime.fromtimestamp(record.at, UTC))
            out.append(Record(record.at, bad, record.key, None, "malformed"))
        if duplicate_every and n % duplicate_every == 0 and record.event is not None:
            out.append(Record(record.at, record.data, record.key, record.event, "duplicate"))
    return out
