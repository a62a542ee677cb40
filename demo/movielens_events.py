"""MovieLens-100k as Nudge sees it: catalog items, profile events and behaviour events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from shared.domain.catalog import CatalogItem
from shared.domain.contract import BehaviourEvent, ProfileEvent
from training.movielens import Interactions, Item, User

# A rough US time zone from the first zip digit; good enough to place quiet hours.
_ZIP_TIMEZONES = {
    "0": "America/New_York",
    "1": "America/New_York",
    "2": "America/New_York",
    "3": "America/New_York",
    "4": "America/Chicago",
    "5": "America/Chicago",
    "6": "America/Chicago",
    "7": "America/Chicago",
    "8": "America/Denver",
    "9": "America/Los_Angeles",
}


def timezone_for_zip(zip_code: str) -> str:
    first = zip_code[:1]
    # Non-US postcodes in u.user (Canadian ones start with letters) fall back to UTC.
    return _ZIP_TIMEZONES.get(first, "UTC")


def catalog_items(items: list[Item]) -> list[CatalogItem]:
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
        ordered.user.tolist(),
        ordered.item.tolist(),
        ordered.rating.tolist(),
        ordered.timestamp.tolist(),
        strict=True,
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
