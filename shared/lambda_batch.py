"""Powertools batch processing with a per-batch commit step.

Per-record work (decode, validate) runs in BatchProcessor's record handler as usual. Some
side effects must happen once per batch instead (one S3 object per batch, one DynamoDB
write per user per batch), so after the records are parsed, ``commit`` receives all of
them and returns the ones it could not apply; those are reported through the same
processor, so the partial batch response and "all failed -> function error -> bisect"
behave exactly as Powertools documents.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.adapters.user_state_codec import decode_user_state
from shared.ingest import StreamRecord
from shared.user_state import StateChange

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


_RECORD_TYPES: dict[EventType, type[Any]] = {
    EventType.KinesisDataStreams: KinesisStreamRecord,
    EventType.DynamoDBStreams: DynamoDBRecord,
}


def process_with_commit(
    event: dict[str, Any],
    event_type: EventType,
    record_handler: Callable[[R], T],
    commit: Callable[[Sequence[Parsed[T, R]]], Sequence[CommitFailure[R]]],
    context: LambdaContext | None,
) -> PartialItemFailureResponse:
    processor = BatchProcessor(event_type=event_type)
    wrap = _RECORD_TYPES[event_type]
    with processor(records=event.get("Records", []), handler=record_handler, lambda_context=context):
        outcomes = processor.process()
        parsed = [Parsed(result, wrap(raw)) for status, result, raw in outcomes if status == "success"]
        for failure in commit(parsed):
            processor.failure_handler(
                record=failure.record,
                exception=(
                    type(failure.error),
                    failure.error,
                    failure.error.__traceback__ or sys.exc_info()[2],
                ),
            )
    return processor.response()


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


def correlate(logger: Logger, event: dict[str, Any]) -> None:
    """Use the first record's id as correlation id, so every log line of a batch joins up."""
    records = event.get("Records") or []
    first = records[0] if records else event
    logger.set_correlation_id(str(first.get("eventID") or first.get("id") or ""))


def state_change_of(record: DynamoDBRecord) -> StateChange[DynamoDBRecord]:
    """A user-state stream record as a change; its creation time is the decision time."""
    stream = record.dynamodb
    if stream is None or not stream.new_image:
        raise ValueError("user-state stream record without NewImage")
    state = decode_user_state(stream.new_image)
    changed_at = stream.approximate_creation_date_time or state.last_seen
    return StateChange(state=state, changed_at=int(changed_at), ref=record)
