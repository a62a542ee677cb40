"""Poison records: what a hostile or buggy producer sends, and proof that it never costs a neighbour.

``POISON`` names each class with the record it puts on the stream and the verdict the contract must
reach. ``run_isolation`` mixes one poison record of each class asked for into 100 valid events from
10 users of its own, runs the whole pipeline on the scenario driver (testkit/scenario.py), and
audits storage against the input, class by class: every valid event applied exactly once (a
reference fold), the poison record quarantined exactly once with its reason, no record archived
twice, every dead-letter queue empty. One class per step (``together=False``, what `make reliability`
runs) puts each poison record in a batch of exactly its 100 neighbours; all classes in one step (the
test suite's form) is one drain.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.domain.catalog import CatalogItem
from shared.domain.contract import QuarantineReason, UserEvent
from testkit import traffic
from testkit.audit import audit_ingest, audit_user_state
from testkit.scenario import Progress, Scenario, ScenarioRun, StackSpec, Step, Timeline, run

T0 = datetime(2026, 11, 27, 10, tzinfo=UTC)
ITEMS = [str(i) for i in range(1, 9)]
GENRES = {i: ["Drama"] if int(i) % 2 else ["Comedy"] for i in ITEMS}
USERS_PER_CLASS = 10
# The poison record rides with this user's events, after this one of them (the victim of a reused id).
CARRIER, VICTIM_INDEX = 4, 3


def users(prefix: str) -> list[str]:
    return [f"{prefix}u{n}" for n in range(USERS_PER_CLASS)]


def valid_events(prefix: str = "", t0: datetime = T0) -> list[UserEvent]:
    """10 users, each a profile then 9 behaviour events a minute apart: 100 events."""
    events: list[UserEvent] = []
    for n, user in enumerate(users(prefix)):
        attributes = {"plan": "pro", "beta": True, "score": 7.5}
        events.append(traffic.profile(user, t0, timezone="Europe/Berlin", attributes=attributes))
        events += traffic.behaviour(user, 9, t0 + timedelta(minutes=1), ITEMS, item_offset=n)
    return events


wire = traffic.wire


def _victim(prefix: str, at: datetime) -> dict[str, Any]:
    return wire(valid_events(prefix, at)[CARRIER * 10 + VICTIM_INDEX])


def _profile(prefix: str, at: datetime, **fields: Any) -> bytes:
    base = {
        "schema_version": 1,
        "event_id": f"{prefix}poison",
        "user_id": users(prefix)[CARRIER],
        "timestamp": (at + timedelta(minutes=5)).isoformat(),
        "type": "profile",
    }
    # ensure_ascii: a lone surrogate travels as the escape \udfff, which is valid JSON text.
    return json.dumps({**base, **fields}).encode()


def _with_duplicate_key(prefix: str, at: datetime) -> bytes:
    text = json.dumps({**_victim(prefix, at), "event_id": f"{prefix}poison"})
    return text.replace('"item_id": ', '"item_id": "8", "item_id": ', 1).encode()


def _conflicting_body(prefix: str, at: datetime) -> bytes:
    victim = _victim(prefix, at)
    return json.dumps({**victim, "item_id": "8" if victim["item_id"] != "8" else "7"}).encode()


@dataclass(frozen=True)
class PoisonClass:
    # Given the class's user prefix and the time its events are about (T0 in the scenarios).
    record: Callable[[str, datetime], bytes]
    reason: QuarantineReason


POISON: dict[str, PoisonClass] = {
    "tzdata_directory": PoisonClass(lambda p, at: _profile(p, at, timezone="America"), QuarantineReason.INVALID_FIELDS),
    "integer_beyond_38_digits": PoisonClass(
        lambda p, at: _profile(p, at, attributes={"n": 10**200}), QuarantineReason.NUMBER_OUT_OF_RANGE
    ),
    "float_beyond_dynamodb_range": PoisonClass(
        lambda p, at: _profile(p, at, attributes={"n": -1e130}), QuarantineReason.NUMBER_OUT_OF_RANGE
    ),
    "lone_surrogate": PoisonClass(
        lambda p, at: _profile(p, at, attributes={"s": "\udfff"}), QuarantineReason.BAD_STRING
    ),
    "nul_character": PoisonClass(lambda p, at: _profile(p, at, push_token="tok\x00en"), QuarantineReason.BAD_STRING),
    "consent_as_text": PoisonClass(lambda p, at: _profile(p, at, consent="yes"), QuarantineReason.INVALID_FIELDS),
    "consent_as_number": PoisonClass(lambda p, at: _profile(p, at, consent=1), QuarantineReason.INVALID_FIELDS),
    "epoch_timestamp": PoisonClass(
        lambda p, at: _profile(p, at, timestamp=int((at + timedelta(minutes=5)).timestamp())),
        QuarantineReason.INVALID_FIELDS,
    ),
    "duplicate_json_key": PoisonClass(_with_duplicate_key, QuarantineReason.DUPLICATE_KEY),
    "event_id_reused_for_another_body": PoisonClass(_conflicting_body, QuarantineReason.EVENT_ID_CONFLICT),
    "event_sent_twice": PoisonClass(lambda p, at: json.dumps(_victim(p, at)).encode(), QuarantineReason.DUPLICATE),
}


@dataclass
class IsolationResult:
    kind: str
    expected_reason: str
    valid_events: int
    valid_applied_once: int
    valid_lost: int
    valid_applied_twice: int
    users_differing_from_reference: int
    poison_quarantined: int
    poison_reasons: list[str]
    later_stage_quarantined: int
    archived: int
    archived_more_than_once: int
    dead_letter_messages: int
    quiescent: bool
    wall_s: float

    @property
    def isolated(self) -> bool:
        return (
            self.quiescent
            and self.valid_applied_once == self.valid_events
            and self.valid_lost == self.valid_applied_twice == self.users_differing_from_reference == 0
            and self.poison_quarantined == 1
            and self.poison_reasons == [self.expected_reason]
            and self.later_stage_quarantined == 0
            and self.archived == self.valid_events
            and self.archived_more_than_once == 0
            and self.dead_letter_messages == 0
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "isolated": self.isolated}


# Each class's events are this far apart from the next class's, one step each.
CLASS_SPAN = timedelta(minutes=15)


def run_isolation(
    kinds: Sequence[str],
    model_dir: Path,
    *,
    together: bool = False,
    log_dir: Path | None = None,
    progress: Progress | None = None,
) -> list[IsolationResult]:
    """For each kind, one poison record in the middle of 100 valid events of 10 users of its own,
    through every function; ``together`` puts every kind's records on the stream before one drain."""
    planned = [_Planned.of(kind, f"k{n}", T0 + n * CLASS_SPAN) for n, kind in enumerate(kinds)]
    span = int(CLASS_SPAN.total_seconds())
    stack = StackSpec(
        name="nudge-poison",
        model_dir=model_dir,
        catalog=[CatalogItem(item_id=i, title=f"Film {i}", genres=GENRES[i]) for i in ITEMS],
        log_dir=log_dir,
        log_level="ERROR",
    )
    timeline = Timeline(step_s=span * (len(planned) + 1) if together else span, start=int(T0.timestamp()))
    result = run(Scenario(stack, [r for plan in planned for r in plan.records], timeline, progress=progress))
    steps = [result.steps[0]] * len(planned) if together else result.steps
    share = len(planned) if together else 1
    return [plan.audit(result, step, share) for plan, step in zip(planned, steps, strict=True)]


