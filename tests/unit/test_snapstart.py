"""SnapStart: the runtime hooks (shared/plumbing/snapstart.py) and the template option (SnapStart parameter).

The hooks are registered through ``snapshot_restore_py``, which only the Lambda runtime has: here a fake
module stands in for it, records what is registered, and the test runs the hooks as the runtime would
(before the snapshot, then after a restore).
"""

from __future__ import annotations

import importlib.util
import random
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from runner.deploy import load_yaml, package_stubs, transform
from runner.stack import deploy_local
from shared.plumbing import bootstrap, snapstart
from testkit.tiny_encoder import build_tiny_encoder

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
FACTORIES = {
    "ingest": "ingest_service",
    "features": "features_service",
    "decide": "decide_service",
    "feedback": "feedback_service",
    "erase": "erase_service",
    "catalog": "catalog_service",
}
FUNCTIONS = len(FACTORIES)
Hook = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class FakeRuntime:
    """What ``snapshot_restore_py`` offers, recording registrations; runs them in the runtime's order."""

    def __init__(self) -> None:
        self.before: list[Hook] = []
        self.after: list[Hook] = []
        self.module = types.ModuleType("snapshot_restore_py")
        self.module.register_before_snapshot = lambda f, *a, **k: self.before.append((f, a, k))  # type: ignore[attr-defined]
        self.module.register_after_restore = lambda f, *a, **k: self.after.append((f, a, k))  # type: ignore[attr-defined]

    def snapshot(self) -> None:
        for f, a, k in reversed(self.before):  # before-snapshot hooks run in reverse order of registration
            f(*a, **k)

    def restore(self) -> None:
        for f, a, k in self.after:
            f(*a, **k)


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRuntime]:
    fake = FakeRuntime()
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", fake.module)
    yield fake


