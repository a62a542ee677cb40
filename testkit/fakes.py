"""Fakes (in the cosmicpython sense: working stand-ins, not mocks) for the ports in shared/domain/ports.py.

Each class implements the Protocols its docstring names; the module-level assignments at the end
make mypy check that, so a port that changes breaks the fake at type-check time, not in a test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from shared.adapters.object_archive import jsonl_gz, read_jsonl_gz
from shared.adapters.user_state_codec import PROFILE_UNREAD, encode_items, profile_key, states_of, with_profile
from shared.domain.admission import Claim, EventIdRegistry
from shared.domain.catalog import CatalogItem
from shared.domain.decision import Action, Decision, Reason
from shared.domain.delivery import DeliveryResult, Push
from shared.domain.errors import PoisonRecord, VersionConflict
from shared.domain.ports import (
    CatalogReader,
    DecidingStates,
    DecisionLedger,
    FoldedStates,
    LineWriter,
    SendOnce,
)
from shared.domain.recommendation import Recommendation, Recommender
from shared.domain.user_state import UserState
from shared.model import ModelManifest


class FakeRecommender:
    """Recommends a fixed ranking, minus the history, like the real graph masks it. A Recommender."""

    def __init__(self, ranking: Sequence[tuple[str, float]], version: str = "fake-1") -> None:
        self._ranking = list(ranking)
        vocab = ["<pad>", *[item for item, _ in ranking]]
        self._manifest = ModelManifest(
            name="fake",
            version=version,
            kind="fake",
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
            inputs=[],
            outputs=[],
            item_vocab=vocab,
            max_history=10,
            training_data_sha256="0" * 64,
            training_window={
                "start": datetime(2026, 1, 1, tzinfo=UTC),
                "end": datetime(2026, 1, 2, tzinfo=UTC),
            },
            metrics={},
            code_version="test",
        )
        self.calls: list[list[str]] = []

    @property
    def manifest(self) -> ModelManifest:
        return self._manifest

    def recommend(self, histories: Sequence[Sequence[str]], k: int) -> list[list[Recommendation]]:
        out = []
        for history in histories:
            self.calls.append(list(history))
            seen = set(history)
            out.append([Recommendation(i, s) for i, s in self._ranking if i not in seen][:k])
        return out


class RecordingSender:
    """Stands in for delivery (a Deliverer, or the idempotent SendOnce around one); remembers what it sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def deliver(self, push: Push) -> DeliveryResult:
        self.sent.append(dataclasses.asdict(push))
        return DeliveryResult(message_id=f"msg-{len(self.sent)}")

    def __call__(self, push: Push) -> DeliveryResult:
        return self.deliver(push)


