"""Atomic push caps: per-user daily and weekly counters and a global per-minute counter.

Each counter is one DynamoDB item updated with a conditional ``ADD``: the count goes up only
while it is below its cap, so parallel shards, duplicated stream records and retries can never
push it past the cap. Each counter also remembers the decision ids it admitted, which makes a
reservation idempotent: a retried decision finds its id and is let through without counting
twice. Counters are taken one after another (cheaper than a transaction, which bills twice);
if a later one refuses, the earlier ones are given back. A crash between the two leaves a
slot taken, which errs on the side of fewer pushes, never more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.adapters.aws_errors import translated
from shared.errors import NudgeError, VersionConflict


class CapReached(NudgeError):
    def __init__(self, cap: str) -> None:
        super().__init__(cap)
        self.cap = cap


@dataclass(frozen=True)
class Counter:
    """One cap to respect: ``key`` names the bucket (user and local day, minute...)."""

    cap_name: str
    key: str
    limit: int
    expires_at: int


class PushCounters:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._table = dynamodb.Table(table_name)

    def reserve(self, decision_id: str, counters: list[Counter]) -> None:
        """Take one slot in every counter for this decision, or none (CapReached names the cap)."""
        taken: list[Counter] = []
        for counter in counters:
            if not self._take(decision_id, counter):
                for done in reversed(taken):
                    self._give_back(decision_id, done)
                raise CapReached(counter.cap_name)
            taken.append(counter)

    def count(self, key: str) -> int:
        with translated("push_counters.count"):
            item = self._table.get_item(Key={"counter_key": key}, ConsistentRead=True).get("Item")
        return int(item["n"]) if item else 0

    def _take(self, decision_id: str, counter: Counter) -> bool:
        """True when the slot is ours (taken now, or by an earlier attempt of this decision)."""
        if counter.limit <= 0:
            return False
        try:
            with translated("push_counters.take"):
                self._table.update_item(
                    Key={"counter_key": counter.key},
                    UpdateExpression="ADD n :one, ids :id SET expires_at = :exp",
                    ConditionExpression="(attribute_not_exists(n) OR n < :cap) AND NOT contains(ids, :decision)",
                    ExpressionAttributeValues={
                        ":one": 1,
                        ":id": {decision_id},
                        ":decision": decision_id,
                        ":cap": counter.limit,
                        ":exp": counter.expires_at,
                    },
                )
        except VersionConflict:
            return self._holds(decision_id, counter.key)
        return True

    def _holds(self, decision_id: str, key: str) -> bool:
        with translated("push_counters.holds"):
            item = self._table.get_item(Key={"counter_key": key}, ConsistentRead=True).get("Item")
        return bool(item) and decision_id in (item.get("ids") or set())

    def _give_back(self, decision_id: str, counter: Counter) -> None:
        try:
            with translated("push_counters.give_back"):
                self._table.update_item(
                    Key={"counter_key": counter.key},
                    UpdateExpression="ADD n :minus DELETE ids :id",
                    ConditionExpression="contains(ids, :decision)",
                    ExpressionAttributeValues={":minus": -1, ":id": {decision_id}, ":decision": decision_id},
                )
        except VersionConflict:
            return
