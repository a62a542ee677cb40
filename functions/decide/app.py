"""Decide: on user-state changes (DynamoDB stream) and on the due-sweep schedule."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import EventType
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.data_classes.event_bridge_event import EventBridgeEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.domain.decision import Decision
from shared.domain.user_state import StateChange
from shared.plumbing import bootstrap, snapstart
from shared.plumbing.observability import handler_tools
from shared.plumbing.stream_batch import CommitFailure, Parsed, StreamConsumer, correlate, state_change_of
from shared.services.decide import Handovers

logger, metrics, tracer = handler_tools()
# Run only under SnapStart: the snapshot holds the built service (shared/plumbing/snapstart.py).
snapstart.register(bootstrap.decide_service)


def count(decisions: Sequence[Decision], handovers: Handovers) -> None:
    for decision in decisions:
        metrics.add_metric(name=f"Decisions_{decision.action.value}", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="PushesSent", unit=MetricUnit.Count, value=handovers.sent)
    for reason, n in handovers.undeliverable.items():
        # EndpointsDisabled among them: the platform said the token is gone (the app was uninstalled).
        metrics.add_metric(name=f"PushesUndeliverable_{reason}", unit=MetricUnit.Count, value=n)


def commit(
    parsed: Sequence[Parsed[StateChange[DynamoDBRecord], DynamoDBRecord]],
) -> list[CommitFailure[DynamoDBRecord]]:
    result = bootstrap.decide_service().decide_changes([p.value for p in parsed])
    count(result.decisions, result)
    metrics.add_metric(name="ChangesSuperseded", unit=MetricUnit.Count, value=result.superseded)
    return [CommitFailure(ref, error) for ref, error in [*result.failed, *result.poisoned]]


consume = StreamConsumer(
    EventType.DynamoDBStreams, state_change_of, commit, logger, metrics, bootstrap.decide_quarantine
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    bootstrap.idempotency_config().register_lambda_context(context)
    if event.get("source") == "aws.events":
        correlate(logger, event)
        # The data class, not the parser: importing the parser builds every one of its models at cold start.
        scheduled = EventBridgeEvent(event)
        swept = bootstrap.decide_service().sweep(int(datetime.fromisoformat(scheduled.time).timestamp()))
        count(swept.decisions, swept)
        metrics.add_metric(name="SweepRuns", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="OutboxReconciled", unit=MetricUnit.Count, value=swept.reconciled)
        metrics.add_metric(name="OutboxDeferred", unit=MetricUnit.Count, value=swept.reconcile_deferred)
        metrics.add_metric(name="SweepUsersPoisoned", unit=MetricUnit.Count, value=len(swept.poisoned))
        if swept.poisoned:
            logger.error(
                "due decisions that can never be made were dropped from the due index",
                extra={"reasons": [f"{p.reason}: {p.detail}" for p in swept.poisoned]},
            )
        if swept.reconcile_deferred:
            logger.warning("outbox pushes left for the next sweep", extra={"deferred": swept.reconcile_deferred})
        return {"decided": len(swept.decisions), "reconciled": swept.reconciled, "deferred": swept.reconcile_deferred}
    return consume(event, context)
