"""Fuzzing the event contract and the ingest path: bad input is data, never a crash.

Property: for any bytes, `decode_event` returns a valid event or raises ContractViolation with
one of the documented reasons; nothing else escapes. Through ingest, every record of a batch ends
either archived or quarantined with its reason, and the rest of the batch goes on.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability.bad_inputs import (
    NOW,
    VALID,
    fuzz_contract,
    fuzz_through_ingest,
    json_values,
    nasty_inputs,
    verdict,
)
from shared.domain.contract import QuarantineReason, decode_event
from shared.services.ingest import IngestService, StreamRecord, check_record
from testkit.fakes import InMemoryArchive, InMemoryEventIds

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    # verdict() raises for anything but an event or a documented reason; these bytes are never an event.
    result = verdict(raw)
    assert result in {r.value for r in QuarantineReason}
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        assert result == QuarantineReason.BAD_ENCODING


@FUZZ
@given(json_values)
def test_arbitrary_json_never_crashes(value: Any) -> None:
    assert verdict(json.dumps(value).encode()) != "valid" or isinstance(value, dict)


def test_a_bad_string_at_the_top_level_is_refused_not_raised() -> None:
    # Hypothesis found these: a NUL or a lone surrogate as the whole document once escaped decoding.
    for document in ('"\\u0000"', '["\\ud800"]', '[["\\u0000"]]'):
        assert verdict(document.encode()) == QuarantineReason.BAD_STRING


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
        assert event.event_id and event.partition_key


def test_every_nasty_input_is_refused_with_a_documented_reason() -> None:
    refused = {name: verdict(raw) for name, raw in nasty_inputs().items()}
    assert [name for name, reason in refused.items() if reason == "valid"] == []
    # The corpus the issue lists is all there.
    for needed in ("invalid utf-8", "deep nesting", "huge number", "NaN", "1 MB payload", "odd unicode id"):
        assert needed in refused
    assert {"sql injection", "script injection", "wrong schema version"} <= set(refused)
    assert refused["bool for value"] == "invalid_fields"  # lax parsing once read `true` as a 1.0 rating


def test_nasty_corpus_is_quarantined_record_by_record_and_the_batch_goes_on() -> None:
    # Distinct event ids: a corpus entry must be refused for what it is, not as a duplicate of "good".
    corpus = {name: raw.replace(b'"e-1"', f'"c-{n}"'.encode()) for n, (name, raw) in enumerate(nasty_inputs().items())}
    good = json.dumps(VALID).encode()
    payloads = [good, *corpus.values(), json.dumps({**VALID, "event_id": "e-2"}).encode()]
    records = [
        StreamRecord("shardId-000000000000", str(1000 + n), "u-1", base64.b64encode(p).decode(), NOW)
        for n, p in enumerate(payloads)
    ]
    archive = InMemoryArchive()
    result = IngestService(archive, InMemoryEventIds(), "archive/", "quarantine/").commit(
        [check_record(r) for r in records]
    )
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


def test_fuzz_run_counts_every_input_it_tries() -> None:
    report = fuzz_contract(examples=50)
    assert report["by_strategy"]["corpus"] == len(nasty_inputs())
    assert report["inputs_tried"] == sum(report["by_strategy"].values()) >= len(nasty_inputs()) + 100
    assert sum(report["verdicts"].values()) == report["inputs_tried"]


def test_bad_input_through_the_real_stream_and_ingest_handler_is_quarantined_and_the_batch_goes_on() -> None:
    report = fuzz_through_ingest(generated=40)
    assert report["quiescent"] and report["dead_letter_messages"] == 0
    assert report["bad_lost"] == 0 and report["good_lost"] == 0
    assert report["good_archived"] == report["bad_records_put"]
    assert report["bad_quarantined_with_reason"] + report["generated_that_were_valid"] == report["bad_records_put"]
    assert report["quarantine_lines_without_reason"] == 0
