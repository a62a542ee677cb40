"""Admission: which record of an event id is the event, decided once for every stream consumer.

Producers retry, and a hostile or buggy one reuses an event id for another body. Ingest, features
and feedback read the same stream independently, so each asks one registry (a DynamoDB table keyed
by the event id's hash, shared/adapters/event_ids.py) which record holds the id: the first to claim
it. Every consumer claims every valid record it reads, in stream order, so within a shard the holder
is always the earliest record of the id, whatever the batching; across shards (a partition key that
is not the user id) it is the first claimed, and all consumers still agree because they read the
same item. A record is then:

- the holder itself (its first delivery or a retry of it): processed;
- another record with the same body: a duplicate (ingest quarantines it, the others skip it);
- another record with a different body: a conflict (the same, with reason ``event_id_conflict``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from shared.domain.contract import MAX_EVENT_AGE, AnyEvent, event_digest

Ref = TypeVar("Ref")

# A claim outlives every delivery of its records: the stream keeps them at most 7 days (template
# parameter StreamRetentionHours) and the contract refuses events older than MAX_EVENT_AGE.
CLAIM_TTL_SECONDS = int(MAX_EVENT_AGE.total_seconds()) + 24 * 3600


@dataclass(frozen=True, slots=True)
class StreamPosition:
    shard_id: str
    sequence_number: str

    def key(self) -> str:
        return f"{self.shard_id}/{self.sequence_number}"


@dataclass(frozen=True, slots=True)
class Delivered(Generic[Ref]):
    """A valid event with where the stream delivered it; ``ref`` lets the caller map failures back."""

    event: AnyEvent
    position: StreamPosition
    ref: Ref


@dataclass(frozen=True, slots=True)
class Claim:
    """A record's claim on its event id: the content digest and where the record sits in the stream."""

    event_id: str
    digest: str
    position: str  # "<shard id>/<sequence number>": unique per record, the same on every redelivery


class Admission(StrEnum):
    HOLDER = "holder"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


class EventIdRegistry(Protocol):
    def claim(self, claims: Sequence[Claim]) -> dict[str, Claim]:
        """For each claim's event id (one claim per id), the claim that holds it: the one already
        stored, or this one when the id was free (stored now, atomically first-wins)."""
        ...


def verdict(mine: Claim, holder: Claim) -> Admission:
    if mine.position == holder.position:
        return Admission.HOLDER
    return Admission.DUPLICATE if mine.digest == holder.digest else Admission.CONFLICT


def claim_of(event: AnyEvent, position: StreamPosition) -> Claim:
    return Claim(event.event_id, event_digest(event), position.key())


@dataclass
class Admitted(Generic[Ref]):
    """A batch split by the registry: the records to process, and the others by verdict."""

    holders: list[Delivered[Ref]]
    duplicates: list[Delivered[Ref]]
    conflicts: list[Delivered[Ref]]


def admit_delivered(batch: Sequence[Delivered[Ref]], registry: EventIdRegistry) -> Admitted[Ref]:
    verdicts = admit([claim_of(d.event, d.position) for d in batch], registry)
    out: Admitted[Ref] = Admitted([], [], [])
    lists = {Admission.HOLDER: out.holders, Admission.DUPLICATE: out.duplicates, Admission.CONFLICT: out.conflicts}
    for delivered, admission in zip(batch, verdicts, strict=True):
        lists[admission].append(delivered)
    return out


def admit(claims: Sequence[Claim], registry: EventIdRegistry) -> list[Admission]:
    """One verdict per claim, in order. Within a batch (stream order) the first record of an id is the
    one that claims it, so a later record of the same id in the same batch cannot win."""
    if not claims:
        return []
    firsts: dict[str, Claim] = {}
    for claim in claims:
        firsts.setdefault(claim.event_id, claim)
    holders = registry.claim(list(firsts.values()))
    return [verdict(claim, holders[claim.event_id]) for claim in claims]
