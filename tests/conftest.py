"""Shared fixtures: moto resources built from template.yaml itself, a tiny ONNX model, events.

No test reaches AWS or the network: credentials are fake, pytest-socket blocks sockets
(see pyproject.toml), and every AWS call goes to moto.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from functools import cache
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

from runner.deploy import load_yaml  # noqa: E402
from runner.stack import Stack, deploy_local  # noqa: E402
from shared.plumbing import bootstrap  # noqa: E402
from testkit.harness_speed import GC_THRESHOLD  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"


# Tests of the harness (the runner, the deployed stack, fault scenarios) run untraced: under the coverage
# tracer every call into moto and botocore costs too (about 60 % more CPU for make test), and the
# lines of shared/ and functions/ they reach are covered by the unit, fuzz, CLI and integration tests.
UNTRACED_DIRS = frozenset({"runner", "deploy", "reliability"})


def pytest_configure(config: pytest.Config) -> None:
    # Each moto deployment leaves tens of thousands of objects in reference cycles (testkit/harness_speed.py).
    gc.set_threshold(*GC_THRESHOLD)


def pytest_collection_finish(session: pytest.Session) -> None:
    # What collection imported (botocore, moto, pydantic models) lives as long as the worker: out of the
    # collector's sight, full collections walk only what the tests make.
    gc.freeze()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent.name in UNTRACED_DIRS:
            item.add_marker(pytest.mark.no_cover)
    # Slowest files first (make test passes --no-loadscope-reorder, so xdist hands files out in this order):
    # xdist's default order, by number of tests, started the two-test, 45-second fault file last, and the
    # run waited on it alone.
    items.sort(key=_slow_seconds, reverse=True)


def _slow_seconds(item: pytest.Item) -> float:
    mark = item.get_closest_marker("slow")
    return float(mark.kwargs.get("seconds", 1)) if mark else 0.0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """pytest-cov's `no_cover` pauses the tracer for a test's call only; the whole-scenario tests do most
    of their work in module fixtures, so their set-up runs untraced too (they are covered elsewhere)."""
    plugin = item.config.pluginmanager.get_plugin("_cov")
    controller = getattr(plugin, "cov_controller", None)
    if controller is None or not controller.started or item.get_closest_marker("no_cover") is None:
        yield
        return
    controller.pause()
    try:
        yield
    finally:
        controller.resume()


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
    """Every resource template.yaml declares, created in moto through its CloudFormation."""

    @cache
    def client(service: str) -> Any:
        return boto3.client(service, region_name=REGION)

    return deploy_local(load_yaml(TEMPLATE), client, "nudge-test", {}, REGION)[0]


@pytest.fixture
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from testkit.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture
def atomic_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies each request atomically; moto does not lock (a Query iterating a table while
    another thread puts raises "dictionary changed size"), so tests with threads lock for moto.

    Threads still interleave freely between requests, which is where our code could go wrong.
    """
    import threading

    from moto.core.botocore_stubber import BotocoreStubber

    lock = threading.Lock()
    original = BotocoreStubber.process_request

    def locked(self: BotocoreStubber, request: Any) -> Any:
        with lock:
            return original(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", locked)


@pytest.fixture
def dynamodb(aws: None) -> Any:
    return boto3.resource("dynamodb", region_name=REGION)
