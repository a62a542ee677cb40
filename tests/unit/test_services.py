"""The logic in shared/ against moto resources built from template.yaml."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from runner.stack import Stack
from shared.adapters.catalog import Catalog
from shared.adapters.event_ids import DynamoEventIdRegistry
from shared.adapters.ledger import Ledger
from shared.adapters.object_archive import ObjectArchive
from shared.adapters.user_state_store import UserStateStore
from shared.domain.admission import CLAIM_TTL_SECONDS, Delivered, StreamPosition
from shared.domain.catalog import CatalogItem
from shared.domain.contract import BehaviourEvent, FeedbackEvent, ProfileEvent
from shared.domain.decision import Action, Reason
from shared.domain.policy import PolicyConfig, RulesPolicy
from shared.domain.user_state import StateChange, UserState
from shared.services.decide import DecideConfig, DecideService
from shared.services.features import FeaturesService
from shared.services.feedback import FeedbackService
from shared.services.ingest import IngestService, StreamRecord, check_record
from testkit import traffic
from testkit.fakes import FakeRecommender, RecordingSender

pytestmark = pytest.mark.slow(seconds=10)

REGION = "us-east-1"
NOON = datetime(2026, 11, 27, 12, tzinfo=UTC)


def out(stack: Stack, name: str) -> str:
    return stack.outputs[name]


def registry(stack: Stack, dynamodb: Any) -> DynamoEventIdRegistry:
    return DynamoEventIdRegistry(dynamodb, out(stack, "EventIdsTableName"), CLAIM_TTL_SECONDS)


def record(data: bytes | str, seq: int) -> StreamRecord:
    b64 = data if isinstance(data, str) else base64.b64encode(data).decode()
    return StreamRecord("shardId-000000000000", str(1000 + seq), "u1", b64, NOON)


def rate(event_id: str, user: str, item: str, at: datetime = NOON) -> BehaviourEvent:
    return BehaviourEvent(
        schema_version=1, event_id=event_id, user_id=user, timestamp=at, type="rate", item_id=item, value=4.0
    )


def profile(user: str, tz: str = "UTC") -> ProfileEvent:
    return ProfileEvent(
        schema_version=1,
        event_id=f"p-{user}",
        user_id=user,
        timestamp=NOON - timedelta(hours=1),
        type="profile",
        consent=True,
        timezone=tz,
        push_token=f"tok-{user}",
    )


# ---------------------------------------------------------------- ingest


def test_ingest_archives_valid_and_quarantines_invalid_once(stack: Stack, dynamodb: Any) -> None:
    archive = ObjectArchive(boto3.client("s3", region_name=REGION), out(stack, "ArchiveBucketName"))
    service = IngestService(archive, registry(stack, dynamodb), "archive/", "quarantine/")
    good = rate("e1", "u1", "1").model_dump_json().encode()
    batch = [check_record(record(good, 1)), check_record(record(b"{oops", 2)), check_record(record(good, 3))]
    first = service.commit(batch)
    assert first.archived == 1
    assert first.quarantined == {"not_json": 1, "duplicate_event_id": 1}
    lines = archive.read_lines(first.archive_key or "")
    assert [line["event"]["event_id"] for line in lines] == ["e1"]
    refused = archive.read_lines(first.quarantine_key or "")
    assert {r["reason"] for r in refused} == {"not_json", "duplicate_event_id"}
    assert base64.b64decode(refused[0]["data"]) == b"{oops"
    # A retried batch lands on the same keys: nothing is archived twice.
    service.commit(batch)
    assert len(archive.keys("archive/")) == 1 and len(archive.keys("quarantine/")) == 1
    assert first.archive_key and first.archive_key.startswith("archive/dt=2026-11-27/hour=12/")


# ---------------------------------------------------------------- features


def features(
    stack: Stack, dynamodb: Any, store: UserStateStore | None = None, seed: bool = True, interval: int = 0
) -> FeaturesService:
    catalog = Catalog(dynamodb, out(stack, "CatalogTableName"))
    if seed:
        catalog.put_many([CatalogItem(item_id="1", title="A", genres=["Comedy"])])
    store = store or UserStateStore(dynamodb, out(stack, "UserStateTableName"))
    return FeaturesService(store, catalog, registry(stack, dynamodb), decision_interval_seconds=interval)


def positioned(event: BehaviourEvent | ProfileEvent | FeedbackEvent, seq: int) -> Delivered[int]:
    return Delivered(event, StreamPosition("shardId-000000000000", str(seq)), seq)


def test_features_writes_once_per_user_per_batch_and_ignores_retries(stack: Stack, dynamodb: Any) -> None:
    service = features(stack, dynamodb)
    batch = [
        positioned(profile("u1"), 1),
        positioned(rate("e1", "u1", "1"), 2),
        positioned(rate("e2", "u2", "1"), 3),
        positioned(rate("e3", "u1", "2"), 4),
    ]
    result = service.apply(batch)
    assert (result.applied, result.users_written, result.write_requests, result.failed) == (4, 2, 2, [])
    store = UserStateStore(dynamodb, out(stack, "UserStateTableName"))
    u1 = store.get("u1")
    assert u1 is not None and u1.version == 1 and u1.history() == ["1", "2"] and u1.consent
    assert u1.last_writer == "features" and u1.genre_affinity == pytest.approx({"Comedy": 0.8})
    again = service.apply(batch)
    assert (again.applied, again.duplicates, again.write_requests) == (0, 4, 0)
    assert store.get("u1") == u1


def test_features_marks_the_writes_that_ask_for_a_decision(stack: Stack, dynamodb: Any) -> None:
    service = features(stack, dynamodb, interval=300)
    store = UserStateStore(dynamodb, out(stack, "UserStateTableName"))
    asks = []
    for n, minutes in enumerate((0, 1, 2, 6, 7)):
        result = service.apply([positioned(rate(f"e{n}", "u1", "1", NOON + timedelta(minutes=minutes)), n + 1)])
        state = store.get("u1")
        assert state is not None and state.version == n + 1 and result.decisions_asked == state.asks_decision
        asks.append(state.asks_decision)
    # The first event asks; the next two fall inside 5 minutes; 6 minutes in asks again.
    assert asks == [True, False, False, True, False]
    assert state is not None and state.decision_asked_at == int((NOON + timedelta(minutes=6)).timestamp())


class RacingStore(UserStateStore):
    """A concurrent writer slips in once between our read and our write."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        super().__init__(dynamodb, table)
        self.raced = False

    def save(self, state: UserState, expected_version: int, *, profile_changed: bool) -> None:
        if not self.raced:
            self.raced = True
            current = self.get(state.user_id) or UserState(user_id=state.user_id)
            bumped = current.model_copy(update={"version": current.version + 1, "pushes_opened": 7})
            super().save(bumped, current.version, profile_changed=True)
        super().save(state, expected_version, profile_changed=profile_changed)