class InMemoryArchive:
    """ObjectArchive without S3 (a LineWriter): keeps the gzip bytes, so serialisation cost stays real."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_lines(self, key: str, records: Iterable[Mapping[str, Any]]) -> str | None:
        self.objects[key] = jsonl_gz(records)
        return None

    def read_lines(self, key: str) -> list[dict[str, Any]]:
        return read_jsonl_gz(self.objects[key])

    def keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))


class InMemoryUserStates:
    """UserStateStore semantics over a dict of items keyed as the table is (each user's hot and profile
    items, through the real codec), counting requests: versioned conditional saves (which write both
    items every time: the store's choice of when to write the profile item is its own business), the
    due index as a scan."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.reads = 0
        self.writes = 0
        # The keys of the items each read returned (hot items as user ids, profile items as ``#profile``).
        self.keys_read: list[str] = []

    def get(self, user_id: str) -> UserState | None:
        self.reads += 1
        found = self._states([user_id]).get(user_id)
        if isinstance(found, PoisonRecord):
            raise found
        return found

    def get_many(
        self, user_ids: Iterable[str], profiles_of: Iterable[str] | None = None
    ) -> dict[str, UserState | PoisonRecord]:
        self.reads += 1
        return self._states(user_ids, profiles_of)

    def _states(
        self, user_ids: Iterable[str], profiles_of: Iterable[str] | None = None
    ) -> dict[str, UserState | PoisonRecord]:
        users = set(user_ids)
        wanted = users if profiles_of is None else set(profiles_of)
        keys = users | {profile_key(user_id) for user_id in users & wanted}
        self.keys_read.extend(sorted(keys & self.items.keys()))
        return states_of((item for key, item in self.items.items() if key in keys), profiles_unread=users - wanted)

    def with_profile(self, state: UserState) -> UserState:
        self.reads += 1
        self.keys_read.extend([profile_key(state.user_id)] if profile_key(state.user_id) in self.items else [])
        return with_profile(state, self.items.get(profile_key(state.user_id)))

    def save(self, state: UserState, expected_version: int, *, profile_changed: bool) -> None:
        self.writes += 1
        if state.profile_version == PROFILE_UNREAD:  # read without its profile item: completed, as the store does
            if profile_changed:
                raise ValueError("a profile change was folded without the user's profile item")
            state = with_profile(state, self.items.get(profile_key(state.user_id)))
        self._check_version(state.user_id, expected_version)
        self._check_version(profile_key(state.user_id), state.profile_version)
        hot, profile = encode_items(state.model_copy(update={"profile_version": state.profile_version + 1}), "fake")
        self.items[state.user_id], self.items[profile_key(state.user_id)] = hot, profile

    def schedule(self, user_id: str, expected_version: int, due_at: int, due_shard: str, writer: str) -> None:
        self.writes += 1
        self._check_version(user_id, expected_version)
        item = self.items[user_id]
        item.update(due_at=due_at, due_shard=due_shard, last_writer=writer, version=int(item["version"]) + 1)

    def clear_due(self, user_id: str, due_at: int, writer: str) -> None:
        self.writes += 1
        item = self.items.get(user_id)
        if item is None or item.get("due_at") != due_at:
            return
        item.pop("due_at")
        item.pop("due_shard", None)
        item.update(last_writer=writer, version=int(item["version"]) + 1)

    def due_users(self, due_shard: str, now: int, limit: int = 500) -> list[tuple[str, int]]:
        self.reads += 1
        due = [
            (user_id, int(item["due_at"]))
            for user_id, item in sorted(self.items.items())
            if item.get("due_shard") == due_shard and "due_at" in item and int(item["due_at"]) <= now
        ]
        return due[:limit]

    def record_endpoint(self, user_id: str, token: str, endpoint: str, writer: str) -> None:
        self._set_if_token(user_id, token, writer, push_endpoint=endpoint, push_endpoint_token=token)

    def disable_token(self, user_id: str, token: str, writer: str) -> None:
        self._set_if_token(user_id, token, writer, push_token_disabled=token)

    def _set_if_token(self, user_id: str, token: str, writer: str, **fields: Any) -> None:
        self.writes += 1
        item = self.items.get(profile_key(user_id))
        if item is None or item.get("push_token") != token:
            return  # the user's token changed meanwhile: this record is about a device they left
        item.update(fields, last_writer=writer, version=int(item["version"]) + 1)

    def _check_version(self, key: str, expected_version: int) -> None:
        current = self.items.get(key)
        if (current is None and expected_version != 0) or (
            current is not None and int(current["version"]) != expected_version
        ):
            raise VersionConflict(key)


class InMemoryCatalog:
    """A CatalogReader over a dict."""

    def __init__(self, items: Iterable[CatalogItem]) -> None:
        self._items = {i.item_id: i for i in items}

    def get_many(self, item_ids: Iterable[str]) -> dict[str, CatalogItem]:
        return {i: self._items[i] for i in set(item_ids) if i in self._items}


class InMemoryLedger:
    """A DecisionLedger over a dict: recorded once per decision id, downgraded only while not sent."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}

    def record(self, decision: Decision, expires_at: int, outbox_shard: str | None = None) -> tuple[Decision, bool]:
        key = (decision.user_id, decision.decision_id)
        if key in self.rows:
            return Decision.model_validate(self.rows[key]), False
        row = {**decision.model_dump(mode="json"), "expires_at": expires_at, "status": "decided"}
        if outbox_shard is not None and decision.action is Action.PUSH:
            row.update(outbox_shard=outbox_shard, outbox_at=decision.decided_at)
        self.rows[key] = row
        return decision, True

    def downgrade(self, decision: Decision, reason: Reason) -> Decision:
        row = self.rows[(decision.user_id, decision.decision_id)]
        if row["status"] != "decided":
            return Decision.model_validate(row)
        row.update(action=Action.SILENCE.value, reasons=[reason.value])
        row.pop("outbox_shard", None)
        row.pop("outbox_at", None)
        return decision.model_copy(update={"action": Action.SILENCE, "reasons": [reason]})

    def mark_sent(self, user_id: str, decision_id: str, message_id: str, sent_at: int) -> None:
        row = self.rows[(user_id, decision_id)]
        row.update(status="sent", message_id=message_id, sent_at=sent_at)
        row.pop("outbox_shard", None)
        row.pop("outbox_at", None)

    def mark_undeliverable(self, user_id: str, decision_id: str, reason: str, at: int) -> None:
        row = self.rows[(user_id, decision_id)]
        if row["status"] == "sent":
            return
        row.update(status="undeliverable", undeliverable=reason)
        row.pop("outbox_shard", None)
        row.pop("outbox_at", None)

    def unsent_pushes(self, outbox_shard: str, decided_before: int, limit: int = 500) -> list[tuple[str, str]]:
        unsent = [
            key
            for key, r in sorted(self.rows.items())
            if r.get("outbox_shard") == outbox_shard and int(r["outbox_at"]) < decided_before
        ]
        return unsent[:limit]

    def get(self, user_id: str, decision_id: str) -> dict[str, Any] | None:
        return self.rows.get((user_id, decision_id))

    def pushes_since(self, user_id: str, since: int) -> list[dict[str, Any]]:
        return [
            r
            for (u, _), r in sorted(self.rows.items())
            if u == user_id and r["action"] == "push" and r["decided_at"] >= since
        ]


class InMemoryEventIds:
    """The event-id registry (an EventIdRegistry: first claim wins) over a dict."""

    def __init__(self) -> None:
        self.held: dict[str, Claim] = {}

    def claim(self, claims: Sequence[Claim]) -> dict[str, Claim]:
        for claim in claims:
            self.held.setdefault(claim.event_id, claim)
        return {claim.event_id: self.held[claim.event_id] for claim in claims}


# Type-checked conformance: each fake is usable wherever its port is asked for.
_recommender: type[Recommender] = FakeRecommender
_sender: SendOnce = RecordingSender()
_archive: type[LineWriter] = InMemoryArchive
_folded: type[FoldedStates] = InMemoryUserStates
_deciding: type[DecidingStates] = InMemoryUserStates
_catalog: type[CatalogReader] = InMemoryCatalog
_ledger: type[DecisionLedger] = InMemoryLedger
_registry: type[EventIdRegistry] = InMemoryEventIds
