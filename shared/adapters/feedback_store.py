"""Feedback outcomes: ledger annotation and user fatigue counters in one transaction."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from shared.adapters.aws_errors import error_code, translated
from shared.adapters.dynamo_codec import serialize_item


class FeedbackStore:
    def __init__(self, dynamodb_client: Any, ledger_table: str, user_state_table: str) -> None:
        self._client = dynamodb_client
        self._ledger_table = ledger_table
        self._user_state_table = user_state_table

    def record_outcome(self, user_id: str, decision_id: str, outcome: str, at: int, writer: str) -> bool:
        """Annotate the ledger and bump the user's counter, both or neither.

        Returns False when this outcome was recorded before (a duplicate or a retry).
        """
        counter = f"pushes_{outcome}"
        with translated("feedback.record_outcome"):
            try:
                self._client.transact_write_items(
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": self._ledger_table,
                                "Key": serialize_item({"user_id": user_id, "decision_id": decision_id}),
                                "UpdateExpression": "SET outcomes.#o = :at",
                                "ConditionExpression": "attribute_exists(decision_id) AND "
                                "attribute_not_exists(outcomes.#o)",
                                "ExpressionAttributeNames": {"#o": outcome},
                                "ExpressionAttributeValues": serialize_item({":at": at}),
                            }
                        },
                        {
                            "Update": {
                                "TableName": self._user_state_table,
                                "Key": serialize_item({"user_id": user_id}),
                                "UpdateExpression": "ADD #c :one, version :one "
                                "SET last_feedback_at = :at, last_writer = :w",
                                "ExpressionAttributeNames": {"#c": counter},
                                "ExpressionAttributeValues": serialize_item(
                                    {":one": 1, ":at": at, ":w": writer}
                                ),
                            }
                        },
                    ]
                )
            except ClientError as exc:
                if error_code(exc) == "TransactionCanceledException" and _ledger_condition_failed(exc):
                    return False
                raise
        return True


def _ledger_condition_failed(exc: ClientError) -> bool:
    reasons = exc.response.get("CancellationReasons") or []
    return bool(reasons) and reasons[0].get("Code") == "ConditionalCheckFailed"
