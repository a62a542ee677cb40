"""The per-user state the features function keeps and decide reads.

Stored as two DynamoDB items per user (shared/adapters/user_state_codec.py): a small hot item that
every behaviour event rewrites, and a profile item that changes rarely. Every list is bounded so
both stay far below DynamoDB's 400 KB limit however long a user lives.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

MAX_RECENT_ITEMS = 50
MAX_CONSUMED_ITEMS = 1000
MAX_FEEDBACK_SEEN = 256
HOURS_PER_DAY = 24


class RecentItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    item_id: str
    ts: int
    type: str


def feedback_mark(seen_key: str) -> str:
    """An outcome's key ("decision_id:outcome") as feedback keeps it: 8 characters (48 bits of BLAKE2b,
    URL-safe base64) instead of about 45, so 256 of them cost about 2.3 KB of the profile item, not
    11.5. Two of a user's last 256 keys share a mark with odds of about 1 in 10^12 per count (the newer
    outcome would go uncounted, never counted twice)."""
    return base64.urlsafe_b64encode(hashlib.blake2b(seen_key.encode(), digest_size=6).digest()).decode()


def as_feedback_marks(seen: list[str]) -> list[str]:
    """``feedback_seen`` as marks only: keys kept before the marks (they hold a ":") become marks."""
    return [feedback_mark(key) if ":" in key else key for key in seen]


class UserState(BaseModel):
    model_config = ConfigDict(validate_assignment=False)

    user_id: str
    version: int = 0
    # Who wrote the item last; decide's stream filter only reacts to the features writer.
    last_writer: str = ""
    recent_items: list[RecentItem] = Field(default_factory=list)
    consumed: list[str] = Field(default_factory=list)
    counters: dict[str, int] = Field(default_factory=dict)
    genre_affinity: dict[str, float] = Field(default_factory=dict)
    affinity_at: int = 0
    active_hours: list[int] = Field(default_factory=lambda: [0] * HOURS_PER_DAY)
    last_seen: int = 0
    timezone: str = "UTC"
    # Push needs an explicit opt-in; silence is the safe default.
    consent: bool = False
    push_token: str | None = None
    push_platform: str | None = None
    # Delivery's own records (decide writes them; shared/domain/delivery.py): the SNS endpoint it keeps
    # for this user's device and the token that endpoint was last pointed at, and a token the platform
    # disabled (no push goes to it until the app reports another).
    push_endpoint: str | None = None
    push_endpoint_token: str | None = None
    push_token_disabled: str | None = None
    # Strict members: a stored boolean stays a boolean (lax validation turned true into 1).
    attributes: dict[str, StrictStr | StrictBool | StrictInt | StrictFloat] = Field(default_factory=dict)
    # Highest Kinesis sequence number applied per shard: a retried batch is skipped exactly. This is the
    # fold's only duplicate guard: another record of an applied event id (a producer's retry, a reused
    # id) never reaches the fold, because the event-id registry admits one record per id
    # (shared/domain/admission.py), so the item keeps no event ids of its own.
    shard_watermarks: dict[str, str] = Field(default_factory=dict)
    pushes_delivered: int = 0
    pushes_opened: int = 0
    pushes_dismissed: int = 0
    pushes_converted: int = 0
    last_feedback_at: int = 0
    # The outcomes already counted, so a redelivered outcome is counted once: feedback_mark of
    # "decision_id:outcome" (items written before the marks hold the keys themselves; both are read).
    feedback_seen: list[str] = Field(default_factory=list)
    due_at: int | None = None
    # Where the state is stored (shared/adapters/user_state_codec.py): the version of the user's
    # profile item (0: there is none yet), and how many of ``consumed``, oldest first, it holds (the
    # newer ones ride in the hot item until enough gather to be worth rewriting the profile item).
    profile_version: int = 0
    consumed_flushed: int = 0
    # Whether this write asks decide for a decision (decide's stream filter passes only those), and
    # the event time of the last one that did: features asks at most once per decision interval.
    asks_decision: bool = False
    decision_asked_at: int = 0

    def history(self) -> list[str]:
        """Item ids oldest to newest, as the model reads them."""
        return [item.item_id for item in self.recent_items]


Ref = TypeVar("Ref")


@dataclass(frozen=True)
class StateChange(Generic[Ref]):
    """A user-state change from the table's stream; ``ref`` maps failures back to the record."""

    state: UserState
    changed_at: int
    ref: Ref
