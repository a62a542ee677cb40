"""Erase: removes users from every store (shared/services/erasure.py); invoked with {"user_ids": [...]}."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.plumbing import bootstrap, snapstart
from shared.plumbing.observability import handler_tools
from shared.services.erasure import EraseRequest

logger, metrics, tracer = handler_tools()
# Run only under SnapStart: the snapshot holds the built service (shared/plumbing/snapstart.py).
snapstart.register(bootstrap.erase_service)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    # An invalid request raises: after Lambda's async retries it lands in EraseDeadLetterQueue.
    request = parse(event=event, model=EraseRequest)
    report = bootstrap.erase_service().erase(request.user_ids).as_dict()
    metrics.add_metric(name="UsersErased", unit=MetricUnit.Count, value=report["users"])
    metrics.add_metric(name="ErasedLines", unit=MetricUnit.Count, value=report["lines_removed"])
    # Counts only: an erase log line must not name the user it erased.
    logger.info("users erased", extra=report)
    return report
