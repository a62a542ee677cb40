"""Which counters a push must fit in: the user's local day and ISO week, and the global minute."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from shared.adapters.push_counters import Counter

DAY = 24 * 3600


@dataclass(frozen=True)
class CapsConfig:
    daily: int = 3
    weekly: int = 10
    global_per_minute: int = 1000
    # One push of an item per user in this many days (an atomic guard, unlike the ledger filter).
    item_cooldown_days: int = 90


def counters_for(user_id: str, timezone: str, now: int, caps: CapsConfig, item_id: str | None = None) -> list[Counter]:
    """Calendar buckets in the user's own time zone: "3 a day" means their day, not UTC's."""
    local = datetime.fromtimestamp(now, UTC).astimezone(ZoneInfo(timezone))
    year, week, _ = local.isocalendar()
    item = [Counter("item_cooldown", f"user#{user_id}#item#{item_id}", 1, now + caps.item_cooldown_days * DAY)]
    return (item if item_id is not None else []) + [
        Counter("daily_cap", f"user#{user_id}#day#{local:%Y-%m-%d}", caps.daily, now + 2 * DAY),
        Counter("weekly_cap", f"user#{user_id}#week#{year}-W{week:02d}", caps.weekly, now + 8 * DAY),
        Counter("global_rate", f"global#minute#{now // 60}", caps.global_per_minute, now + 3600),
    ]
