"""Feedback: push outcomes joined with the ledger, logged to S3, counted into user fatigue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import EventType
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.domain.admission import Delivered
from shared.plumbing import bootstrap, snapstart
from shared.plumbing.observability import handler_tools
from shared.plumbing.stream_batch import CommitFailure, Parsed, StreamConsumer, valid_event_reader

logger, metrics, tracer = handler_tools()
# Run only under SnapStart: the snapshot holds the built service (shared/plumbing/snapstart.py).
snapstart.register(bootstrap.feedback_service)

Item = Delivered[KinesisStreamRecord] | None


def commit(parsed: Sequence[Parsed[Item, KinesisStreamRecord]]) -> list[CommitFailure[KinesisStreamRecord]]:
    result = bootstrap.feedback_service().apply([p.value for p in parsed if p.value is not None])
    for outcome, n in result.by_outcome.items():
        metrics.add_metric(name=f"Feedback_{outcome}", unit=MetricUnit.Count, value=n)
    metrics.add_metric(name="FeedbackDuplicates", unit=MetricUnit.Count, value=result.duplicates)
    metrics.add_metric(name="FeedbackOrphans", unit=MetricUnit.Count, value=result.orphans)
    metrics.add_metric(name="EventIdConflictsSkipped", unit=MetricUnit.Count, value=result.conflicts)
    return [CommitFailure(ref, error) for ref, error in [*result.failed, *result.poisoned]]


consume = StreamConsumer(
    EventType.KinesisDataStreams,
    valid_event_reader(bootstrap.pseudonymizer, bootstrap.image_embedding_dim),
    commit,
    logger,
    metrics,
    bootstrap.feedback_quarantine,
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consume(event, context)
