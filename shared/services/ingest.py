"""Ingest: validate every record, archive the valid ones, quarantine the rest with a reason."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.domain.admission import Delivered, EventIdRegistry, StreamPosition, admit_delivered
from shared.domain.contract import (
    DEFAULT_IMAGE_EMBEDDING_DIM,
    AnyEvent,
    CatalogEvent,
    ContractViolation,
    QuarantineReason,
    decode_event,
)
from shared.domain.ports import LineWriter

Pseudonymize = Callable[[str], str]


@dataclass(frozen=True)
class StreamRecord:
    """One stream record as the logic needs it, independent of the Lambda event shape."""

    shard_id: str
    sequence_number: str
    partition_key: str
    data_b64: str
    arrived_at: datetime

    @property
    def position(self) -> StreamPosition:
        return StreamPosition(self.shard_id, self.sequence_number)


@dataclass(frozen=True)
class Checked:
    record: StreamRecord
    event: AnyEvent | None = None
    violation: ContractViolation | None = None
    # The contract makes the user id the partition key (one user's events stay ordered in one shard), the
    # item id for a catalog event; a record keyed otherwise is accepted, and counted, because its ordering
    # is not guaranteed.
    partition_key_matches: bool = True


@dataclass
class IngestResult:
    archived: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    partition_key_mismatches: int = 0
    archive_key: str | None = None
    quarantine_key: str | None = None


def check_record(
    record: StreamRecord,
    pseudonymize: Pseudonymize | None = None,
    image_embedding_dim: int = DEFAULT_IMAGE_EMBEDDING_DIM,
) -> Checked:
    """Decode and validate one record; never raises for bad input (it is data, not an error).

    With ``pseudonymize`` (shared/domain/pseudonym.py) the event's user id is replaced here, the one
    place every stream consumer decodes events, so nothing downstream sees the raw id (a catalog event
    names no user and is left as it is). ``image_embedding_dim`` is the deployment's (see decode_event).
    """
    try:
        raw = base64.b64decode(record.data_b64, validate=True)
    except (binascii.Error, ValueError):
        return Checked(record, violation=ContractViolation(QuarantineReason.BAD_ENCODING, "not base64"))
    try:
        event = decode_event(raw, record.arrived_at, image_embedding_dim)
    except ContractViolation as violation:
        return Checked(record, violation=violation)
    matches = record.partition_key == event.partition_key
    if pseudonymize is not None and not isinstance(event, CatalogEvent):
        event = event.model_copy(update={"user_id": pseudonymize(event.user_id)})
    return Checked(record, event=event, partition_key_matches=matches)


def batch_key(prefix: str, records: Sequence[StreamRecord], suffix: str) -> str:
    """Partitioned by arrival date and hour of the batch's first record; named by its position.

    The same batch always maps to the same key, so a retry overwrites rather than duplicates.
    The key is the first record's position only (not the batch size): when a failed batch is
    bisected, its first half rewrites the failed batch's object and the second half gets its own,
    so a batch that crashed after archiving is not archived twice.
    """
    first = records[0]
    at = first.arrived_at.astimezone(UTC)
    return f"{prefix}dt={at:%Y-%m-%d}/hour={at:%H}/{first.shard_id}-{first.sequence_number}{suffix}"


class IngestService:
    def __init__(
        self,
        archive: LineWriter,
        registry: EventIdRegistry,
        archive_prefix: str,
        quarantine_prefix: str,
        pseudonymize: Pseudonymize | None = None,
    ) -> None:
        self._archive = archive
        self._registry = registry
        self._archive_prefix = archive_prefix
        self._quarantine_prefix = quarantine_prefix
        self._pseudonymize = pseudonymize

    def commit(self, checked: Sequence[Checked]) -> IngestResult:
        """Write one archive object and at most one quarantine object for the batch.

        Every valid record claims its event id first (shared/domain/admission.py): only the record holding
        the id is archived; a later one is quarantined as a duplicate or, with another body, a conflict.
        """
        result = IngestResult()
        if not checked:
            return result
        admitted = admit_delivered(
            [Delivered(item.event, item.record.position, item) for item in checked if item.event is not None],
            self._registry,
        )
        verdicts: dict[StreamPosition, ContractViolation] = {}
        for reason, refused_items in (
            (QuarantineReason.DUPLICATE, admitted.duplicates),
            (QuarantineReason.EVENT_ID_CONFLICT, admitted.conflicts),
        ):
            for delivered in refused_items:
                verdicts[delivered.position] = ContractViolation(reason, delivered.event.event_id)
        valid: list[dict[str, object]] = []
        refused: list[dict[str, object]] = []
        for item in checked:
            violation = item.violation or verdicts.get(item.record.position)
            if violation is not None:
                refused.append(self._quarantine_line(item.record, violation, self._pseudonymize))
                code = violation.reason.value
                result.quarantined[code] = result.quarantined.get(code, 0) + 1
                continue
            assert item.event is not None
            result.partition_key_mismatches += not item.partition_key_matches
            valid.append(
                {
                    "event": item.event.model_dump(mode="json", exclude_none=True),
                    "shard_id": item.record.shard_id,
                    "sequence_number": item.record.sequence_number,
                    "arrived_at": item.record.arrived_at.isoformat(),
                }
            )
        records = [item.record for item in checked]
        if valid:
            result.archive_key = batch_key(self._archive_prefix, records, ".jsonl.gz")
            self._archive.put_lines(result.archive_key, valid)
            result.archived = len(valid)
        if refused:
            result.quarantine_key = batch_key(self._quarantine_prefix, records, ".jsonl.gz")
            self._archive.put_lines(result.quarantine_key, refused)
        return result

    @staticmethod
    def _quarantine_line(
        record: StreamRecord, violation: ContractViolation, pseudonymize: Pseudonymize | None
    ) -> dict[str, object]:
        # The raw data is kept as delivered (base64) so a fixed producer bug can be replayed; it
        # expires with the quarantine prefix (30 days) and erasure removes it (shared/services/erasure.py).
        # The partition key is the user id by contract, so it is pseudonymized like one.
        return {
            "reason": violation.reason.value,
            "detail": violation.detail,
            "shard_id": record.shard_id,
            "sequence_number": record.sequence_number,
            "partition_key": pseudonymize(record.partition_key) if pseudonymize else record.partition_key,
            "arrived_at": record.arrived_at.isoformat(),
            "data": record.data_b64,
        }
