"""Feedback: push outcomes joined with the ledger, logged to S3, counted into user fatigue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import EventType
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import bootstrap
from shared.contract import FeedbackEvent
from shared.feedback_service import FeedbackItem
from shared.ingest import check_record
from shared.lambda_batch import CommitFailure, Parsed, correlate, process_with_commit, stream_record_of
from shared.observability import handler_tools

logger, metrics, tracer = handler_tools()

Item = FeedbackItem[KinesisStreamRecord] | None


def parse(record: KinesisStreamRecord) -> Item:
    """None for records that are not valid feedback: ingest quarantines invalid ones."""
    stream_record = stream_record_of(record)
    event = check_record(stream_record, bootstrap.pseudonymizer()).event
    if not isinstance(event, FeedbackEvent):
        return None
    return FeedbackItem(event, stream_record.shard_id, stream_record.sequence_number, record)


def commit(parsed: Sequence[Parsed[Item, KinesisStreamRecord]]) -> list[CommitFailure[KinesisStreamRecord]]:
    result = bootstrap.feedback_service().apply([p.value for p in parsed if p.value is not None])
    for outcome, n in result.by_outcome.items():
        metrics.add_metric(name=f"Feedback_{outcome}", unit=MetricUnit.Count, value=n)
    metrics.add_metric(name="FeedbackDuplicates", unit=MetricUnit.Count, value=result.duplicates)
    metrics.add_metric(name="FeedbackOrphans", unit=MetricUnit.Count, value=result.orphans)
    return [CommitFailure(ref, error) for ref, error in result.failed]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    correlate(logger, event)
    return dict(process_with_commit(event, EventType.KinesisDataStreams, parse, commit, context))
