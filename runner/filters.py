"""Lambda event filtering (FilterCriteria) for stream event source mappings, on moto's matcher.

The patterns are EventBridge patterns, and moto's `EventPattern` (moto.events.models) implements
their rules: every key of a pattern must match, a leaf lists conditions of which one must match
(exact values, prefix, suffix, equals-ignore-case, anything-but, numeric, exists, wildcard,
cidr, `$or`), a list value matches when any element does. What Lambda adds is which document a
record is matched as, below; several filters on one mapping are OR-ed. Known differences of
moto's matcher from the service: Python equality makes `true` match a pattern value `1` (and a
numeric condition accept a boolean), and a key containing a dot matches like the nested path.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from moto.events.models import EventPattern


class FilterCriteria:
    def __init__(self, patterns: Sequence[str]) -> None:
        # EventPattern.load rejects what the service rejects: non-JSON, a leaf that is not a
        # list, empty lists.
        self._patterns = [EventPattern.load(p) for p in patterns]

    def matches(self, document: Mapping[str, Any]) -> bool:
        """True when there are no filters or any pattern matches."""
        if not self._patterns:
            return True
        try:
            event: Any = dict(document)  # moto types events as its EventBridge message TypedDict
            return any(p.matches_event(event) for p in self._patterns)
        except RecursionError:
            # moto re-encodes and flattens the document recursively; data nested deeper than
            # that (a producer bug or an attack) is not matchable, like data that is not JSON.
            return False


def kinesis_filter_document(record: Mapping[str, Any]) -> dict[str, Any]:
    """The view of a Kinesis record that patterns are matched against.

    Lambda exposes the record's kinesis metadata at the top level and decodes `data`: JSON data
    is matched as an object; data that is not JSON has no `data` to match, so any pattern on
    `data` drops the record. DynamoDB stream records are matched as delivered.
    """
    kinesis: Mapping[str, Any] = record.get("kinesis") or {}
    document: dict[str, Any] = {k: v for k, v in record.items() if k != "kinesis"}
    document.update({k: v for k, v in kinesis.items() if k != "data"})
    with contextlib.suppress(ValueError, UnicodeDecodeError, RecursionError):
        document["data"] = json.loads(base64.b64decode(kinesis.get("data", ""), validate=True).decode("utf-8"))
    return document
