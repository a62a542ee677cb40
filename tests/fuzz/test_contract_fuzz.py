"""Fuzzing the event contract and the ingest path: bad input is data, never a crash.

Property: for any bytes, `decode_event` returns a valid event or raises ContractViolation with
one of the documented reasons; nothing else escapes. Through ingest, every record of a batch ends
either archived or quarantined with its reason, and the rest of the batch goes on.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.contract import ContractViolation, QuarantineReason, decode_event
from shared.ingest import IngestService, StreamRecord, check_record
from tests.support.fakes import InMemoryArchive

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
VALID = {
    "schema_version": 1,
    "event_id": "e-1",
    "user_id": "u-1",
    "type": "rate",
    "item_id": "242",
    "value": 4,
    "timestamp": NOW.isoformat(),
}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def verdict(raw: bytes) -> str:
    try:
        decode_event(raw, NOW)
    except ContractViolation as violation:
        assert violation.reason in QuarantineReason
        return violation.reason.value
    return "valid"


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    verdict(raw)


@FUZZ
@given(json_values)
def test_arbitrary_json_never_crashes(value: Any) -> None:
    assert verdict(json.dumps(value).encode()) != "valid" or isinstance(value, dict)


@FUZZ
@given(
    st.sampled_from(sorted(VALID)),
    json_values | st.text() | st.integers(min_value=-(10**30), max_value=10**30),
)
def test_near_valid_events_are_valid_or_refused_with_a_reason(field: str, value: Any) -> None:
    mutated = {**VALID, field: value}
    result = verdict(json.dumps(mutated).encode())
    if result == "valid":
        event = decode_event(json.dumps(mutated).encode(), NOW)
        assert event.event_id and event.user_id


def nasty_inputs() -> dict[str, bytes]:
    def event(**fields: Any) -> bytes:
        return json.dumps({**VALID, **fields}).encode()

    return {
        "invalid utf-8": b'{"schema_version": 1, "user_id": "\xff\xfe"}',
        "deep nesting": b"[" * 10_000 + b"]" * 10_000,
        "deep object": ('{"a":' * 3000 + "1" + "}" * 3000).encode(),
        "huge number": event(value=10**400),
        "NaN": event().replace(b'"value": 4', b'"value": NaN'),
        "Infinity": event().replace(b'"value": 4', b'"value": Infinity'),
        "1 MB payload": event(item_id="x" * 1_000_000),
        "odd unicode id": event(user_id="u\u202eevil\u0000"),
        "emoji id": event(item_id="🍿"),
        "sql injection": event(user_id="1'; DROP TABLE users;--"),
        "script injection": event(item_id="<script>alert(1)</script>"),
        "wrong schema version": event(schema_version=2),
        "schema version as string": event(schema_version="1"),
        "bool for value": event(value=True),
        "naive timestamp": event(timestamp="2026-11-27T12:00:00"),
        "timestamp in 2099": event(timestamp="2099-01-01T00:00:00Z"),
        "timestamp in 1970": event(timestamp="1970-01-01T00:00:00Z"),
        "empty object": b"{}",
        "null": b"null",
        "empty": b"",
        "whitespace": b"   \n\t",
        "BOM then JSON": b"\xef\xbb\xbf" + event(),
    }


def test_nasty_corpus_is_quarantined_record_by_record_and_the_batch_goes_on() -> None:
    corpus = nasty_inputs()
    good = json.dumps(VALID).encode()
    payloads = [good, *corpus.values(), json.dumps({**VALID, "event_id": "e-2"}).encode()]
    records = [
        StreamRecord("shardId-000000000000", str(1000 + n), "u-1", base64.b64encode(p).decode(), NOW)
        for n, p in enumerate(payloads)
    ]
    archive = InMemoryArchive()
    result = IngestService(archive, "archive/", "quarantine/").commit([check_record(r) for r in records])  # type: ignore[arg-type]
    assert result.archived == 2
    assert sum(result.quarantined.values()) == len(corpus)
    refused = archive.read_lines(result.quarantine_key or "")
    assert {line["sequence_number"] for line in refused} == {str(1000 + n) for n in range(1, len(corpus) + 1)}
    assert all(line["reason"] in {r.value for r in QuarantineReason} for line in refused)


def test_bad_base64_and_old_arrivals_are_refused_too() -> None:
    bad = StreamRecord("s", "1", "u", "***not base64***", NOW)
    assert check_record(bad).violation is not None
    late = StreamRecord("s", "2", "u", base64.b64encode(json.dumps(VALID).encode()).decode(), NOW + timedelta(days=30))
    violation = check_record(late).violation
    assert violation is not None and violation.reason is QuarantineReason.TIMESTAMP_TOO_OLD
