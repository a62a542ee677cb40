"""Property tests: every record of a poison class gets that class's quarantine reason, and nothing a
producer sends raises out of decoding (shared/domain/contract.py is total)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.contract import (
    MAX_INT_DIGITS,
    ContractViolation,
    ProfileEvent,
    QuarantineReason,
    decode_event,
)

pytestmark = pytest.mark.slow(seconds=8)

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
BASE = {"schema_version": 1, "event_id": "e1", "user_id": "u1", "timestamp": "2026-11-27T11:00:00Z"}
# Every tzdata directory, e.g. "America", "Etc", "America/Argentina": paths that open as directories.
TZ_DIRECTORIES = sorted({zone.rsplit("/", 1)[0] for zone in available_timezones() if "/" in zone})


def verdict(payload: dict[str, object] | str) -> str:
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    try:
        decode_event(raw.encode("utf-8", "surrogatepass"), NOW)
    except ContractViolation as violation:
        return violation.reason.value
    return "valid"


def profile(**fields: object) -> dict[str, object]:
    return {**BASE, "type": "profile", **fields}


@given(st.sampled_from(TZ_DIRECTORIES))
def test_a_tzdata_directory_is_not_a_time_zone(name: str) -> None:
    assert verdict(profile(timezone=name)) == QuarantineReason.INVALID_FIELDS


@given(st.integers(min_value=10**MAX_INT_DIGITS, max_value=10**400) | st.integers(max_value=-(10**MAX_INT_DIGITS)))
def test_integers_beyond_38_digits_are_out_of_range(n: int) -> None:
    assert verdict(profile(attributes={"n": n})) == QuarantineReason.NUMBER_OUT_OF_RANGE


@given(
    st.floats(min_value=1e126, allow_infinity=False) | st.floats(min_value=1e-300, max_value=9.9e-131),
    st.booleans(),
)
def test_floats_beyond_dynamodb_magnitudes_are_out_of_range(x: float, negative: bool) -> None:
    assert verdict(profile(attributes={"n": -x if negative else x})) == QuarantineReason.NUMBER_OUT_OF_RANGE


@given(st.integers(min_value=-(10**37), max_value=10**37), st.floats(min_value=1e-120, max_value=1e120))
def test_numbers_dynamodb_holds_are_kept_as_they_are(n: int, x: float) -> None:
    event = decode_event(json.dumps(profile(attributes={"n": n, "x": x, "b": True})).encode(), NOW)
    assert isinstance(event, ProfileEvent) and event.attributes == {"n": n, "x": x, "b": True}
    assert type(event.attributes["b"]) is bool


@given(st.text(max_size=20), st.sampled_from(["\ud800", "\udfff", "\x00"]), st.sampled_from(["push_token", "attr"]))
def test_lone_surrogates_and_nul_are_bad_strings_wherever_they_are(text: str, bad: str, where: str) -> None:
    value = text[: len(text) // 2] + bad + text[len(text) // 2 :]
    payload = profile(push_token=value) if where == "push_token" else profile(attributes={"a": value})
    assert verdict(payload) == QuarantineReason.BAD_STRING


# Values whose only fault is their type (no bad strings, numbers in range).
clean_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))
clean_numbers = st.integers(min_value=-(10**30), max_value=10**30) | st.floats(min_value=1e-100, max_value=1e100)


@given(clean_text | clean_numbers | st.lists(st.booleans(), max_size=2))
def test_consent_is_only_a_json_boolean(value: object) -> None:
    assert verdict(profile(consent=value)) == QuarantineReason.INVALID_FIELDS


@given(
    st.integers(min_value=0, max_value=2**33)
    | st.floats(min_value=1, max_value=2e9)
    | st.sampled_from(["2026-11-27", "2026-11-27T11:00:00", "2026-11-27 11:00:00Z", "Fri, 27 Nov 2026 11:00:00 GMT"])
)
def test_timestamps_are_iso_8601_text_with_a_zone(value: object) -> None:
    assert verdict({**profile(), "timestamp": value}) == QuarantineReason.INVALID_FIELDS


@given(st.sampled_from(["event_id", "user_id", "type", "timestamp", "consent"]), st.booleans())
def test_a_repeated_key_is_refused_whichever_value_comes_last(key: str, same_value: bool) -> None:
    text = json.dumps(profile(consent=True))
    repeat = json.dumps(profile(consent=True)[key]) if same_value else '"other"'
    assert verdict(text[:-1] + f', "{key}": {repeat}' + "}") == QuarantineReason.DUPLICATE_KEY


# Deep structures are slow to generate; `make reliability` fuzzes the contract with 1,000 a strategy.
@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.text(max_size=10), st.recursive(st.none() | st.booleans() | st.text(), st.lists, max_leaves=20))
)
def test_nothing_a_producer_sends_raises(fields: dict[str, object]) -> None:
    # Whatever the verdict, it is a verdict (decode_event raising anything else fails the test).
    verdict({**BASE, "type": "profile", **fields})


def test_an_event_at_the_edge_of_the_window_is_still_valid() -> None:
    edge = (NOW + timedelta(minutes=4)).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    assert verdict({**profile(), "timestamp": edge}) == "valid"
