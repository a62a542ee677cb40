"""Judging pushes against the real log, independently of the code under test.

A push is a hit when the user rates the pushed item within 7 days after the push. The simulated
users (testkit/feedback.py) answer every push from the same log: ``RatingLog.engaged_at``.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable

from testkit.feedback import Push
from training.movielens import Interactions

HIT_WINDOW_SECONDS = 7 * 24 * 3600


__all__ = ["HIT_WINDOW_SECONDS", "Push", "RatingLog", "SameMomentsPopularity", "hit_rate"]


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

    def engaged_at(self, push: Push) -> int | None:
        """When the user rates the pushed item within the window (a hit), else None."""
        rated = self.first_rating_after(push.user_id, push.item_id, push.at)
        return rated if rated is not None and rated <= push.at + HIT_WINDOW_SECONDS else None

    def is_hit(self, push: Push) -> bool:
        return self.engaged_at(push) is not None


def hit_rate(pushes: Iterable[Push], log: RatingLog) -> tuple[int, int, float]:
    """(pushes, hits, hit rate)."""
    listed = list(pushes)
    hits = sum(log.is_hit(p) for p in listed)
    return len(listed), hits, (hits / len(listed) if listed else 0.0)


class SameMomentsPopularity:
    """Popularity pushed at another policy's push moments: the same users, times and count.

    Isolates *what* is pushed from *whether* and *when*: for every push of the reference
    policy, the most popular item (training-window counts) that the user had not rated by
    then and that this baseline had not already pushed to them. Judged by the same log.
    """

    def __init__(self, train: Interactions, everything: Interactions) -> None:
        counts: dict[str, int] = defaultdict(int)
        for item in train.item.tolist():
            counts[str(item)] += 1
        # Most popular first; the item id breaks ties so the order is reproducible.
        self._order = sorted(counts, key=lambda i: (-counts[i], int(i) if i.isdigit() else 0, i))
        self._rated: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for user, item, ts in zip(
            everything.user.tolist(), everything.item.tolist(), everything.timestamp.tolist(), strict=True
        ):
            self._rated[str(user)].append((int(ts), str(item)))
        for rows in self._rated.values():
            rows.sort()

    def pushes_at(self, moments: Iterable[Push]) -> list[Push]:
        pushed: dict[str, set[str]] = defaultdict(set)
        out: list[Push] = []
        for moment in sorted(moments, key=lambda p: (p.at, p.user_id)):
            rows = self._rated.get(moment.user_id, [])
            seen = {item for _, item in rows[: bisect.bisect_right(rows, (moment.at, "\uffff"))]}
            seen |= pushed[moment.user_id]
            item = next((i for i in self._order if i not in seen), None)
            if item is None:
                continue
            pushed[moment.user_id].add(item)
            out.append(
                Push(
                    decision_id=f"same-moments-{moment.decision_id}", user_id=moment.user_id, item_id=item, at=moment.at
                )
            )
        return out
