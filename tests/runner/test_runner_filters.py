"""Lambda event filtering rules, as the runner applies them (moto's EventBridge matcher underneath)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from moto.events.exceptions import InvalidEventPatternException

from runner.filters import FilterCriteria, kinesis_filter_document


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


def matches(pattern: dict[str, Any], document: Any) -> bool:
    return FilterCriteria([json.dumps(pattern)]).matches(document)


def test_several_filters_are_or_ed_and_no_filters_match_all() -> None:
    filters = FilterCriteria([json.dumps({"a": ["1"]}), json.dumps({"b": ["2"]})])
    assert filters.matches({"b": "2"})
    assert not filters.matches({"a": "2"})
    assert FilterCriteria([]).matches({"anything": 1})


@pytest.mark.parametrize("pattern", ["not json", '{"type": "view"}', '{"type": []}'])
def test_patterns_the_service_rejects_are_rejected(pattern: str) -> None:
    with pytest.raises(InvalidEventPatternException):
        FilterCriteria([pattern])


def test_data_nested_beyond_the_matcher_is_not_matchable() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = {"a": deep}
    assert not FilterCriteria([json.dumps({"data": {"type": ["view"]}})]).matches({"data": deep})


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
