"""Fakes for unit tests (in the cosmicpython sense: working stand-ins, not mocks)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

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
    """Stands in for the idempotent SNS publish; remembers what it sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def __call__(self, push: dict[str, Any]) -> str:
        self.sent.append(push)
        return f"msg-{len(self.sent)}"
