"""Lambda event filtering rules, as the runner applies them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from runner.filters import kinesis_filter_document, matches, matches_any


def kinesis_record(data: bytes, partition_key: str = "u1") -> dict[str, Any]:
    return {
        "kinesis": {
            "partitionKey": partition_key,
            "sequenceNumber": "7",
            "data": base64.b64encode(data).decode(),
        },
        "eventSource": "aws:kinesis",
    }


@pytest.mark.parametrize(
    ("pattern", "doc", "expected"),
    [
        ({"type": ["view", "click"]}, {"type": "click"}, True),
        ({"type": ["view", "click"]}, {"type": "rate"}, False),
        ({"type": ["view"]}, {}, False),
        ({"n": [5]}, {"n": 5.0}, True),
        ({"n": ["5"]}, {"n": 5}, False),
        ({"flag": [True]}, {"flag": True}, True),
        ({"flag": [True]}, {"flag": "true"}, False),
        ({"x": [None]}, {"x": None}, True),
        ({"x": [None]}, {}, False),
        ({"tags": ["a"]}, {"tags": ["b", "a"]}, True),
        ({"id": [{"prefix": "usr-"}]}, {"id": "usr-1"}, True),
        ({"id": [{"prefix": "usr-"}]}, {"id": "item-1"}, False),
        ({"id": [{"suffix": ".png"}]}, {"id": "a.png"}, True),
        ({"id": [{"equals-ignore-case": "ABC"}]}, {"id": "abc"}, True),
        ({"id": [{"exists": True}]}, {"id": 1}, True),
        ({"id": [{"exists": True}]}, {}, False),
        ({"id": [{"exists": False}]}, {}, True),
        ({"id": [{"exists": False}]}, {"id": 1}, False),
        ({"t": [{"anything-but": ["a", "b"]}]}, {"t": "c"}, True),
        ({"t": [{"anything-but": ["a", "b"]}]}, {"t": "a"}, False),
        ({"t": [{"anything-but": "a"}]}, {"t": "b"}, True),
        ({"t": [{"anything-but": {"prefix": "x"}}]}, {"t": "xy"}, False),
        ({"n": [{"numeric": [">", 0, "<=", 5]}]}, {"n": 5}, True),
        ({"n": [{"numeric": [">", 0, "<=", 5]}]}, {"n": 0}, False),
        ({"n": [{"numeric": ["=", 3]}]}, {"n": 3.0}, True),
        ({"n": [{"numeric": [">", 1]}]}, {"n": "9"}, False),
        ({"a": {"b": {"c": ["x"]}}}, {"a": {"b": {"c": "x"}}}, True),
        ({"a": {"b": ["x"]}}, {"a": "flat"}, False),
        ({"a": ["x"], "b": ["y"]}, {"a": "x", "b": "z"}, False),
        ({"$or": [{"a": ["x"]}, {"b": ["y"]}]}, {"b": "y"}, True),
    ],
)
def test_pattern_rules(pattern: dict[str, Any], doc: dict[str, Any], expected: bool) -> None:
    assert matches(pattern, doc) is expected


def test_several_filters_are_or_ed_and_no_filters_match_all() -> None:
    filters = [{"a": ["1"]}, {"b": ["2"]}]
    assert matches_any(filters, {"b": "2"})
    assert not matches_any(filters, {"a": "2"})
    assert matches_any([], {"anything": 1})


def test_kinesis_data_is_decoded_json_and_metadata_is_top_level() -> None:
    doc = kinesis_filter_document(kinesis_record(json.dumps({"type": "view"}).encode()))
    assert doc["data"] == {"type": "view"}
    assert doc["partitionKey"] == "u1"
    assert matches({"data": {"type": ["view"]}, "partitionKey": [{"prefix": "u"}]}, doc)


def test_non_json_kinesis_data_never_matches_a_data_pattern() -> None:
    doc = kinesis_filter_document(kinesis_record(b"\x00not json"))
    assert "data" not in doc
    assert not matches({"data": {"type": ["view"]}}, doc)
    # ...but metadata patterns still apply.
    assert matches({"partitionKey": ["u1"]}, doc)


def test_dynamodb_record_matched_as_is() -> None:
    record: dict[str, Any] = {
        "eventName": "MODIFY",
        "dynamodb": {"NewImage": {"last_writer": {"S": "features"}, "n": {"N": "3"}}},
    }
    pattern = {
        "eventName": ["INSERT", "MODIFY"],
        "dynamodb": {"NewImage": {"last_writer": {"S": ["features"]}}},
    }
    assert matches(pattern, record)
    record["dynamodb"]["NewImage"]["last_writer"]["S"] = "decide"
    assert not matches(pattern, record)
    assert not matches(pattern, {"eventName": "REMOVE", "dynamodb": {"Keys": {}}})
