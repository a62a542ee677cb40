"""Outcomes read back from storage and compared with the input: nothing here trusts a handler's counter.

What is read: user state (DynamoDB), archive and quarantine lines (S3), every dead-letter queue
(SQS) with the stream records each message points at (read back from Kinesis / DynamoDB Streams,
as an operator redriving it would), and the pushes that reached a queue subscribed to the topic.
What it is compared with: the events that were put on the stream, folded by ``apply_event`` (the
reference fold) in the order the stream delivers them per user.
"""

from __future__ import annotations

import base64
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from runner.pipeline import LocalPipeline
from shared.adapters.dynamo_codec import from_dynamo
from shared.adapters.object_archive import ObjectArchive
from shared.adapters.user_state_codec import DELIVERY_FIELDS, FEEDBACK_FIELDS, PLACEMENT_FIELDS, states_of
from shared.domain.contract import AnyEvent, BehaviourEvent, CatalogEvent, FeedbackEvent, ProfileEvent
from shared.domain.fold import apply_event
from shared.domain.user_state import UserState
from testkit.queues import receive_json

# Pipeline bookkeeping, where the state is stored, and what feedback and delivery write: not part of the
# fold of the input events.
NOT_FOLDED = (
    frozenset({"version", "last_writer", "shard_watermarks", "due_at", "asks_decision", "decision_asked_at"})
    | PLACEMENT_FIELDS
    | FEEDBACK_FIELDS
    | DELIVERY_FIELDS
)
FEEDBACK_COUNTERS = ("delivered", "opened", "dismissed", "converted")


@dataclass
class DeadLetters:
    """What the dead-letter queues hold: the records each message points at, and why."""

    kinesis_event_ids: dict[str, list[str]] = field(default_factory=dict)  # stage -> event ids (may repeat)
    kinesis_positions: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    stream_users: dict[str, list[str]] = field(default_factory=dict)  # stage -> user ids of state changes
    reasons: dict[str, Counter[str]] = field(default_factory=dict)  # stage -> condition/functionError
    messages: dict[str, int] = field(default_factory=dict)

    def event_ids(self, stage: str) -> set[str]:
        return set(self.kinesis_event_ids.get(stage, []))

    def records(self, stage: str) -> int:
        """Stream records the stage's dead-letter messages point at."""
        return len(self.kinesis_event_ids.get(stage, [])) + len(self.stream_users.get(stage, []))

    def as_dict(self) -> dict[str, Any]:
        return {
            stage: {
                "messages": self.messages.get(stage, 0),
                "records": self.records(stage),
                "reasons": dict(self.reasons.get(stage, {})),
            }
            for stage in sorted(self.messages)
        }


def read_dead_letters(pipe: LocalPipeline) -> DeadLetters:
    out = DeadLetters()
    for output, url in pipe.outputs.items():
        if not output.endswith("DeadLetterQueueUrl"):
            continue
        stage = output.removesuffix("DeadLetterQueueUrl")
        messages = receive_json(pipe, url)
        out.messages[stage] = len(messages)
        reasons: Counter[str] = Counter()
        for message in messages:
            context = message.get("requestContext", {})
            error = message.get("responseContext", {}).get("functionError", "partial batch failure")
            reasons[f"{context.get('condition')}/{error}"] += 1
            if "KinesisBatchInfo" in message:
                raws = _kinesis_range(pipe, message["KinesisBatchInfo"])
                out.kinesis_event_ids.setdefault(stage, []).extend(_event_id(data) for _, data in raws)
                shard = str(message["KinesisBatchInfo"]["shardId"])
                out.kinesis_positions.setdefault(stage, []).extend((shard, seq) for seq, _ in raws)
            elif "DDBStreamBatchInfo" in message:
                records = _ddb_range(pipe, message["DDBStreamBatchInfo"])
                users = [str(from_dynamo(r["dynamodb"].get("Keys", {})).get("user_id")) for r in records]
                out.stream_users.setdefault(stage, []).extend(users)
        out.reasons[stage] = reasons
    return out


