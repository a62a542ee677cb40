"""The whole pipeline through the local runner: template -> moto -> the four real handlers."""

from __future__ import annotations

import base64
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from runner.pipeline import LocalPipeline
from runner.server import create_outbox
from shared.adapters.catalog import Catalog
from shared.adapters.dynamo_codec import from_dynamo
from shared.adapters.object_archive import ObjectArchive
from shared.adapters.user_state_codec import states_of
from shared.domain.catalog import CatalogItem
from shared.domain.contract import BehaviourEvent, FeedbackEvent, ProfileEvent
from shared.domain.fold import apply_event
from shared.domain.user_state import UserState
from testkit import traffic
from testkit.queues import receive_json
from tests.events import load_event
from tests.integration.stacks import tiny_model_pipeline

pytestmark = pytest.mark.slow(seconds=10)

ITEMS = [str(i) for i in range(1, 9)]
GENRES = {i: ["Drama"] if int(i) % 2 else ["Comedy"] for i in ITEMS}
T0 = datetime(2026, 11, 27, 10, tzinfo=UTC)  # 10:00 UTC: outside quiet hours in UTC
CAP = 2
# Fields only the pipeline sets (bookkeeping), left out when comparing with the reference fold.
BOOKKEEPING = {
    "version",
    "last_writer",
    "shard_watermarks",
    "due_at",
    "due_shard",
    "asks_decision",
    "decision_asked_at",
    "profile_version",
    "consumed_flushed",
}


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[LocalPipeline]:
    with tiny_model_pipeline(tmp_path, "nudge-it", T0, ITEMS, {"DailyPushCap": CAP}) as pipe:
        pipe.start()
        Catalog(boto3.resource("dynamodb", region_name=pipe.region), pipe.outputs["CatalogTableName"]).put_many(
            CatalogItem(item_id=i, title=f"Film {i}", genres=GENRES[i]) for i in ITEMS
        )
        yield pipe


def subscribe_outbox(pipe: LocalPipeline) -> str:
    return str(create_outbox(pipe, "it-outbox", [pipe.outputs["PushTopicArn"]])["queue_url"])


def profile(user: str) -> ProfileEvent:
    return traffic.profile(user, T0, consent=user != "u5")  # u5 never consented: must never get a push


def behaviour(user: str, n: int) -> list[BehaviourEvent]:
    return traffic.behaviour(user, n, T0, ITEMS)


def bad_payloads() -> list[bytes]:
    names = [
        "kinesis-not-json.json",
        "kinesis-wrong-types.json",
        "kinesis-unknown-type.json",
        "kinesis-bad-base64.json",
    ]
    out = []
    for name in names:
        data = load_event(name)["Records"][0]["kinesis"]["data"]
        try:
            out.append(base64.b64decode(data, validate=True))
        except ValueError:
            out.append(b"\x00not base64 decodable as an event")
    return out


def read_lines(pipe: LocalPipeline, prefix: str) -> list[dict[str, Any]]:
    archive = ObjectArchive(pipe.client("s3"), pipe.outputs["ArchiveBucketName"])
    return [line for key in archive.keys(prefix) for line in archive.read_lines(key)]


