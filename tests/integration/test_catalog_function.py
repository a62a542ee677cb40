"""Catalog events through the stack (issue 12, item 1): template -> moto -> ingest, features, catalog.

The catalog function encodes with the tiny encoder (testkit/tiny_encoder.py, ENCODER_DIR overridden as
for decide's MODEL_DIR); the deployment's image-embedding length is 4 here (parameter ImageEmbeddingDim).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

from runner.pipeline import LocalPipeline
from shared.domain.catalog import CatalogItem, floats_of, version_of
from testkit.audit import archived_lines, scan_table
from testkit.tiny_encoder import DIM
from tests.events import load_event
from tests.integration.stacks import ROOT, tiny_model_pipeline

pytestmark = pytest.mark.slow(seconds=10)

T0 = datetime(2026, 11, 27, 10, tzinfo=UTC)
IMAGE_DIM = 4


@pytest.fixture
def pipe(tmp_path: Path) -> Iterator[LocalPipeline]:
    with tiny_model_pipeline(tmp_path, "nudge-cat", T0, ["1", "2"], {"ImageEmbeddingDim": IMAGE_DIM}) as p:
        p.start()
        yield p


def catalog(event_id: str, item_id: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_id": event_id,
        "type": "catalog",
        "item_id": item_id,
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        **({"action": "upsert"} | fields),
    }


def items(pipe: LocalPipeline) -> dict[str, dict[str, Any]]:
    deserializer = TypeDeserializer()
    rows = [{k: deserializer.deserialize(v) for k, v in raw.items()} for raw in scan_table(pipe, "CatalogTableName")]
    return {row["item_id"]: row for row in rows}


def send(pipe: LocalPipeline, events: list[dict[str, Any]], at: datetime) -> None:
    pipe.clock.set(at)  # type: ignore[attr-defined]
    pipe.put_events(events, partition_key="item_id")
    assert pipe.pump().quiescent


def test_a_catalog_event_ends_in_the_catalog_table_with_its_vectors(pipe: LocalPipeline) -> None:
    upsert = catalog(
        "c-1",
        "new-1",
        T0,
        title="The Lighthouse Keeper",
        description="A keeper returns as a storm closes the harbour.",
        categories=["Drama", "Thriller"],
        attributes={"year": "2026"},
        available_from="2026-11-27T09:00:00Z",
        image_embedding=[0.5, -0.5, 0.5, -0.5],
    )
    send(pipe, [upsert], T0 + timedelta(seconds=1))

    row = items(pipe)["new-1"]
    assert (row["title"], row["genres"], row["attributes"]) == (
        "The Lighthouse Keeper",
        ["Drama", "Thriller"],
        {"year": "2026"},
    )
    assert row["available"] is True and row["retired"] is False
    assert row["available_from"] == int(datetime(2026, 11, 27, 9, tzinfo=UTC).timestamp())
    assert row["catalog_version"] == version_of(T0) and row["catalog_event_id"] == "c-1"
    text = floats_of(bytes(row["text_vector"].value))
    assert len(text) == DIM and math.isclose(math.fsum(x * x for x in text), 1.0, rel_tol=1e-5)
    assert floats_of(bytes(row["image_vector"].value)) == [0.5, -0.5, 0.5, -0.5]
    assert row["encoder"] == "all-MiniLM-L6-v2/model.int8.onnx"
    # Decide's and features' view of the same item (the vectors are extra attributes to them).
    item = CatalogItem.model_validate(row)
    assert item.genres == ["Drama", "Thriller"] and item.available_at(int(T0.timestamp()))
    # Ingest archived it like any event; features wrote no user state (a catalog event is not behaviour),
    # and decide never ran.
    assert [line["event"]["event_id"] for line in archived_lines(pipe, "archive/")] == ["c-1"]
    assert scan_table(pipe, "UserStateTableName") == []
    calls = {fid: c.stats.invocations for fid, c in pipe.containers.items()}
    assert calls["CatalogFunction"] == 1 and calls["DecideFunction"] == 0


def test_bad_catalog_events_are_quarantined_with_their_reason_and_not_written(pipe: LocalPipeline) -> None:
    wrong_dimension = catalog("c-bad-dim", "bad-1", T0, title="Three floats", image_embedding=[0.1, 0.2, 0.3])
    no_title = catalog("c-bad-title", "bad-2", T0, description="An upsert needs a title")
    good = catalog("c-good", "good-1", T0, title="A good one")
    send(pipe, [wrong_dimension, no_title, good], T0 + timedelta(seconds=1))

    assert set(items(pipe)) == {"good-1"}
    lines = archived_lines(pipe, "quarantine/")
    reasons = {(line["reason"], line["detail"]) for line in lines if "stage" not in line}
    assert reasons == {
        ("embedding_dimension", "image_embedding has 3 values, this deployment takes 4"),
        ("invalid_fields", "title"),
    }
    # Only ingest quarantines contract breaches; the consumers downstream pass them by.
    assert [line for line in lines if "stage" in line] == []


def test_a_retire_marks_the_item_retired_and_keeps_what_it_knew(pipe: LocalPipeline) -> None:
    send(pipe, [catalog("c-1", "new-1", T0, title="Soon gone", categories=["Drama"])], T0 + timedelta(seconds=1))
    before = items(pipe)["new-1"]
    send(pipe, [catalog("c-2", "new-1", T0 + timedelta(minutes=5), action="retire")], T0 + timedelta(minutes=6))

    row = items(pipe)["new-1"]
    assert row["retired"] is True and row["available"] is False
    assert row["title"] == "Soon gone" and row["text_vector"] == before["text_vector"]
    assert not CatalogItem.model_validate(row).available_at(int(T0.timestamp()) + 600)


def test_an_older_or_replayed_event_never_overwrites_a_newer_one(pipe: LocalPipeline) -> None:
    newer = catalog("c-new", "item-9", T0 + timedelta(minutes=10), title="Director's cut")
    older = catalog("c-old", "item-9", T0, title="Theatrical cut")
    send(pipe, [newer], T0 + timedelta(minutes=11))
    written = items(pipe)["item-9"]
    # The older event arrives late, and the newer one is replayed (same id, same body) after it.
    send(pipe, [older, dict(newer)], T0 + timedelta(minutes=12))

    row = items(pipe)["item-9"]
    assert row == written and row["title"] == "Director's cut"
    # The late one was valid (archived); the replay is a duplicate (quarantined by ingest).
    assert {line["reason"] for line in archived_lines(pipe, "quarantine/")} == {"duplicate_event_id"}
    # A retire older than the upsert does not retire it either.
    send(pipe, [catalog("c-oldest", "item-9", T0 - timedelta(minutes=1), action="retire")], T0 + timedelta(minutes=13))
    assert items(pipe)["item-9"]["retired"] is False


def test_the_sample_catalog_event_file_invokes_the_function_like_sam_local(tmp_path: Path) -> None:
    """events/kinesis-catalog.json at the template's default ImageEmbeddingDim (512)."""
    with tiny_model_pipeline(tmp_path, "nudge-cat-sample", T0, ["1"]) as p:
        p.start()
        result = p.invoke("CatalogFunction", load_event("kinesis-catalog.json"))
        assert result.ok and result.response == {"batchItemFailures": []}
        rows = items(p)
        assert (
            rows["1683"]["title"] == "The Lighthouse Keeper"
            and len(floats_of(bytes(rows["1683"]["image_vector"].value))) == 512
        )
        assert "image_vector" not in rows["1684"] and rows["1500"]["retired"] is True


def test_without_its_encoder_files_the_function_fails_at_cold_start(tmp_path: Path) -> None:
    overrides = {"CatalogFunction": {"ENCODER_DIR": str(tmp_path / "nothing-here")}}
    with LocalPipeline(ROOT / "template.yaml", stack_name="nudge-cat-broken", env_overrides=overrides) as p:
        result = p.invoke("CatalogFunction", load_event("kinesis-catalog.json"))
        # An init error, as Lambda reports a module that raises at import.
        assert not result.ok and result.error_type == "Runtime.ImportModuleError: TextEncoderError"
        assert "encoder files missing" in str(result.error_message) and "model.int8.onnx" in str(result.error_message)
