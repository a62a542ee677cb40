"""Replays the MovieLens replay period through the local pipeline for one push policy.

The training period (earliest 80 % of time) becomes a user-state snapshot and the model;
the replay period goes through the Kinesis stream in compressed time: the simulated clock
advances tick by tick, every tick's events are put on the stream, the event source
mappings are drained, the due-sweep schedule fires, and pushes are collected from a queue
subscribed to the push topic. Each push is answered by a simulated user drawn from the
real log (delivered, then opened+converted if they rate it within 7 days, else dismissed).
"""

from __future__ import annotations

import heapq
import importlib
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from demo.movielens_events import catalog_items, profile_event, rating_events
from demo.outcomes import Push, RatingLog, feedback_for
from runner.clock import SimulatedClock
from runner.pipeline import LocalPipeline
from runner.server import create_outbox
from shared.adapters.catalog import Catalog
from shared.adapters.dynamo_codec import from_dynamo
from shared.adapters.user_state_codec import encode_user_state
from shared.domain.contract import AnyEvent, FeedbackEvent
from shared.domain.fold import apply_event
from shared.domain.user_state import UserState
from training.movielens import Interactions, MovieLens

ROOT = Path(__file__).resolve().parents[1]
OUTBOX = "demo-push-outbox"
BACKFILL_WRITER = "backfill"
# Malformed and duplicate records mixed into the replay so the quarantine path is exercised.
BAD_EVERY = 997
DUPLICATE_EVERY = 1009


@dataclass
class RunResult:
    policy: str
    events_in: int = 0
    bad_injected: int = 0
    duplicates_injected: int = 0
    feedback_in: int = 0
    pushes: list[Push] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    archive_event_ids: list[str] = field(default_factory=list)
    quarantined: Counter[str] = field(default_factory=Counter)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    final_states: dict[str, dict[str, Any]] = field(default_factory=dict)
    wall_s: float = 0.0


def bad_record(n: int, at: datetime) -> bytes:
    """A rotating set of producer mistakes, all of which must end in quarantine."""
    stamp = at.isoformat()
    cases: list[bytes] = [
        b"rating,196,242,3",
        json.dumps({"schema_version": 2, "event_id": f"bad-{n}", "type": "rate"}).encode(),
        json.dumps(
            {"schema_version": 1, "event_id": f"bad-{n}", "user_id": "1", "type": "like", "timestamp": stamp}
        ).encode(),
        json.dumps({"schema_version": 1, "event_id": f"bad-{n}", "type": "view", "timestamp": stamp}).encode(),
        b"\xc3\x28 not utf-8",
    ]
    return cases[n % len(cases)]


def _backfill(pipeline: LocalPipeline, train: Interactions, users: set[str], genres: dict[str, list[str]]) -> int:
    """Fold the training period into user state directly: history the replay starts from."""
    states: dict[str, UserState] = {}
    for event in rating_events(train):
        if event.user_id in users:
            state = states.setdefault(event.user_id, UserState(user_id=event.user_id))
            apply_event(state, event, lambda item: genres.get(item, []))
    table = boto3.resource("dynamodb", region_name=pipeline.region).Table(pipeline.outputs["UserStateTableName"])
    with table.batch_writer() as batch:
        for state in states.values():
            state.version = 1
            # Not "features": decide's stream filter ignores the snapshot load.
            state.last_writer = BACKFILL_WRITER
            batch.put_item(Item=encode_user_state(state))
    return len(states)


def _feedback_event(push: Push, at: int, outcome: str) -> FeedbackEvent:
    return FeedbackEvent(
        schema_version=1,
        event_id=f"fb-{push.decision_id}-{outcome}",
        user_id=push.user_id,
        timestamp=datetime.fromtimestamp(at, UTC),
        type=outcome,
        decision_id=push.decision_id,
        item_id=push.item_id,
    )


