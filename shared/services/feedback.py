"""Feedback: join outcomes with the ledger, keep a log in S3, update user fatigue once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

from shared.domain.admission import Delivered, EventIdRegistry, admit_delivered
from shared.domain.contract import FeedbackEvent
from shared.domain.errors import NudgeError, PoisonRecord, VersionConflict, as_poison
from shared.domain.ports import FeedbackStates, LineWriter, OutcomeLedger
from shared.domain.user_state import as_feedback_marks, feedback_mark

WRITER = "feedback"

Ref = TypeVar("Ref")


@dataclass
class FeedbackResult(Generic[Ref]):
    joined: int = 0
    duplicates: int = 0
    orphans: int = 0
    # Records whose event id another body holds (shared/domain/admission.py): ingest quarantines them.
    conflicts: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    log_key: str | None = None
    failed: list[tuple[Ref, NudgeError]] = field(default_factory=list)
    poisoned: list[tuple[Ref, PoisonRecord]] = field(default_factory=list)


class FeedbackService:
    def __init__(
        self,
        ledger: OutcomeLedger,
        states: FeedbackStates,
        log: LineWriter,
        registry: EventIdRegistry,
        prefix: str,
        max_attempts: int = 5,
    ) -> None:
        self._ledger = ledger
        self._states = states
        self._registry = registry
        self._log = log
        self._prefix = prefix
        self._max_attempts = max_attempts

    def _count_once(self, event: FeedbackEvent) -> str:
        """Count the outcome in the user's fatigue counters once.

        Together with the ledger's first-write-wins annotation this makes both steps
        idempotent, so a crash between them is repaired by the retry without counting
        twice, and no two-table transaction (twice the write cost) is needed.
        """
        seen_key = f"{event.decision_id}:{event.type}"
        mark = feedback_mark(seen_key)
        for _ in range(self._max_attempts):
            state = self._states.get_profile(event.user_id)
            if state is None:
                return "orphan"
            if mark in state.feedback_seen or seen_key in state.feedback_seen:
                return "duplicate"
            # Keys an item kept before the marks are written back as marks (the write is whole anyway).
            state.feedback_seen = as_feedback_marks(state.feedback_seen)
            try:
                self._states.record_feedback(state, mark, event.type, event.epoch_seconds, WRITER)
            except VersionConflict:
                continue
            return "joined"
        raise VersionConflict(f"user state kept changing after {self._max_attempts} attempts")

    def apply(self, batch: Sequence[Delivered[Ref]]) -> FeedbackResult[Ref]:
        """Every valid event the stream delivered (each claims its event id, shared/domain/admission.py);
        the feedback events among the ones holding their id are joined, counted and logged."""
        result: FeedbackResult[Ref] = FeedbackResult()
        admitted = admit_delivered(batch, self._registry)
        result.duplicates += len(admitted.duplicates)
        result.conflicts += len(admitted.conflicts)
        lines: list[dict[str, object]] = []
        outcomes = [item for item in admitted.holders if isinstance(item.event, FeedbackEvent)]
        for item in outcomes:
            event = item.event
            assert isinstance(event, FeedbackEvent)
            try:
                # The ledger first: it is the join (None: no such decision) and is idempotent.
                decision = self._ledger.record_outcome(
                    event.user_id, event.decision_id, event.type, event.epoch_seconds
                )
                status = "orphan" if decision is None else self._count_once(event)
            except Exception as error:  # poison is quarantined, the rest retried
                poison = as_poison(error)
                if poison is not None:
                    result.poisoned.append((item.ref, poison))
                elif isinstance(error, NudgeError):
                    result.failed.append((item.ref, error))
                continue
            if status == "joined":
                result.joined += 1
                result.by_outcome[event.type] = result.by_outcome.get(event.type, 0) + 1
            elif status == "duplicate":
                result.duplicates += 1
            else:
                result.orphans += 1
            lines.append(
                {
                    "event": event.model_dump(mode="json", exclude_none=True),
                    "status": status,
                    "pushed_item_id": decision.get("item_id") if decision else None,
                    "model_version": decision.get("model_version") if decision else None,
                    "decided_at": decision.get("decided_at") if decision else None,
                }
            )
        if lines:
            # Keyed by the batch, so a retried batch rewrites its object. The log is
            # at-least-once per event (a retry logs it again as "duplicate"): dedupe by event_id.
            first = outcomes[0]
            at = datetime.fromtimestamp(first.event.epoch_seconds, UTC)
            name = f"{first.position.shard_id}-{first.position.sequence_number}.jsonl.gz"
            result.log_key = f"{self._prefix}dt={at:%Y-%m-%d}/hour={at:%H}/{name}"
            self._log.put_lines(result.log_key, lines)
        return result
