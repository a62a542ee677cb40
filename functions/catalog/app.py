"""Catalog: catalog events (item upserted or retired) -> catalog items and their content vectors.

One job (issue 12, item 1): its event source mapping lets only ``type: catalog`` records through; each
upsert's title and description are encoded by the int8 sentence encoder of the EncoderLayer (loaded once
per container), and the item, its text vector and its image embedding (when the event has one) are
written to the catalog table under the event's timestamp as version (shared/services/catalog.py).
Decide reads the catalog table but never loads the encoder.
"""

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
# Cold start fails loudly (an init error naming the files) when the encoder layer lacks its files;
# the encoder itself is loaded on first use (or before the snapshot, under SnapStart).
bootstrap.encoder_files(bootstrap.catalog_settings())
snapstart.register(bootstrap.catalog_service)

Item = Delivered[KinesisStreamRecord] | None


def commit(parsed: Sequence[Parsed[Item, KinesisStreamRecord]]) -> list[CommitFailure[KinesisStreamRecord]]:
    batch = [p.value for p in parsed if p.value is not None]
    result = bootstrap.catalog_service().apply(batch)
    metrics.add_metric(name="CatalogItemsUpserted", unit=MetricUnit.Count, value=result.upserted)
    metrics.add_metric(name="CatalogItemsRetired", unit=MetricUnit.Count, value=result.retired)
    metrics.add_metric(name="CatalogEventsStale", unit=MetricUnit.Count, value=result.stale)
    metrics.add_metric(name="DuplicatesSkipped", unit=MetricUnit.Count, value=result.duplicates)
    metrics.add_metric(name="EventIdConflictsSkipped", unit=MetricUnit.Count, value=result.conflicts)
    metrics.add_metric(name="SkippedInvalid", unit=MetricUnit.Count, value=len(parsed) - len(batch))
    return [CommitFailure(ref, error) for ref, error in [*result.failed, *result.poisoned]]


consume = StreamConsumer(
    EventType.KinesisDataStreams,
    # Catalog events name no user; no pseudonymizer is needed (nor its key read).
    valid_event_reader(lambda: None, bootstrap.image_embedding_dim),
    commit,
    logger,
    metrics,
    bootstrap.catalog_quarantine,
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consume(event, context)
