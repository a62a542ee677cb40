"""The user-state table: each user's hot and profile items, batch reads and version-conditional writes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from shared.adapters.aws_errors import translated
from shared.adapters.dynamo_batch import batch_get
from shared.adapters.dynamo_query import query_items
from shared.adapters.user_state_codec import (
    PROFILE_UNREAD,
    decode_user_state,
    encode_hot,
    encode_profile,
    pack_list,
    profile_key,
    states_of,
    tail_is_full,
    with_profile,
)
from shared.domain.errors import PoisonRecord, VersionConflict
from shared.domain.user_state import MAX_FEEDBACK_SEEN, UserState


class UserStateStore:
    """Each user's state as its two items (shared/adapters/user_state_codec.py): reads take both in one
    request, or for features the hot items and only the profile items it will write; a fold's save
    writes the hot item, and the profile item only when its part changed."""

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._dynamodb = dynamodb
        self._table_name = table_name
        self._table = dynamodb.Table(table_name)

    def get(self, user_id: str) -> UserState | None:
        found = self._read([user_id]).get(user_id)
        if isinstance(found, PoisonRecord):
            raise found
        return found

    def get_many(
        self, user_ids: Iterable[str], profiles_of: Iterable[str] | None = None
    ) -> dict[str, UserState | PoisonRecord]:
        """Strongly consistent batch read; users never seen before are simply absent, and a user whose
        items cannot be read maps to the PoisonRecord saying so (the others are read all the same).

        ``profiles_of``: the users whose profile items are read too (all when None). The others' states
        come from their hot items alone, with ``profile_version`` PROFILE_UNREAD: a fold needs nothing
        else from the profile item, and ``save`` reads it if the fold turns out to write it."""
        return self._read(user_ids, profiles_of)

    def _read(
        self, user_ids: Iterable[str], profiles_of: Iterable[str] | None = None
    ) -> dict[str, UserState | PoisonRecord]:
        users = list(dict.fromkeys(user_ids))
        wanted = set(users) if profiles_of is None else set(profiles_of)
        keys = [*users, *(profile_key(user_id) for user_id in users if user_id in wanted)]
        items = batch_get(self._dynamodb, self._table_name, "user_id", keys, consistent=True)
        return states_of(items, profiles_unread=set(users) - wanted)

    def get_profile(self, user_id: str) -> UserState | None:
        """The user's state as far as the profile item holds it (consent, token, push-outcome counters,
        feedback keys, ``profile_version``; the hot item's fields at their defaults): what feedback's
        count needs, for one read of one item. A user without a profile item (an item written before
        the split, or no state) is read whole, so the count writes the new shape as before."""
        with translated("user_state.get_profile"):
            found = self._table.get_item(Key={"user_id": profile_key(user_id)}, ConsistentRead=True).get("Item")
        if found is None:
            return self.get(user_id)
        return decode_user_state({"user_id": user_id}, found)

    def with_profile(self, state: UserState) -> UserState:
        """A state decoded from a hot item's stream image, completed with the user's profile item."""
        with translated("user_state.get_profile"):
            profile = self._table.get_item(Key={"user_id": profile_key(state.user_id)}, ConsistentRead=True)
        return with_profile(state, profile.get("Item"))

    def delete(self, user_id: str) -> bool:
        """Remove the user's items (erasure); True when there was one."""
        removed = False
        for key in (user_id, profile_key(user_id)):
            with translated("user_state.delete"):
                response = self._table.delete_item(Key={"user_id": key}, ReturnValues="ALL_OLD")
            removed |= bool(response.get("Attributes"))
        return removed

    def save(self, state: UserState, expected_version: int, *, profile_changed: bool) -> None:
        """Write the fold if nobody wrote since we read ``expected_version`` (of the hot item) and, when
        the profile item must be written too, ``state.profile_version`` (of the profile item).

        The profile item is written when ``profile_changed`` (a profile event was folded), when the user
        has none yet (a new user, or an item written before the split: write new), and when the
        consumed items riding in the hot item are due to move. It goes first: if the hot put then fails,
        the retry re-reads both and folds again onto the new profile item, which holds nothing the
        fold would apply twice (profile fields are set, not added; consumed items are counted once).
        Raises VersionConflict otherwise; the caller re-reads and re-applies.

        A state read without its profile item (PROFILE_UNREAD) has it read here when its consumed items
        are due to move (about one fold in 20), and the put is conditional on the version read then; a
        profile change must be folded onto the profile item, so it cannot come without it.
        """
        if state.profile_version == PROFILE_UNREAD:
            if profile_changed:
                raise ValueError("a profile change was folded without the user's profile item")
            if tail_is_full(state):
                state = self.with_profile(state)
        if profile_changed or state.profile_version == 0 or tail_is_full(state):
            version = state.profile_version + 1
            self._put(
                encode_profile(state, version, state.last_writer), state.profile_version, "user_state.save_profile"
            )
            state = state.model_copy(update={"profile_version": version, "consumed_flushed": len(state.consumed)})
        self._put(encode_hot(state), expected_version, "user_state.save")

    def _put(self, item: dict[str, Any], expected_version: int, operation: str) -> None:
        kwargs: dict[str, Any] = {"Item": item}
        if expected_version == 0:
            kwargs["ConditionExpression"] = "attribute_not_exists(user_id)"
        else:
            kwargs["ConditionExpression"] = "version = :expected"
            kwargs["ExpressionAttributeValues"] = {":expected": expected_version}
        with translated(operation):
            self._table.put_item(**kwargs)

    def record_feedback(self, state: UserState, seen_key: str, outcome: str, at: int, writer: str) -> None:
        """Count one push outcome in the profile item, conditional on its version as read
        (VersionConflict otherwise). The hot item is not written, so decide is not triggered."""
        seen = [*state.feedback_seen, seen_key][-MAX_FEEDBACK_SEEN:]
        if state.profile_version == 0:  # an item written before the split: the count writes the new shape
            counted = state.model_copy(
                update={
                    f"pushes_{outcome}": getattr(state, f"pushes_{outcome}") + 1,
                    "last_feedback_at": at,
                    "feedback_seen": seen,
                }
            )
            self._put(encode_profile(counted, 1, writer), 0, "user_state.record_feedback")
            return
        with translated("user_state.record_feedback"):
            self._table.update_item(
                Key={"user_id": profile_key(state.user_id)},
                UpdateExpression="ADD #c :one, version :one "
                "SET last_feedback_at = :at, last_writer = :w, feedback_seen = :seen",
                ConditionExpression="version = :expected",
                ExpressionAttributeNames={"#c": f"pushes_{outcome}"},
                ExpressionAttributeValues={
                    ":one": 1,
                    ":at": at,
                    ":w": writer,
                    ":seen": pack_list(seen),
                    ":expected": state.profile_version,
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
        """SET ``assignments`` (``:t`` is the token) in the profile item unless the user's token changed
        meanwhile; bumps its version so a concurrent profile write re-reads rather than writing its
        older copy over this. A user whose items predate the split gets a profile item first."""
        for _ in range(2):
            try:
                with translated("user_state.delivery_record"):
                    self._table.update_item(
                        Key={"user_id": profile_key(user_id)},
                        UpdateExpression=f"SET {assignments}, last_writer = :w ADD version :one",
                        ConditionExpression="push_token = :t",
                        ExpressionAttributeValues={":t": token, ":w": writer, ":one": 1, **values},
                    )
                return
            except VersionConflict:
                if not self._split(user_id, writer):
                    return  # a newer token arrived: this record is about one the user no longer has

    def _split(self, user_id: str, writer: str) -> bool:
        """Write the profile item of a user whose only item predates the split; False when there is
        nothing to split (the profile item exists, or the user has no state)."""
        state = self.get(user_id)
        if state is None or state.profile_version:
            return False
        # Another writer may split it first (VersionConflict): the caller's update then goes to theirs.
        with contextlib.suppress(VersionConflict):
            self._put(encode_profile(state, 1, writer), 0, "user_state.split")
        return True

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