def test_features_rereads_after_a_version_conflict(stack: Stack, dynamodb: Any) -> None:
    store = RacingStore(dynamodb, out(stack, "UserStateTableName"))
    result = features(stack, dynamodb, store).apply([positioned(rate("e1", "u1", "1"), 1)])
    assert (result.version_conflicts, result.applied, result.failed) == (1, 1, [])
    state = store.get("u1")
    # Both writers' changes survive: nothing lost to the race.
    assert state is not None and state.version == 2 and state.pushes_opened == 7 and state.history() == ["1"]


# ---------------------------------------------------------------- decide


def decide_service(stack: Stack, dynamodb: Any, sender: RecordingSender, cap: int = 2) -> DecideService:
    catalog = Catalog(dynamodb, out(stack, "CatalogTableName"))
    catalog.put_many(
        CatalogItem(item_id=i, title=f"Movie {i}", genres=["Drama"] if int(i) % 2 else ["Comedy"]) for i in "12345"
    )
    return DecideService(
        UserStateStore(dynamodb, out(stack, "UserStateTableName")),
        catalog,
        Ledger(dynamodb, out(stack, "LedgerTableName")),
        FakeRecommender([("1", 0.9), ("2", 0.8), ("3", 0.7), ("4", 0.6), ("5", 0.5)]),
        sender,
        RulesPolicy(PolicyConfig(daily_push_cap=cap)),
        DecideConfig(due_shards=2),
    )


