"""Which record of an event id is the event: the registry (moto, from template.yaml), and ingest's
verdicts whatever the batching."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.stack import Stack
from shared.adapters import event_ids
from shared.adapters.event_ids import DynamoEventIdRegistry, registry_key
from shared.domain.admission import CLAIM_TTL_SECONDS, Admission, Claim, admit
from shared.services.ingest import IngestService, StreamRecord, check_record
from tests.support.fakes import InMemoryArchive, InMemoryEventIds

NOON = datetime(2026, 11, 27, 12, tzinfo=UTC)


def registry(stack: Stack, dynamodb: Any, now: float = 1_800_000_000) -> DynamoEventIdRegistry:
    return DynamoEventIdRegistry(dynamodb, stack.outputs["EventIdsTableName"], CLAIM_TTL_SECONDS, clock=lambda: now)


def test_the_first_claim_holds_the_id_and_every_consumer_reads_the_same_holder(stack: Stack, dynamodb: Any) -> None:
    first, again, retry = Claim("e1", "aaa", "s/1"), Claim("e1", "aaa", "s/9"), Claim("e1", "aaa", "s/1")
    other = Claim("e1", "bbb", "s/5")
    ingest, features = registry(stack, dynamodb), registry(stack, dynamodb)
    assert admit([first], ingest) == [Admission.HOLDER]
    # Another consumer, later records of the id, and the same record redelivered.
    assert admit([retry, again, other], features) == [Admission.HOLDER, Admission.DUPLICATE, Admission.CONFLICT]
    table = dynamodb.Table(stack.outputs["EventIdsTableName"])
    (item,) = table.scan()["Items"]
    # The key is a hash (an event id may embed user data) and the claim expires with the stream's records.
    assert item["id"] == registry_key("e1") != "e1"
    assert (item["digest"], item["position"]) == ("aaa", "s/1")
    assert int(item["expires_at"]) == 1_800_000_000 + CLAIM_TTL_SECONDS


def test_within_a_batch_the_earlier_record_claims(stack: Stack, dynamodb: Any) -> None:
    claims = [Claim("e2", "x", "s/1"), Claim("e2", "y", "s/2"), Claim("e2", "x", "s/3")]
    assert admit(claims, registry(stack, dynamodb)) == [Admission.HOLDER, Admission.CONFLICT, Admission.DUPLICATE]


def test_a_stale_read_loses_the_put_and_reads_the_holder(
    stack: Stack, dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    admit([Claim("e3", "theirs", "s/1")], registry(stack, dynamodb))
    # An eventually consistent read that has not seen that write yet: the conditional put decides.
    monkeypatch.setattr(event_ids, "batch_get", lambda *args, **kwargs: [])
    assert admit([Claim("e3", "mine", "s/2")], registry(stack, dynamodb)) == [Admission.CONFLICT]


def wire(event_id: str, item: str, user: str = "u1") -> bytes:
    body = {
        "schema_version": 1,
        "event_id": event_id,
        "user_id": user,
        "type": "view",
        "item_id": item,
        "timestamp": "2026-11-27T11:59:00Z",
    }
    return json.dumps(body).encode()


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=6))
def test_which_body_is_archived_does_not_depend_on_the_batching(cuts: list[int]) -> None:
    # e1 sent with six bodies (as a hostile producer did), e2 twice with the same body, e3 once.
    payloads = [wire("e1", "1"), wire("e2", "7"), wire("e1", "2"), wire("e1", "3", user="u2"), wire("e3", "8")]
    payloads += [wire("e1", "4"), wire("e2", "7"), wire("e1", "5"), wire("e1", "6")]
    records = [
        StreamRecord("shardId-0", str(100 + n), "u1", base64.b64encode(p).decode(), NOON)
        for n, p in enumerate(payloads)
    ]
    archive, ids = InMemoryArchive(), InMemoryEventIds()
    service = IngestService(archive, ids, "archive/", "quarantine/")
    start = 0
    for size in [*cuts, len(records)]:
        if start < len(records):
            service.commit([check_record(r) for r in records[start : start + size]])
            start += size
    archived = [line for key in archive.keys("archive/") for line in archive.read_lines(key)]
    refused = [line for key in archive.keys("quarantine/") for line in archive.read_lines(key)]
    assert sorted((line["event"]["event_id"], line["event"]["item_id"]) for line in archived) == [
        ("e1", "1"),
        ("e2", "7"),
        ("e3", "8"),
    ]
    assert sorted(line["reason"] for line in refused) == ["duplicate_event_id"] + ["event_id_conflict"] * 5
