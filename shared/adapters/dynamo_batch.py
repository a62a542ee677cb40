"""BatchGetItem done properly: 100-key pages and UnprocessedKeys retried, bounded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.adapters.aws_errors import translated
from shared.adapters.dynamo_codec import from_dynamo
from shared.domain.errors import TransientStorageError

_BATCH_GET_LIMIT = 100
_MAX_UNPROCESSED_ROUNDS = 8


def batch_get(
    dynamodb: Any, table_name: str, key_name: str, keys: Sequence[str], consistent: bool = False
) -> list[dict[str, Any]]:
    """Every item found for ``keys`` (plain Python values); absent keys are simply missing."""
    items: list[dict[str, Any]] = []
    unique = sorted(set(keys))
    for start in range(0, len(unique), _BATCH_GET_LIMIT):
        page = [{key_name: k} for k in unique[start : start + _BATCH_GET_LIMIT]]
        request: dict[str, Any] = {table_name: {"Keys": page, "ConsistentRead": consistent}}
        for _ in range(_MAX_UNPROCESSED_ROUNDS):
            with translated(f"{table_name}.batch_get"):
                response = dynamodb.batch_get_item(RequestItems=request)
            items.extend(from_dynamo(raw) for raw in response.get("Responses", {}).get(table_name, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
        else:
            raise TransientStorageError(f"{table_name}.batch_get: unprocessed keys remain")
    return items
