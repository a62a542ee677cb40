"""Hands a push to the SNS topic the delivery bridge (APNs/FCM) subscribes to."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.domain.errors import PublishError


class PushPublisher:
    def __init__(self, sns: Any, topic_arn: str) -> None:
        self._sns = sns
        self._topic_arn = topic_arn

    def publish(self, message: dict[str, Any], decision_id: str) -> str:
        try:
            response = self._sns.publish(
                TopicArn=self._topic_arn,
                Message=json.dumps(message, separators=(",", ":")),
                MessageAttributes={
                    # Lets subscribers filter, and is the collapse id for APNs/FCM.
                    "decision_id": {"DataType": "String", "StringValue": decision_id},
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise PublishError(f"publish {decision_id}: {type(exc).__name__}") from exc
        return str(response["MessageId"])
