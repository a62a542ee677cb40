"""SNS as the last mile: a topic (teams that bridge to APNs/FCM themselves) or mobile push endpoints.

Both implement the ``Deliverer`` port (shared/domain/ports.py). Errors that say the push can never go
to this token become an ``Undeliverable`` result; throttling, 5xx and a disabled platform application
(expired credentials: the operator's to fix) raise PublishError, so the trigger is retried and, if
nobody fixes it, dead-lettered (and the ledger's outbox keeps the push for the reconciler).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws_errors import error_code, translated
from shared.domain.delivery import DeliveryResult, Push, Undeliverable, platform_message
from shared.domain.errors import PublishError

# Per-token refusals from SNS's Publish and CreatePlatformEndpoint (the token is gone or malformed).
_TOKEN_REFUSALS = {
    "EndpointDisabled": Undeliverable.ENDPOINT_DISABLED,
    "InvalidParameter": Undeliverable.PLATFORM_REFUSED,
}
# CreatePlatformEndpoint's refusal when SNS knows the token under other attributes (disabled, or another
# user's): the message names that endpoint, which is then taken over (AWS's documented registration flow).
_EXISTING_ENDPOINT = re.compile(r"Endpoint (arn:\S+) already exists")


class DeviceEndpointRegistry:
    """The endpoints EndpointDeliverer registered, for erasure (each holds its user's id as custom data)."""

    def __init__(self, sns: Any) -> None:
        self._sns = sns

    def forget(self, endpoint: str) -> bool:
        with translated("sns.delete_endpoint"):
            self._sns.delete_endpoint(EndpointArn=endpoint)  # idempotent: a gone endpoint is no error
        return True


class TopicDeliverer:
    """Publishes the push as one JSON document to a topic the bridge subscribes to."""

    def __init__(self, sns: Any, topic_arn: str) -> None:
        self._sns = sns
        self._topic_arn = topic_arn

    def deliver(self, push: Push) -> DeliveryResult:
        try:
            response = self._sns.publish(
                TopicArn=self._topic_arn,
                Message=json.dumps(push.topic_message(), separators=(",", ":")),
                MessageAttributes={
                    # Lets subscribers filter, and is the collapse id for APNs/FCM.
                    "decision_id": {"DataType": "String", "StringValue": push.decision_id},
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise PublishError(f"publish {push.decision_id}: {type(exc).__name__}") from exc
        return DeliveryResult(message_id=str(response["MessageId"]))


class EndpointDeliverer:
    """One SNS mobile push endpoint per device, in the platform application of its platform.

    The endpoint is created on the first push to a token (CreatePlatformEndpoint is idempotent for a
    token SNS already knows with the same attributes), re-pointed with SetEndpointAttributes when the
    app reports a new token (the endpoint, its ARN and its subscriptions stay), and a token SNS has
    disabled (APNs/FCM said it is no longer valid) comes back as ``ENDPOINT_DISABLED``.
    """

    def __init__(self, sns: Any, applications: Mapping[str, str]) -> None:
        self._sns = sns
        self._applications = {platform: arn for platform, arn in applications.items() if arn}

    def deliver(self, push: Push) -> DeliveryResult:
        if not push.platform:
            return DeliveryResult(undeliverable=Undeliverable.NO_PLATFORM)
        application = self._applications.get(push.platform)
        if application is None:
            return DeliveryResult(undeliverable=Undeliverable.NO_PLATFORM_APPLICATION)
        assert push.push_token is not None  # the policy pushes only to users with a token
        try:
            target, changed = self._endpoint_for(application, push)
            response = self._sns.publish(
                TargetArn=target,
                MessageStructure="json",
                Message=platform_message(push),
                MessageAttributes={
                    "AWS.SNS.MOBILE.APNS.COLLAPSE_ID": {"DataType": "String", "StringValue": push.decision_id},
                    "AWS.SNS.MOBILE.APNS.PUSH_TYPE": {"DataType": "String", "StringValue": "alert"},
                },
            )
        except ClientError as exc:
            refusal = _TOKEN_REFUSALS.get(error_code(exc))
            if refusal is None:
                raise PublishError(f"publish {push.decision_id}: {error_code(exc)}") from exc
            return DeliveryResult(undeliverable=refusal)
        except BotoCoreError as exc:
            raise PublishError(f"publish {push.decision_id}: {type(exc).__name__}") from exc
        return DeliveryResult(message_id=str(response["MessageId"]), endpoint_arn=target if changed else None)

    def _endpoint_for(self, application: str, push: Push) -> tuple[str, bool]:
        """(the endpoint to publish to, whether it is new or re-pointed and must be remembered)."""
        endpoint = push.endpoint
        if endpoint is not None and push.endpoint_token == push.push_token:
            return endpoint, False
        if endpoint is not None:
            # The app reported a new token for the same device: move the endpoint to it (and enable it,
            # in case SNS had disabled the old token).
            try:
                self._sns.set_endpoint_attributes(
                    EndpointArn=endpoint, Attributes={"Token": str(push.push_token), "Enabled": "true"}
                )
                return endpoint, True
            except ClientError as exc:
                if error_code(exc) != "NotFound":
                    raise  # deleted by an operator: register the device again below
        try:
            created = self._sns.create_platform_endpoint(
                PlatformApplicationArn=application, Token=push.push_token, CustomUserData=push.user_id
            )
        except ClientError as exc:
            existing = _EXISTING_ENDPOINT.search(str(exc.response.get("Error", {}).get("Message", "")))
            if error_code(exc) != "InvalidParameter" or existing is None:
                raise
            arn = existing.group(1)
            self._sns.set_endpoint_attributes(
                EndpointArn=arn,
                Attributes={"Token": str(push.push_token), "Enabled": "true", "CustomUserData": push.user_id},
            )
            return arn, True
        return str(created["EndpointArn"]), True
