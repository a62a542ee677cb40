"""A catalog item as decide and features see it: title, genres and whether it may be pushed now."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CatalogItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    item_id: str
    title: str = ""
    genres: list[str] = Field(default_factory=list)
    available: bool = True
