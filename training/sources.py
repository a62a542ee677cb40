"""One loader interface, four sources: MovieLens-100k, the pipeline's S3 archive, a generic CSV, sequences.

Every source yields a ``Dataset``: interactions as integer codes (the arrays every trainer and the
evaluation harness already use), the code -> external item id table, and whatever content the
source has. The archive source reads exactly what ingest writes (gzipped JSON Lines, one
``{"event": {...}, ...}`` per line), so production logs retrain the model with the same code.

    load_source("movielens", "/data/ml-100k")
    load_source("csv", "interactions.csv")          # user_id,item_id,timestamp[,title,genres,year]
    load_source("archive", "s3://bucket/archive/")  # or a local folder holding the *.jsonl.gz files
    load_source("sequences", "data/yelp.txt")       # lines "user item item ..." (+ yelp_item2attributes.json)

The ``sequences`` format (the one S3-Rec published its Yelp, Beauty, ... sets in) has no times: each
user's items are in order, and the loader stamps them one day apart from a fixed epoch, so time
order is sequence order. ``Dataset.timed`` is False for such a source, and the trainer's recipe
leaves the time context out (hour, weekday and gaps of invented stamps carry nothing).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from training.content import CatalogItem
from training.movielens import Interactions, load_movielens

SOURCES = ("movielens", "archive", "csv", "sequences")
# Invented stamps of an untimed source: one day apart per user, from 2011-03-13 (as the Yelp CSV's).
UNTIMED_EPOCH = 1_300_000_000
UNTIMED_STEP_S = 86_400
# What counts as a positive interaction in the archive; feedback and profile events are not items.
BEHAVIOUR_TYPES = frozenset({"view", "click", "add_to_cart", "purchase", "rate"})


@dataclass(frozen=True)
class Dataset:
    source: str
    interactions: Interactions  # ``item`` holds codes into ``item_ids``; ``user`` codes are opaque
    item_ids: list[str]  # code -> external item id; code 0 is unused
    catalog: dict[str, CatalogItem]  # every known item (with or without interactions)
    sha256: str  # digest of the raw input, for the manifest
    timed: bool = True  # False when the source has no real times (stamps only keep the order)

    def item_id(self, code: int) -> str:
        return self.item_ids[code]

    def before(self, epoch: int) -> Dataset:
        """Only the interactions before ``epoch`` (retraining's cutoff T); the item table stays whole."""
        return replace(self, interactions=self.interactions.take(self.interactions.timestamp < epoch))

    def rows(self) -> list[tuple[str, str, int]]:
        """(user code, item id, epoch seconds) per interaction, in file order."""
        inter = self.interactions
        return [
            (str(u), self.item_id(int(i)), int(t))
            for u, i, t in zip(inter.user.tolist(), inter.item.tolist(), inter.timestamp.tolist(), strict=True)
        ]


def _codes(values: Iterable[str]) -> tuple[dict[str, int], list[str]]:
    """Codes 1..N in sorted order (numeric ids numerically), so a rebuild assigns the same codes."""
    unique = sorted(set(values), key=lambda v: (0, int(v), v) if v.isdigit() else (1, 0, v))
    return {v: i + 1 for i, v in enumerate(unique)}, ["", *unique]


def from_rows(
    source: str,
    rows: Iterable[tuple[str, str, int]],
    catalog: dict[str, CatalogItem],
    sha256: str,
) -> Dataset:
    """(user, item, epoch seconds) rows in file order -> Dataset; catalog items join the code table."""
    users: list[str] = []
    items: list[str] = []
    stamps: list[int] = []
    for user, item, ts in rows:
        users.append(user)
        items.append(item)
        stamps.append(ts)
    item_code, item_ids = _codes([*items, *catalog])
    user_code, _ = _codes(users)
    full_catalog = {item: catalog.get(item, CatalogItem(item)) for item in item_ids[1:]}
    interactions = Interactions(
        user=np.asarray([user_code[u] for u in users], dtype=np.int64),
        item=np.asarray([item_code[i] for i in items], dtype=np.int64),
        rating=np.ones(len(users), dtype=np.int64),
        timestamp=np.asarray(stamps, dtype=np.int64),
    )
    return Dataset(source, interactions, item_ids, full_catalog, sha256)


def load_movielens_dataset(data_dir: Path) -> Dataset:
    data = load_movielens(data_dir)
    # MovieLens ids are already 1..1682, so codes are the ids themselves and str(code) is the item id.
    top = max(int(item.item_id) for item in data.items)
    item_ids = ["", *(str(i) for i in range(1, top + 1))]
    catalog = {
        item.item_id: CatalogItem(item.item_id, item.title, tuple(g for g in item.genres if g != "unknown"), item.year)
        for item in data.items
    }
    return Dataset("movielens", data.interactions, item_ids, catalog, data.training_data_sha256)


def load_csv(path: Path) -> Dataset:
    """``user_id,item_id,timestamp`` (epoch seconds or ISO 8601) plus optional title, genres (``|``), year."""
    raw = path.read_bytes()
    reader = csv.DictReader(raw.decode("utf-8").splitlines())
    missing = {"user_id", "item_id", "timestamp"} - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    rows: list[tuple[str, str, int]] = []
    catalog: dict[str, CatalogItem] = {}
    for record in reader:
        item = record["item_id"]
        rows.append((record["user_id"], item, _epoch(record["timestamp"])))
        if item not in catalog and (record.get("title") or record.get("genres")):
            year = record.get("year") or ""
            genres = tuple(g for g in (record.get("genres") or "").split("|") if g)
            catalog[item] = CatalogItem(item, record.get("title") or "", genres, int(year) if year.isdigit() else None)
    return from_rows("csv", rows, catalog, hashlib.sha256(raw).hexdigest())


def _epoch(value: str | int | float) -> int:
    if isinstance(value, int | float) or str(value).lstrip("-").isdigit():
        return int(value)
    return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())


