"""Features: behaviour and profile events folded into one versioned user-state item per user."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import EventType
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import bootstrap
from shared.feature_service import Positioned
from shared.features import StreamPosition
from shared.ingest import check_record
from shared.lambda_batch import CommitFailure, Parsed, correlate, process_with_commit, stream_record_of
from shared.observability import handler_tools

logger, metrics, tracer = handler_tools()

Item = Positioned[KinesisStreamRecord] | None


def parse(record: KinesisStreamRecord) -> Item:
    """None for records that are not ours to apply: ingest quarantines invalid ones."""
    stream_record = stream_record_of(record)
    checked = check_record(stream_record, bootstrap.pseudonymizer())
    if checked.event is None or checked.event.type in ("delivered", "opened", "dismissed", "converted"):
        return None
    position = StreamPosition(stream_record.shard_id, stream_record.sequence_number)
    return Positioned(checked.event, position, record)  # type: ignore[arg-type]


def commit(parsed: Sequence[Parsed[Item, KinesisStreamRecord]]) -> list[CommitFailure[KinesisStreamRecord]]:
    batch = [p.value for p in parsed if p.value is not None]
    result = bootstrap.features_service().apply(batch)
    metrics.add_metric(name="EventsApplied", unit=MetricUnit.Count, value=result.applied)
    metrics.add_metric(name="DuplicatesSkipped", unit=MetricUnit.Count, value=result.duplicates)
    metrics.add_metric(name="UserStateWrites", unit=MetricUnit.Count, value=result.write_requests)
    metrics.add_metric(name="VersionConflicts", unit=MetricUnit.Count, value=result.conflicts)
    metrics.add_metric(name="DecisionsAsked", unit=MetricUnit.Count, value=result.decisions_asked)
    metrics.add_metric(name="SkippedInvalid", unit=MetricUnit.Count, value=len(parsed) - len(batch))
    return [CommitFailure(ref, error) for ref, error in result.failed]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    correlate(logger, event)
    return dict(process_with_commit(event, EventType.KinesisDataStreams, parse, commit, context))
