"""The model registry: content-derived version ids, the pointer, the hot swap, loading with calibration."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from shared.adapters.model_registry import S3ModelRegistry, SsmModelPointer, load_served_model, local_version_id
from shared.domain.engagement import CALIBRATION_FILE
from shared.domain.model_registry import (
    EVALUATION_FILE,
    MODEL_FILE,
    HotSwap,
    ModelPointer,
    ModelRegistryError,
    graph_version_of,
    version_id_for,
)
from shared.domain.recommendation import ServedModel
from shared.model import ModelLoadError
from shared.plumbing import bootstrap
from shared.plumbing.config import DecideSettings
from testkit.fakes import FakeRecommender
from testkit.tiny_model import build_registry_model

REGION = "us-east-1"
BUCKET = "nudge-archive-test"
LATER = datetime(2026, 2, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def served(version: str) -> ServedModel:
    return ServedModel(FakeRecommender([("i1", 1.0)], version=graph_version_of(version)), None, version)


# ---------------------------------------------------------------- version ids and the pointer


def test_the_version_id_names_the_graph_and_hashes_every_served_file() -> None:
    digests = {"manifest.json": "a" * 64, "model.onnx": "b" * 64, "calibration.json": "c" * 64}
    version = version_id_for("cooc-20260101-abcd", digests)
    assert version == version_id_for("cooc-20260101-abcd", dict(digests))  # deterministic
    assert graph_version_of(version) == "cooc-20260101-abcd"
    recalibrated = version_id_for("cooc-20260101-abcd", {**digests, "calibration.json": "d" * 64})
    assert recalibrated != version and graph_version_of(recalibrated) == "cooc-20260101-abcd"
    # A bare manifest version (the model layer's default) is its own graph version.
    assert graph_version_of("sasrec-20261203-1fe4ec1e") == "sasrec-20261203-1fe4ec1e"
    with pytest.raises(ModelRegistryError, match=r"calibration\.json"):
        version_id_for("g", {"manifest.json": "a", "model.onnx": "b"})


def test_promote_stacks_champions_and_rollback_walks_them_back() -> None:
    pointer = ModelPointer.first("a.000000000001").promoted("b.000000000002").promoted("c.000000000003")
    assert (pointer.champion, pointer.previous) == ("c.000000000003", ["b.000000000002", "a.000000000001"])
    assert pointer.promoted("c.000000000003") == pointer  # promoting the champion changes nothing
    back = pointer.rolled_back()
    assert (back.champion, back.previous) == ("b.000000000002", ["a.000000000001"])
    assert back.rolled_back().champion == "a.000000000001"
    with pytest.raises(ModelRegistryError, match="nothing to roll back"):
        back.rolled_back().rolled_back()
    tested = pointer.with_challenger("d.000000000004", 0.1)
    assert (tested.challenger, tested.challenger_share) == ("d.000000000004", 0.1)
    promoted = tested.promoted("d.000000000004")  # the challenger won: it is no longer a challenger
    assert (promoted.champion, promoted.challenger, promoted.challenger_share) == ("d.000000000004", None, 0.0)
    with pytest.raises(ValueError, match="needs a challenger"):
        ModelPointer(champion="a", challenger_share=0.2)


# ---------------------------------------------------------------- the hot swap


def test_hot_swap_rereads_the_pointer_only_after_the_ttl_and_switches_then() -> None:
    clock, reads = Clock(), [0]
    pointer: list[ModelPointer | None] = [None]
    loads: list[str] = []
    swaps: list[tuple[str, str]] = []

    def read() -> ModelPointer | None:
        reads[0] += 1
        return pointer[0]

    def load(version: str) -> ServedModel:
        loads.append(version)
        return served(version)

    default = served("layer-1")
    swap = HotSwap(default, read, load, ttl_seconds=60, clock=clock, on_swap=lambda a, b: swaps.append((a, b)))
    assert swap.current() is default and reads[0] == 1  # no pointer yet: the bootstrap default
    pointer[0] = ModelPointer.first("g.aaaaaaaaaaaa")
    clock.now += 59
    assert swap.current() is default and reads[0] == 1  # within the TTL: the pointer is not re-read
    clock.now += 1
    assert swap.current().version == "g.aaaaaaaaaaaa" and loads == ["g.aaaaaaaaaaaa"]
    clock.now += 60
    assert swap.current().version == "g.aaaaaaaaaaaa" and loads == ["g.aaaaaaaaaaaa"]  # unchanged: no reload
    pointer[0] = ModelPointer(champion="layer-1")  # the default, named by its version, serves again
    clock.now += 60
    assert swap.current() is default and loads == ["g.aaaaaaaaaaaa"]  # back to the default: nothing to load
    assert swaps == [("layer-1", "g.aaaaaaaaaaaa"), ("g.aaaaaaaaaaaa", "layer-1")]


def test_hot_swap_keeps_serving_when_the_pointer_or_a_version_fails(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    refused: list[str] = []
    state: dict[str, Any] = {"pointer": ModelPointer.first("bad.bbbbbbbbbbbb"), "read_fails": False}

    def read() -> ModelPointer | None:
        if state["read_fails"]:
            raise ModelRegistryError("throttled")
        return state["pointer"]  # type: ignore[no-any-return]

    def load(version: str) -> ServedModel:
        if version.startswith("bad"):
            raise ModelLoadError("calibration.json was fitted for another graph")
        return served(version)

    default = served("layer-1")
    swap = HotSwap(default, read, load, ttl_seconds=60, clock=clock, on_refused=lambda what, exc: refused.append(what))
    assert swap.current() is default  # refused, loudly, and the default goes on serving
    assert refused == ["bad.bbbbbbbbbbbb"] and "refused" in caplog.text and "another graph" in caplog.text
    state["pointer"] = ModelPointer.first("good.cccccccccccc")
    clock.now += 60
    assert swap.current().version == "good.cccccccccccc"
    state["read_fails"] = True
    clock.now += 60
    assert swap.current().version == "good.cccccccccccc" and refused[-1] == "pointer"


# ---------------------------------------------------------------- calibration travels with its model


def test_a_calibration_for_another_graph_refuses_to_load(tmp_path: Path) -> None:
    good = build_registry_model(tmp_path / "good")
    model = load_served_model(good)
    assert model.calibration is not None and model.calibration.model_version == model.recommender.manifest.version
    assert model.version == model.recommender.manifest.version
    other = build_registry_model(tmp_path / "other", calibrated_for="some-other-graph")
    with pytest.raises(ModelLoadError, match="fitted for 'some-other-graph'"):
        load_served_model(other)
    (good / CALIBRATION_FILE).unlink()
    assert load_served_model(good).calibration is None  # the layer's default may have none
    with pytest.raises(ModelLoadError, match=r"no calibration\.json"):
        load_served_model(good, calibration_required=True)


@pytest.fixture
def s3(aws: None) -> Any:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


def test_publish_lists_downloads_and_verifies_a_version(s3: Any, tmp_path: Path) -> None:
    registry = S3ModelRegistry(s3, BUCKET, "models/registry/")
    folder = build_registry_model(tmp_path / "m", evaluation={"ndcg@10": 0.2})
    version = registry.publish(folder)
    assert version == local_version_id(folder) and registry.publish(folder) == version  # idempotent
    assert registry.versions() == [version] and registry.exists(version)
    described = registry.describe(version)
    assert described.evaluation == {"ndcg@10": 0.2} and described.manifest.version == graph_version_of(version)
    loaded = registry.load(version, tmp_path / "cache")
    assert loaded.version == version and loaded.calibration is not None
    assert not (tmp_path / "cache" / version / EVALUATION_FILE).exists()  # decide downloads what it serves
    with pytest.raises(ModelRegistryError, match="no version"):
        registry.describe("missing.000000000000")
    # A file changed after publishing: its id no longer matches, so it is never loaded.
    s3.put_object(
        Bucket=BUCKET, Key=f"models/registry/{version}/{MODEL_FILE}", Body=(folder / MODEL_FILE).read_bytes() + b"x"
    )
    with pytest.raises(ModelRegistryError, match="refusing to load"):
        registry.load(version, tmp_path / "cache2")
    uncalibrated = build_registry_model(tmp_path / "u", calibrated_for="another")
    with pytest.raises(ModelLoadError):
        registry.publish(uncalibrated)  # refused before anything is written
    assert registry.versions() == [version]


def test_the_ssm_pointer_reads_none_until_written(aws: None) -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    pointer = SsmModelPointer(ssm, "/nudge/test/model-pointer")
    assert pointer.read() is None
    pointer.write(ModelPointer.first("g.aaaaaaaaaaaa").promoted("h.bbbbbbbbbbbb"))
    read = pointer.read()
    assert read is not None and (read.champion, read.previous) == ("h.bbbbbbbbbbbb", ["g.aaaaaaaaaaaa"])
    ssm.put_parameter(Name="/nudge/test/model-pointer", Value="{not json", Type="String", Overwrite=True)
    with pytest.raises(ModelRegistryError, match="no valid pointer"):
        pointer.read()


def test_a_model_placed_with_model_s3_uri_brings_its_calibration(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    folder = build_registry_model(tmp_path / "m", created_at=LATER)
    for path in folder.iterdir():
        s3.put_object(Bucket=BUCKET, Key=f"models/v7/{path.name}", Body=path.read_bytes())
    settings = DecideSettings.model_validate({**_decide_env(), "model_s3_uri": f"s3://{BUCKET}/models/v7/"})
    model = bootstrap.load_default_model(settings)
    assert model.calibration is not None and model.calibration.model_version == model.version
    # And a calibration fitted for another graph refuses the whole model.
    wrong = json.loads((folder / CALIBRATION_FILE).read_text()) | {"model_version": "another-graph"}
    s3.put_object(Bucket=BUCKET, Key=f"models/v7/{CALIBRATION_FILE}", Body=json.dumps(wrong).encode())
    with pytest.raises(ModelLoadError, match="another-graph"):
        bootstrap.load_default_model(settings)


def _decide_env() -> dict[str, str]:
    names = ("user_state_table", "catalog_table", "ledger_table", "idempotency_table", "push_counters_table")
    return {
        **{name: "table-x" for name in names},
        "push_topic_arn": "arn:aws:sns:us-east-1:1:topic",
        "archive_bucket": BUCKET,
    }


def test_a_challenger_serves_a_stable_share_of_users() -> None:
    clock = Clock()
    pointer = ModelPointer.first("champ.aaaaaaaaaaaa").with_challenger("chall.bbbbbbbbbbbb", 0.2)
    state: dict[str, ModelPointer] = {"pointer": pointer}
    loads: list[str] = []

    def load(version: str) -> ServedModel:
        loads.append(version)
        if version.startswith("broken"):
            raise ModelLoadError("no calibration.json")
        return served(version)

    swap = HotSwap(served("layer-1"), lambda: state["pointer"], load, ttl_seconds=60, clock=clock)
    users = [f"user-{i}" for i in range(10_000)]
    first = {user: swap.for_user(user).version for user in users}
    share = sum(version == "chall.bbbbbbbbbbbb" for version in first.values()) / len(users)
    assert share == pytest.approx(0.2, abs=0.015)
    assert set(first.values()) == {"champ.aaaaaaaaaaaa", "chall.bbbbbbbbbbbb"}
    assert swap.current().version == "champ.aaaaaaaaaaaa"
    clock.now += 60  # a re-check of the same pointer: nobody moves, nothing is loaded again
    assert {user: swap.for_user(user).version for user in users} == first and len(loads) == 2
    # A larger share keeps every user it had and only adds others.
    state["pointer"] = pointer.with_challenger("chall.bbbbbbbbbbbb", 0.5)
    clock.now += 60
    wider = {user: swap.for_user(user).version for user in users}
    assert all(wider[u] == "chall.bbbbbbbbbbbb" for u in users if first[u] == "chall.bbbbbbbbbbbb")
    assert sum(v == "chall.bbbbbbbbbbbb" for v in wider.values()) / len(users) == pytest.approx(0.5, abs=0.015)
    # A challenger that cannot load: the champion serves everyone.
    state["pointer"] = pointer.with_challenger("broken.cccccccccccc", 0.5)
    clock.now += 60
    assert {swap.for_user(user).version for user in users} == {"champ.aaaaaaaaaaaa"}