def stored_user(stack: Stack, dynamodb: Any, tz: str = "UTC") -> UserState:
    service = features(stack, dynamodb, seed=False)
    service.apply([positioned(profile("u1", tz), 1), positioned(rate("e1", "u1", "1"), 2)])
    state = UserStateStore(dynamodb, out(stack, "UserStateTableName")).get("u1")
    assert state is not None
    return state


def test_decide_pushes_records_and_never_sends_a_retry_twice(stack: Stack, dynamodb: Any) -> None:
    sender = RecordingSender()
    service = decide_service(stack, dynamodb, sender)
    state = stored_user(stack, dynamodb)
    now = int(NOON.timestamp())
    decision = service.decide_for(state, now, "state:1")
    assert (decision.action, decision.item_id) == (Action.PUSH, "2")
    assert decision.explanation == "Because you watched Movie 1"
    assert sender.sent[0]["decision_id"] == decision.decision_id and sender.sent[0]["push_token"] == "tok-u1"
    ledger = Ledger(dynamodb, out(stack, "LedgerTableName"))
    row = ledger.get("u1", decision.decision_id)
    assert row is not None and row["status"] == "sent" and row["expires_at"] > now
    # The same trigger again (a retried stream batch) yields the same decision id.
    assert service.decide_for(state, now, "state:1").decision_id == decision.decision_id


def test_decide_respects_cap_and_never_repeats_an_item(stack: Stack, dynamodb: Any) -> None:
    sender = RecordingSender()
    service = decide_service(stack, dynamodb, sender, cap=2)
    state = stored_user(stack, dynamodb)
    now = int(NOON.timestamp())
    actions = [service.decide_for(state, now + i * 60, f"state:{i}") for i in range(4)]
    assert [a.action for a in actions] == [Action.PUSH, Action.PUSH, Action.SILENCE, Action.SILENCE]
    assert actions[2].reasons == [Reason.DAILY_CAP]
    assert [p["item_id"] for p in sender.sent] == ["2", "3"]
    tomorrow = service.decide_for(state, now + 86400 + 600, "state:9")
    assert (tomorrow.action, tomorrow.item_id) == (Action.PUSH, "4")


def test_quiet_hours_defer_then_the_sweep_pushes(stack: Stack, dynamodb: Any) -> None:
    sender = RecordingSender()
    service = decide_service(stack, dynamodb, sender)
    state = stored_user(stack, dynamodb, tz="Asia/Tokyo")  # 12:00 UTC = 21:00 in Tokyo
    result = service.decide_changes([StateChange(state, int(NOON.timestamp()), "ref")])
    decision = result.decisions[0]
    assert decision.action is Action.DEFER and sender.sent == []
    due = decision.due_at
    assert due == int(datetime(2026, 11, 27, 23, tzinfo=UTC).timestamp())
    assert service.sweep(due - 60).decisions == []
    swept = service.sweep(due + 60).decisions
    assert [d.action for d in swept] == [Action.PUSH] and len(sender.sent) == 1
    after = UserStateStore(dynamodb, out(stack, "UserStateTableName")).get("u1")
    assert after is not None and after.due_at is None and after.last_writer == "decide"
    assert service.sweep(due + 600).decisions == []


