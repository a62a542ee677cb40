"""Handler cost per record with AWS calls taken out, and DynamoDB writes per event.

    .venv/bin/python -m bench.bench_handlers [--data ../shared/datasets/ml-100k] [--users 943]

* ingest and features: the real handler functions (Powertools batch processing, parsing,
  validation, folding, serialisation) with in-memory adapters in place of S3 and DynamoDB,
  CPU time (time.process_time) per record over 100-record Kinesis batches;
* DynamoDB write requests per event: the ML-100k replay period through FeaturesService in
  Kinesis-shaped batches (2 shards by user hash, up to 100 records per batch);
* decide: DecideService.decide_for per user with the shipped ONNX model and in-memory adapters.
Goal (issue 2): ingest and features <= 50 us per record; <= 1 user-state write per user per batch.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.update(
    {
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "NudgeBench",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
    }
)

from demo.movielens_events import catalog_items, rating_events  # noqa: E402
from shared.domain.admission import Delivered, StreamPosition  # noqa: E402
from shared.domain.policy import PolicyConfig, RulesPolicy  # noqa: E402
from shared.model import OnnxRecommender  # noqa: E402
from shared.plumbing import bootstrap  # noqa: E402
from shared.services.decide import DecideConfig, DecideService  # noqa: E402
from shared.services.features import FeaturesService  # noqa: E402
from shared.services.ingest import IngestService  # noqa: E402
from tests.support.fakes import (  # noqa: E402
    InMemoryArchive,
    InMemoryCatalog,
    InMemoryEventIds,
    InMemoryLedger,
    InMemoryUserStates,
    RecordingSender,
)
from training.movielens import load_movielens, resolve_data_dir, time_split  # noqa: E402

BATCH = 100
SHARDS = 2


class Context:
    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def load_handler(name: str, env: dict[str, str]) -> ModuleType:
    os.environ.update(env)
    spec = importlib.util.spec_from_file_location(f"bench_{name}_app", ROOT / "functions" / name / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kinesis_event(payloads: list[bytes], arrival: float) -> dict[str, Any]:
    records = []
    for n, data in enumerate(payloads):
        seq = f"{49590000000000000000 + n}"
        records.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "p",
                    "sequenceNumber": seq,
                    "data": base64.b64encode(data).decode(),
                    "approximateArrivalTimestamp": arrival,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"shardId-000000000000:{seq}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/bench",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/bench",
            }
        )
    return {"Records": records}


def per_record_us(run: Callable[[], object], records: int, repeats: int) -> tuple[float, float]:
    """(median, p99) CPU microseconds per record over ``repeats`` invocations."""
    samples = []
    sink = io.StringIO()
    for _ in range(repeats):
        with contextlib.redirect_stdout(sink):
            began = time.process_time_ns()
            run()
            samples.append((time.process_time_ns() - began) / 1000 / records)
        sink.seek(0)
        sink.truncate()
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def shard_of(user_id: str) -> int:
    return int(hashlib.md5(user_id.encode()).hexdigest(), 16) % SHARDS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--model-dir", default=str(ROOT / "layers" / "model"))
    args = parser.parse_args()
    data = load_movielens(resolve_data_dir(args.data))
    _, replay = time_split(data.interactions, 0.8)
    events = list(rating_events(replay))
    # Every sampled record must pass validation, or the bench would time the cheap quarantine path.
    assert events[BATCH].epoch_seconds - events[0].epoch_seconds < 7 * 24 * 3600
    catalog = InMemoryCatalog(catalog_items(data.items))
    arrival = events[BATCH].timestamp.timestamp()
    sample = [json.dumps(json.loads(e.model_dump_json(exclude_none=True))).encode() for e in events[:BATCH]]
    event = kinesis_event(sample, arrival)
    context = Context()

    ingest = load_handler("ingest", {"POWERTOOLS_SERVICE_NAME": "ingest", "ARCHIVE_BUCKET": "bench"})
    ingest_service = IngestService(InMemoryArchive(), InMemoryEventIds(), "archive/", "quarantine/")
    bootstrap.ingest_service = lambda: ingest_service  # type: ignore[assignment]
    ingest_us = per_record_us(lambda: ingest.lambda_handler(event, context), BATCH, args.repeats)

    features = load_handler("features", {"POWERTOOLS_SERVICE_NAME": "features"})

    def fresh_features() -> None:
        service = FeaturesService(InMemoryUserStates(), catalog, InMemoryEventIds())
        bootstrap.features_service = lambda: service  # type: ignore[assignment]
        features.lambda_handler(event, context)

    features_us = per_record_us(fresh_features, BATCH, args.repeats)

    # Writes per event over the whole replay period, batched as a Kinesis mapping would.
    store = InMemoryUserStates()
    service = FeaturesService(store, catalog, InMemoryEventIds())
    by_shard: dict[int, list[Any]] = {s: [] for s in range(SHARDS)}
    for n, e in enumerate(events):
        by_shard[shard_of(e.user_id)].append(Delivered(e, StreamPosition(f"shard-{shard_of(e.user_id)}", str(n)), n))
    batches = users_per_batch = 0
    for items in by_shard.values():
        for start in range(0, len(items), BATCH):
            chunk = items[start : start + BATCH]
            service.apply(chunk)
            batches += 1
            users_per_batch += len({p.event.user_id for p in chunk})

    # Decide per user with the shipped model, AWS taken out.
    recommender = OnnxRecommender.from_dir(args.model_dir)
    decide = DecideService(
        store,  # type: ignore[arg-type]
        catalog,
        InMemoryLedger(),  # type: ignore[arg-type]
        recommender,
        RecordingSender(),
        RulesPolicy(PolicyConfig(quiet_hours_start=0, quiet_hours_end=0)),
        DecideConfig(),
    )
    states = [s for s in (store.get(u) for u in list(store.items)[:300]) if s is not None]
    for s in states:
        s.consent, s.push_token = True, "t"
    samples = []
    for n, s in enumerate(states):
        began = time.process_time_ns()
        decide.decide_for(s, int(datetime(1998, 4, 1, tzinfo=UTC).timestamp()) + n, f"bench:{n}")
        samples.append((time.process_time_ns() - began) / 1e6)
    samples.sort()

    print(f"{'measure':<44} {'median':>10} {'p99':>10}")
    print(f"{'ingest handler CPU us/record (no AWS)':<44} {ingest_us[0]:>10.1f} {ingest_us[1]:>10.1f}")
    print(f"{'features handler CPU us/record (no AWS)':<44} {features_us[0]:>10.1f} {features_us[1]:>10.1f}")
    p99 = samples[min(len(samples) - 1, int(0.99 * len(samples)))]
    print(f"{'decide CPU ms/user (model + policy, no AWS)':<44} {statistics.median(samples):>10.3f} {p99:>10.3f}")
    print(
        f"user-state writes: {store.writes} for {len(events)} events in {batches} batches of <= {BATCH} "
        f"({store.writes / len(events):.3f} writes/event, {store.writes / users_per_batch:.3f} writes per user "
        f"per batch, {users_per_batch / batches:.1f} users per batch)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
