"""The first push policy: pure rules over user state, model candidates and past pushes.

Order matters and is part of the contract: consent, a token, something worth pushing,
the score threshold, the daily cap, then quiet hours (which defer rather than drop).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from shared.adapters.catalog import CatalogItem
from shared.decision import Action, Reason
from shared.model import Recommendation
from shared.user_state import UserState

DAY_SECONDS = 24 * 3600


@dataclass(frozen=True)
class PolicyConfig:
    daily_push_cap: int = 3
    score_threshold: float = 0.0
    quiet_hours_start: int = 21
    quiet_hours_end: int = 8


@dataclass(frozen=True)
class PastPush:
    item_id: str
    decided_at: int


@dataclass(frozen=True)
class Verdict:
    action: Action
    reasons: list[Reason]
    item_id: str | None = None
    score: float | None = None
    due_at: int | None = None
    supporting_items: list[str] = field(default_factory=list)


def in_quiet_hours(local_hour: int, start: int, end: int) -> bool:
    if start == end:
        return False
    if start < end:
        return start <= local_hour < end
    return local_hour >= start or local_hour < end


def quiet_hours_end_after(now: int, timezone: str, end_hour: int) -> int:
    """The first moment at or after ``now`` when the local clock reads ``end_hour``:00."""
    tz = ZoneInfo(timezone)
    local = datetime.fromtimestamp(now, UTC).astimezone(tz)
    target = local.replace(hour=end_hour, minute=0, second=0, microsecond=0)
    if target <= local:
        target = (local + timedelta(days=1)).replace(hour=end_hour, minute=0, second=0, microsecond=0)
    return int(target.astimezone(UTC).timestamp())


def supporting_history(state: UserState, item: CatalogItem | None, catalog: Mapping[str, CatalogItem]) -> list[str]:
    """History items that best explain a push: the most recent ones sharing a genre with it.

    A heuristic attribution (the co-occurrence model has no attention weights to show);
    it falls back to the most recent item so every push can say "Because you ...".
    """
    history = list(reversed(state.history()))
    wanted = set(item.genres) if item else set()
    sharing = [h for h in history if h in catalog and wanted & set(catalog[h].genres)]
    chosen = sharing[:3] or history[:1]
    return list(dict.fromkeys(chosen))


def decide(
    state: UserState,
    candidates: Sequence[Recommendation],
    catalog: Mapping[str, CatalogItem],
    past_pushes: Sequence[PastPush],
    now: int,
    config: PolicyConfig,
) -> Verdict:
    if not state.consent:
        return Verdict(Action.SILENCE, [Reason.NO_CONSENT])
    if not state.push_token:
        return Verdict(Action.SILENCE, [Reason.NO_PUSH_TOKEN])
    pushed = {p.item_id for p in past_pushes}
    consumed = set(state.consumed)
    eligible = [
        c
        for c in candidates
        if c.item_id in catalog
        and catalog[c.item_id].available
        and c.item_id not in consumed
        and c.item_id not in pushed
    ]
    if not eligible:
        return Verdict(Action.SILENCE, [Reason.NO_CANDIDATE])
    best = eligible[0]
    if best.score <= config.score_threshold:
        return Verdict(Action.SILENCE, [Reason.BELOW_THRESHOLD], item_id=best.item_id, score=best.score)
    pushes_today = sum(1 for p in past_pushes if p.decided_at > now - DAY_SECONDS)
    if pushes_today >= config.daily_push_cap:
        return Verdict(Action.SILENCE, [Reason.DAILY_CAP], item_id=best.item_id, score=best.score)
    local_hour = datetime.fromtimestamp(now, UTC).astimezone(ZoneInfo(state.timezone)).hour
    if in_quiet_hours(local_hour, config.quiet_hours_start, config.quiet_hours_end):
        due = quiet_hours_end_after(now, state.timezone, config.quiet_hours_end)
        return Verdict(Action.DEFER, [Reason.QUIET_HOURS], item_id=best.item_id, score=best.score, due_at=due)
    support = supporting_history(state, catalog.get(best.item_id), catalog)
    return Verdict(Action.PUSH, [Reason.SCORE], item_id=best.item_id, score=best.score, supporting_items=support)
