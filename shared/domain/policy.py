"""The push policy: pure rules over user state, model candidates and past pushes.

Order matters and is part of the contract: consent, a token, something worth pushing, the score
threshold, the daily cap, engagement against fatigue (when the model is calibrated), then quiet
hours (which defer rather than drop), then the choice among the eligible with exploration.

Decide takes any ``Policy``; production has exactly one, ``RulesPolicy``. The baselines the demo
compares it with (pushing the model's choice with no rules, a random item) live in demo/baselines.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from shared.domain.caps import pushes_on_local_day
from shared.domain.catalog import CatalogItem
from shared.domain.decision import Action, Reason
from shared.domain.engagement import Calibration, FatigueConfig, fatigue_cost
from shared.domain.recommendation import Recommendation
from shared.domain.user_state import UserState

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


@dataclass(frozen=True)
class Situation:
    """Everything a policy decides on, gathered by decide for one user at one moment."""

    state: UserState
    candidates: Sequence[Recommendation]
    catalog: Mapping[str, CatalogItem]
    past_pushes: Sequence[PastPush]
    now: int
    # Two uniform numbers in [0, 1) fixed by the decision id (a retry chooses the same).
    draws: tuple[float, float] = (1.0, 0.0)
    calibration: Calibration | None = None


class Policy(Protocol):
    @property
    def name(self) -> str:
        """Recorded with every decision in the ledger."""
        ...

    def __call__(self, situation: Situation) -> Verdict: ...


def eligible_candidates(situation: Situation) -> list[Recommendation]:
    """Candidates in the catalog, available, not consumed and not pushed before (best first)."""
    pushed = {p.item_id for p in situation.past_pushes}
    consumed = set(situation.state.consumed)
    catalog = situation.catalog
    return [
        c
        for c in situation.candidates
        if c.item_id in catalog
        and catalog[c.item_id].available
        and c.item_id not in consumed
        and c.item_id not in pushed
    ]


def varied_candidates(situation: Situation, diversity_window: int) -> list[Recommendation]:
    """The eligible candidates that would not lead with the genre of each of the last pushes."""
    return [
        c
        for c in eligible_candidates(situation)
        if not _repeats_recent_genre(situation.catalog[c.item_id], situation.past_pushes, diversity_window)
    ]


def may_reach(state: UserState) -> Verdict | None:
    """The silence owed to a user who cannot be pushed at all (no consent, no token), else None."""
    if not state.consent:
        return Verdict(Action.SILENCE, [Reason.NO_CONSENT])
    if not state.push_token:
        return Verdict(Action.SILENCE, [Reason.NO_PUSH_TOKEN])
    if state.push_token == state.push_token_disabled:
        return Verdict(Action.SILENCE, [Reason.PUSH_TOKEN_DISABLED])
    return None


@dataclass(frozen=True)
class RulesPolicy:
    """Nudge's policy (see the module docstring for the order of its rules)."""

    config: PolicyConfig
    name: str = "rules-v1"

    def __call__(self, situation: Situation) -> Verdict:
        config, state, now = self.config, situation.state, situation.now
        refusal = may_reach(state)
        if refusal is not None:
            return refusal
        eligible = varied_candidates(situation, config.diversity_window)
        if not eligible:
            return Verdict(Action.SILENCE, [Reason.NO_CANDIDATE])
        best = eligible[0]
        if best.score <= config.score_threshold:
            return Verdict(Action.SILENCE, [Reason.BELOW_THRESHOLD], item_id=best.item_id, score=best.score)
        pushes_today = pushes_on_local_day((p.decided_at for p in situation.past_pushes), now, state.timezone)
        if pushes_today >= config.daily_push_cap:
            return Verdict(Action.SILENCE, [Reason.DAILY_CAP], item_id=best.item_id, score=best.score)
        engagement = fatigue = None
        if situation.calibration is not None:
            engagement = situation.calibration(best.score)
            week = sum(1 for p in situation.past_pushes if p.decided_at > now - 7 * DAY_SECONDS)
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
            return Verdict(
                Action.DEFER,
                [Reason.QUIET_HOURS],
                item_id=best.item_id,
                score=best.score,
                due_at=deferred_slot(now, state, config),
                engagement=engagement,
                fatigue=fatigue,
            )
        index, propensity = explore_pick(eligible, situation.draws, config)
        chosen = eligible[index]
        return Verdict(
            Action.PUSH,
            [Reason.SCORE] if index == 0 else [Reason.EXPLORATION],
            item_id=chosen.item_id,
            score=chosen.score,
            supporting_items=supporting_history(state, situation.catalog.get(chosen.item_id), situation.catalog),
            propensity=propensity,
            candidates=tuple(c.item_id for c in eligible[: config.explore_top_k]),
            engagement=engagement,
            fatigue=fatigue,
        )
