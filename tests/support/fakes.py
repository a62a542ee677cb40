"""Fakes for unit tests (in the cosmicpython sense: working stand-ins, not mocks)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from shared.domain.delivery import DeliveryResult, Push
from shared.model import ModelManifest, Recommendation


class FakeRecommender:
    """Recommends a fixed ranking, minus the history, like the real graph masks it."""

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
    """ObjectArchive without S3: keeps the gzip bytes (so serialisation cost stays real)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_lines(self, key: str, records: Any) -> None:
        from shared.adapters.object_archive import jsonl_gz

        self.objects[key] = jsonl_gz(records)

    def read_lines(self, key: str) -> list[dict[str, Any]]:
        from shared.adapters.object_archive import read_jsonl_gz

        return read_jsonl_gz(self.objects[key])

    def keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))


class InMemoryUserStates:
    """UserStateStore semantics (versioned conditional save) over a dict, counting requests."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.reads = 0
        self.writes = 0

    def get(self, user_id: str) -> Any:
        from shared.adapters.user_state_codec import decode_user_state

        self.reads += 1
        item = self.items.get(user_id)
        return None if item is None else decode_user_state(item)

    def get_many(self, user_ids: Any) -> dict[str, Any]:
        from shared.adapters.user_state_codec import decode_user_state

        self.reads += 1
        return {u: decode_user_state(self.items[u]) for u in set(user_ids) if u in self.items}

    def save(self, state: Any, expected_version: int) -> None:
        from shared.adapters.user_state_codec import encode_user_state
        from shared.domain.errors import VersionConflict

        self.writes += 1
        current = self.items.get(state.user_id)
        if (current is None and expected_version != 0) or (
            current is not None and int(current["version"]) != expected_version
        ):
            raise VersionConflict(state.user_id)
        self.items[state.user_id] = encode_user_state(state)


class InMemoryCatalog:
    def __init__(self, items: Sequence[Any]) -> None:
        self._items = {i.item_id: i for i in items}

    def get_many(self, item_ids: Any) -> dict[str, Any]:
        return {i: self._items[i] for i in set(item_ids) if i in self._items}


class InMemoryLedger:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}

    def record(self, decision: Any, expires_at: int) -> tuple[Any, bool]:
        key = (decision.user_id, decision.decision_id)
        if key in self.rows:
            from shared.domain.decision import Decision

            return Decision.model_validate(self.rows[key]), False
        self.rows[key] = {**decision.model_dump(mode="json"), "expires_at": expires_at, "status": "decided"}
        return decision, True

    def mark_sent(self, user_id: str, decision_id: str, message_id: str, sent_at: int) -> None:
        self.rows[(user_id, decision_id)]["status"] = "sent"

    def pushes_since(self, user_id: str, since: int) -> list[dict[str, Any]]:
        return [
            r
            for (u, _), r in sorted(self.rows.items())
            if u == user_id and r["action"] == "push" and r["decided_at"] >= since
        ]


class InMemoryEventIds:
    """The event-id registry (first claim wins) over a dict."""

    def __init__(self) -> None:
        from shared.domain.admission import Claim

        self.held: dict[str, Claim] = {}

    def claim(self, claims: Sequence[Any]) -> dict[str, Any]:
        for claim in claims:
            self.held.setdefault(claim.event_id, claim)
        return {claim.event_id: self.held[claim.event_id] for claim in claims}
