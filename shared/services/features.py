"""Features: fold a batch's events into user state with one conditional write per user."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from shared.domain.admission import Delivered, EventIdRegistry, admit_delivered
from shared.domain.contract import BehaviourEvent, ProfileEvent
from shared.domain.errors import NudgeError, PoisonRecord, VersionConflict, as_poison
from shared.domain.fold import GenreLookup, apply_event, decision_request
from shared.domain.ports import CatalogReader, FoldedStates
from shared.domain.user_state import UserState

WRITER = "features"

Ref = TypeVar("Ref")


@dataclass
class FeaturesResult(Generic[Ref]):
    applied: int = 0
    duplicates: int = 0
    conflicts: int = 0
    users_written: int = 0
    write_requests: int = 0
    version_conflicts: int = 0
    decisions_asked: int = 0
    # Transient failures: retried by the event source mapping.
    failed: list[tuple[Ref, NudgeError]] = field(default_factory=list)
    # Records no retry can apply: quarantined by the caller, the rest of the batch stands.
    poisoned: list[tuple[Ref, PoisonRecord]] = field(default_factory=list)


class FeaturesService:
    def __init__(
        self,
        states: FoldedStates,
        catalog: CatalogReader,
        registry: EventIdRegistry,
        max_write_attempts: int = 5,
        decision_interval_seconds: int = 0,
    ) -> None:
        self._states = states
        self._catalog = catalog
        self._registry = registry
        self._max_write_attempts = max_write_attempts
        self._decision_interval = decision_interval_seconds

    def apply(self, batch: Sequence[Delivered[Ref]]) -> FeaturesResult[Ref]:
        """Every valid event the stream delivered (each claims its event id in stream order, see
        shared/domain/admission.py); behaviour and profile events are folded into user state."""
        result: FeaturesResult[Ref] = FeaturesResult()
        admitted = admit_delivered(batch, self._registry)
        result.duplicates += len(admitted.duplicates)
        result.conflicts += len(admitted.conflicts)
        by_user: dict[str, list[Delivered[Ref]]] = defaultdict(list)
        for item in admitted.holders:
            if isinstance(item.event, BehaviourEvent | ProfileEvent):
                by_user[item.event.user_id].append(item)
        if not by_user:
            return result
        item_ids = [p.event.item_id for p in admitted.holders if isinstance(p.event, BehaviourEvent)]
        catalog = self._catalog.get_many(item_ids)

        def genres_of(item_id: str) -> list[str]:
            entry = catalog.get(item_id)
            return list(entry.genres) if entry else []

        # The profile item (consent, token, attributes...) is read only for a profile event's fold:
        # behaviour folds never read it, and the store reads it itself for the rare write that moves
        # consumed items there (docs/cost.md, "User state").
        profiles_of = [u for u, events in by_user.items() if any(isinstance(p.event, ProfileEvent) for p in events)]
        stored = self._states.get_many(by_user, profiles_of=profiles_of)
        for user_id, events in by_user.items():
            try:
                self._apply_user(user_id, events, stored.get(user_id), genres_of, result)
            except Exception as error:  # classified: poison is isolated, the rest retried
                poison = as_poison(error)
                if poison is None:
                    assert isinstance(error, NudgeError)
                    # Every record of this user is reported; the others in the batch stand.
                    result.failed.extend((p.ref, error) for p in events)
                else:
                    self._isolate(user_id, events, genres_of, result, poison)
        return result

    def _isolate(
        self,
        user_id: str,
        events: Sequence[Delivered[Ref]],
        genres_of: GenreLookup,
        result: FeaturesResult[Ref],
        poison: PoisonRecord,
    ) -> None:
        """Apply a user's events one write each, so only the records that cannot be written are poison."""
        if len(events) == 1:
            result.poisoned.append((events[0].ref, poison))
            return
        for index, item in enumerate(events):
            try:
                self._apply_user(user_id, [item], self._states.get(user_id), genres_of, result)
            except Exception as error:  # classified as above
                single = as_poison(error)
                if single is not None:
                    result.poisoned.append((item.ref, single))
                    continue
                assert isinstance(error, NudgeError)
                # Later events must not overtake this one: they are retried with it.
                result.failed.extend((later.ref, error) for later in events[index:])
                return

    def _apply_user(
        self,
        user_id: str,
        events: Sequence[Delivered[Ref]],
        current: UserState | PoisonRecord | None,
        genres_of: GenreLookup,
        result: FeaturesResult[Ref],
    ) -> None:
        if isinstance(current, PoisonRecord):
            raise current
        for attempt in range(self._max_write_attempts):
            if attempt:
                current = self._states.get(user_id)
            state = current.model_copy(deep=True) if current else UserState(user_id=user_id)
            expected = state.version
            applied = [
                p.event
                for p in events
                if isinstance(p.event, BehaviourEvent | ProfileEvent)
                and apply_event(state, p.event, genres_of, p.position)
            ]
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
                self._states.save(
                    state,
                    expected_version=expected,
                    profile_changed=any(isinstance(event, ProfileEvent) for event in applied),
                )
            except VersionConflict:
                result.version_conflicts += 1
                continue
            result.applied += len(applied)
            result.duplicates += len(events) - len(applied)
            result.users_written += 1
            result.decisions_asked += state.asks_decision
            return
        raise VersionConflict(f"user state kept changing after {self._max_write_attempts} attempts")
