from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.contract import (
    MAX_EVENT_BYTES,
    BehaviourEvent,
    ContractViolation,
    FeedbackEvent,
    ProfileEvent,
    QuarantineReason,
    decode_event,
    encode_event,
)
from shared.services.ingest import StreamRecord, check_record
from tests.events import load_event

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def event_bytes(**fields: object) -> bytes:
    base = {"schema_version": 1, "event_id": "e1", "user_id": "u1", "timestamp": NOW.isoformat()}
    return json.dumps({**base, **fields}).encode()


def reason_of(raw: bytes) -> QuarantineReason:
    with pytest.raises(ContractViolation) as info:
        decode_event(raw, NOW)
    return info.value.reason


def test_each_event_kind_round_trips() -> None:
    rate = decode_event(event_bytes(type="rate", item_id="242", value=4), NOW)
    assert isinstance(rate, BehaviourEvent) and rate.value == 4
    profile = decode_event(event_bytes(type="profile", consent=True, timezone="Europe/Berlin"), NOW)
    assert isinstance(profile, ProfileEvent) and profile.timezone == "Europe/Berlin"
    feedback = decode_event(event_bytes(type="opened", decision_id="d-1"), NOW)
    assert isinstance(feedback, FeedbackEvent)
    assert decode_event(encode_event(rate), NOW) == rate


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", QuarantineReason.BAD_ENCODING),
        (b"{not json", QuarantineReason.NOT_JSON),
        (b"[1, 2]", QuarantineReason.NOT_AN_OBJECT),
        (b'{"schema_version": 1, "x": NaN}', QuarantineReason.NOT_JSON),
        (b"[" * 100_000 + b"]" * 100_000, QuarantineReason.TOO_LARGE),
        (b"[" * 5000 + b"]" * 5000, QuarantineReason.NOT_JSON),
        (
            event_bytes(schema_version=2, type="view", item_id="1"),
            QuarantineReason.UNSUPPORTED_SCHEMA_VERSION,
        ),
        (event_bytes(type="teleport"), QuarantineReason.UNKNOWN_EVENT_TYPE),
        (event_bytes(type="view"), QuarantineReason.INVALID_FIELDS),
        (event_bytes(type="rate", item_id="1"), QuarantineReason.INVALID_FIELDS),
        (event_bytes(type="rate", item_id="1", value=9), QuarantineReason.INVALID_FIELDS),
        (event_bytes(type="view", item_id="1", extra="field"), QuarantineReason.INVALID_FIELDS),
        (event_bytes(type="view", item_id="1", user_id="<script>"), QuarantineReason.INVALID_FIELDS),
        (
            event_bytes(type="view", item_id="1", timestamp="2026-11-27T12:00:00"),
            QuarantineReason.INVALID_FIELDS,
        ),
        (event_bytes(type="profile", timezone="Mars/Olympus"), QuarantineReason.INVALID_FIELDS),
        (event_bytes(type="opened"), QuarantineReason.INVALID_FIELDS),
        (
            event_bytes(type="view", item_id="1", timestamp=(NOW + timedelta(hours=1)).isoformat()),
            QuarantineReason.TIMESTAMP_IN_FUTURE,
        ),
        (
            event_bytes(type="view", item_id="1", timestamp=(NOW - timedelta(days=30)).isoformat()),
            QuarantineReason.TIMESTAMP_TOO_OLD,
        ),
        (event_bytes(type="profile", attributes={"blob": "x" * MAX_EVENT_BYTES}), QuarantineReason.TOO_LARGE),
    ],
)
def test_bad_input_is_refused_with_its_reason(raw: bytes, reason: QuarantineReason) -> None:
    assert reason_of(raw) is reason


def test_small_clock_skew_is_tolerated() -> None:
    ahead = (NOW + timedelta(minutes=2)).isoformat()
    assert decode_event(event_bytes(type="view", item_id="1", timestamp=ahead), NOW).event_id == "e1"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("kinesis-bad-base64.json", "bad_encoding"),
        ("kinesis-invalid-utf8.json", "bad_encoding"),
        ("kinesis-not-json.json", "not_json"),
        ("kinesis-wrong-types.json", "invalid_fields"),
        ("kinesis-unknown-type.json", "unknown_event_type"),
        ("kinesis-missing-ids.json", "invalid_fields"),
        ("kinesis-wrong-schema-version.json", "unsupported_schema_version"),
        ("kinesis-too-large.json", "too_large"),
        ("kinesis-future-timestamp.json", "timestamp_in_future"),
        ("kinesis-old-timestamp.json", "timestamp_too_old"),
    ],
)
def test_sample_bad_events_are_refused(name: str, reason: str) -> None:
    for record in load_event(name)["Records"]:
        kinesis = record["kinesis"]
        checked = check_record(
            StreamRecord(
                shard_id="shardId-000000000000",
                sequence_number=kinesis["sequenceNumber"],
                partition_key=kinesis["partitionKey"],
                data_b64=kinesis["data"],
                arrived_at=datetime.fromtimestamp(kinesis["approximateArrivalTimestamp"], UTC),
            )
        )
        assert checked.event is None and checked.violation is not None
        assert checked.violation.reason.value == reason


@pytest.mark.parametrize("name", ["kinesis-profile.json", "kinesis-behaviour.json", "kinesis-feedback.json"])
def test_sample_good_events_are_valid(name: str) -> None:
    for record in load_event(name)["Records"]:
        raw = base64.b64decode(record["kinesis"]["data"])
        arrived = datetime.fromtimestamp(record["kinesis"]["approximateArrivalTimestamp"], UTC)
        assert decode_event(raw, arrived).partition_key == "u-196"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"type": []}, QuarantineReason.UNKNOWN_EVENT_TYPE),  # found by tests/fuzz: unhashable type
        ({"type": {"x": 1}}, QuarantineReason.UNKNOWN_EVENT_TYPE),
        ({"schema_version": True, "type": "view", "item_id": "1"}, QuarantineReason.UNSUPPORTED_SCHEMA_VERSION),
        ({"schema_version": 1.0, "type": "view", "item_id": "1"}, QuarantineReason.UNSUPPORTED_SCHEMA_VERSION),
    ],
)
def test_odd_types_in_routing_fields_are_refused_not_raised(
    fields: dict[str, object], reason: QuarantineReason
) -> None:
    assert reason_of(event_bytes(**fields)) is reason
