"""The simulated device and user: how a push is answered, for every scenario.

A push is ``delivered`` a second after it was decided. When the user engages (``engaged_at`` says
when, or None), it is ``opened`` a minute before that (at least 2 s after the push) and
``converted`` at that moment; otherwise ``dismissed`` an hour later. What decides engagement is the
scenario's: the real rating log (the demo: the user rates the item within 7 days), a random share
(the cost replay), or every other push (the fault scenarios).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.domain.contract import FeedbackEvent

DISMISS_AFTER_S = 3600


@dataclass(frozen=True)
class Push:
    decision_id: str
    user_id: str
    item_id: str
    at: int

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Push:
        """From a push as it reaches a queue subscribed to the push topic."""
        return cls(str(body["decision_id"]), str(body["user_id"]), str(body["item_id"]), int(body["decided_at"]))


EngagedAt = Callable[[Push], int | None]


@dataclass
class SimulatedUsers:
    """Answers each push once (a repeated decision id gets no second answer); with ``retry_every``,
    every n-th answered push's first feedback event is sent twice (a device retry)."""

    engaged_at: EngagedAt
    retry_every: int = 0
    answered: int = 0

    def __post_init__(self) -> None:
        self._seen: set[str] = set()

    def outcomes(self, push: Push) -> list[tuple[int, str]]:
        """(time, outcome) of the feedback this push produces."""
        if push.decision_id in self._seen:
            return []
        self._seen.add(push.decision_id)
        self.answered += 1
        out = [(push.at + 1, "delivered")]
        engaged = self.engaged_at(push)
        if engaged is None:
            return [*out, (push.at + DISMISS_AFTER_S, "dismissed")]
        return [*out, (max(push.at + 2, engaged - 60), "opened"), (max(push.at + 3, engaged), "converted")]

    def answer(self, push: Push) -> list[FeedbackEvent]:
        events = [feedback_event(push, at, outcome) for at, outcome in self.outcomes(push)]
        if events and self.retry_every and self.answered % self.retry_every == 0:
            events.insert(1, events[0])
        return events


def feedback_event(push: Push, at: int, outcome: str) -> FeedbackEvent:
    return FeedbackEvent(
        schema_version=1,
        event_id=f"fb-{push.decision_id}-{outcome}",
        user_id=push.user_id,
        timestamp=datetime.fromtimestamp(at, UTC),
        type=outcome,
        decision_id=push.decision_id,
        item_id=push.item_id,
    )


def engaging_share(share: float, seed: int = 11, after_s: int = 90) -> EngagedAt:
    """A random ``share`` of pushes converts ``after_s`` seconds after the push."""
    rng = random.Random(seed)
    return lambda push: push.at + after_s if rng.random() < share else None


def every_other(after_s: int = 60) -> EngagedAt:
    """Every second push answered converts ``after_s`` seconds after it; the others are dismissed."""
    count = [0]

    def engaged(push: Push) -> int | None:
        count[0] += 1
        return push.at + after_s if count[0] % 2 == 0 else None

    return engaged
