"""Catalog events in the contract and the catalog service (issue 12, item 1), without AWS.

The stack-level behaviour (ingest archives and quarantines them, the catalog function writes the table,
versions, retire) is in tests/integration/test_catalog_function.py.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.domain.admission import Claim, Delivered, StreamPosition
from shared.domain.catalog import CatalogItem, CatalogUpdate, float32_bytes, floats_of, version_of
from shared.domain.contract import (
    DEFAULT_IMAGE_EMBEDDING_DIM,
    MAX_CATALOG_EVENT_BYTES,
    MAX_EVENT_BYTES,
    CatalogEvent,
    ContractViolation,
    decode_event,
)
from shared.plumbing.config import ContractSettings
from shared.services.catalog import CatalogService
from tests.events import load_event

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def raw(**fields: Any) -> bytes:
    body = {
        "schema_version": 1,
        "event_id": "c-1",
        "type": "catalog",
        "action": "upsert",
        "item_id": "1683",
        "title": "The Lighthouse Keeper",
        "timestamp": "2026-11-27T11:59:00Z",
    }
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def verdict(data: bytes, dim: int = DEFAULT_IMAGE_EMBEDDING_DIM) -> tuple[str, str]:
    try:
        decode_event(data, NOW, dim)
    except ContractViolation as violation:
        return violation.reason.value, violation.detail
    return "valid", ""


def test_the_sample_catalog_events_parse_with_the_contract() -> None:
    records = load_event("kinesis-catalog.json")["Records"]
    events = []
    for record in records:
        arrived = datetime.fromtimestamp(record["kinesis"]["approximateArrivalTimestamp"], UTC)
        event = decode_event(base64.b64decode(record["kinesis"]["data"]), arrived)
        assert isinstance(event, CatalogEvent) and event.partition_key == record["kinesis"]["partitionKey"]
        events.append(event)
    assert [e.action for e in events] == ["upsert", "upsert", "retire"]
    upsert = events[0]
    assert upsert.image_embedding is not None and len(upsert.image_embedding) == DEFAULT_IMAGE_EMBEDDING_DIM
    assert upsert.text.startswith("The Lighthouse Keeper. A keeper returns")
    assert upsert.available_from is not None and upsert.available_until is not None


def test_an_image_embedding_of_another_length_is_refused_with_a_clear_reason() -> None:
    assert verdict(raw(image_embedding=[0.1, 0.2, 0.3, 0.4]), dim=4) == ("valid", "")
    assert verdict(raw(image_embedding=[0.1, 0.2, 0.3]), dim=4) == (
        "embedding_dimension",
        "image_embedding has 3 values, this deployment takes 4",
    )
    # Integers are numbers; booleans and strings are not.
    assert verdict(raw(image_embedding=[1, 0, 0, 0]), dim=4) == ("valid", "")
    assert verdict(raw(image_embedding=[True, 0.0, 0.0, 0.0]), dim=4)[0] == "invalid_fields"
    assert verdict(raw(image_embedding=["0.1", 0.0, 0.0, 0.0]), dim=4)[0] == "invalid_fields"
    assert verdict(raw(image_embedding=[]), dim=4) == ("invalid_fields", "image_embedding")


def test_an_upsert_needs_a_title_and_a_retire_does_not() -> None:
    assert verdict(raw(title=None)) == ("invalid_fields", "title")
    assert verdict(raw(title="")) == ("invalid_fields", "title")
    assert verdict(raw(title=None, action="retire")) == ("valid", "")
    assert verdict(raw(action="delete"))[0] == "invalid_fields"


def test_catalog_fields_are_checked_like_the_rest() -> None:
    assert verdict(raw(user_id="u1")) == ("invalid_fields", "user_id")  # a catalog event names no user
    assert verdict(raw(item_id="bad id")) == ("invalid_fields", "item_id")
    assert verdict(raw(categories=["Drama", 7])) == ("invalid_fields", "categories.1")
    assert verdict(raw(attributes={"year": 2026})) == ("invalid_fields", "attributes.year")
    window = raw(available_from="2026-12-01T00:00:00Z", available_until="2026-11-30T00:00:00Z")
    assert verdict(window)[0] == "invalid_fields"
    assert verdict(raw(timestamp="2026-11-27T12:30:00Z"))[0] == "timestamp_in_future"


def test_only_a_catalog_event_may_be_larger_than_10_kb() -> None:
    big_vector = [0.123456789] * 1500
    assert MAX_EVENT_BYTES < len(raw(image_embedding=big_vector)) < MAX_CATALOG_EVENT_BYTES
    assert verdict(raw(image_embedding=big_vector), dim=1500) == ("valid", "")
    profile = {"schema_version": 1, "event_id": "p", "type": "profile", "user_id": "u1"}
    profile |= {"timestamp": "2026-11-27T11:59:00Z", "attributes": {"blob": "x" * 200}}
    assert verdict(json.dumps(profile | {"pad": "y" * MAX_EVENT_BYTES}).encode())[0] == "too_large"
    assert verdict(b"{" + b" " * MAX_EVENT_BYTES)[0] == "too_large"  # not JSON, but too large first
    assert verdict(b"\xff" * (MAX_EVENT_BYTES + 1))[0] == "too_large"
    assert verdict(raw(description="x" * MAX_CATALOG_EVENT_BYTES))[0] == "too_large"


def test_every_consumer_reads_one_image_embedding_length(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ContractSettings().image_embedding_dim == DEFAULT_IMAGE_EMBEDDING_DIM
    monkeypatch.setenv("IMAGE_EMBEDDING_DIM", "64")
    assert ContractSettings().image_embedding_dim == 64


def test_versions_are_exact_microseconds_and_vectors_round_trip() -> None:
    at = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)
    assert version_of(at) - version_of(at - timedelta(microseconds=1)) == 1
    assert floats_of(float32_bytes([0.5, -0.25, 1.0])) == [0.5, -0.25, 1.0]
    item = CatalogItem(item_id="1", available_from=100, available_until=200)
    assert [item.available_at(t) for t in (99, 100, 199, 200)] == [False, True, True, False]
    assert not CatalogItem(item_id="1", retired=True).available_at(150)


class _Registry:
    def __init__(self) -> None:
        self.held: dict[str, Claim] = {}

    def claim(self, claims: Sequence[Claim]) -> dict[str, Claim]:
        return {c.event_id: self.held.setdefault(c.event_id, c) for c in claims}


class _Encoder:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def vector_bytes(self, text: str) -> bytes:
        self.texts.append(text)
        return float32_bytes([float(len(text)), 0.0])


class _Table:
    """The writer's contract: a write lands only over an older version."""

    def __init__(self) -> None:
        self.rows: dict[str, CatalogUpdate] = {}

    def apply(self, update: CatalogUpdate) -> bool:
        held = self.rows.get(update.item_id)
        if held is not None and held.version >= update.version:
            return False
        self.rows[update.item_id] = update
        return True


