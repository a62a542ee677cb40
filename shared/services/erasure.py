"""Erasure: remove users from every store Nudge keeps, and say how much was removed.

What a user leaves behind, and how each is found:

- user state: one item keyed by user id;
- the ledger: the user's partition (their decision ids are read from it first);
- idempotency records: keyed by a hash of each decision id (shared/adapters/idempotency_records.py);
- push counters: the user's one counter item (``user#<id>``: caps, cooldowns, admitted decision
  fingerprints); the global per-minute counters hold no user data;
- the S3 archive, quarantine and feedback log: JSON Lines objects that mix users (one object
  per stream batch). Each object holding a line of the user is rewritten without those lines
  (or deleted when nothing else is left), and every older version of it that holds such a
  line is deleted, since the bucket is versioned.

Rewriting instead of crypto-shredding: shredding needs a key per user and the archive written
per user, which multiplies objects (and KMS calls) by the number of users in a batch; a rewrite
keeps ingest as it is and costs one pass over the archive per erase request, so requests are
batched (``user_ids`` takes many users). With pseudonymous ids on, the pseudonym is erased too.

The order makes a retried request finish the job: the ledger, which names the decision ids,
goes after the records derived from it. Every step is idempotent.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.domain.caps import counter_owner
from shared.domain.contract import Identifier
from shared.domain.ports import (
    DeviceEndpoints,
    ErasableCounters,
    ErasableLedger,
    ErasableStates,
    LineStore,
    ObjectVersion,
    SendRecords,
)

MAX_USERS_PER_REQUEST = 1000


class EraseRequest(BaseModel):
    """``{"user_ids": ["u1", ...]}``; ``{"user_id": "u1"}`` is accepted for one user."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_ids: list[Identifier] = Field(min_length=1, max_length=MAX_USERS_PER_REQUEST)

    @model_validator(mode="before")
    @classmethod
    def _single(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "user_id" in data and "user_ids" not in data:
            rest = {k: v for k, v in data.items() if k != "user_id"}
            return {**rest, "user_ids": [data["user_id"]]}
        return data


@dataclass
class ErasureReport:
    """Counts only: the report is logged and returned, so it never names a user."""

    users: int = 0
    user_states: int = 0
    decisions: int = 0
    idempotency_records: int = 0
    counters: int = 0
    device_endpoints: int = 0
    objects_scanned: int = 0
    objects_rewritten: int = 0
    versions_deleted: int = 0
    lines_removed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def line_belongs_to(line: Mapping[str, Any], user_ids: frozenset[str]) -> bool:
    """Whether an archive, quarantine or feedback line carries one of the users.

    Archive and feedback lines hold the validated event (``event.user_id``); quarantine lines
    hold the partition key (the user id by contract) and the record as delivered, which is
    searched for the id as a JSON string (so "u1" does not match "u12").
    """
    event = line.get("event")
    if isinstance(event, Mapping) and event.get("user_id") in user_ids:
        return True
    if line.get("partition_key") in user_ids:
        return True
    data = line.get("data")
    if isinstance(data, str) and data:
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raw = data.encode("utf-8", "replace")
        return _names_a_user(raw, user_ids)
    return False


_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')


def _literal(quoted: str) -> str:
    try:
        value = json.loads(quoted)
    except ValueError:
        return quoted[1:-1]
    return value if isinstance(value, str) else ""


def _strings_in(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield key
            yield from _strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_in(item)


def _names_a_user(raw: bytes, user_ids: frozenset[str]) -> bool:
    """Whether a record as delivered names a user: as any decoded JSON string in it (so an id written
    with escapes, "\\u0065rase-me", is found), or, when it is not JSON, as a quoted id in its bytes."""
    pairs_kept: list[list[tuple[str, Any]]] = []

    def keep_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # Every value of a duplicated key is kept: the record was refused, any of them may be the id.
        pairs_kept.append(pairs)
        return dict(pairs)

    try:
        decoded = json.loads(raw.decode("utf-8", "surrogatepass"), object_pairs_hook=keep_pairs)
    except (ValueError, RecursionError):
        # Not a JSON document (truncated, bad bytes): each string literal in it, decoded on its own.
        text = raw.decode("utf-8", "replace")
        return any(_literal(match) in user_ids for match in _STRING_LITERAL.findall(text))
    strings = set(_strings_in(decoded))
    strings.update(s for pairs in pairs_kept for pair in pairs for s in _strings_in(list(pair)))
    return not strings.isdisjoint(user_ids)


class EraseService:
    def __init__(
        self,
        states: ErasableStates,
        ledger: ErasableLedger,
        idempotency: SendRecords,
        counters: ErasableCounters,
        archive: LineStore,
        prefixes: Sequence[str],
        pseudonymize: Callable[[str], str] | None = None,
        endpoints: DeviceEndpoints | None = None,
    ) -> None:
        self._endpoints = endpoints
        self._states = states
        self._ledger = ledger
        self._idempotency = idempotency
        self._counters = counters
        self._archive = archive
        self._prefixes = tuple(prefixes)
        self._pseudonymize = pseudonymize

    def identities(self, user_ids: Iterable[str]) -> frozenset[str]:
        """The ids the stores may hold for these users: raw, and the pseudonym when that is on."""
        ids = set(user_ids)
        if self._pseudonymize is not None:
            ids |= {self._pseudonymize(u) for u in ids}
        return frozenset(ids)

    def erase(self, user_ids: Iterable[str]) -> ErasureReport:
        requested = sorted(set(user_ids))
        report = ErasureReport(users=len(requested))
        ids = self.identities(requested)
        for user_id in sorted(ids):
            self._erase_keyed(user_id, report)
        for prefix in self._prefixes:
            self._erase_lines(prefix, ids, report)
        return report

    def _erase_keyed(self, user_id: str, report: ErasureReport) -> None:
        decision_ids = self._ledger.decision_ids_of(user_id)
        report.idempotency_records += self._idempotency.forget_sends(decision_ids)
        # The user's caps and cooldowns are one item; the global minute counters keep no ids.
        report.counters += int(self._counters.forget_owner(counter_owner(user_id)))
        report.decisions += self._ledger.forget(user_id, decision_ids)
        # The device endpoint names the user (its custom data): gone before the state that points at it.
        state = self._states.get(user_id) if self._endpoints is not None else None
        if state is not None and state.push_endpoint and self._endpoints is not None:
            report.device_endpoints += int(self._endpoints.forget(state.push_endpoint))
        report.user_states += int(self._states.delete(user_id))

    def _erase_lines(self, prefix: str, ids: frozenset[str], report: ErasureReport) -> None:
        by_key: dict[str, list[ObjectVersion]] = {}
        for version in self._archive.versions(prefix):
            by_key.setdefault(version.key, []).append(version)
        for key, versions in sorted(by_key.items()):
            # The current version first: its rewrite becomes the new current one before older go.
            for version in sorted(versions, key=lambda v: not v.latest):
                lines = self._archive.read_version(key, version.version_id)
                report.objects_scanned += 1
                kept = [line for line in lines if not line_belongs_to(line, ids)]
                if len(kept) == len(lines):
                    continue
                report.lines_removed += len(lines) - len(kept)
                if version.latest and kept:
                    report.objects_rewritten += 1
                    if self._archive.put_lines(key, kept) is None:
                        continue  # an unversioned bucket: the rewrite replaced the object in place
                self._archive.delete_version(key, version.version_id)
                report.versions_deleted += 1
