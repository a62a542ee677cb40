"""`nudge platform create`: an SNS platform application for endpoint delivery, its credentials read
from Secrets Manager (never passed on a command line, never in the template).

The secret is a JSON object of SNS platform application attributes: for APNs with token-based auth
``{"PlatformCredential": "<.p8 key>", "PlatformPrincipal": "<key id>", "ApplePlatformTeamID": "...",
"ApplePlatformBundleID": "..."}``; for FCM ``{"PlatformCredential": "<service account JSON>"}``. The
printed ARN is what the stack's ApnsPlatformApplicationArn / ApnsSandboxPlatformApplicationArn /
FcmPlatformApplicationArn parameter takes (with DeliveryMode=endpoint).
"""

from __future__ import annotations

import json
from typing import Any

# Nudge's names for the platforms (profile events' `platform`) -> SNS's.
SNS_PLATFORMS = {"APNS": "APNS", "APNS_SANDBOX": "APNS_SANDBOX", "FCM": "GCM"}
PARAMETERS = {
    "APNS": "ApnsPlatformApplicationArn",
    "APNS_SANDBOX": "ApnsSandboxPlatformApplicationArn",
    "FCM": "FcmPlatformApplicationArn",
}


class PlatformError(Exception):
    """The secret is missing or not a JSON object of attributes: said plainly, nothing created."""


def create_platform_application(name: str, platform: str, secret_id: str, sns: Any, secrets: Any) -> dict[str, str]:
    try:
        raw = secrets.get_secret_value(SecretId=secret_id)["SecretString"]
    except secrets.exceptions.ResourceNotFoundException as exc:
        raise PlatformError(f"no secret {secret_id!r} in this account and region") from exc
    try:
        attributes = json.loads(raw)
    except ValueError as exc:
        raise PlatformError(f"secret {secret_id!r} is not JSON") from exc
    if not isinstance(attributes, dict) or not attributes.get("PlatformCredential"):
        raise PlatformError(f"secret {secret_id!r} must be a JSON object with at least PlatformCredential")
    created = sns.create_platform_application(
        Name=name, Platform=SNS_PLATFORMS[platform], Attributes={k: str(v) for k, v in attributes.items()}
    )
    arn = str(created["PlatformApplicationArn"])
    return {"platform_application_arn": arn, "parameter": f"{PARAMETERS[platform]}={arn}"}
