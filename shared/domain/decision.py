"""What decide concluded for one user at one moment, as the ledger stores it."""

from __future__ import annotations

import hashlib
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Action(StrEnum):
    PUSH = "push"
    SILENCE = "silence"
    DEFER = "defer"


class Reason(StrEnum):
    """Stable reason codes; every decision carries at least one."""

    NO_CONSENT = "no_consent"
    NO_PUSH_TOKEN = "no_push_token"
    # The platform disabled the user's token (uninstalled, token expired): silent until a new one.
    PUSH_TOKEN_DISABLED = "push_token_disabled"
    DAILY_CAP = "daily_cap"
    WEEKLY_CAP = "weekly_cap"
    GLOBAL_RATE = "global_rate"
    ITEM_COOLDOWN = "item_cooldown"
    QUIET_HOURS = "quiet_hours"
    NO_CANDIDATE = "no_candidate"
    BELOW_THRESHOLD = "below_threshold"
    BELOW_FATIGUE = "below_fatigue_cost"
    SCORE = "score"
    EXPLORATION = "exploration"


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    decision_id: str
    user_id: str
    action: Action
    reasons: list[Reason]
    decided_at: int
    model_version: str
    policy: str
    item_id: str | None = None
    score: float | None = None
    title: str | None = None
    explanation: str | None = None
    supporting_items: list[str] = Field(default_factory=list)
    due_at: int | None = None
    trigger: str = ""
    # Probability that the logging policy takes this action here (for off-policy evaluation).
    propensity: float = 1.0
    # Calibrated engagement probability and the fatigue cost it had to beat (when calibrated).
    engagement: float | None = None
    fatigue: float | None = None
    # The top eligible candidates at decision time, best first (what exploration chose among).
    candidates: list[str] = Field(default_factory=list)


def decision_id_for(user_id: str, decided_at: int, trigger: str) -> str:
    """Deterministic: a retried trigger yields the same id, so it is recorded and sent once.

    The zero-padded time prefix makes ledger sort keys chronological per user.
    """
    digest = hashlib.sha256(f"{user_id}\x1f{trigger}".encode()).hexdigest()[:20]
    return f"{decided_at:011d}-{digest}"


def decision_prefix_at(epoch_seconds: int) -> str:
    """The smallest decision id at or after a time (for range queries on the ledger)."""
    return f"{max(epoch_seconds, 0):011d}-"
