"""Powertools batch processing with a per-batch commit step, poison isolation and one error line.

Per-record work (decode, validate) runs in BatchProcessor's record handler as usual. Some
side effects must happen once per batch instead (one S3 object per batch, one DynamoDB
write per user per batch), so after the records are parsed, ``commit`` receives all of
them and returns the ones it could not apply; those are reported through the same
processor, so the partial batch response and "all failed -> function error -> bisect"
behave exactly as Powertools documents.

A failure is one of two kinds (shared/domain/errors.py). A poison record (``PoisonRecord``, or an error
nobody foresaw) can never succeed: it is written to the quarantine with its reason, one object per
record keyed by its position (a retried batch rewrites the same object), and the batch goes on as if
it had succeeded for it. Anything else is transient: reported as a batch item failure, retried by the
event source mapping and, after its retries, dead-lettered. Every batch with failures logs one error
line naming each record's sequence number and reason, which is what the dead-letter message names.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.domain.admission import Delivered
from shared.domain.errors import NudgeError, PoisonRecord, as_poison
from shared.domain.ports import LineWriter
from shared.services.ingest import Pseudonymize, StreamRecord, check_record

if TYPE_CHECKING:
    from shared.domain.user_state import StateChange

T = TypeVar("T")
R = TypeVar("R", KinesisStreamRecord, DynamoDBRecord)


@dataclass(frozen=True, slots=True)
class Parsed(Generic[T, R]):
    """A record that passed the record handler, with what the handler made of it."""

    value: T
    record: R


@dataclass(frozen=True, slots=True)
class CommitFailure(Generic[R]):
    record: R
    error: BaseException


@dataclass(frozen=True, slots=True)
class _Poisoned:
    """What the guarded record handler returns for a record it can never parse."""

    error: PoisonRecord


_RECORD_TYPES: dict[EventType, type[Any]] = {
    EventType.KinesisDataStreams: KinesisStreamRecord,
    EventType.DynamoDBStreams: DynamoDBRecord,
}


def sequence_number(record: KinesisStreamRecord | DynamoDBRecord) -> str:
    if isinstance(record, KinesisStreamRecord):
        return record.kinesis.sequence_number
    return str(record.dynamodb.sequence_number if record.dynamodb else "")


class Quarantine:
    """Where a consumer keeps the records it can never process, beside ingest's refused records."""

    def __init__(self, archive: LineWriter, prefix: str, stage: str, pseudonymize: Pseudonymize | None) -> None:
        self._archive = archive
        self._prefix = f"{prefix}{stage}/"
        self._stage = stage
        self._pseudonymize = pseudonymize

    def keep(self, record: KinesisStreamRecord | DynamoDBRecord, poison: PoisonRecord) -> str:
        """Write the record's quarantine object; returns its key."""
        line: dict[str, object] = {"reason": poison.reason, "detail": poison.detail, "stage": self._stage}
        if isinstance(record, KinesisStreamRecord):
            stream = stream_record_of(record)
            key_name, at = f"{stream.shard_id}-{stream.sequence_number}", stream.arrived_at
            pk = stream.partition_key
            line |= {
                "shard_id": stream.shard_id,
                "sequence_number": stream.sequence_number,
                # The user id by contract, so pseudonymized like one (erasure matches it).
                "partition_key": self._pseudonymize(pk) if self._pseudonymize else pk,
                "arrived_at": stream.arrived_at.isoformat(),
                "data": stream.data_b64,
            }
        else:
            change = record.dynamodb
            seq = sequence_number(record)
            at = datetime.fromtimestamp(int((change.approximate_creation_date_time if change else 0) or 0), UTC)
            keys = dict(change.keys or {}) if change else {}
            key_name = f"{record.event_id}-{seq}"
            # User state holds the (pseudonymized) user id as its key; the image stays in the table.
            line |= {"event_id": record.event_id, "sequence_number": seq, "partition_key": keys.get("user_id")}
        key = f"{self._prefix}dt={at:%Y-%m-%d}/hour={at:%H}/{key_name}.jsonl.gz"
        self._archive.put_lines(key, [line])
        return key


def _guarded(record_handler: Callable[[R], T]) -> Callable[[R], T | _Poisoned]:
    def handle(record: R) -> T | _Poisoned:
        try:
            return record_handler(record)
        except Exception as error:
            poison = as_poison(error)
            if poison is None:
                raise
            return _Poisoned(poison)

    return handle


