"""Content features of catalogue items: genres, release era and hashed title n-grams.

They give every catalogue item a vector, including items nobody has interacted with yet, which is
what lets the transformer recommend cold items. The hashing uses crc32 (not Python's salted
``hash``) so a feature matrix is identical across processes and machines.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from numpy.typing import NDArray

TITLE_BUCKETS = 512
# Decades from the 1920s to the 2020s, plus one bucket for "earlier" and one for "unknown".
_FIRST_DECADE = 1920
_DECADES = 11
_YEAR_IN_TITLE = re.compile(r"\(\d{4}\)\s*$")
_WORD = re.compile(r"[a-z0-9]+")
# Articles and the "Title, The" inversion carry no signal and would dominate the hash buckets.
_STOP = frozenset({"the", "a", "an", "of", "and", "la", "le", "il", "les", "de"})


@dataclass(frozen=True)
class CatalogItem:
    item_id: str
    title: str = ""
    genres: tuple[str, ...] = ()
    year: int | None = None


def title_tokens(title: str) -> list[str]:
    words = [w for w in _WORD.findall(_YEAR_IN_TITLE.sub("", title).lower()) if w not in _STOP]
    return words + [f"{a}_{b}" for a, b in pairwise(words)]


def _bucket(token: str) -> int:
    return zlib.crc32(token.encode()) % TITLE_BUCKETS


def genre_list(items: Sequence[CatalogItem]) -> list[str]:
    return sorted({genre for item in items for genre in item.genres})


def content_matrix(vocab: Sequence[str], catalog: dict[str, CatalogItem], genres: Sequence[str]) -> NDArray[np.float32]:
    """[V, F] features in vocabulary order; row 0 (padding) and unknown items are all zero.

    Each block (genres, era, title) is L2-normalised on its own so no block drowns the others.
    """
    genre_index = {g: i for i, g in enumerate(genres)}
    width = len(genres) + _DECADES + 2 + TITLE_BUCKETS
    out = np.zeros((len(vocab), width), dtype=np.float32)
    era0 = len(genres)
    title0 = era0 + _DECADES + 2
    for row, item_id in enumerate(vocab):
        item = catalog.get(item_id)
        if row == 0 or item is None:
            continue
        for genre in item.genres:
            if genre in genre_index:
                out[row, genre_index[genre]] = 1.0
        # Bucket 0 is "before the 1920s", the last one "unknown year".
        era = _DECADES + 1 if item.year is None else int(np.clip((item.year - _FIRST_DECADE) // 10 + 1, 0, _DECADES))
        out[row, era0 + era] = 1.0
        for token in title_tokens(item.title):
            out[row, title0 + _bucket(token)] += 1.0
        for start, stop in ((0, era0), (title0, width)):
            norm = float(np.linalg.norm(out[row, start:stop]))
            if norm > 0:
                out[row, start:stop] /= norm
    return out


def year_matrix(vocab: Sequence[str], catalog: dict[str, CatalogItem], recent: int = 8) -> NDArray[np.float32]:
    """[V, recent] one-hot release year for the catalogue's ``recent`` newest years (older: all zero).

    The decade of ``content_matrix`` cannot tell a new release from a film three years old, and new
    releases are what people rate (on ML-100k, 1997 films are a third of the last ratings).
    """
    years = [item.year for item in catalog.values() if item.year is not None]
    out = np.zeros((len(vocab), recent), dtype=np.float32)
    if not years:
        return out
    first = max(years) - recent + 1
    for row, item_id in enumerate(vocab):
        item = catalog.get(item_id)
        if row and item is not None and item.year is not None and item.year >= first:
            out[row, item.year - first] = 1.0
    return out
