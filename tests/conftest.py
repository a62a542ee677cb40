"""Shared fixtures: moto resources built from template.yaml itself, a tiny ONNX model, events.

No test reaches AWS or the network: credentials are fake, pytest-socket blocks sockets
(see pyproject.toml), and every AWS call goes to moto.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Set before anything creates a boto3 session; fake values so nothing can reach a real account.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        # In-process moto DynamoDB Streams need this with current botocore.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "NudgeTest",
    }
)
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from runner.resources import Stack, StackBuilder  # noqa: E402
from runner.template import load_template  # noqa: E402
from shared.plumbing import bootstrap  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"


@pytest.fixture(autouse=True)
def _fresh_container() -> Iterator[None]:
    """Every test starts like a cold Lambda container: no cached clients or services."""
    bootstrap.reset()
    yield
    bootstrap.reset()


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def stack(aws: None) -> Stack:
    """Every resource template.yaml declares, created in moto."""
    template = load_template(TEMPLATE)
    return StackBuilder(
        template,
        lambda service: boto3.client(service, region_name=REGION),
        stack_name="nudge-test",
        region=REGION,
        account_id=ACCOUNT,
    ).build()


@pytest.fixture
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture
def dynamodb(aws: None) -> Any:
    return boto3.resource("dynamodb", region_name=REGION)
