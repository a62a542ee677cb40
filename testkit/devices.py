"""Devices in endpoint mode: the operator's platform applications, and what reached each device.

In endpoint mode decide publishes to an SNS mobile push endpoint per device (shared/adapters/
push_publisher.py). moto keeps every message published to an endpoint; ``EndpointInbox`` reads the
new ones after each step and turns the platform payload (APNs or FCM) back into the push a device
would show, so simulated users answer them as they answer pushes from the topic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import boto3
from moto.sns.models import sns_backends

from runner.pipeline import LocalPipeline

# Names of the platform applications an operator creates once (docs/operations.md, "Delivery").
APPLICATIONS = {"APNS": ("nudge-ios", "APNS"), "FCM": ("nudge-android", "GCM")}


def endpoint_parameters(account_id: str, region: str) -> dict[str, str]:
    """Template parameters for endpoint mode, naming the applications ``create_applications`` makes."""
    arn = f"arn:aws:sns:{region}:{account_id}:app"
    return {
        "DeliveryMode": "endpoint",
        "ApnsPlatformApplicationArn": f"{arn}/APNS/{APPLICATIONS['APNS'][0]}",
        "FcmPlatformApplicationArn": f"{arn}/GCM/{APPLICATIONS['FCM'][0]}",
    }


def create_applications(pipe: LocalPipeline) -> None:
    """The operator's part: one platform application per push service (credentials are moto's fakes)."""
    sns = boto3.client("sns", region_name=pipe.region)
    for name, platform in APPLICATIONS.values():
        sns.create_platform_application(Name=name, Platform=platform, Attributes={"PlatformCredential": "k"})


def push_of(message: str, user_id: str, delivered_at: int) -> dict[str, Any]:
    """The push a device shows, from the SNS message published to its endpoint."""
    by_platform: Mapping[str, str] = json.loads(message)
    if "GCM" in by_platform:
        data = json.loads(by_platform["GCM"])["fcmV1Message"]["message"]["data"]
    else:
        payload = json.loads(next(v for k, v in by_platform.items() if k.startswith("APNS")))
        data = {k: v for k, v in payload.items() if k != "aps"}
    return {
        "decision_id": data["decision_id"],
        "item_id": data["item_id"],
        "user_id": user_id,
        "decided_at": delivered_at,
    }


class EndpointInbox:
    """Every message published to any device endpoint since the last call, as pushes (in publish order)."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    def __call__(self, pipe: LocalPipeline) -> list[dict[str, Any]]:
        endpoints = sns_backends[pipe.account_id][pipe.region].platform_endpoints
        now = int(pipe.clock.now())
        out: list[dict[str, Any]] = []
        for arn, endpoint in list(endpoints.items()):
            for message_id, message in list(endpoint.messages.items()):
                if (arn, message_id) in self._seen:
                    continue
                self._seen.add((arn, message_id))
                out.append(push_of(message, str(endpoint.custom_user_data), now))
        return out
