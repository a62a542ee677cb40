"""Features: behaviour and profile events folded into one versioned user-state item per user."""

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
snapstart.register(bootstrap.features_service)

Item = Delivered[KinesisStreamRecord] | None


def commit(parsed: Sequence[Parsed[Item, KinesisStreamRecord]]) -> list[CommitFailure[KinesisStreamRecord]]:
    batch = [p.value for p in parsed if p.value is not None]
    result = bootstrap.features_service().apply(batch)
    metrics.add_metric(name="EventsApplied", unit=MetricUnit.Count, value=result.applied)
    metrics.add_metric(name="DuplicatesSkipped", unit=MetricUnit.Count, value=result.duplicates)
    metrics.add_metric(name="EventIdConflictsSkipped", unit=MetricUnit.Count, value=result.conflicts)
    metrics.add_metric(name="UserStateWrites", unit=MetricUnit.Count, value=result.write_requests)
    metrics.add_metric(name="VersionConflicts", unit=MetricUnit.Count, value=result.version_conflicts)
    metrics.add_metric(name="DecisionsAsked", unit=MetricUnit.Count, value=result.decisions_asked)
    metrics.add_metric(name="SkippedInvalid", unit=MetricUnit.Count, value=len(parsed) - len(batch))
    return [CommitFailure(ref, error) for ref, error in [*result.failed, *result.poisoned]]


consume = StreamConsumer(
    EventType.KinesisDataStreams,
    valid_event_reader(bootstrap.pseudonymizer, bootstrap.image_embedding_dim),
    commit,
    logger,
    metrics,
    bootstrap.features_quarantine,
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consume(event, context)
