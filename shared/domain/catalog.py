"""A catalog item as decide and features see it, and what the catalog function writes (issue 12).

Decide and features read ``CatalogItem`` (title, genres, availability); the catalog table's items also
hold what only the catalog function writes and only content models read: the item's content vectors
(float32, little-endian, as DynamoDB binary: a 384-float text vector is 1,536 bytes, not the ~8 KB of a
number list) and the version of the catalog event that wrote them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CatalogItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    item_id: str
    title: str = ""
    # A catalog event's categories are stored as genres: what features and the policy already use.
    genres: list[str] = Field(default_factory=list)
    available: bool = True
    retired: bool = False
    # The availability window a catalog event announced (epoch seconds), when it gave one.
    available_from: int | None = None
    available_until: int | None = None

    def available_at(self, now: int) -> bool:
        """Pushable at ``now``: not retired, and inside the announced window if there is one."""
        if not self.available or self.retired:
            return False
        if self.available_from is not None and now < self.available_from:
            return False
        return self.available_until is None or now < self.available_until


def version_of(timestamp: datetime) -> int:
    """A catalog event's version: its timestamp in whole microseconds since the epoch (exact, no float)."""
    return (timestamp - _EPOCH) // timedelta(microseconds=1)


def float32_bytes(values: Sequence[float]) -> bytes:
    """A vector as the catalog table stores it: float32, little-endian."""
    return struct.pack(f"<{len(values)}f", *values)


def floats_of(data: bytes) -> list[float]:
    """The vector ``float32_bytes`` stored."""
    return list(struct.unpack(f"<{len(data) // 4}f", data))


@dataclass(frozen=True, slots=True)
class CatalogUpdate:
    """One catalog event, ready to be written: an upsert with its vectors, or a retire.

    ``version`` orders the writes of one item: a write lands only over an older version (or none), so a
    replayed, duplicated or late event never overwrites a newer one; the same event again is a no-op.
    """

    item_id: str
    action: Literal["upsert", "retire"]
    version: int
    event_id: str
    title: str = ""
    genres: tuple[str, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)
    available_from: int | None = None
    available_until: int | None = None
    # float32 little-endian bytes; text from the sentence encoder, image as the producer sent it.
    text_vector: bytes | None = None
    image_vector: bytes | None = None
    encoder: str = ""
