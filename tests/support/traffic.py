"""Profile and behaviour events for pipeline tests: one user's app opening, then a few ratings and views."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from shared.domain.contract import BehaviourEvent, ProfileEvent


def profile(user: str, at: datetime, *, tag: str | None = None, consent: bool = True) -> ProfileEvent:
    """``tag`` names the event id and push token (default: the user id; something opaque to hide it)."""
    name = tag or user
    return ProfileEvent(
        schema_version=1,
        event_id=f"p-{name}",
        user_id=user,
        timestamp=at,
        type="profile",
        consent=consent,
        timezone="UTC",
        push_token=f"tok-{name}",
    )


def behaviour(user: str, n: int, at: datetime, items: Sequence[str], *, tag: str | None = None) -> list[BehaviourEvent]:
    """``n`` events a minute apart, alternating view and rate (4 stars), over ``items``."""
    return [
        BehaviourEvent(
            schema_version=1,
            event_id=f"{tag or user}-b{k}",
            user_id=user,
            timestamp=at + timedelta(minutes=k),
            type="rate" if k % 2 else "view",
            item_id=items[(k * 3 + len(user)) % len(items)],
            value=4.0 if k % 2 else None,
        )
        for k in range(n)
    ]
