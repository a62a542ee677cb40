"""A hostile producer against `python -m runner serve`, from another process, as a user would run it.

    python -m runner serve --port 4566 --ready-file out/serve.json &
    python -m reliability.hostile_producer --ready-file out/serve.json

It puts records of its own making from several threads with PutRecord, one at a time as app backends
do: valid events of a few users, one record of every poison class (reliability/poison.py), one event
id sent with six bodies, records whose partition key is not their user id, and bytes that are no JSON
at all. Then it waits for the stack to settle and reads storage back: every record it put must be
archived or quarantined exactly once (by its stream position), every dead-letter queue empty, no
later stage quarantining anything (all poison is the contract's to refuse), and every user's state
holding exactly the valid events that hold their event id. Writes out/reliability/hostile.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from reliability.poison import POISON
from shared.adapters.user_state_codec import decode_user_state
from shared.domain.errors import PoisonRecord


@dataclass(frozen=True)
class Planned:
    data: bytes
    partition_key: str
    kind: str
    # The user whose state must hold it, for valid events that hold their id (None for the rest).
    applied_to: str | None = None


@dataclass
class HostileReport:
    records_put: int = 0
    put_errors: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    archived: int = 0
    quarantined: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    unaccounted: int = 0
    archived_or_quarantined_twice: int = 0
    later_stage_quarantined: int = 0
    dead_letter_messages: int = 0
    users_checked: int = 0
    users_with_wrong_event_count: int = 0
    settle_s: float = 0.0

    @property
    def clean(self) -> bool:
        return (
            self.put_errors == self.unaccounted == self.archived_or_quarantined_twice == 0
            and self.later_stage_quarantined == self.dead_letter_messages == 0
            and self.users_with_wrong_event_count == 0
            and self.archived + self.quarantined == self.records_put
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean}


def _event(event_id: str, user: str, at: datetime, **fields: Any) -> bytes:
    body = {"schema_version": 1, "event_id": event_id, "user_id": user, "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return json.dumps({**body, **fields}).encode()


def plan(users: int, events_per_user: int, seed: int, now: datetime) -> list[Planned]:
    """The records to put, in an order each user's own events keep (threads interleave users)."""
    rng = random.Random(seed)
    start = now - timedelta(minutes=30)
    out: list[Planned] = []
    for n in range(users):
        user = f"h{seed}-u{n}"
        profile = {"type": "profile", "consent": True, "timezone": "Europe/Paris", "push_token": f"t-{n}"}
        out.append(Planned(_event(f"h{seed}-{n}-p", user, start, **profile), user, "valid", user))
        for k in range(events_per_user):
            kind = rng.choice(["view", "click", "rate", "add_to_cart"])
            extra: dict[str, Any] = {"value": float(rng.randint(1, 5))} if kind == "rate" else {}
            at = start + timedelta(minutes=k + 1)
            data = _event(f"h{seed}-{n}-{k}", user, at, type=kind, item_id=str(rng.randint(1, 40)), **extra)
            out.append(Planned(data, user, "valid", user))
    # One id, six bodies: the first holds it, five conflicts.
    victim = f"h{seed}-u0"
    for body in range(6):
        data = _event(f"h{seed}-reused", victim, start + timedelta(minutes=1), type="view", item_id=str(100 + body))
        out.append(Planned(data, victim, "valid" if body == 0 else "event_id_conflict", victim if body == 0 else None))
    # A producer retry: the same bytes again.
    out.append(Planned(out[1].data, out[1].partition_key, "duplicate_event_id"))
    # Valid events keyed by something else than their user id: accepted (and counted).
    for k in range(3):
        user = f"h{seed}-u{users - 1}"
        data = _event(f"h{seed}-rekeyed-{k}", user, start + timedelta(minutes=25, seconds=k), type="view", item_id="7")
        out.append(Planned(data, f"other-key-{k}", "valid_other_partition_key", user))
    for name, poison in POISON.items():
        if name in ("event_id_reused_for_another_body", "event_sent_twice"):
            continue  # need victims of their own; covered above
        prefix = f"h{seed}{name[:3]}"
        data = poison.record(prefix, start)
        out.append(Planned(data, f"{prefix}u4", name))
    for k in range(5):
        out.append(Planned(rng.randbytes(rng.randint(1, 300)), f"h{seed}-noise-{k}", "random_bytes"))
    return out