def scan(pipe: LocalPipeline, output: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb", region_name=pipe.region).Table(pipe.outputs[output])
    return [from_dynamo(i) for i in table.scan()["Items"]]


def test_events_flow_through_every_function_and_nothing_is_lost(pipeline: LocalPipeline) -> None:
    outbox = subscribe_outbox(pipeline)
    users = ["u1", "u2", "u3", "u4", "u5"]
    good: list[ProfileEvent | BehaviourEvent] = [profile(u) for u in users]
    for u in users:
        good += behaviour(u, 6)
    records: list[Any] = [json.loads(e.model_dump_json(exclude_none=True)) for e in good]
    keys = [e.user_id for e in good]
    bad = bad_payloads()
    records += bad
    keys += ["u1"] * len(bad)
    records.append(records[5])  # a producer retry: same event twice
    keys.append(keys[5])
    key_of = {id(r): k for r, k in zip(records, keys, strict=True)}
    pipeline.put_events(records, partition_key=lambda r: key_of[id(r)])
    assert pipeline.pump().quiescent

    # Every record ends in exactly one place.
    archived = read_lines(pipeline, "archive/")
    quarantined = read_lines(pipeline, "quarantine/")
    dead = [m for m in receive_json(pipeline, "IngestDeadLetterQueue")]
    assert len(records) == len(archived) + len(quarantined) + sum(m["KinesisBatchInfo"]["batchSize"] for m in dead)
    assert {line["event"]["event_id"] for line in archived} == {e.event_id for e in good}
    assert len(quarantined) >= len(bad)

    # The stored state equals a reference fold of the valid input, duplicates applied once.
    reference: dict[str, UserState] = {}
    for event in good:
        state = reference.setdefault(event.user_id, UserState(user_id=event.user_id))
        apply_event(state, event, lambda item: GENRES.get(item, []))
    stored = states_of(scan(pipeline, "UserStateTableName"))
    assert set(stored) == set(reference)
    for user, ref in reference.items():
        held = stored[user]
        assert isinstance(held, UserState)
        got = held.model_dump(exclude=BOOKKEEPING)
        want = ref.model_dump(exclude=BOOKKEEPING)
        assert got.pop("genre_affinity") == pytest.approx(want.pop("genre_affinity"))
        assert got == want, user

    # Pushes obey the policy: consent, the cap, no repeats, one send per decision.
    pushes = receive_json(pipeline, outbox)
    assert pushes, "the tiny model should find something worth pushing"
    assert all(p["user_id"] != "u5" for p in pushes)
    per_user = Counter(p["user_id"] for p in pushes)
    assert max(per_user.values()) <= CAP
    pushed_items: dict[str, list[str]] = defaultdict(list)
    for p in pushes:
        pushed_items[p["user_id"]].append(p["item_id"])
    assert all(len(items) == len(set(items)) for items in pushed_items.values())
    assert len({p["decision_id"] for p in pushes}) == len(pushes)
    ledger = scan(pipeline, "LedgerTableName")
    sent = {row["decision_id"] for row in ledger if row.get("status") == "sent"}
    assert sent == {p["decision_id"] for p in pushes}
    assert any(Counter(r["reasons"][0] for r in ledger if r["action"] == "silence")), "silences are recorded"

    # Feedback reaches the ledger and the user's fatigue counters, once.
    push = pushes[0]
    opened = FeedbackEvent(
        schema_version=1,
        event_id="fb-1",
        user_id=push["user_id"],
        timestamp=T0 + timedelta(minutes=30),
        type="opened",
        decision_id=push["decision_id"],
        item_id=push["item_id"],
    )
    pipeline.clock.set(T0 + timedelta(minutes=31))  # type: ignore[attr-defined]
    body = json.loads(opened.model_dump_json(exclude_none=True))
    pipeline.put_events([body, dict(body)], partition_key="user_id")
    assert pipeline.pump().quiescent
    row = next(r for r in scan(pipeline, "LedgerTableName") if r["decision_id"] == push["decision_id"])
    assert set(row["outcomes"]) == {"opened"}
    user_state = states_of(scan(pipeline, "UserStateTableName"))[push["user_id"]]
    assert isinstance(user_state, UserState) and user_state.pushes_opened == 1
    assert [line["status"] for line in read_lines(pipeline, "feedback/")].count("joined") == 1


def test_sample_events_invoke_each_handler_like_sam_local(pipeline: LocalPipeline) -> None:
    """The files in events/ are valid input for the real handlers (as `sam local invoke -e`)."""
    ingest = pipeline.invoke("IngestFunction", load_event("kinesis-mixed-batch.json"))
    assert ingest.ok and ingest.response == {"batchItemFailures": []}
    features = pipeline.invoke("FeaturesFunction", load_event("kinesis-behaviour.json"))
    assert features.ok and features.response == {"batchItemFailures": []}
    feedback = pipeline.invoke("FeedbackFunction", load_event("kinesis-feedback.json"))
    assert feedback.ok and feedback.response == {"batchItemFailures": []}
    # The catalog function encodes with the tiny encoder (tests/integration/stacks.py).
    catalog = pipeline.invoke("CatalogFunction", load_event("kinesis-catalog.json"))
    assert catalog.ok and catalog.response == {"batchItemFailures": []}
    assert {"1683", "1684", "1500"} <= {row["item_id"] for row in scan(pipeline, "CatalogTableName")}
    sweep = pipeline.invoke("DecideFunction", load_event("schedule-due-sweep.json"))
    assert sweep.ok and sweep.response == {"decided": 0, "reconciled": 0, "deferred": 0}
    change = pipeline.invoke("DecideFunction", load_event("dynamodb-user-state-changed.json"))
    assert change.ok and change.response == {"batchItemFailures": []}
    assert any(row["user_id"] == "u-196" for row in scan(pipeline, "LedgerTableName"))
    erase = pipeline.invoke("EraseFunction", load_event("erase-request.json"))
    assert erase.ok and erase.response["users"] == 1 and erase.response["decisions"] >= 1
    assert not any(row["user_id"] == "u-196" for row in scan(pipeline, "LedgerTableName"))


def test_logs_at_info_carry_no_user_ids_tokens_or_push_contents(pipeline: LocalPipeline) -> None:
    """Handler logs and metrics (what CloudWatch would keep) never name a user or what was pushed."""
    outbox = subscribe_outbox(pipeline)
    users = ["u-secret-1", "u-secret-2"]
    events: list[ProfileEvent | BehaviourEvent] = [profile(u) for u in users]
    for u in users:
        events += behaviour(u, 4)
    pipeline.put_events([json.loads(e.model_dump_json(exclude_none=True)) for e in events], partition_key="user_id")
    pipeline.put_events([b"not json at all"], partition_key=lambda _: "u-secret-1")
    assert pipeline.pump().quiescent
    pushes = receive_json(pipeline, outbox)
    assert pushes
    # Feedback and erase run too, so every function's log is read.
    opened = FeedbackEvent(
        schema_version=1,
        event_id="fb-leak",
        user_id=pushes[0]["user_id"],
        timestamp=T0 + timedelta(minutes=30),
        type="opened",
        decision_id=pushes[0]["decision_id"],
        item_id=pushes[0]["item_id"],
    )
    pipeline.put_events([json.loads(opened.model_dump_json(exclude_none=True))], partition_key="user_id")
    # A catalog event too, so that the catalog function's log is read as well.
    announced = {"schema_version": 1, "event_id": "cat-leak", "type": "catalog", "action": "upsert", "item_id": "9"}
    announced |= {"title": "A new film", "timestamp": (T0 + timedelta(minutes=30)).isoformat()}
    pipeline.put_events([announced], partition_key="item_id")
    assert pipeline.pump().quiescent
    assert pipeline.invoke("EraseFunction", {"user_ids": users[:1]}).ok
    assert pipeline.log_dir is not None
    logs = "".join(p.read_text() for p in pipeline.log_dir.glob("*.log"))
    assert "records quarantined" in logs  # the handlers' own log lines are in there
    assert "users erased" in logs
    assert {p.stem for p in pipeline.log_dir.glob("*.log")} >= set(pipeline.functions)
    secrets = [*users, *(f"tok-{u}" for u in users), *(p["title"] for p in pushes if p.get("title"))]
    leaked = [s for s in secrets if s in logs]
    assert leaked == []
