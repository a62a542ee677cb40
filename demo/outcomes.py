"""Judging pushes against the real log, independently of the code under test.

A push is a hit when the user rates the pushed item within 7 days after the push. The
simulated user also answers every push with feedback events drawn from the same log.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from training.movielens import Interactions

HIT_WINDOW_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Push:
    decision_id: str
    user_id: str
    item_id: str
    at: int


class RatingLog:
    """When each user rated each item, for O(log n) "did they rate it after t" lookups."""

    def __init__(self, ratings: Interactions) -> None:
        self._times: dict[tuple[str, str], list[int]] = defaultdict(list)
        for user, item, ts in zip(
            ratings.user.tolist(), ratings.item.tolist(), ratings.timestamp.tolist(), strict=True
        ):
            self._times[(str(user), str(item))].append(int(ts))
        for times in self._times.values():
            times.sort()

    def first_rating_after(self, user_id: str, item_id: str, after: int) -> int | None:
        times = self._times.get((user_id, item_id), [])
        index = bisect.bisect_right(times, after)
        return times[index] if index < len(times) else None

    def is_hit(self, push: Push) -> bool:
        rated = self.first_rating_after(push.user_id, push.item_id, push.at)
        return rated is not None and rated <= push.at + HIT_WINDOW_SECONDS


def hit_rate(pushes: Iterable[Push], log: RatingLog) -> tuple[int, int, float]:
    """(pushes, hits, hit rate)."""
    listed = list(pushes)
    hits = sum(log.is_hit(p) for p in listed)
    return len(listed), hits, (hits / len(listed) if listed else 0.0)


def feedback_for(push: Push, log: RatingLog) -> list[tuple[int, str]]:
    """The simulated device and user: (time, outcome) events this push produces.

    Delivered a second after sending; opened then converted when the user rates the item
    within the window (opened a minute before the rating); otherwise dismissed an hour later.
    """
    events = [(push.at + 1, "delivered")]
    rated = log.first_rating_after(push.user_id, push.item_id, push.at)
    if rated is not None and rated <= push.at + HIT_WINDOW_SECONDS:
        events += [(max(push.at + 2, rated - 60), "opened"), (max(push.at + 3, rated), "converted")]
    else:
        events.append((push.at + 3600, "dismissed"))
    return events