class StreamConsumer(Generic[T, R]):
    """A stream function's whole handler body: parse each record, commit the batch, isolate poison.

    ``quarantine`` is a factory (the composition root's, cached per container), called only when a
    batch holds poison, so a consumer that never meets any never builds it.
    """

    def __init__(
        self,
        event_type: EventType,
        record_handler: Callable[[R], T],
        commit: Callable[[Sequence[Parsed[T, R]]], Sequence[CommitFailure[R]]],
        logger: Logger,
        metrics: Metrics,
        quarantine: Callable[[], Quarantine],
    ) -> None:
        self._event_type = event_type
        self._handler: Callable[[R], T | _Poisoned] = _guarded(record_handler)
        self._commit: Callable[[Sequence[Parsed[T, R]]], Sequence[CommitFailure[R]]] = commit
        self._logger = logger
        self._metrics = metrics
        self._quarantine = quarantine

    def __call__(self, event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        correlate(self._logger, event)
        processor = BatchProcessor(event_type=self._event_type)
        wrap = _RECORD_TYPES[self._event_type]
        records = event.get("Records", [])
        with processor(records=records, handler=self._handler, lambda_context=context):
            outcomes = processor.process()
            parsed: list[Parsed[T, R]] = []
            poisoned: list[tuple[R, PoisonRecord]] = []
            for status, result, raw in outcomes:
                if status != "success":
                    continue
                if isinstance(result, _Poisoned):
                    poisoned.append((wrap(raw), result.error))
                else:
                    parsed.append(Parsed(result, wrap(raw)))
            try:
                failures = list(self._commit(parsed))
            except Exception as error:
                self._logger.exception(
                    "batch failed as a whole; it will be retried (bisected) and then dead-lettered",
                    extra={
                        "records": len(records),
                        "first_sequence_number": sequence_number(wrap(records[0])) if records else None,
                        "last_sequence_number": sequence_number(wrap(records[-1])) if records else None,
                        "error": type(error).__name__,
                    },
                )
                raise
            retried: list[CommitFailure[R]] = []
            for failure in failures:
                if isinstance(failure.error, PoisonRecord):
                    poisoned.append((failure.record, failure.error))
                else:
                    retried.append(failure)
            retried.extend(self._keep(poisoned))
            for failure in retried:
                processor.failure_handler(
                    record=failure.record,
                    exception=(type(failure.error), failure.error, failure.error.__traceback__ or sys.exc_info()[2]),
                )
            self._report(processor)
        return dict(processor.response())

    def _keep(self, poisoned: Sequence[tuple[R, PoisonRecord]]) -> list[CommitFailure[R]]:
        """Quarantine each poison record; one that cannot be written yet is retried instead."""
        if not poisoned:
            return []
        kept: list[dict[str, str]] = []
        unwritten: list[CommitFailure[R]] = []
        quarantine = self._quarantine()
        for record, poison in poisoned:
            try:
                quarantine.keep(record, poison)
            except NudgeError as error:
                unwritten.append(CommitFailure(record, error))
                continue
            kept.append({"sequence_number": sequence_number(record), "reason": poison.reason, "detail": poison.detail})
        self._metrics.add_metric(name="RecordsQuarantined", unit=MetricUnit.Count, value=len(kept))
        if kept:
            self._logger.warning(
                "poison records quarantined; the rest of the batch went on", extra={"quarantined": kept}
            )
        return unwritten

    def _report(self, processor: BatchProcessor) -> None:
        """One error line for every record the mapping will retry (and, after its retries, dead-letter)."""
        failed = [
            {"sequence_number": sequence_number(record), "error": f"{info[0].__name__}: {info[1]}"[:200]}
            for record, info in zip(processor.fail_messages, processor.exceptions, strict=True)
            if info[0] is not None and isinstance(record, KinesisStreamRecord | DynamoDBRecord)
        ]
        self._metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=len(failed))
        if failed:
            self._logger.error("records failed; they will be retried, then dead-lettered", extra={"failed": failed})


def stream_record_of(record: KinesisStreamRecord) -> StreamRecord:
    """The Lambda Kinesis record as the logic sees it (eventID is "shardId-...:sequenceNumber")."""
    payload = record.kinesis
    return StreamRecord(
        shard_id=record.event_id.split(":", 1)[0],
        sequence_number=payload.sequence_number,
        partition_key=payload.partition_key,
        data_b64=payload.data,
        arrived_at=datetime.fromtimestamp(payload.approximate_arrival_timestamp, UTC),
    )


def valid_event_reader(
    pseudonymizer: Callable[[], Pseudonymize | None],
    image_embedding_dim: Callable[[], int],
) -> Callable[[KinesisStreamRecord], Delivered[KinesisStreamRecord] | None]:
    """The record handler of a stage downstream of ingest: the record's event as ingest admitted it, or
    None when it breaks the contract (ingest quarantined it already, so this stage just passes it by)."""

    def read(record: KinesisStreamRecord) -> Delivered[KinesisStreamRecord] | None:
        stream_record = stream_record_of(record)
        event = check_record(stream_record, pseudonymizer(), image_embedding_dim()).event
        return None if event is None else Delivered(event, stream_record.position, record)

    return read


def correlate(logger: Logger, event: dict[str, Any]) -> None:
    """Use the first record's id as correlation id, so every log line of a batch joins up."""
    records = event.get("Records") or []
    first = records[0] if records else event
    logger.set_correlation_id(str(first.get("eventID") or first.get("id") or ""))


def state_change_of(record: DynamoDBRecord) -> StateChange[DynamoDBRecord]:
    """A user-state stream record as a change; its creation time is the decision time."""
    # Imported here: only decide reads user-state changes (and its service has loaded them at init).
    from shared.adapters.user_state_codec import decode_user_state
    from shared.domain.user_state import StateChange

    stream = record.dynamodb
    if stream is None or not stream.new_image:
        raise PoisonRecord("no_new_image", "user-state stream record without NewImage")
    state = decode_user_state(stream.new_image)
    changed_at = stream.approximate_creation_date_time or state.last_seen
    return StateChange(state=state, changed_at=int(changed_at), ref=record)