@dataclass
class _Planned:
    kind: str
    events: list[UserEvent]
    records: list[traffic.Record]
    poison: traffic.Record

    @classmethod
    def of(cls, kind: str, prefix: str, t0: datetime) -> _Planned:
        events = valid_events(prefix, t0)
        records = traffic.records_of(events)
        # Right after the victim, in the carrier's shard: the batch around it holds other users' events too.
        victim = records[CARRIER * 10 + VICTIM_INDEX]
        poison = traffic.Record(victim.at, POISON[kind].record(prefix, t0), victim.key, None, "malformed")
        records.insert(CARRIER * 10 + VICTIM_INDEX + 1, poison)
        return cls(kind, events, records, poison)

    def audit(self, result: ScenarioRun, step: Step, share: int) -> IsolationResult:
        storage, dead = result.storage, result.storage.dead_letters
        position_of = result.position_of()
        positions = [position_of[id(r)] for r in self.records]
        mine = {e.user_id for e in self.events}
        ingest = audit_ingest(storage, positions, dead.kinesis_positions.get("Ingest", []))
        states = {u: s for u, s in storage.user_states.items() if u in mine}
        state = audit_user_state(self.events, states, GENRES, dead.event_ids("Features"))
        poison_position = position_of[id(self.poison)]
        reasons = [
            str(line["reason"])
            for line in storage.quarantine
            if (str(line.get("shard_id")), str(line.get("sequence_number"))) == poison_position
        ]
        later = [line for line in storage.quarantine if line.get("stage") not in (None, "ingest")]
        return IsolationResult(
            kind=self.kind,
            expected_reason=POISON[self.kind].reason.value,
            valid_events=len(self.events),
            valid_applied_once=state.events_applied - state.events_applied_twice,
            valid_lost=state.events_lost,
            valid_applied_twice=state.events_applied_twice,
            users_differing_from_reference=len(state.users_differing_from_reference),
            poison_quarantined=len(reasons),
            poison_reasons=reasons,
            later_stage_quarantined=len(later),
            archived=ingest.archived,
            archived_more_than_once=ingest.archived_more_than_once,
            dead_letter_messages=sum(dead.messages.values()),
            quiescent=step.quiescent,
            wall_s=round(step.wall_s / share, 3),
        )
