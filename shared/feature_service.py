"""Features: fold a batch's events into user state with one conditional write per user."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from shared.adapters.catalog import Catalog
from shared.adapters.user_state_store import UserStateStore
from shared.contract import BehaviourEvent, ProfileEvent
from shared.errors import NudgeError, VersionConflict
from shared.features import GenreLookup, StreamPosition, apply_event, decision_request
from shared.user_state import UserState

WRITER = "features"

Ref = TypeVar("Ref")


@dataclass(frozen=True)
class Positioned(Generic[Ref]):
    """An event with where it sat in the stream; ``ref`` lets the caller map failures back."""

    event: BehaviourEvent | ProfileEvent
    position: StreamPosition
    ref: Ref


@dataclass
class FeaturesResult(Generic[Ref]):
    applied: int = 0
    duplicates: int = 0
    users_written: int = 0
    write_requests: int = 0
    conflicts: int = 0
    decisions_asked: int = 0
    failed: list[tuple[Ref, NudgeError]] = field(default_factory=list)


class FeaturesService:
    def __init__(
        self,
        states: UserStateStore,
        catalog: Catalog,
        max_write_attempts: int = 5,
        decision_interval_seconds: int = 0,
    ) -> None:
        self._states = states
        self._catalog = catalog
        self._max_write_attempts = max_write_attempts
        self._decision_interval = decision_interval_seconds

    def apply(self, batch: Sequence[Positioned[Ref]]) -> FeaturesResult[Ref]:
        result: FeaturesResult[Ref] = FeaturesResult()
        by_user: dict[str, list[Positioned[Ref]]] = defaultdict(list)
        for item in batch:
            by_user[item.event.user_id].append(item)
        if not by_user:
            return result
        item_ids = [p.event.item_id for p in batch if isinstance(p.event, BehaviourEvent)]
        catalog = self._catalog.get_many(item_ids)

        def genres_of(item_id: str) -> list[str]:
            entry = catalog.get(item_id)
            return list(entry.genres) if entry else []

        stored = self._states.get_many(by_user)
        for user_id, events in by_user.items():
            try:
                self._apply_user(user_id, events, stored.get(user_id), genres_of, result)
            except NudgeError as error:
                # Every record of this user is reported; the others in the batch stand.
                result.failed.extend((p.ref, error) for p in events)
        return result

    def _apply_user(
        self,
        user_id: str,
        events: Sequence[Positioned[Ref]],
        current: UserState | None,
        genres_of: GenreLookup,
        result: FeaturesResult[Ref],
    ) -> None:
        for attempt in range(self._max_write_attempts):
            if attempt:
                current = self._states.get(user_id)
            state = current.model_copy(deep=True) if current else UserState(user_id=user_id)
            expected = state.version
            applied = [p.event for p in events if apply_event(state, p.event, genres_of, p.position)]
            if not applied:
                result.duplicates += len(events)
                return
            state.version = expected + 1
            state.last_writer = WRITER
            asked_at = decision_request(state.decision_asked_at, applied, self._decision_interval)
            state.asks_decision = asked_at is not None
            if asked_at is not None:
                state.decision_asked_at = asked_at
            try:
                result.write_requests += 1
                self._states.save(state, expected_version=expected)
            except VersionConflict:
                result.conflicts += 1
                continue
            result.applied += len(applied)
            result.duplicates += len(events) - len(applied)
            result.users_written += 1
            result.decisions_asked += state.asks_decision
            return
        raise VersionConflict(f"user state kept changing after {self._max_write_attempts} attempts")