def archive_rows(lines: Iterable[dict[str, Any]]) -> Iterator[tuple[str, str, int]]:
    """Behaviour events from archive lines, skipping feedback and profile events. A line is what ingest
    writes (``{"event": {...}, ...}``), a flat event (what retraining's extraction writes), or the event
    as JSON text (an Athena UNLOAD of a string column)."""
    for line in lines:
        event = line.get("event", line)
        if isinstance(event, str):
            event = json.loads(event)
        if event.get("type") in BEHAVIOUR_TYPES and event.get("item_id"):
            yield str(event["user_id"]), str(event["item_id"]), _epoch(event["timestamp"])


def jsonl_lines(data: bytes) -> list[dict[str, Any]]:
    text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return [json.loads(line) for line in text.decode("utf-8").splitlines() if line.strip()]


def load_archive(location: str, s3_client: Any = None) -> Dataset:
    """Every ``*.jsonl.gz`` under an ``s3://bucket/prefix/`` (or a local folder), in key order."""
    digest = hashlib.sha256()
    lines: list[dict[str, Any]] = []
    for key, body in archive_objects(location, s3_client):
        digest.update(key.encode() + b"\0" + hashlib.sha256(body).digest())
        lines.extend(jsonl_lines(body))
    # Events of one batch arrive out of order across shards; the stable time sort happens downstream.
    return from_rows("archive", archive_rows(lines), {}, digest.hexdigest())


def archive_objects(location: str, s3_client: Any = None) -> Iterator[tuple[str, bytes]]:
    """(key, bytes) of every JSON Lines object (gzipped or not) under an s3:// prefix or a local folder:
    ingest's ``*.jsonl.gz`` and an Athena UNLOAD's extension-less or ``.gz`` files alike."""
    if not location.startswith("s3://"):
        for path in sorted(p for p in Path(location).rglob("*") if p.is_file() and _is_lines_object(p.name)):
            yield str(path.relative_to(location)), path.read_bytes()
        return
    bucket, _, prefix = location[len("s3://") :].partition("/")
    if s3_client is None:
        import boto3  # training-time only; the Lambda side never imports this module

        s3_client = boto3.client("s3")
    keys: list[str] = []
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []) if _is_lines_object(obj["Key"].rsplit("/", 1)[-1]))
    for key in sorted(keys):
        yield key, s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()


def _is_lines_object(name: str) -> bool:
    """Data files only: not hidden or marker files (``.done``, ``_SUCCESS``), manifests or other formats."""
    if not name or name[0] in "._" or name.endswith(("-manifest.csv", ".csv", ".txt", ".parquet", ".metadata")):
        return False
    return ".jsonl" in name or name.endswith((".gz", ".json")) or "." not in name


def attributes_file(sequences_file: Path) -> Path | None:
    """``<stem>_item2attributes.json`` beside ``<stem>.txt``, or the folder's only ``*item2attributes.json``."""
    named = sequences_file.with_name(f"{sequences_file.stem}_item2attributes.json")
    if named.is_file():
        return named
    found = sorted(sequences_file.parent.glob("*item2attributes.json"))
    return found[0] if len(found) == 1 else None


def load_sequences(location: Path, attributes: Path | None = None) -> Dataset:
    """``user item item ...`` per line (items oldest first), plus item -> attribute ids as content.

    ``location`` is the text file, or a folder holding exactly one ``*.txt``. Attributes come from
    ``attributes`` or the file ``attributes_file`` finds; each attribute id becomes a content "genre".
    """
    if location.is_dir():
        texts = sorted(location.glob("*.txt"))
        if len(texts) != 1:
            raise ValueError(f"{location}: expected one *.txt sequences file, found {[p.name for p in texts]}")
        location = texts[0]
    raw = location.read_bytes()
    digest = hashlib.sha256(raw)
    rows: list[tuple[str, str, int]] = []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise ValueError(f"{location}:{number}: a user with no items")
        user = fields[0]
        rows.extend((user, item, UNTIMED_EPOCH + step * UNTIMED_STEP_S) for step, item in enumerate(fields[1:]))
    catalog: dict[str, CatalogItem] = {}
    attributes = attributes or attributes_file(location)
    if attributes is not None:
        blob = attributes.read_bytes()
        digest.update(b"\0" + blob)
        for item, values in json.loads(blob).items():
            catalog[str(item)] = CatalogItem(str(item), genres=tuple(f"attr{v}" for v in values))
    return replace(from_rows("sequences", rows, catalog, digest.hexdigest()), timed=False)


def load_source(kind: str, location: str | Path, s3_client: Any = None) -> Dataset:
    if kind == "movielens":
        return load_movielens_dataset(Path(location))
    if kind == "csv":
        return load_csv(Path(location))
    if kind == "archive":
        return load_archive(str(location), s3_client)
    if kind == "sequences":
        return load_sequences(Path(location))
    raise ValueError(f"source must be one of {SOURCES}, not {kind!r}")
