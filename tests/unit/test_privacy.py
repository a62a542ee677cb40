"""Pseudonymous ids, erase requests and the erasure line matcher (no AWS beyond moto SSM)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import boto3
import pytest
from pydantic import ValidationError

from shared.adapters.pseudonym_key import read_pseudonym_key
from shared.domain.errors import PermanentStorageError
from shared.domain.pseudonym import Pseudonymizer, is_pseudonym
from shared.plumbing.config import PseudonymSettings
from shared.services.erasure import EraseRequest, line_belongs_to
from shared.services.ingest import IngestService, StreamRecord, check_record
from testkit.fakes import InMemoryEventIds

KEY = b"0123456789abcdef0123456789abcdef"
T0 = datetime(2026, 11, 27, 10, tzinfo=UTC)


def record(payload: bytes, partition_key: str = "u1") -> StreamRecord:
    return StreamRecord("shardId-0", "1", partition_key, base64.b64encode(payload).decode(), T0)


def test_pseudonyms_are_deterministic_keyed_and_valid_identifiers() -> None:
    one, other = Pseudonymizer(KEY), Pseudonymizer(KEY[::-1])
    assert one("u1") == one("u1") != one("u2")
    assert one("u1") != other("u1")
    assert is_pseudonym(one("u1")) and not is_pseudonym("u1")
    # Already pseudonymous ids (replayed from the archive) pass through unchanged.
    assert one(one("u1")) == one("u1")
    with pytest.raises(ValueError):
        Pseudonymizer(b"short")


def test_check_record_replaces_the_user_id_and_quarantine_hashes_the_partition_key() -> None:
    pseudonymize = Pseudonymizer(KEY)
    event = {
        "schema_version": 1,
        "event_id": "e1",
        "user_id": "u1",
        "timestamp": "2026-11-27T10:00:00Z",
        "type": "view",
        "item_id": "7",
    }
    checked = check_record(record(json.dumps(event).encode()), pseudonymize)
    assert checked.event is not None and checked.event.partition_key == pseudonymize("u1")
    assert check_record(record(json.dumps(event).encode())).event.user_id == "u1"  # type: ignore[union-attr]

    written: dict[str, list[dict[str, object]]] = {}

    class Archive:
        def put_lines(self, key: str, lines: list[dict[str, object]]) -> None:
            written[key] = list(lines)

    service = IngestService(Archive(), InMemoryEventIds(), "archive/", "quarantine/", pseudonymize=pseudonymize)  # type: ignore[arg-type]
    service.commit([check_record(record(b"{oops"), pseudonymize)])
    (line,) = next(v for k, v in written.items() if k.startswith("quarantine/"))
    assert line["partition_key"] == pseudonymize("u1")


def test_erase_request_takes_one_or_many_valid_ids() -> None:
    assert EraseRequest.model_validate({"user_id": "u1"}).user_ids == ["u1"]
    assert EraseRequest.model_validate({"user_ids": ["u1", "u2"]}).user_ids == ["u1", "u2"]
    bad_requests: list[dict[str, object]] = [
        {},
        {"user_ids": []},
        {"user_ids": ["bad id!"]},
        {"user_ids": ["u1"], "extra": 1},
    ]
    for bad in bad_requests:
        with pytest.raises(ValidationError):
            EraseRequest.model_validate(bad)


def test_lines_are_matched_by_user_field_not_by_substring() -> None:
    ids = frozenset({"u1"})
    assert line_belongs_to({"event": {"user_id": "u1", "item_id": "3"}}, ids)
    assert not line_belongs_to({"event": {"user_id": "u12", "item_id": "u1"}}, ids)
    assert line_belongs_to({"partition_key": "u1", "data": ""}, ids)
    quarantined = base64.b64encode(b'{"user_id": "u1", "broken": true').decode()
    assert line_belongs_to({"partition_key": "other", "data": quarantined}, ids)
    near_miss = base64.b64encode(b'{"user_id": "u12"}').decode()
    assert not line_belongs_to({"partition_key": "other", "data": near_miss}, ids)
    assert line_belongs_to({"partition_key": "x", "data": '!not base64 "u1"'}, ids)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"user_id": "\\u0065rase-me", "type": "view"}',  # an escape in valid JSON
        b'{"user_id": "other", "user_id": "erase-me"}',  # the second of duplicated keys
        b'{"user_id": "\\u0065rase-me", "broken',  # an escape in a record that is not JSON
        b'\xff\xfe "erase-me"',  # not even UTF-8
    ],
)
def test_erasure_matches_user_ids_as_decoded_not_as_written(raw: bytes) -> None:
    line = {"partition_key": "someone-else", "data": base64.b64encode(raw).decode()}
    assert line_belongs_to(line, frozenset({"erase-me"}))
    assert not line_belongs_to(line, frozenset({"erase"}))


def test_pseudonym_key_comes_from_a_secure_string(aws: None) -> None:
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name="/nudge/key", Value=KEY.decode(), Type="SecureString")
    assert read_pseudonym_key(ssm, "/nudge/key") == KEY
    with pytest.raises(PermanentStorageError):
        read_pseudonym_key(ssm, "/nudge/missing")


def test_pseudonym_setting_is_empty_or_an_absolute_parameter_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PseudonymSettings().pseudonym_key_parameter == ""
    monkeypatch.setenv("PSEUDONYM_KEY_PARAMETER", "/nudge/prod/pseudonym-key")
    assert PseudonymSettings().pseudonym_key_parameter == "/nudge/prod/pseudonym-key"
    monkeypatch.setenv("PSEUDONYM_KEY_PARAMETER", "no-leading-slash")
    with pytest.raises(ValidationError):
        PseudonymSettings()
