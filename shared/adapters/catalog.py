"""The item catalog (titles, genres, availability), cached per container."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.adapters.aws_errors import translated
from shared.adapters.dynamo_batch import batch_get
from shared.adapters.dynamo_codec import to_dynamo
from shared.domain.catalog import CatalogItem


class Catalog:
    """Read-through cache: the catalog changes rarely and every batch asks for the same items."""

    def __init__(self, dynamodb: Any, table_name: str, max_cached: int = 50_000) -> None:
        self._dynamodb = dynamodb
        self._table_name = table_name
        self._cache: dict[str, CatalogItem | None] = {}
        self._max_cached = max_cached

    def get_many(self, item_ids: Iterable[str]) -> dict[str, CatalogItem]:
        wanted = set(item_ids)
        missing = sorted(i for i in wanted if i not in self._cache)
        if missing:
            fetched = self._fetch(missing)
            if len(self._cache) + len(missing) > self._max_cached:
                self._cache.clear()
            for item_id in missing:
                self._cache[item_id] = fetched.get(item_id)
        return {i: item for i in wanted if (item := self._cache.get(i)) is not None}

    def genres_of(self, item_id: str) -> list[str]:
        item = self.get_many([item_id]).get(item_id)
        return list(item.genres) if item else []

    def put_many(self, items: Iterable[CatalogItem]) -> int:
        """Load or refresh catalog entries (the demo and back-office jobs use this)."""
        count = 0
        table = self._dynamodb.Table(self._table_name)
        with translated("catalog.put_many"), table.batch_writer(overwrite_by_pkeys=["item_id"]) as batch:
            for item in items:
                batch.put_item(Item=to_dynamo(item.model_dump()))
                self._cache.pop(item.item_id, None)
                count += 1
        return count

    def _fetch(self, item_ids: list[str]) -> dict[str, CatalogItem]:
        items = (
            CatalogItem.model_validate(raw) for raw in batch_get(self._dynamodb, self._table_name, "item_id", item_ids)
        )
        return {item.item_id: item for item in items}