def _scan(pipeline: LocalPipeline, table_output: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb", region_name=pipeline.region).Table(pipeline.outputs[table_output])
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = table.scan(**kwargs)
        items.extend(from_dynamo(i) for i in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _collect_storage(pipeline: LocalPipeline, result: RunResult) -> None:
    """What actually landed, read back from S3, SQS and DynamoDB (not from the handlers)."""
    from shared.adapters.object_archive import ObjectArchive

    archive = ObjectArchive(pipeline.client("s3"), pipeline.outputs["ArchiveBucketName"])
    for key in archive.keys("archive/"):
        result.archive_event_ids.extend(line["event"]["event_id"] for line in archive.read_lines(key))
    for key in archive.keys("quarantine/"):
        result.quarantined.update(line["reason"] for line in archive.read_lines(key))
    for output, url in pipeline.outputs.items():
        if output.endswith("DeadLetterQueueUrl"):
            messages = pipeline.receive_json(url)
            batch_infos = (m.get("KinesisBatchInfo") or m.get("DDBStreamBatchInfo") or {} for m in messages)
            result.dead_lettered[output.removesuffix("DeadLetterQueueUrl")] = sum(
                int(info.get("batchSize", 0)) for info in batch_infos
            )
    result.ledger = _scan(pipeline, "LedgerTableName")
    result.final_states = {s["user_id"]: s for s in _scan(pipeline, "UserStateTableName")}


def run_policy(
    policy: str,
    model_dir: Path,
    data: MovieLens,
    train: Interactions,
    replay: Interactions,
    users: set[str],
    out_dir: Path,
    tick_seconds: int = 300,
    progress: Callable[[str, int, int], None] | None = None,
    decide_env: dict[str, str] | None = None,
    parameters: dict[str, str] | None = None,
    baseline: str | None = None,
) -> RunResult:
    result = RunResult(policy=policy)
    started = time.perf_counter()
    events = [e for e in rating_events(replay) if e.user_id in users]
    log = RatingLog(replay)
    genres = {i.item_id: list(i.genres) for i in data.items}
    start_at = events[0].timestamp if events else datetime.now(UTC)
    clock = SimulatedClock(start_at)
    pipeline = LocalPipeline(
        ROOT / "template.yaml",
        stack_name=f"nudge-demo-{policy}",
        clock=clock,
        env_overrides={
            "DecideFunction": {"MODEL_DIR": str(model_dir), "POWERTOOLS_LOG_LEVEL": "WARNING", **(decide_env or {})}
        },
        parameter_overrides=parameters or {},
        log_dir=out_dir / "logs" / policy,
    )
    with pipeline:
        pipeline.start()
        if baseline is not None:
            pipeline.run_inside("DecideFunction", lambda: importlib.import_module("demo.baselines").install(baseline))
        # A tick jumps an hour of simulated time; one sweep per tick is enough for the demo
        # (the missed 5-minute occurrences would only find the same due users again).
        logging.getLogger("runner").setLevel(logging.ERROR)
        for schedule in pipeline.schedules.values():
            schedule.max_catch_up = 1
        Catalog(boto3.resource("dynamodb", region_name=pipeline.region), pipeline.outputs["CatalogTableName"]).put_many(
            catalog_items(data.items)
        )
        _backfill(pipeline, train, users, genres)
        outbox = str(create_outbox(pipeline, OUTBOX, [pipeline.outputs["PushTopicArn"]])["queue_url"])
        by_id = {u.user_id: u for u in data.users}
        # The app reports consent, time zone and token when the user opens it: a second before
        # their first replayed event (not all at once at the start, which would push to users
        # who are not around).
        first_seen: dict[str, datetime] = {}
        for event in events:
            first_seen.setdefault(event.user_id, event.timestamp)
        profiles: list[AnyEvent] = [
            profile_event(by_id[u], first_seen[u] - timedelta(seconds=1))
            for u in sorted(users, key=int)
            if u in by_id and u in first_seen
        ]
        pending: list[tuple[int, int, AnyEvent]] = []  # (time, tiebreak, event) heap
        order = 0
        scheduled: list[AnyEvent] = [*profiles, *events]
        for item in scheduled:
            heapq.heappush(pending, (item.epoch_seconds, order, item))
            order += 1
        total = len(pending)
        done = 0
        tick_end = events[0].epoch_seconds if events else 0
        while pending:
            tick_end += tick_seconds
            batch: list[bytes | dict[str, Any]] = []
            keys: list[str] = []
            while pending and pending[0][0] < tick_end:
                _, _, queued = heapq.heappop(pending)
                encoded = json.loads(queued.model_dump_json(exclude_none=True))
                batch.append(encoded)
                keys.append(queued.user_id)
                if isinstance(queued, FeedbackEvent):
                    result.feedback_in += 1
                else:
                    done += 1
                    if done % BAD_EVERY == 0:
                        batch.append(bad_record(done // BAD_EVERY, queued.timestamp))
                        keys.append(queued.user_id)
                        result.bad_injected += 1
                    if done % DUPLICATE_EVERY == 0:
                        batch.append(encoded)
                        keys.append(queued.user_id)
                        result.duplicates_injected += 1
            if not batch:
                # Nothing happens until the next event: jump the clock (still firing the sweep).
                if pending:
                    tick_end = pending[0][0] - pending[0][0] % tick_seconds
                continue
            clock.set(tick_end)
            _put(pipeline, batch, keys)
            result.events_in += len(batch)
            pipeline.pump()
            pipeline.tick(tick_end)
            pipeline.pump()
            for push in _drain_pushes(pipeline, outbox):
                result.pushes.append(push)
                for at, outcome in feedback_for(push, log):
                    heapq.heappush(pending, (at, order, _feedback_event(push, at, outcome)))
                    order += 1
                    total += 1
            if progress:
                progress(policy, done + result.feedback_in, total)
        _collect_storage(pipeline, result)
        result.stats = pipeline.stats().as_dict()
    result.wall_s = time.perf_counter() - started
    return result


def _put(pipeline: LocalPipeline, batch: Sequence[bytes | dict[str, Any]], keys: Sequence[str]) -> None:
    key_of = dict(zip(map(id, batch), keys, strict=True))
    pipeline.put_events(list(batch), partition_key=lambda e: key_of[id(e)])


def _drain_pushes(pipeline: LocalPipeline, outbox: str) -> Iterable[Push]:
    for body in pipeline.receive_json(outbox):
        yield Push(
            decision_id=str(body["decision_id"]),
            user_id=str(body["user_id"]),
            item_id=str(body["item_id"]),
            at=int(body["decided_at"]),
        )


_last_shown: dict[str, int] = {}
PROGRESS_STEP = 5


def progress_bar(label: str, done: int, total: int) -> None:
    """A bar line on stderr every 5 %: readable when two policies replay side by side."""
    percent = min(100, 100 * done // total) if total else 100
    step = percent - percent % PROGRESS_STEP
    if _last_shown.get(label, -1) >= step:
        return
    _last_shown[label] = step
    width = 30
    filled = width * step // 100
    sys.stderr.write(f"  {label:<11} [{'#' * filled}{'.' * (width - filled)}] {step:3d}% ({done}/{total} events)\n")
    sys.stderr.flush()