def _clients(info: dict[str, Any]) -> dict[str, Any]:
    kwargs = {
        "endpoint_url": info["endpoint_url"],
        "region_name": info["region"],
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    return {service: boto3.client(service, **kwargs) for service in ("kinesis", "s3", "sqs", "dynamodb")}


def _lines(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            out.extend(json.loads(line) for line in gzip.decompress(body).decode().splitlines() if line)
    return out


Position = tuple[str, str]


def _put_all(info: dict[str, Any], records: list[Planned], threads: int) -> dict[Position, Planned]:
    """PutRecord from ``threads`` threads; each owns whole partition keys, so a user's events keep
    their order (as one app backend would)."""
    stream = info["outputs"]["EventsStreamName"]
    lanes: list[list[Planned]] = [[] for _ in range(threads)]
    for record in records:
        lanes[hash(record.partition_key) % threads].append(record)

    def put_lane(lane: list[Planned]) -> list[tuple[Position, Planned]]:
        kinesis = _clients(info)["kinesis"]  # a client per thread, as boto3 advises
        done = []
        for record in lane:
            response = kinesis.put_record(StreamName=stream, Data=record.data, PartitionKey=record.partition_key)
            done.append(((response["ShardId"], response["SequenceNumber"]), record))
        return done

    positions: dict[Position, Planned] = {}
    with ThreadPoolExecutor(threads) as pool:
        for lane_done in pool.map(put_lane, lanes):
            positions.update(lane_done)
    return positions


def _position(line: dict[str, Any]) -> Position:
    return str(line["shard_id"]), str(line["sequence_number"])


def _settle(s3: Any, bucket: str, positions: set[Position], settle_s: float) -> tuple[list[Any], list[Any], float]:
    """Archive and quarantine lines once every position is in one of them (or the time is up)."""
    started = time.monotonic()
    while True:
        archive, quarantine = _lines(s3, bucket, "archive/"), _lines(s3, bucket, "quarantine/")
        seen = {_position(x) for x in archive + quarantine if "shard_id" in x}
        if positions <= seen or time.monotonic() - started > settle_s:
            break
        time.sleep(1.0)
    time.sleep(3.0)  # a moment more: a later stage still running must not be missed
    archive, quarantine = _lines(s3, bucket, "archive/"), _lines(s3, bucket, "quarantine/")
    return archive, quarantine, time.monotonic() - started


def _count_records(report: HostileReport, mine: set[Position], archive: list[Any], quarantine: list[Any]) -> None:
    ingest_quarantine = [x for x in quarantine if x.get("stage") in (None, "ingest")]
    archived = Counter(_position(x) for x in archive)
    refused = Counter(_position(x) for x in ingest_quarantine)
    report.archived = len(mine & set(archived))
    report.quarantined = len(mine & set(refused))
    report.quarantine_reasons = dict(Counter(str(x["reason"]) for x in ingest_quarantine if _position(x) in mine))
    report.unaccounted = len(mine - set(archived) - set(refused))
    report.archived_or_quarantined_twice = sum(max(0, archived[p] + refused[p] - 1) for p in mine)
    report.later_stage_quarantined = len(quarantine) - len(ingest_quarantine)


def _dead_letters(sqs: Any, outputs: dict[str, str]) -> int:
    urls = [url for name, url in outputs.items() if name.endswith("DeadLetterQueueUrl")]
    attribute = "ApproximateNumberOfMessages"
    return sum(
        int(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[attribute])["Attributes"][attribute]) for url in urls
    )


def _events_held(dynamodb: Any, table: str, user: str) -> int | None:
    """How many events the user's state counts (None when there is no readable state); the counters
    are in the hot item (the one keyed by the user id), so the profile item is not read."""
    raw = dynamodb.get_item(TableName=table, Key={"user_id": {"S": user}}, ConsistentRead=True).get("Item")
    try:
        state = decode_user_state(_plain(raw)) if raw else None
    except PoisonRecord:
        return None
    return None if state is None else sum(state.counters.values())


def run(
    info: dict[str, Any], *, users: int, events_per_user: int, threads: int, seed: int, settle_s: float
) -> HostileReport:
    clients, outputs = _clients(info), info["outputs"]
    records = plan(users, events_per_user, seed, datetime.now(UTC))
    report = HostileReport(records_put=len(records), by_kind=dict(Counter(r.kind for r in records)))
    positions = _put_all(info, records, threads)
    archive, quarantine, waited = _settle(clients["s3"], outputs["ArchiveBucketName"], set(positions), settle_s)
    report.settle_s = round(waited, 1)
    _count_records(report, set(positions), archive, quarantine)
    report.dead_letter_messages = _dead_letters(clients["sqs"], outputs)
    expected = Counter(r.applied_to for r in positions.values() if r.applied_to)
    for user, count in sorted(expected.items()):
        report.users_checked += 1
        held = _events_held(clients["dynamodb"], outputs["UserStateTableName"], user)
        report.users_with_wrong_event_count += held != count
    return report


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return {k: deserializer.deserialize(v) for k, v in item.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ready-file", required=True, help="the ready file `python -m runner serve` wrote")
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--events-per-user", type=int, default=20)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--settle-s", type=float, default=180.0, help="how long to wait for the stack to settle")
    parser.add_argument("--out", default="out/reliability/hostile.json")
    args = parser.parse_args(argv)
    info = json.loads(Path(args.ready_file).read_text())
    print(f"putting records from {args.threads} threads to {info['endpoint_url']} (seed {args.seed}) ...", flush=True)
    report = run(
        info,
        users=args.users,
        events_per_user=args.events_per_user,
        threads=args.threads,
        seed=args.seed,
        settle_s=args.settle_s,
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    print(
        f"{report.records_put} records put: {report.archived} archived, {report.quarantined} quarantined "
        f"({', '.join(f'{k} {v}' for k, v in sorted(report.quarantine_reasons.items()))}); "
        f"unaccounted {report.unaccounted}, twice {report.archived_or_quarantined_twice}, "
        f"dead letters {report.dead_letter_messages}, later-stage quarantine {report.later_stage_quarantined}, "
        f"users with a wrong event count {report.users_with_wrong_event_count} of {report.users_checked} "
        f"(settled in {report.settle_s} s) -> {args.out}"
    )
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