def _delivered(data: bytes, seq: int) -> Delivered[int]:
    return Delivered(decode_event(data, NOW, 4), StreamPosition("shard-0", str(seq)), seq)


def test_the_service_encodes_each_upsert_alone_and_skips_stale_and_duplicate_events() -> None:
    table, encoder, registry = _Table(), _Encoder(), _Registry()
    service = CatalogService(table, encoder, registry, encoder_name="tiny")
    newer = raw(event_id="c-2", title="New", description="cut", timestamp="2026-11-27T11:59:30Z")
    older = raw(event_id="c-1", title="Old", timestamp="2026-11-27T11:59:00Z", image_embedding=[1, 0, 0, 0])
    view = json.dumps(
        {
            "schema_version": 1,
            "event_id": "v",
            "type": "view",
            "user_id": "u",
            "item_id": "1683",
            "timestamp": "2026-11-27T11:59:00Z",
        }
    ).encode()
    result = service.apply([_delivered(newer, 1), _delivered(older, 2), _delivered(view, 3), _delivered(newer, 4)])
    assert (result.upserted, result.stale, result.ignored, result.duplicates) == (1, 1, 1, 1)
    row = table.rows["1683"]
    assert (row.title, row.event_id, row.encoder) == ("New", "c-2", "tiny") and row.image_vector is None
    assert encoder.texts == ["New. cut", "Old"]  # one call per item, title then description
    retire = raw(event_id="c-3", action="retire", title=None, timestamp="2026-11-27T11:59:40Z")
    assert service.apply([_delivered(retire, 5)]).retired == 1
    assert table.rows["1683"].action == "retire" and encoder.texts == ["New. cut", "Old"]


def test_decide_never_loads_the_encoder() -> None:
    """Decide's handler and its whole service, built as at a cold start: no encoder module, no tokenizers."""
    probe = (
        "import importlib.util, json, sys\n"
        "spec = importlib.util.spec_from_file_location('decide_app', 'functions/decide/app.py')\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "from shared.plumbing import bootstrap\n"
        "bootstrap.decide_service()\n"
        "print(json.dumps(sorted(m for m in ('shared.adapters.text_encoder', 'shared.services.catalog', 'tokenizers')"
        " if m in sys.modules)))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "USER_STATE_TABLE": "user-state",
        "CATALOG_TABLE": "catalog",
        "LEDGER_TABLE": "ledger",
        "IDEMPOTENCY_TABLE": "idempotency",
        "PUSH_COUNTERS_TABLE": "push-counters",
        "PUSH_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:push",
        "ARCHIVE_BUCKET": "archive",
        "MODEL_DIR": str(ROOT / "layers" / "model" / "sasrec" / "int8"),
        "POWERTOOLS_TRACE_DISABLED": "true",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    # And nothing decide's code imports names the encoder.
    for path in (ROOT / "functions" / "decide" / "app.py", ROOT / "shared" / "services" / "decide.py"):
        assert "text_encoder" not in path.read_text() and "tokenizers" not in path.read_text()