def import_handler(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"snapstart_test_{name}_app", ROOT / "functions" / name / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_outside_lambda_nothing_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "snapshot_restore_py", raising=False)
    assert snapstart.register(bootstrap.ingest_service) is False


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_each_handler_registers_both_hooks_with_its_own_service(
    name: str, runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if name == "catalog":  # its import checks that the encoder layer's files are there
        for key, value in {
            "CATALOG_TABLE": "catalog",
            "EVENT_IDS_TABLE": "event-ids",
            "ARCHIVE_BUCKET": "archive",
        }.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("ENCODER_DIR", str(build_tiny_encoder(tmp_path / "encoder")))
    import_handler(name)
    assert runtime.before == [(snapstart.before_snapshot, (getattr(bootstrap, FACTORIES[name]),), {})]
    assert runtime.after == [(snapstart.after_restore, (), {})]


def test_restore_reseeds_randomness_and_drops_clients_but_keeps_the_built_work(
    runtime: FakeRuntime, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path
) -> None:
    env = {
        "USER_STATE_TABLE": "user-state",
        "CATALOG_TABLE": "catalog",
        "LEDGER_TABLE": "ledger",
        "IDEMPOTENCY_TABLE": "idempotency",
        "PUSH_COUNTERS_TABLE": "push-counters",
        "PUSH_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:push",
        "ARCHIVE_BUCKET": "archive",
        "MODEL_DIR": str(tiny_model_dir),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    import_handler("decide")

    runtime.snapshot()  # publishing the version: init, then the before-snapshot hook
    assert bootstrap.decide_service.cache_info().currsize == 1
    service, session, s3 = bootstrap.decide_service(), bootstrap._session(), bootstrap.client("s3")
    settings, model, policy = bootstrap.decide_settings(), bootstrap.recommender(), bootstrap.decide_policy()
    models = session._session.get_component("data_loader")
    random.seed(16)  # the snapshot's random state, which every restored environment would share
    shared_state = random.getstate()

    runtime.restore()

    assert random.getstate() != shared_state
    # Clients (and what holds them) are rebuilt on first use, from a new session...
    assert bootstrap._session() is not session and bootstrap.client("s3") is not s3
    assert bootstrap.decide_service() is not service
    # ...which reuses the snapshot's parsed service models; the settings, model and policy are kept.
    assert bootstrap._session()._session.get_component("data_loader") is models
    assert bootstrap.decide_settings() is settings and bootstrap.recommender() is model
    assert bootstrap.decide_policy() is policy


def test_a_restore_before_any_client_was_built_is_harmless(runtime: FakeRuntime) -> None:
    snapstart.register(bootstrap.ingest_service)
    runtime.restore()
    assert bootstrap._session.cache_info().currsize == 0
    assert bootstrap.client("sns").meta.service_model.service_name == "sns"


def _expanded(snapstart_value: str, **overrides: str) -> dict[str, Any]:
    template = package_stubs(load_yaml(TEMPLATE))
    for lid, uri in overrides.items():
        template["Resources"][lid]["Properties"]["ContentUri"] = uri
    return transform(template, {"SnapStart": snapstart_value, "AlarmEmail": ""}, "us-east-1")


def _of_type(expanded: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {lid: spec for lid, spec in expanded["Resources"].items() if spec["Type"] == rtype}


def test_the_translated_template_carries_snapstart_on_every_function_and_invokes_the_alias() -> None:
    parameter = load_yaml(TEMPLATE)["Parameters"]["SnapStart"]
    assert parameter["Default"] == "None" and set(parameter["AllowedValues"]) == {"None", "PublishedVersions"}
    expanded = _expanded("PublishedVersions")
    functions = _of_type(expanded, "AWS::Lambda::Function")
    assert len(functions) == FUNCTIONS
    for spec in functions.values():
        assert spec["Properties"]["SnapStart"] == {"ApplyOn": {"Ref": "SnapStart"}}
    # A replaced version goes, and with it its snapshot's caching charge.
    assert {spec["DeletionPolicy"] for spec in _of_type(expanded, "AWS::Lambda::Version").values()} == {"Delete"}
    aliases = _of_type(expanded, "AWS::Lambda::Alias")
    assert {spec["Properties"]["FunctionName"]["Ref"] for spec in aliases.values()} == set(functions)
    assert {spec["Properties"]["Name"] for spec in aliases.values()} == {"live"}
    # SnapStart serves published versions only: every trigger must invoke the alias, never $LATEST.
    for spec in _of_type(expanded, "AWS::Lambda::EventSourceMapping").values():
        assert spec["Properties"]["FunctionName"]["Ref"] in aliases
    targets = [t for spec in _of_type(expanded, "AWS::Events::Rule").values() for t in spec["Properties"]["Targets"]]
    assert targets and all(t["Arn"]["Ref"] in aliases for t in targets if "Ref" in t["Arn"])


def test_a_new_shared_layer_publishes_a_new_version_of_every_function() -> None:
    """The code is mostly in the layers: a version (and its snapshot) must follow them."""
    before = set(_of_type(_expanded("PublishedVersions"), "AWS::Lambda::Version"))
    moved = _expanded("PublishedVersions", SharedLayer="s3://elsewhere/shared.zip")
    after = set(_of_type(moved, "AWS::Lambda::Version"))
    assert len(before) == FUNCTIONS and before.isdisjoint(after)


def test_the_template_with_snapstart_deploys_in_moto_cloudformation(aws: None) -> None:
    stack, _ = deploy_local(
        load_yaml(TEMPLATE),
        lambda service: boto3.client(service, region_name="us-east-1"),
        "nudge-snapstart",
        {"SnapStart": "PublishedVersions", "AlarmEmail": ""},
        "us-east-1",
    )
    assert stack.parameters["SnapStart"] == "PublishedVersions"
    assert len(stack.of_type("AWS::Lambda::Function")) == FUNCTIONS
    mappings = boto3.client("lambda", region_name="us-east-1").list_event_source_mappings()["EventSourceMappings"]
    functions = {r.arn for r in stack.of_type("AWS::Lambda::Function").values()}
    assert mappings and {m["FunctionArn"] for m in mappings} <= functions
