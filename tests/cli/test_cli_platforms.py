"""`nudge platform create`: credentials come from Secrets Manager, the ARN goes to the stack's parameter."""

from __future__ import annotations

import json

import boto3
import pytest

from cli.__main__ import main


def test_creates_the_application_from_the_secret_and_names_the_parameter(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    secrets.create_secret(Name="nudge/fcm", SecretString=json.dumps({"PlatformCredential": '{"type": "service"}'}))
    assert (
        main(
            ["platform", "create", "--name", "myapp-android", "--platform", "FCM", "--credentials-secret", "nudge/fcm"]
        )
        == 0
    )
    created = json.loads(capsys.readouterr().out)
    (app,) = boto3.client("sns", region_name="us-east-1").list_platform_applications()["PlatformApplications"]
    assert created["platform_application_arn"] == app["PlatformApplicationArn"]
    assert app["PlatformApplicationArn"].endswith(":app/GCM/myapp-android")
    assert created["parameter"] == f"FcmPlatformApplicationArn={app['PlatformApplicationArn']}"


@pytest.mark.parametrize("secret", [None, "not json", json.dumps({"PlatformPrincipal": "k"})])
def test_refuses_a_missing_or_unusable_secret_and_creates_nothing(
    aws: None, secret: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    if secret is not None:
        boto3.client("secretsmanager", region_name="us-east-1").create_secret(Name="s", SecretString=secret)
    assert main(["platform", "create", "--name", "a", "--platform", "APNS", "--credentials-secret", "s"]) == 2
    assert "nudge platform create:" in capsys.readouterr().err
    assert boto3.client("sns", region_name="us-east-1").list_platform_applications()["PlatformApplications"] == []
