"""The decision ledger: one item per decision, written once, then annotated with outcomes.

It is also the push outbox: a push is recorded with ``outbox_shard`` and ``outbox_at`` (a sparse index,
``outbox-index``), which sending, settling as undeliverable or downgrading to a silence remove. What is
still on the index after a grace period was recorded but never handed over (a crash, retries run out):
decide's sweep sends it then (shared/services/decide.py ``reconcile``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from shared.adapters.aws_errors import translated
from shared.adapters.dynamo_codec import from_dynamo, to_dynamo
from shared.adapters.dynamo_query import query_items
from shared.domain.decision import Action, Decision, Reason, decision_prefix_at
from shared.domain.errors import VersionConflict


class Ledger:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._table = dynamodb.Table(table_name)

    def record(self, decision: Decision, expires_at: int, outbox_shard: str | None = None) -> tuple[Decision, bool]:
        """Store the decision unless a retry stored it already; returns (stored decision, created).

        With ``outbox_shard`` (a push) it is also put on the outbox index until it is sent or settled.
        """
        item = to_dynamo(decision.model_dump(mode="json", exclude_none=True))
        item["expires_at"] = expires_at
        item["status"] = "decided"
        item["outcomes"] = {}
        if outbox_shard is not None:
            item["outbox_shard"] = outbox_shard
            item["outbox_at"] = decision.decided_at
        try:
            with translated("ledger.record"):
                self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(decision_id)")
        except VersionConflict:
            existing = self.get(decision.user_id, decision.decision_id)
            if existing is None:  # expired between the two calls; nothing better to do than retry
                raise
            return Decision.model_validate(existing), False
        return decision, True

    def downgrade(self, decision: Decision, reason: Reason) -> Decision:
        """A push that found its cap full becomes a silence, unless it was already sent."""
        silenced = decision.model_copy(update={"action": Action.SILENCE, "reasons": [reason]})
        try:
            with translated("ledger.downgrade"):
                self._table.update_item(
                    Key={"user_id": decision.user_id, "decision_id": decision.decision_id},
                    UpdateExpression="SET #a = :silence, reasons = :reasons REMOVE outbox_shard, outbox_at",
                    ConditionExpression="#s = :decided",
                    ExpressionAttributeNames={"#a": "action", "#s": "status"},
                    ExpressionAttributeValues={
                        ":silence": Action.SILENCE.value,
                        ":reasons": [reason.value],
                        ":decided": "decided",
                    },
                )
        except VersionConflict:
            return decision  # sent already: the slot was ours after all
        return silenced

    def mark_sent(self, user_id: str, decision_id: str, message_id: str, sent_at: int) -> None:
        with translated("ledger.mark_sent"):
            self._table.update_item(
                Key={"user_id": user_id, "decision_id": decision_id},
                UpdateExpression="SET #s = :sent, message_id = :m, sent_at = :t REMOVE outbox_shard, outbox_at",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":sent": "sent", ":m": message_id, ":t": sent_at},
            )

    def mark_undeliverable(self, user_id: str, decision_id: str, reason: str, at: int) -> None:
        """Settle a push its platform would not take: off the outbox, the reason as its outcome."""
        try:
            self._settle_undeliverable(user_id, decision_id, reason, at)
        except VersionConflict:
            return  # sent after all (a retry of an earlier send got through): nothing to settle

    def _settle_undeliverable(self, user_id: str, decision_id: str, reason: str, at: int) -> None:
        with translated("ledger.mark_undeliverable"):
            self._table.update_item(
                Key={"user_id": user_id, "decision_id": decision_id},
                UpdateExpression="SET #s = :failed, undeliverable = :r, outcomes.undeliverable = "
                "if_not_exists(outcomes.undeliverable, :at) REMOVE outbox_shard, outbox_at",
                ConditionExpression="#s <> :sent",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":failed": "undeliverable", ":r": reason, ":at": at, ":sent": "sent"},
            )

    def unsent_pushes(self, outbox_shard: str, decided_before: int, limit: int = 500) -> list[tuple[str, str]]:
        items = query_items(
            self._table,
            "ledger.unsent_pushes",
            limit=limit,
            IndexName="outbox-index",
            KeyConditionExpression="outbox_shard = :s AND outbox_at < :before",
            ExpressionAttributeValues={":s": outbox_shard, ":before": decided_before},
        )
        return [(str(i["user_id"]), str(i["decision_id"])) for i in items]

    def record_outcome(self, user_id: str, decision_id: str, outcome: str, at: int) -> dict[str, Any] | None:
        """Annotate a decision with an outcome (first time wins, so repeating it is harmless).

        Returns the decision as stored, or None when the ledger has no such decision.
        """
        try:
            with translated("ledger.record_outcome"):
                response = self._table.update_item(
                    Key={"user_id": user_id, "decision_id": decision_id},
                    UpdateExpression="SET outcomes.#o = if_not_exists(outcomes.#o, :at)",
                    ConditionExpression="attribute_exists(decision_id)",
                    ExpressionAttributeNames={"#o": outcome},
                    ExpressionAttributeValues={":at": at},
                    ReturnValues="ALL_NEW",
                )
        except VersionConflict:
            return None
        return dict(from_dynamo(response.get("Attributes", {})))

    def get(self, user_id: str, decision_id: str) -> dict[str, Any] | None:
        with translated("ledger.get"):
            item = self._table.get_item(Key={"user_id": user_id, "decision_id": decision_id}, ConsistentRead=True).get(
                "Item"
            )
        return None if item is None else dict(from_dynamo(item))

    def decision_ids_of(self, user_id: str) -> list[str]:
        """Every decision id the ledger holds for a user (for erasure)."""
        items = query_items(
            self._table,
            "ledger.decision_ids_of",
            KeyConditionExpression="user_id = :u",
            ProjectionExpression="decision_id",
            ExpressionAttributeValues={":u": user_id},
            ConsistentRead=True,
        )
        return [str(i["decision_id"]) for i in items]

    def forget(self, user_id: str, decision_ids: list[str]) -> int:
        """Delete the given decisions of a user (erasure); deleting an absent one is a no-op."""
        with translated("ledger.forget"), self._table.batch_writer() as batch:
            for decision_id in decision_ids:
                batch.delete_item(Key={"user_id": user_id, "decision_id": decision_id})
        return len(decision_ids)

    def recent(self, user_id: str, limit: int) -> list[dict[str, Any]]:
        """The user's last ``limit`` decisions as stored (outcomes and delivery status included), newest first:
        decision ids sort by time (shared.domain.decision.decision_id_for)."""
        items = query_items(
            self._table,
            "ledger.recent",
            limit=limit,
            KeyConditionExpression="user_id = :u",
            ExpressionAttributeValues={":u": user_id},
            ScanIndexForward=False,
            Limit=limit,
            ConsistentRead=True,
        )
        return [from_dynamo(i) for i in items]

    def decided_since(self, since: int) -> Iterator[dict[str, Any]]:
        """Every user's decisions from ``since`` on, in no order: a Scan, for an operator's read-out (one pass
        over the table), never on a function's path."""
        kwargs: dict[str, Any] = {
            "FilterExpression": "decision_id >= :from",
            "ExpressionAttributeValues": {":from": decision_prefix_at(since)},
        }
        with translated("ledger.decided_since"):
            while True:
                page = self._table.scan(**kwargs)
                yield from (from_dynamo(i) for i in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    return
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def pushes_since(self, user_id: str, since: int) -> list[dict[str, Any]]:
        """The user's push decisions from ``since`` on (oldest first), for caps and repeats."""
        items = query_items(
            self._table,
            "ledger.pushes_since",
            KeyConditionExpression="user_id = :u AND decision_id >= :from",
            FilterExpression="#a = :push",
            ExpressionAttributeNames={"#a": "action"},
            ExpressionAttributeValues={":u": user_id, ":from": decision_prefix_at(since), ":push": "push"},
            ConsistentRead=True,
        )
        return [from_dynamo(i) for i in items]
