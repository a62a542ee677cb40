"""Ingest: every stream record is archived to S3 or quarantined there with its reason."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import EventType
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.plumbing import bootstrap, snapstart
from shared.plumbing.observability import handler_tools
from shared.plumbing.stream_batch import CommitFailure, Parsed, StreamConsumer, stream_record_of
from shared.services.ingest import Checked, check_record

logger, metrics, tracer = handler_tools()
# Run only under SnapStart: the snapshot holds the built service (shared/plumbing/snapstart.py).
snapstart.register(bootstrap.ingest_service)


def check(record: KinesisStreamRecord) -> Checked:
    return check_record(stream_record_of(record), bootstrap.pseudonymizer(), bootstrap.image_embedding_dim())


def commit(
    parsed: Sequence[Parsed[Checked, KinesisStreamRecord]],
) -> list[CommitFailure[KinesisStreamRecord]]:
    # An S3 or registry failure raises: the whole batch is retried (and bisected) by the event source
    # mapping, and the batch-keyed objects make the retry rewrite rather than add.
    result = bootstrap.ingest_service().commit([p.value for p in parsed])
    metrics.add_metric(name="EventsArchived", unit=MetricUnit.Count, value=result.archived)
    metrics.add_metric(name="EventsQuarantined", unit=MetricUnit.Count, value=sum(result.quarantined.values()))
    metrics.add_metric(name="PartitionKeyMismatches", unit=MetricUnit.Count, value=result.partition_key_mismatches)
    if result.quarantined:
        logger.warning("records quarantined", extra={"reasons": result.quarantined, "key": result.quarantine_key})
    if result.partition_key_mismatches:
        logger.warning(
            "records whose partition key is not their user id: their order per user is not guaranteed",
            extra={"records": result.partition_key_mismatches, "key": result.archive_key},
        )
    return []


consume = StreamConsumer(EventType.KinesisDataStreams, check, commit, logger, metrics, bootstrap.ingest_quarantine)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consume(event, context)
