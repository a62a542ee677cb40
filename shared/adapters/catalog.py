"""The item catalog (titles, genres, availability), cached per container, and its writer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from boto3.dynamodb.types import Binary

from shared.adapters.aws_errors import translated
from shared.adapters.dynamo_batch import batch_get
from shared.adapters.dynamo_codec import to_dynamo
from shared.domain.catalog import CatalogItem, CatalogUpdate
from shared.domain.errors import VersionConflict


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


class CatalogItemWriter:
    """The catalog function's writes: one conditional UpdateItem per catalog event (issue 12).

    The condition is the version order (shared/domain/catalog.py, CatalogUpdate): the item is written
    when it has no catalog version (new, or loaded by the demo's ``put_many``) or an older one. A failed
    condition is not an error: the event is stale (a replay, a duplicate, a late arrival).
    """

    _CONDITION = "attribute_not_exists(catalog_version) OR catalog_version < :version"

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._table = dynamodb.Table(table_name)

    def apply(self, update: CatalogUpdate) -> bool:
        sets = {
            "catalog_version": update.version,
            "catalog_event_id": update.event_id,
            "retired": update.action == "retire",
            "available": update.action != "retire",
        }
        removes: list[str] = []
        if update.action == "upsert":
            sets |= {
                "title": update.title,
                "genres": list(update.genres),
                "attributes": dict(update.attributes),
                "encoder": update.encoder,
            }
            optional = {
                "available_from": update.available_from,
                "available_until": update.available_until,
                "text_vector": Binary(update.text_vector) if update.text_vector is not None else None,
                "image_vector": Binary(update.image_vector) if update.image_vector is not None else None,
            }
            sets |= {k: v for k, v in optional.items() if v is not None}
            removes = [k for k, v in optional.items() if v is None]
        names = {f"#{k}": k for k in [*sets, *removes]}
        expression = "SET " + ", ".join(f"#{k} = :{k}" for k in sets)
        if removes:
            expression += " REMOVE " + ", ".join(f"#{k}" for k in removes)
        values = {f":{k}": to_dynamo(v) for k, v in sets.items()} | {":version": update.version}
        try:
            with translated("catalog.apply"):
                self._table.update_item(
                    Key={"item_id": update.item_id},
                    UpdateExpression=expression,
                    ConditionExpression=self._CONDITION,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                )
        except VersionConflict:
            return False
        return True