def test_decide_changes_coalesces_per_user(stack: Stack, dynamodb: Any) -> None:
    sender = RecordingSender()
    service = decide_service(stack, dynamodb, sender)
    state = stored_user(stack, dynamodb)
    newer = state.model_copy(update={"version": state.version + 1})
    now = int(NOON.timestamp())
    result = service.decide_changes([StateChange(state, now, 1), StateChange(newer, now, 2)])
    assert result.superseded == 1 and len(result.decisions) == 1 and len(sender.sent) == 1
    assert result.decisions[0].trigger == f"state:{newer.version}"


# ---------------------------------------------------------------- feedback


def test_feedback_joins_once_and_logs_orphans(stack: Stack, dynamodb: Any) -> None:
    sender = RecordingSender()
    state = stored_user(stack, dynamodb)
    decision = decide_service(stack, dynamodb, sender).decide_for(state, int(NOON.timestamp()), "state:1")
    s3 = boto3.client("s3", region_name=REGION)
    ledger = Ledger(dynamodb, out(stack, "LedgerTableName"))
    service = FeedbackService(
        ledger,
        UserStateStore(dynamodb, out(stack, "UserStateTableName")),
        ObjectArchive(s3, out(stack, "ArchiveBucketName")),
        registry(stack, dynamodb),
        "feedback/",
    )

    def fb(event_id: str, kind: str, decision_id: str) -> Delivered[int]:
        event = traffic.outcome("u1", event_id, kind, decision_id, NOON + timedelta(minutes=5))
        return positioned(event, int(event_id[1:]))

    result = service.apply(
        [
            fb("f1", "opened", decision.decision_id),
            fb("f2", "opened", decision.decision_id),
            fb("f3", "opened", "nope"),
        ]
    )
    assert (result.joined, result.duplicates, result.orphans) == (1, 1, 1)
    row = ledger.get("u1", decision.decision_id)
    assert row is not None and row["outcomes"] == {"opened": int((NOON + timedelta(minutes=5)).timestamp())}
    after = UserStateStore(dynamodb, out(stack, "UserStateTableName")).get("u1")
    assert after is not None and after.pushes_opened == 1
    # Counted in the profile item: the hot item (what decide's stream filter sees) is not written.
    assert (after.version, after.last_writer) == (state.version, state.last_writer)
    assert after.profile_version == state.profile_version + 1
    lines = ObjectArchive(s3, out(stack, "ArchiveBucketName")).read_lines(result.log_key or "")
    assert [line["status"] for line in lines] == ["joined", "duplicate", "orphan"]
    # Each line carries the event and what the ledger knew of its decision (the join), for training.
    assert [line["event"]["event_id"] for line in lines] == ["f1", "f2", "f3"]
    assert lines[0]["pushed_item_id"] == decision.item_id and lines[0]["decided_at"] == decision.decided_at
    assert lines[2]["pushed_item_id"] is None and lines[2]["model_version"] is None


