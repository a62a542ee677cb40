"""The last mile: what a push carries, how each platform wants it, and what came of sending it.

Decide hands a ``Push`` to a ``Deliverer`` (shared/domain/ports.py) once per decision id. Two are
shipped (template parameter ``DeliveryMode``):

- ``endpoint``: Nudge keeps an SNS mobile push endpoint per device (created on the first push to a
  token, its token updated when the app reports a new one, marked unusable when SNS disables it) and
  publishes the platform's own payload: an APNs ``aps`` alert or an FCM v1 message, each carrying the
  decision id as custom data (so an open comes back as feedback) and as the collapse id;
- ``topic``: the push, as one JSON document, on an SNS topic, for teams that bridge to APNs/FCM themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# SNS message keys of the platforms a profile event may name (`platform`).
PLATFORMS = ("APNS", "APNS_SANDBOX", "FCM")
THREAD_ID = "nudge-recommendations"


class Undeliverable(StrEnum):
    """Why a push could not be handed to its platform; recorded in the ledger as the push's outcome."""

    ENDPOINT_DISABLED = "endpoint_disabled"  # the platform told SNS the token is no longer valid
    NO_PLATFORM = "no_platform"  # endpoint mode, but the app never said which platform the token is for
    NO_PLATFORM_APPLICATION = "no_platform_application"  # that platform is not configured in this stack
    PLATFORM_REFUSED = "platform_refused"  # SNS refused the message or the token as invalid


@dataclass(frozen=True)
class Push:
    """One decided push, everything delivery needs (and nothing it does not)."""

    decision_id: str
    user_id: str
    item_id: str
    title: str
    body: str
    push_token: str | None
    platform: str | None
    model_version: str
    decided_at: int
    score: float | None = None
    # The SNS endpoint kept for the user's device and the token it points at (endpoint mode).
    endpoint: str | None = None
    endpoint_token: str | None = None

    def custom_data(self) -> dict[str, str]:
        """What the app gets back beside the alert, and returns with the open (all strings, as FCM needs)."""
        return {"decision_id": self.decision_id, "item_id": self.item_id}

    def topic_message(self) -> dict[str, Any]:
        """The topic mode's document (a bridge reads the token and the texts from it)."""
        return {
            "decision_id": self.decision_id,
            "user_id": self.user_id,
            "push_token": self.push_token,
            "platform": self.platform,
            "item_id": self.item_id,
            "title": self.title,
            "body": self.body,
            "score": self.score,
            "model_version": self.model_version,
            "decided_at": self.decided_at,
        }


def apns_payload(push: Push) -> dict[str, Any]:
    """Apple's remote notification payload: an ``aps`` alert, custom keys beside it."""
    return {
        "aps": {"alert": {"title": push.title, "body": push.body}, "thread-id": THREAD_ID},
        **push.custom_data(),
    }


def fcm_payload(push: Push) -> dict[str, Any]:
    """SNS's FCM HTTP v1 form: ``fcmV1Message.message`` with a notification and string-valued data."""
    return {
        "fcmV1Message": {
            "message": {
                "notification": {"title": push.title, "body": push.body},
                "data": push.custom_data(),
                "android": {"collapse_key": push.decision_id},
            }
        }
    }


def platform_message(push: Push) -> str:
    """The SNS ``Message`` for ``MessageStructure=json``: the platform's key, its payload as a string."""
    if push.platform in ("APNS", "APNS_SANDBOX"):
        key, payload = push.platform, apns_payload(push)
    else:
        key, payload = "GCM", fcm_payload(push)  # SNS names FCM "GCM"
    encoded = json.dumps(payload, separators=(",", ":"))
    return json.dumps({"default": push.body, key: encoded}, separators=(",", ":"))


@dataclass(frozen=True)
class DeliveryResult:
    """A push handed over (``message_id``) or not (``undeliverable``), as the send-once record keeps it."""

    message_id: str | None = None
    undeliverable: Undeliverable | None = None
    # The endpoint a push went through, when Nudge registered or re-pointed one for this send.
    endpoint_arn: str | None = None

    def as_record(self) -> dict[str, str]:
        record = {"message_id": self.message_id, "undeliverable": self.undeliverable, "endpoint": self.endpoint_arn}
        return {k: str(v) for k, v in record.items() if v is not None}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> DeliveryResult:
        reason = record.get("undeliverable")
        return cls(
            message_id=record.get("message_id"),
            undeliverable=Undeliverable(reason) if reason else None,
            endpoint_arn=record.get("endpoint"),
        )
