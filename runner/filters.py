"""Lambda event filtering (FilterCriteria) for stream event source mappings.

Semantics follow the Lambda event filtering rules: each key of a pattern must match; a leaf is
a list of conditions of which any may match; when the event value is a list, any element may
match; several Filters on one mapping are OR-ed. Supported conditions: exact values (string,
number, boolean, null), prefix, suffix, equals-ignore-case, exists, anything-but (values or
prefix), numeric (=, <, <=, >, >=, ranges) and "$or".
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

_MISSING = object()


def matches_any(filters: Sequence[Mapping[str, Any]], document: Mapping[str, Any]) -> bool:
    """True when there are no filters or at least one filter pattern matches."""
    return not filters or any(matches(pattern, document) for pattern in filters)


def matches(pattern: Mapping[str, Any], document: Any) -> bool:
    for key, expected in pattern.items():
        if key == "$or":
            if not any(matches(branch, document) for branch in expected):
                return False
            continue
        actual = document.get(key, _MISSING) if isinstance(document, Mapping) else _MISSING
        if isinstance(expected, Mapping):
            if actual is _MISSING or not isinstance(actual, Mapping):
                return False
            if not matches(expected, actual):
                return False
        elif isinstance(expected, list):
            if not _leaf_matches(expected, actual):
                return False
        else:
            raise ValueError(f"filter pattern leaf for {key!r} must be a list or an object: {expected!r}")
    return True


def _leaf_matches(conditions: list[Any], actual: Any) -> bool:
    # `exists: false` is the only condition a missing field can satisfy.
    if actual is _MISSING:
        return any(_is_exists(c) and c["exists"] is False for c in conditions)
    values = actual if isinstance(actual, list) else [actual]
    return any(_condition_matches(c, v) for c in conditions for v in values)


def _is_exists(condition: Any) -> bool:
    return isinstance(condition, Mapping) and "exists" in condition


def _condition_matches(condition: Any, value: Any) -> bool:
    if not isinstance(condition, Mapping):
        return _equal(condition, value)
    if "exists" in condition:
        return condition["exists"] is True
    if "prefix" in condition:
        return isinstance(value, str) and value.startswith(condition["prefix"])
    if "suffix" in condition:
        return isinstance(value, str) and value.endswith(condition["suffix"])
    if "equals-ignore-case" in condition:
        expected = condition["equals-ignore-case"]
        return isinstance(value, str) and value.lower() == str(expected).lower()
    if "anything-but" in condition:
        return _anything_but(condition["anything-but"], value)
    if "numeric" in condition:
        return _numeric(condition["numeric"], value)
    raise ValueError(f"unsupported filter condition {dict(condition)!r}")


def _equal(expected: Any, value: Any) -> bool:
    if expected is None or value is None:
        return expected is None and value is None
    if isinstance(expected, bool) or isinstance(value, bool):
        return isinstance(expected, bool) and isinstance(value, bool) and expected == value
    if isinstance(expected, int | float) and isinstance(value, int | float):
        return float(expected) == float(value)
    return type(expected) is type(value) and bool(expected == value)


def _anything_but(spec: Any, value: Any) -> bool:
    if isinstance(spec, Mapping):
        if "prefix" in spec:
            return not (isinstance(value, str) and value.startswith(spec["prefix"]))
        if "suffix" in spec:
            return not (isinstance(value, str) and value.endswith(spec["suffix"]))
        if "equals-ignore-case" in spec:
            options = spec["equals-ignore-case"]
            options = options if isinstance(options, list) else [options]
            return not (isinstance(value, str) and value.lower() in {str(o).lower() for o in options})
        raise ValueError(f"unsupported anything-but condition {dict(spec)!r}")
    options = spec if isinstance(spec, list) else [spec]
    return not any(_equal(o, value) for o in options)


def _numeric(spec: list[Any], value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    for op, bound in zip(spec[0::2], spec[1::2], strict=True):
        b = float(bound)
        ok = {
            "=": value == b,
            "<": value < b,
            "<=": value <= b,
            ">": value > b,
            ">=": value >= b,
        }.get(op)
        if ok is None:
            raise ValueError(f"unsupported numeric operator {op!r}")
        if not ok:
            return False
    return True


def kinesis_filter_document(record: Mapping[str, Any]) -> dict[str, Any]:
    """The view of a Kinesis record that patterns are matched against.

    Lambda exposes the record's kinesis metadata at the top level and decodes `data`: JSON data
    is matched as an object; data that is not JSON has no `data` to match, so any pattern on
    `data` drops the record.
    """
    kinesis: Mapping[str, Any] = record.get("kinesis") or {}
    document: dict[str, Any] = {k: v for k, v in record.items() if k != "kinesis"}
    document.update({k: v for k, v in kinesis.items() if k != "data"})
    try:
        raw = base64.b64decode(kinesis.get("data", ""), validate=True)
        document["data"] = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        # Deeply nested JSON (a producer bug or an attack) is not matchable data either.
        pass
    return document