def _kinesis_range(pipe: LocalPipeline, info: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    kinesis = pipe.client("kinesis")
    stream = str(info["streamArn"]).rsplit("/", 1)[1]
    start, end = int(info["startSequenceNumber"]), int(info["endSequenceNumber"])
    iterator = kinesis.get_shard_iterator(
        StreamName=stream,
        ShardId=info["shardId"],
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        StartingSequenceNumber=str(start),
    )["ShardIterator"]
    out: list[tuple[str, bytes]] = []
    while iterator:
        page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        for record in page.get("Records", []):
            if int(record["SequenceNumber"]) > end:
                return out
            out.append((str(record["SequenceNumber"]), bytes(record["Data"])))
        if not page.get("Records"):
            return out
        iterator = page.get("NextShardIterator")
    return out


def _ddb_range(pipe: LocalPipeline, info: Mapping[str, Any]) -> list[dict[str, Any]]:
    streams = pipe.client("dynamodbstreams")
    start, end = int(info["startSequenceNumber"]), int(info["endSequenceNumber"])
    iterator = streams.get_shard_iterator(
        StreamArn=info["streamArn"],
        ShardId=info["shardId"],
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        SequenceNumber=str(start),
    )["ShardIterator"]
    out: list[dict[str, Any]] = []
    while iterator:
        page = streams.get_records(ShardIterator=iterator, Limit=1000)
        for record in page.get("Records", []):
            if int(record["dynamodb"]["SequenceNumber"]) > end:
                return out
            out.append(record)
        if not page.get("Records"):
            return out
        iterator = page.get("NextShardIterator")
    return out


def _event_id(raw: bytes) -> str:
    try:
        payload = json.loads(raw)
    except ValueError:
        return f"<unparseable:{base64.b64encode(raw[:24]).decode()}>"
    return str(payload.get("event_id")) if isinstance(payload, dict) else "<not an object>"


def scan_table(pipe: LocalPipeline, output: str) -> list[dict[str, Any]]:
    dynamodb = pipe.client("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": pipe.outputs[output], "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def user_states(pipe: LocalPipeline) -> dict[str, UserState]:
    """Every readable user state, each user's two items together (a user whose items no reader can
    decode is left out: the audit compares it with nothing, and the pipeline quarantines the records
    that need it)."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    items = ({k: deserializer.deserialize(v) for k, v in raw.items()} for raw in scan_table(pipe, "UserStateTableName"))
    return {user_id: state for user_id, state in states_of(items).items() if isinstance(state, UserState)}


def ledger(pipe: LocalPipeline) -> list[dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return [
        from_dynamo({k: deserializer.deserialize(v) for k, v in raw.items()})
        for raw in scan_table(pipe, "LedgerTableName")
    ]


def archived_lines(pipe: LocalPipeline, prefix: str) -> list[dict[str, Any]]:
    archive = ObjectArchive(pipe.client("s3"), pipe.outputs["ArchiveBucketName"])
    return [line for key in archive.keys(prefix) for line in archive.read_lines(key)]


@dataclass
class Snapshot:
    """What a stack's storage holds at the end of a scenario, read once from the outside."""

    archive: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: DeadLetters = field(default_factory=DeadLetters)
    user_states: dict[str, UserState] = field(default_factory=dict)
    ledger: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def read(cls, pipe: LocalPipeline, *, archive: bool = True) -> Snapshot:
        """Everything (drains the dead-letter queues); ``archive=False`` skips the archive lines
        (the quarantine is always read)."""
        tables = set(pipe.outputs)
        return cls(
            archive=archived_lines(pipe, "archive/") if archive else [],
            quarantine=archived_lines(pipe, "quarantine/"),
            dead_letters=read_dead_letters(pipe),
            user_states=user_states(pipe) if "UserStateTableName" in tables else {},
            ledger=ledger(pipe) if "LedgerTableName" in tables else [],
        )

    def quarantine_reasons(self) -> Counter[str]:
        return Counter(str(line["reason"]) for line in self.quarantine)

    def archived_event_ids(self) -> list[str]:
        return [str(line["event"]["event_id"]) for line in self.archive]


# ---------------------------------------------------------------- comparisons with the input


def folded_fields(state: UserState) -> dict[str, Any]:
    return state.model_dump(exclude=set(NOT_FOLDED))


def same_fold(got: UserState, want: UserState) -> bool:
    a, b = folded_fields(got), folded_fields(want)
    ga, gb = a.pop("genre_affinity"), b.pop("genre_affinity")
    if a != b or set(ga) != set(gb):
        return False
    return all(abs(ga[k] - gb[k]) <= 1e-9 * max(1.0, abs(gb[k])) for k in ga)


@dataclass
class StateAudit:
    events_in: int = 0
    events_applied: int = 0
    events_lost: int = 0
    events_applied_twice: int = 0
    events_dead_lettered: int = 0
    users: int = 0
    users_differing_from_reference: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "events_in": self.events_in,
            "events_applied": self.events_applied,
            "events_lost": self.events_lost,
            "events_applied_twice": self.events_applied_twice,
            "events_dead_lettered": self.events_dead_lettered,
            "users": self.users,
            "users_differing_from_reference": len(self.users_differing_from_reference),
        }


def _features_events_per_user(events: Sequence[AnyEvent]) -> dict[str, list[BehaviourEvent | ProfileEvent]]:
    """Behaviour and profile events by user, in stream order, each event id once (as the contract says)."""
    per_user: dict[str, list[BehaviourEvent | ProfileEvent]] = defaultdict(list)
    seen: set[str] = set()
    for event in events:
        if isinstance(event, FeedbackEvent | CatalogEvent) or event.event_id in seen:
            continue
        seen.add(event.event_id)
        per_user[event.user_id].append(event)
    return per_user


def _audit_user(
    audit: StateAudit,
    user_events: list[BehaviourEvent | ProfileEvent],
    state: UserState | None,
    base: UserState | None,
    in_dlq: set[str],
    genres_of: Callable[[str], list[str]],
) -> bool:
    """Count one user's events into ``audit``; True when the state equals the fold of what it applied.

    The state keeps no event ids (admission stops a second record of an id before the fold), so which
    events it holds is checked twice: the per-type counters must count exactly that many (more: applied
    twice; fewer: lost), and the state must equal the reference fold of exactly those events (a loss
    and a double that cancel in the counters still differ there). The events held are every event not
    dead-lettered, or every event when a dead-lettered record's write had landed before its invocation
    failed for good (the counters and the fold then both say so)."""
    base_count = sum(base.counters.values()) if base else 0
    stored_count = (sum(state.counters.values()) if state else 0) - base_count

    def reference_of(events: list[BehaviourEvent | ProfileEvent]) -> UserState:
        reference = base.model_copy(deep=True) if base else UserState(user_id=user_events[0].user_id)
        for event in events:
            apply_event(reference, event, genres_of)
        return reference

    applied = [e for e in user_events if e.event_id not in in_dlq]
    reference = reference_of(applied)
    if state is not None and len(applied) < len(user_events) == stored_count:
        everything = reference_of(user_events)
        if same_fold(state, everything):
            applied, reference = user_events, everything
    audit.events_lost += max(0, len(applied) - stored_count)
    audit.events_applied += min(len(applied), max(stored_count, 0))
    audit.events_applied_twice += max(0, stored_count - len(applied))
    audit.events_dead_lettered += len(user_events) - len(applied)
    return state is not None and same_fold(state, reference)


def audit_user_state(
    events: Sequence[AnyEvent],
    states: Mapping[str, UserState],
    genres: Mapping[str, Sequence[str]],
    dead_lettered: Iterable[str] = (),
    initial: Mapping[str, UserState] | None = None,
) -> StateAudit:
    """Every features event applied exactly once, or dead-lettered: compared with a reference fold.

    ``events`` are the valid events in the order the stream delivers them per user (duplicates
    by event id are folded once, as the contract says). Which events a user's state holds is read
    from its per-type counters (see _audit_user); the state must then equal the fold of exactly those
    events.
    """
    per_user = _features_events_per_user(events)
    audit = StateAudit(events_in=sum(len(v) for v in per_user.values()), users=len(per_user))
    in_dlq = set(dead_lettered)

    def genres_of(item: str) -> list[str]:
        return list(genres.get(item, []))

    for user_id, user_events in per_user.items():
        base = initial.get(user_id) if initial else None
        if not _audit_user(audit, user_events, states.get(user_id), base, in_dlq, genres_of):
            audit.users_differing_from_reference.append(user_id)
    return audit


@dataclass
class PushAudit:
    pushes_received: int = 0
    decision_ids: int = 0
    pushes_sent_twice: int = 0
    pushes_without_ledger_push: int = 0
    ledger_sent_without_push: int = 0
    ledger_pushes: int = 0
    # Recorded as pushes but never reached a device, and not settled as undeliverable either.
    pushes_recorded_not_sent: int = 0
    # Pushes the ledger still holds on the outbox (status "decided"), whether or not a device got them.
    ledger_unsent: int = 0
    pushes_undeliverable: int = 0
    pushes_to_users_without_consent: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def audit_pushes(
    received: Sequence[Mapping[str, Any]], ledger_rows: Sequence[Mapping[str, Any]], consented: set[str]
) -> PushAudit:
    """Each decision id at most once on the topic (or at a device), every push matches a push in the
    ledger, and every push the ledger recorded reached a device or was settled as undeliverable."""
    audit = PushAudit(pushes_received=len(received))
    by_id = Counter(str(m["decision_id"]) for m in received)
    audit.decision_ids = len(by_id)
    audit.pushes_sent_twice = sum(n - 1 for n in by_id.values() if n > 1)
    pushes = {str(r["decision_id"]): r for r in ledger_rows if r.get("action") == "push"}
    audit.ledger_pushes = len(pushes)
    audit.pushes_without_ledger_push = sum(1 for d in by_id if d not in pushes)
    audit.ledger_sent_without_push = sum(1 for d, r in pushes.items() if r.get("status") == "sent" and d not in by_id)
    audit.pushes_undeliverable = sum(1 for r in pushes.values() if r.get("status") == "undeliverable")
    audit.pushes_recorded_not_sent = sum(
        1 for d, r in pushes.items() if d not in by_id and r.get("status") != "undeliverable"
    )
    audit.ledger_unsent = sum(1 for r in pushes.values() if r.get("status") not in ("sent", "undeliverable"))
    audit.pushes_to_users_without_consent = sum(1 for m in received if str(m.get("user_id")) not in consented)
    return audit


@dataclass
class FeedbackAudit:
    feedback_in: int = 0
    counted: int = 0
    lost: int = 0
    counted_twice: int = 0
    dead_lettered: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def audit_feedback(
    events: Sequence[FeedbackEvent], states: Mapping[str, UserState], dead_lettered: Iterable[str] = ()
) -> FeedbackAudit:
    """Each feedback outcome counted once into the user's push counters (or dead-lettered)."""
    audit = FeedbackAudit()
    in_dlq = set(dead_lettered)
    unique = {e.event_id: e for e in events}
    audit.feedback_in = len(unique)
    expected: Counter[tuple[str, str]] = Counter()
    dlq: Counter[tuple[str, str]] = Counter()
    keys: set[tuple[str, str, str]] = set()
    for event in unique.values():
        key = (event.user_id, event.decision_id, event.type)
        if key in keys:
            continue
        keys.add(key)
        expected[(event.user_id, event.type)] += 1
        if event.event_id in in_dlq:
            dlq[(event.user_id, event.type)] += 1
    for (user_id, outcome), want in expected.items():
        state = states.get(user_id)
        got = int(getattr(state, f"pushes_{outcome}", 0)) if state else 0
        audit.counted += min(got, want)
        audit.counted_twice += max(0, got - want)
        missing = max(0, want - got)
        audit.dead_lettered += min(missing, dlq[(user_id, outcome)])
        audit.lost += max(0, missing - dlq[(user_id, outcome)])
    return audit


@dataclass
class RecordAudit:
    """Ingest: every record put on the stream is archived or quarantined (or dead-lettered)."""

    records_in: int = 0
    archived: int = 0
    quarantined: int = 0
    dead_lettered: int = 0
    lost: int = 0
    archived_more_than_once: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def audit_ingest(
    storage: Snapshot, positions: Sequence[tuple[str, str]], dead_lettered: Iterable[tuple[str, str]]
) -> RecordAudit:
    """Each record put (shard, sequence number) is an archive or a quarantine line, or dead-lettered."""
    # Ingest's own verdicts; quarantine/<stage>/ holds what a later stage found it could never process.
    quarantine = [line for line in storage.quarantine if line.get("stage") in (None, "ingest")]
    audit = RecordAudit(records_in=len(positions))
    archived = Counter((str(line["shard_id"]), str(line["sequence_number"])) for line in storage.archive)
    # Retried batches rewrite their object; a bisected one may write a line again under a new key.
    audit.archived_more_than_once = sum(n - 1 for n in archived.values() if n > 1)
    quarantined = {(str(line["shard_id"]), str(line["sequence_number"])): str(line["reason"]) for line in quarantine}
    in_dlq = set(dead_lettered)
    wanted = set(positions)
    audit.archived = len(wanted & set(archived))
    audit.quarantined = len(wanted & set(quarantined))
    audit.quarantine_reasons = dict(Counter(quarantined[p] for p in wanted & set(quarantined)))
    audit.dead_lettered = len(wanted & in_dlq - set(archived) - set(quarantined))
    audit.lost = len(wanted - set(archived) - set(quarantined) - in_dlq)
    return audit
