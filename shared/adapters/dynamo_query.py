"""Query done properly: every page followed (or up to a limit), errors translated."""

from __future__ import annotations

from typing import Any

from shared.adapters.aws_errors import translated


def query_items(table: Any, operation: str, *, limit: int | None = None, **request: Any) -> list[dict[str, Any]]:
    """The items of a Query on a boto3 Table, every page, or the first ``limit``; ``operation`` names
    the call in translated errors."""
    items: list[dict[str, Any]] = []
    while limit is None or len(items) < limit:
        with translated(operation):
            page = table.query(**request)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            break
        request = {**request, "ExclusiveStartKey": page["LastEvaluatedKey"]}
    return items if limit is None else items[:limit]
