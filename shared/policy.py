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
from shared.engagement import Calibration, FatigueConfig, fatigue_cost
from shared.model import Recommendation
from shared.user_state import UserState

DAY_SECONDS = 24 * 3600


@dataclass(frozen=True)
class PolicyConfig:
    daily_push_cap: int = 3
    score_threshold: float = 0.0
    quiet_hours_start: int = 21
    quiet_hours_end: int = 8
    # Share of pushes that try one of the top candidates instead of the best (0 = never).
    exploration_share: float = 0.05
    explore_top_k: int = 5
    # No push repeats a genre that each of the user's last ``diversity_window`` pushes led with.
    diversity_window: int = 2
    # Events needed before a user's own active hours choose the slot of a deferred push.
    min_events_for_active_hours: int = 20
    fatigue: FatigueConfig = field(default_factory=FatigueConfig)
    # "full": every rule; "rules": no engagement/fatigue test (the first policy);
    # "none": only consent and eligibility (the model's choice, pushed on every decision).
    variant: str = "full"
    # "model": the best candidate (with exploration); "random": uniform among the eligible.
    item_choice: str = "model"


@dataclass(frozen=True)
class PastPush:
    item_id: str
    decided_at: int
    genres: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    action: Action
    reasons: list[Reason]
    item_id: str | None = None
    score: float | None = None
    due_at: int | None = None
    supporting_items: list[str] = field(default_factory=list)
    propensity: float = 1.0
    candidates: tuple[str, ...] = ()
    engagement: float | None = None
    fatigue: float | None = None


def in_quiet_hours(local_hour: int, start: int, end: int) -> bool:
    if start == end:
        return False
    if start < end:
        return start <= local_hour < end
    return local_hour >= start or local_hour < end


def deferred_slot(now: int, state: UserState, config: PolicyConfig) -> int:
    """When a push deferred out of quiet hours should go: the user's busiest hour outside them.

    Learned from the user's own event times (the hour histogram features keeps), read in
    their time zone; users with little history get the end of quiet hours.
    """
    end = quiet_hours_end_after(now, state.timezone, config.quiet_hours_end)
    if sum(state.active_hours) < config.min_events_for_active_hours:
        return end
    tz = ZoneInfo(state.timezone)
    best, best_count = end, -1
    for offset in range(24):
        slot = end + offset * 3600
        local = datetime.fromtimestamp(slot, UTC).astimezone(tz)
        if in_quiet_hours(local.hour, config.quiet_hours_start, config.quiet_hours_end):
            continue
        count = state.active_hours[datetime.fromtimestamp(slot, UTC).hour]
        if count > best_count:
            best, best_count = slot, count
    return best


def explore_pick(
    eligible: Sequence[Recommendation], draws: tuple[float, float], config: PolicyConfig
) -> tuple[int, float]:
    """(index of the chosen candidate, its propensity) for an epsilon-greedy choice.

    ``draws`` are two uniform numbers in [0, 1) fixed by the decision id, so a retried decision
    makes the same choice. With probability epsilon one of the top-k is taken uniformly, so the
    best item's propensity is (1 - epsilon) + epsilon / k and any other top-k item's epsilon / k.
    """
    k = min(config.explore_top_k, len(eligible))
    epsilon = config.exploration_share if k > 1 else 0.0
    explored = draws[0] < epsilon
    index = min(int(draws[1] * k), k - 1) if explored else 0
    propensity = epsilon / k + (1.0 - epsilon if index == 0 else 0.0)
    return index, propensity


def _repeats_recent_genre(item: CatalogItem, past_pushes: Sequence[PastPush], window: int) -> bool:
    recent = sorted(past_pushes, key=lambda p: p.decided_at)[-window:] if window > 0 else []
    if len(recent) < window or not item.genres:
        return False
    lead = item.genres[0]
    return all(p.genres and p.genres[0] == lead for p in recent)


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
    draws: tuple[float, float] = (1.0, 0.0),
    calibration: Calibration | None = None,
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
    if config.variant == "none":
        if not eligible:
            return Verdict(Action.SILENCE, [Reason.NO_CANDIDATE])
        chosen = eligible[0]
        support = supporting_history(state, catalog.get(chosen.item_id), catalog)
        return Verdict(
            Action.PUSH, [Reason.SCORE], item_id=chosen.item_id, score=chosen.score, supporting_items=support
        )
    varied = [
        c for c in eligible if not _repeats_recent_genre(catalog[c.item_id], past_pushes, config.diversity_window)
    ]
    if not varied:
        return Verdict(Action.SILENCE, [Reason.NO_CANDIDATE])
    eligible = varied
    best = eligible[0]
    if best.score <= config.score_threshold:
        return Verdict(Action.SILENCE, [Reason.BELOW_THRESHOLD], item_id=best.item_id, score=best.score)
    pushes_today = sum(1 for p in past_pushes if p.decided_at > now - DAY_SECONDS)
    if pushes_today >= config.daily_push_cap:
        return Verdict(Action.SILENCE, [Reason.DAILY_CAP], item_id=best.item_id, score=best.score)
    engagement = fatigue = None
    if calibration is not None and config.variant == "full":
        engagement = calibration(best.score)
        week = sum(1 for p in past_pushes if p.decided_at > now - 7 * DAY_SECONDS)
        fatigue = fatigue_cost(week, state.pushes_delivered, state.pushes_dismissed, config.fatigue, pushes_today)
        if engagement <= fatigue:
            return Verdict(
                Action.SILENCE,
                [Reason.BELOW_FATIGUE],
                item_id=best.item_id,
                score=best.score,
                engagement=engagement,
                fatigue=fatigue,
            )
    local_hour = datetime.fromtimestamp(now, UTC).astimezone(ZoneInfo(state.timezone)).hour
    if in_quiet_hours(local_hour, config.quiet_hours_start, config.quiet_hours_end):
        due = deferred_slot(now, state, config)
        return Verdict(
            Action.DEFER,
            [Reason.QUIET_HOURS],
            item_id=best.item_id,
            score=best.score,
            due_at=due,
            engagement=engagement,
            fatigue=fatigue,
        )
    if config.item_choice == "model":
        index, propensity = explore_pick(eligible, draws, config)
    else:
        # Uniform, fixed by the decision id like exploration, so a retry picks the same item.
        index, propensity = min(int(draws[1] * len(eligible)), len(eligible) - 1), 1.0 / len(eligible)
    chosen = eligible[index]
    reasons = [Reason.SCORE] if index == 0 else [Reason.EXPLORATION]
    support = supporting_history(state, catalog.get(chosen.item_id), catalog)
    return Verdict(
        Action.PUSH,
        reasons,
        item_id=chosen.item_id,
        score=chosen.score,
        supporting_items=support,
        propensity=propensity,
        candidates=tuple(c.item_id for c in eligible[: config.explore_top_k]),
        engagement=engagement,
        fatigue=fatigue,
    )
