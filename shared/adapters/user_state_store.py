"""The user-state table: batch reads and version-conditional writes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.adapters.aws_errors import translated
from shared.adapters.dynamo_batch import batch_get
from shared.adapters.dynamo_query import query_items
from shared.adapters.user_state_codec import decode_user_state, encode_user_state, pack_list
from shared.domain.errors import PoisonRecord, VersionConflict
from shared.domain.user_state import MAX_FEEDBACK_SEEN, UserState


class UserStateStore:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._dynamodb = dynamodb
        self._table_name = table_name
        self._table = dynamodb.Table(table_name)

    def get(self, user_id: str) -> UserState | None:
        with translated("user_state.get"):
            item = self._table.get_item(Key={"user_id": user_id}, ConsistentRead=True).get("Item")
        return None if item is None else decode_user_state(item)

    def delete(self, user_id: str) -> bool:
        """Remove the user's item (erasure); True when there was one."""
        with translated("user_state.delete"):
            response = self._table.delete_item(Key={"user_id": user_id}, ReturnValues="ALL_OLD")
        return bool(response.get("Attributes"))

    def get_many(self, user_ids: Iterable[str]) -> dict[str, UserState | PoisonRecord]:
        """Strongly consistent batch read; users never seen before are simply absent, and a user whose
        item cannot be read maps to the PoisonRecord saying so (the others are read all the same)."""
        items = batch_get(self._dynamodb, self._table_name, "user_id", list(user_ids), consistent=True)
        out: dict[str, UserState | PoisonRecord] = {}
        for item in items:
            try:
                out[str(item["user_id"])] = decode_user_state(item)
            except PoisonRecord as poison:
                out[str(item["user_id"])] = poison
        return out

    def save(self, state: UserState, expected_version: int) -> None:
        """Write the whole item if nobody wrote since we read ``expected_version``.

        Raises VersionConflict otherwise; the caller re-reads and re-applies.
        """
        item = encode_user_state(state)
        if expected_version == 0:
            condition = "attribute_not_exists(user_id)"
            values: dict[str, Any] = {}
        else:
            condition = "version = :expected"
            values = {":expected": expected_version}
        with translated("user_state.save"):
            kwargs: dict[str, Any] = {"Item": item, "ConditionExpression": condition}
            if values:
                kwargs["ExpressionAttributeValues"] = values
            self._table.put_item(**kwargs)

    def record_feedback(self, state: UserState, seen_key: str, outcome: str, at: int, writer: str) -> None:
        """Count one push outcome, conditional on the version read (VersionConflict otherwise)."""
        seen = pack_list([*state.feedback_seen, seen_key][-MAX_FEEDBACK_SEEN:])
        with translated("user_state.record_feedback"):
            self._table.update_item(
                Key={"user_id": state.user_id},
                UpdateExpression="ADD #c :one, version :one "
                "SET last_feedback_at = :at, last_writer = :w, feedback_seen = :seen",
                ConditionExpression="version = :expected",
                ExpressionAttributeNames={"#c": f"pushes_{outcome}"},
                ExpressionAttributeValues={
                    ":one": 1,
                    ":at": at,
                    ":w": writer,
                    ":seen": seen,
                    ":expected": state.version,
                },
            )

    def schedule(self, user_id: str, expected_version: int, due_at: int, due_shard: str, writer: str) -> None:
        """Mark a deferred decision; the sparse due-index finds it when due."""
        with translated("user_state.schedule"):
            self._table.update_item(
                Key={"user_id": user_id},
                UpdateExpression="SET due_at = :due, due_shard = :shard, last_writer = :w ADD version :one",
                ConditionExpression="version = :expected",
                ExpressionAttributeValues={
                    ":due": due_at,
                    ":shard": due_shard,
                    ":w": writer,
                    ":one": 1,
                    ":expected": expected_version,
                },
            )

    def record_endpoint(self, user_id: str, token: str, endpoint: str, writer: str) -> None:
        self._set_if_token(user_id, token, writer, "push_endpoint = :e, push_endpoint_token = :t", {":e": endpoint})

    def disable_token(self, user_id: str, token: str, writer: str) -> None:
        self._set_if_token(user_id, token, writer, "push_token_disabled = :t", {})

    def _set_if_token(self, user_id: str, token: str, writer: str, assignments: str, values: dict[str, Any]) -> None:
        """SET ``assignments`` (``:t`` is the token) unless the user's token changed meanwhile; bumps the
        version so a concurrent fold re-reads rather than writing its older copy over this."""
        try:
            with translated("user_state.delivery_record"):
                self._table.update_item(
                    Key={"user_id": user_id},
                    UpdateExpression=f"SET {assignments}, last_writer = :w ADD version :one",
                    ConditionExpression="push_token = :t",
                    ExpressionAttributeValues={":t": token, ":w": writer, ":one": 1, **values},
                )
        except VersionConflict:
            return  # a newer token arrived: this record is about one the user no longer has

    def clear_due(self, user_id: str, due_at: int, writer: str) -> None:
        """Take the user off the due-index, unless a newer deferral replaced this one."""
        try:
            with translated("user_state.clear_due"):
                self._table.update_item(
                    Key={"user_id": user_id},
                    UpdateExpression="REMOVE due_at, due_shard SET last_writer = :w ADD version :one",
                    ConditionExpression="due_at = :due",
                    ExpressionAttributeValues={":due": due_at, ":w": writer, ":one": 1},
                )
        except VersionConflict:
            return

    def due_users(self, due_shard: str, now: int, limit: int = 500) -> list[tuple[str, int]]:
        """(user_id, due_at) of deferred decisions due by ``now`` in one due-index shard."""
        items = query_items(
            self._table,
            "user_state.due_users",
            limit=limit,
            IndexName="due-index",
            KeyConditionExpression="due_shard = :s AND due_at <= :now",
            ExpressionAttributeValues={":s": due_shard, ":now": now},
        )
        return [(str(i["user_id"]), int(i["due_at"])) for i in items]
