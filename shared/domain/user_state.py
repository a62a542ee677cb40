"""The per-user state item the features function keeps and decide reads.

One DynamoDB item per user. Every list is bounded so the item stays far below
DynamoDB's 400 KB limit however long a user lives.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

MAX_RECENT_ITEMS = 50
MAX_CONSUMED_ITEMS = 1000
# Duplicates from a producer's retry arrive within seconds; 64 of the user's own events is ample,
# and at 8 bytes a fingerprint the window costs 684 bytes of item whatever the ids look like.
MAX_RECENT_EVENT_IDS = 64
MAX_FEEDBACK_SEEN = 256
HOURS_PER_DAY = 24


class RecentItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    item_id: str
    ts: int
    type: str


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
    # Fingerprints (event_fingerprint) of the user's last MAX_RECENT_EVENT_IDS event ids, oldest first.
    recent_event_ids: list[str] = Field(default_factory=list)
    # Highest Kinesis sequence number applied per shard: a retried batch is skipped exactly.
    shard_watermarks: dict[str, str] = Field(default_factory=dict)
    pushes_delivered: int = 0
    pushes_opened: int = 0
    pushes_dismissed: int = 0
    pushes_converted: int = 0
    last_feedback_at: int = 0
    # "decision_id:outcome" keys already counted, so a redelivered outcome is counted once.
    feedback_seen: list[str] = Field(default_factory=list)
    due_at: int | None = None
    # Whether this write asks decide for a decision (decide's stream filter passes only those), and
    # the event time of the last one that did: features asks at most once per decision interval.
    asks_decision: bool = False
    decision_asked_at: int = 0

    def history(self) -> list[str]:
        """Item ids oldest to newest, as the model reads them."""
        return [item.item_id for item in self.recent_items]


def event_fingerprint(event_id: str) -> str:
    """64 bits of BLAKE2b, in hex: ids up to 128 characters stored in 8 bytes (a collision between
    two of one user's last 64 events has odds of about 1 in 10^17)."""
    return hashlib.blake2b(event_id.encode(), digest_size=8).hexdigest()


Ref = TypeVar("Ref")


@dataclass(frozen=True)
class StateChange(Generic[Ref]):
    """A user-state change from the table's stream; ``ref`` maps failures back to the record."""

    state: UserState
    changed_at: int
    ref: Ref
