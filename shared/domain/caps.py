"""Which counters a push must fit in: the user's local day and ISO week, the item's cooldown, and
the global minute. The first three live in one item per user (see shared/adapters/push_counters.py).

"A day" is the user's calendar day in their own time zone, everywhere: the atomic counters bucket by
it, and the policy's early check and its fatigue term count the ledger's pushes by the same day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from shared.domain.errors import NudgeError

DAY = 24 * 3600
DAY_CAP, WEEK_CAP, ITEM_COOLDOWN = "day", "week", "item"


class CapReached(NudgeError):
    def __init__(self, cap: str) -> None:
        super().__init__(cap)
        self.cap = cap


@dataclass(frozen=True)
class Counter:
    """One cap to respect: ``key`` names the bucket (user and local day, minute...).

    A counter with an ``owner`` lives inside that owner's item (``kind`` is day, week or item and
    ``bucket`` the day, week or item id); one without is an item of its own. ``at`` is the
    decision's time, against which cooldowns are checked.
    """

    cap_name: str
    key: str
    limit: int
    expires_at: int
    owner: str = ""
    kind: str = ""
    bucket: str = ""
    at: int = 0


def local_day(at: int, timezone: str) -> str:
    """The user's calendar day at ``at`` (epoch seconds), in their time zone."""
    return f"{datetime.fromtimestamp(at, UTC).astimezone(ZoneInfo(timezone)):%Y-%m-%d}"


def pushes_on_local_day(pushed_at: Iterable[int], now: int, timezone: str) -> int:
    """How many of these pushes fall on the user's current calendar day (the daily cap's day)."""
    today = local_day(now, timezone)
    return sum(1 for at in pushed_at if at <= now and local_day(at, timezone) == today)


@dataclass(frozen=True)
class CapsConfig:
    daily: int = 3
    weekly: int = 10
    global_per_minute: int = 1000
    # One push of an item per user in this many days (an atomic guard, unlike the ledger filter).
    item_cooldown_days: int = 90


def counter_owner(user_id: str) -> str:
    """The key of the user's counter item (erasure deletes it by this key)."""
    return f"user#{user_id}"


def counters_for(user_id: str, timezone: str, now: int, caps: CapsConfig, item_id: str | None = None) -> list[Counter]:
    """Calendar buckets in the user's own time zone: "3 a day" means their day, not UTC's."""
    local = datetime.fromtimestamp(now, UTC).astimezone(ZoneInfo(timezone))
    year, week, _ = local.isocalendar()
    owner = counter_owner(user_id)
    day_bucket, week_bucket = f"{local:%Y-%m-%d}", f"{year}-W{week:02d}"
    cooldown_until = now + caps.item_cooldown_days * DAY
    item = [
        Counter("item_cooldown", f"{owner}#item#{item_id}", 1, cooldown_until, owner, ITEM_COOLDOWN, str(item_id), now)
    ]
    return (item if item_id is not None else []) + [
        # The user's item lives as long as its longest-lived bucket (the cooldown, when one is set).
        Counter("daily_cap", f"{owner}#day#{day_bucket}", caps.daily, now + 8 * DAY, owner, DAY_CAP, day_bucket, now),
        Counter(
            "weekly_cap", f"{owner}#week#{week_bucket}", caps.weekly, now + 15 * DAY, owner, WEEK_CAP, week_bucket, now
        ),
        Counter("global_rate", f"global#minute#{now // 60}", caps.global_per_minute, now + 3600),
    ]