@pytest.mark.filterwarnings("ignore:Couldn't determine the remaining time left")
@pytest.mark.usefixtures("atomic_requests")
def test_parallel_deciders_for_one_user_never_exceed_the_atomic_cap(stack: Stack, dynamodb: Any) -> None:
    """Two shards' worth of deciders race on one user; the counters, not the ledger check, hold the cap."""
    from concurrent.futures import ThreadPoolExecutor

    from shared.adapters.push_counters import PushCounters
    from shared.domain.caps import CapsConfig
    from shared.domain.decision import Decision
    from shared.domain.errors import TransientStorageError
    from shared.plumbing.bootstrap import send_once

    sender = RecordingSender()
    send = send_once(sender, out(stack, "IdempotencyTableName"), boto3.client("dynamodb", region_name=REGION))
    catalog = Catalog(dynamodb, out(stack, "CatalogTableName"))
    catalog.put_many(CatalogItem(item_id=str(i), title=f"M{i}", genres=[f"G{i}"]) for i in range(1, 12))
    counters = PushCounters(dynamodb, out(stack, "PushCountersTableName"))
    state = stored_user(stack, dynamodb)

    def decider() -> DecideService:
        return DecideService(
            UserStateStore(dynamodb, out(stack, "UserStateTableName")),
            Catalog(dynamodb, out(stack, "CatalogTableName")),
            Ledger(dynamodb, out(stack, "LedgerTableName")),
            FakeRecommender([(str(i), 1.0 - i / 20) for i in range(1, 12)]),
            send,
            RulesPolicy(PolicyConfig(daily_push_cap=50)),
            DecideConfig(caps=CapsConfig(daily=2, weekly=10)),
            counters,
        )

    services = [decider(), decider()]
    now = int(NOON.timestamp())

    def attempt(service: DecideService, trigger: str) -> Decision | None:
        try:
            return service.decide_for(state, now, trigger)
        except TransientStorageError:  # the send is in progress on the other shard: retried later
            return None

    with ThreadPoolExecutor(max_workers=6) as pool:
        # 10 triggers, each delivered twice (a duplicated stream record on the other shard).
        jobs = [(services[n % 2], f"state:{n // 2}") for n in range(20)]
        outcomes = list(pool.map(lambda job: attempt(*job), jobs))
    # What was in progress elsewhere is retried, as the event source mapping would.
    decisions = [
        d if d is not None else job[0].decide_for(state, now, job[1]) for d, job in zip(outcomes, jobs, strict=True)
    ]
    # Each decision is sent once (idempotent publish), never more than the cap, never one item twice.
    sent = len(sender.sent)
    assert 1 <= sent <= 2
    assert len({p["decision_id"] for p in sender.sent}) == sent
    assert len({p["item_id"] for p in sender.sent}) == sent
    assert counters.count(f"user#u1#day#{NOON:%Y-%m-%d}") == sent
    capped = [d for d in decisions if d.action is Action.SILENCE]
    assert capped and all(d.reasons[0] in (Reason.DAILY_CAP, Reason.ITEM_COOLDOWN) for d in capped)


@pytest.mark.filterwarnings("ignore:Couldn't determine the remaining time left")
def test_a_push_the_counters_cap_is_returned_as_the_silence_it_became(stack: Stack, dynamodb: Any) -> None:
    """The policy says push, the atomic counters say no: what decide returns (and reports) is the silence
    the ledger now holds, not the push it started as."""
    from shared.adapters.push_counters import PushCounters
    from shared.domain.caps import CapsConfig
    from shared.plumbing.bootstrap import send_once

    sender = RecordingSender()
    catalog = Catalog(dynamodb, out(stack, "CatalogTableName"))
    catalog.put_many(CatalogItem(item_id=str(i), title=f"M{i}", genres=[f"G{i}"]) for i in range(1, 6))
    service = DecideService(
        UserStateStore(dynamodb, out(stack, "UserStateTableName")),
        catalog,
        Ledger(dynamodb, out(stack, "LedgerTableName")),
        FakeRecommender([(str(i), 1.0 - i / 20) for i in range(1, 6)]),
        send_once(sender, out(stack, "IdempotencyTableName"), boto3.client("dynamodb", region_name=REGION)),
        RulesPolicy(PolicyConfig(daily_push_cap=50)),
        DecideConfig(caps=CapsConfig(daily=1, weekly=10)),
        PushCounters(dynamodb, out(stack, "PushCountersTableName")),
    )
    state = stored_user(stack, dynamodb)
    now = int(NOON.timestamp())
    first = service.decide_for(state, now, "state:1")
    second = service.decide_for(state, now + 60, "state:2")
    assert first.action is Action.PUSH and len(sender.sent) == 1
    assert (second.action, second.reasons) == (Action.SILENCE, [Reason.DAILY_CAP])
    row = Ledger(dynamodb, out(stack, "LedgerTableName")).get("u1", second.decision_id)
    assert row is not None and row["action"] == Action.SILENCE.value
