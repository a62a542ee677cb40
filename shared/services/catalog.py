"""Catalog: catalog events -> catalog items and their content vectors (issue 12, item 1).

Every valid event the stream delivers claims its event id (shared/domain/admission.py), like in the
other consumers; the catalog events among the holders are then written, one conditional write per
event, in stream order (a shard keeps one item's events in order: its partition key is the item id).

- An upsert's text (title, then description) is encoded by the sentence encoder, **one item per call**:
  with the int8 graph a text's padded batch-mates move its vector a little (docs/model.md), and an item's
  vector must not depend on which batch it came in. The image embedding is stored as the producer sent it.
- A retire marks the item retired (and unavailable), keeping its title and vectors for the record.
- The event's timestamp is the item's version: a write lands only over an older version, so a replayed
  or late event never overwrites a newer one, and the same event again changes nothing (it is counted
  as stale). Two events of one item with the same timestamp: the first written wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from shared.domain.admission import Delivered, EventIdRegistry, admit_delivered
from shared.domain.catalog import CatalogUpdate, float32_bytes, version_of
from shared.domain.contract import CatalogEvent
from shared.domain.errors import NudgeError, PoisonRecord, as_poison

Ref = TypeVar("Ref")


class TextEncoder(Protocol):
    def vector_bytes(self, text: str) -> bytes:
        """One text's unit vector, encoded alone, as float32 little-endian bytes."""
        ...


class CatalogWriter(Protocol):
    def apply(self, update: CatalogUpdate) -> bool:
        """Write ``update`` unless the item holds this version or a newer one; True when it was written."""
        ...


@dataclass
class CatalogResult(Generic[Ref]):
    upserted: int = 0
    retired: int = 0
    # Events older than (or the same as) what the item holds: nothing written.
    stale: int = 0
    duplicates: int = 0
    conflicts: int = 0
    # Valid events of other types (this function's filter lets only catalog events through).
    ignored: int = 0
    failed: list[tuple[Ref, NudgeError]] = field(default_factory=list)
    poisoned: list[tuple[Ref, PoisonRecord]] = field(default_factory=list)


class CatalogService:
    def __init__(
        self, writer: CatalogWriter, encoder: TextEncoder, registry: EventIdRegistry, encoder_name: str
    ) -> None:
        self._writer = writer
        self._encoder = encoder
        self._registry = registry
        self._encoder_name = encoder_name

    def update_of(self, event: CatalogEvent) -> CatalogUpdate:
        version = version_of(event.timestamp)
        if event.action == "retire":
            return CatalogUpdate(event.item_id, "retire", version, event.event_id)
        return CatalogUpdate(
            item_id=event.item_id,
            action="upsert",
            version=version,
            event_id=event.event_id,
            title=event.title or "",
            genres=tuple(event.categories),
            attributes=dict(event.attributes),
            available_from=int(event.available_from.timestamp()) if event.available_from else None,
            available_until=int(event.available_until.timestamp()) if event.available_until else None,
            text_vector=self._encoder.vector_bytes(event.text),
            image_vector=float32_bytes(event.image_embedding) if event.image_embedding is not None else None,
            encoder=self._encoder_name,
        )

    def apply(self, batch: Sequence[Delivered[Ref]]) -> CatalogResult[Ref]:
        result: CatalogResult[Ref] = CatalogResult()
        admitted = admit_delivered(batch, self._registry)
        result.duplicates += len(admitted.duplicates)
        result.conflicts += len(admitted.conflicts)
        for item in admitted.holders:
            event = item.event
            if not isinstance(event, CatalogEvent):
                result.ignored += 1
                continue
            try:
                written = self._writer.apply(self.update_of(event))
            except Exception as error:  # poison is quarantined, the rest retried
                poison = as_poison(error)
                if poison is None:
                    assert isinstance(error, NudgeError)
                    result.failed.append((item.ref, error))
                else:
                    result.poisoned.append((item.ref, poison))
                continue
            if not written:
                result.stale += 1
            elif event.action == "retire":
                result.retired += 1
            else:
                result.upserted += 1
        return result
