"""Dollars per million events, from request counts measured in a replay through the local runner.

    python -m bench.cost_model [--users 200] [--events-per-user 25] [--out out/bench/cost.json]

A synthetic replay (profiles, behaviour events over the shipped model's items, feedback on a
share of the pushes) runs through LocalPipeline. Every AWS call any client makes in the process
(the handlers' and the runner's) is counted with a patch on botocore's `_make_api_call`; the
runner's own polling (GetRecords, GetShardIterator, ...) is not billed to the user and is dropped.
Lambda GB-seconds are the runner's per-invocation wall times (x86_64, this machine; Lambda's
arm64 will differ) times each function's MemorySize from template.yaml. DynamoDB capacity units
come from the items' measured sizes. Prices: RATES below, dated, copied into docs/cost.md.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# us-east-1 list prices as published (last known to the author: 2025); check them before use.
RATES_DATE = "2025-01 (us-east-1 list prices; verify at aws.amazon.com/<service>/pricing)"
RATES = {
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_s_arm64": 0.0000133334,
    "dynamodb_wru": 0.625 / 1e6,  # on-demand, after the Nov 2024 price cut
    "dynamodb_rru": 0.125 / 1e6,
    "kinesis_put_payload_unit": 0.014 / 1e6,  # 25 KB units
    "kinesis_shard_hour": 0.015,
    "s3_put": 0.005 / 1000,
    "s3_get": 0.0004 / 1000,
    "sns_publish": 0.50 / 1e6,  # 64 KB chunks; SQS/Lambda deliveries are free, HTTP $0.60/M
    "cloudwatch_logs_gb": 0.50,
    "cloudwatch_alarm_month": 0.10,
    "cloudwatch_dashboard_month": 3.00,  # first 3 dashboards per account are free
    "personalize_tps_hour": 0.0556,  # real-time campaign, first 20K TPS-hours/month
    "personalize_training_hour": 0.24,
    "personalize_ingest_gb": 0.05,
}
HOURS_PER_MONTH = 730
# The runner polls like Lambda's event source mappings; those reads are not billed to the user.
POLLING = {
    ("Kinesis", "GetRecords"),
    ("Kinesis", "GetShardIterator"),
    ("Kinesis", "DescribeStream"),
    ("Kinesis", "ListShards"),
    ("Kinesis", "DescribeStreamSummary"),
    ("DynamoDB Streams", "GetRecords"),
    ("DynamoDB Streams", "GetShardIterator"),
    ("DynamoDB Streams", "DescribeStream"),
    ("DynamoDB Streams", "ListStreams"),
}


@contextmanager
def counting() -> Iterator[list[tuple[str, str, dict[str, Any]]]]:
    from botocore.client import BaseClient

    calls: list[tuple[str, str, dict[str, Any]]] = []
    original = BaseClient._make_api_call

    def counted(self: Any, operation: str, params: dict[str, Any]) -> Any:
        calls.append((self.meta.service_model.service_id, operation, params))
        return original(self, operation, params)

    BaseClient._make_api_call = counted  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        BaseClient._make_api_call = original  # type: ignore[method-assign]


def synthetic_events(users: int, per_user: int, items: list[str], t0: datetime, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for u in range(users):
        uid = f"u{u}"
        events.append(
            {
                "schema_version": 1,
                "event_id": f"p-{uid}",
                "user_id": uid,
                "timestamp": (t0 - timedelta(hours=1)).isoformat(),
                "type": "profile",
                "consent": True,
                "timezone": "UTC",
                "push_token": f"tok-{uid}",
            }
        )
        for k in range(per_user - 1):
            kind = rng.choice(["view", "view", "click", "rate", "add_to_cart", "purchase"])
            event: dict[str, Any] = {
                "schema_version": 1,
                "event_id": f"{uid}-{k}",
                "user_id": uid,
                "timestamp": (t0 - timedelta(seconds=30 * (per_user - k))).isoformat(),
                "type": kind,
                "item_id": rng.choice(items),
            }
            if kind == "rate":
                event["value"] = float(rng.randint(1, 5))
            events.append(event)
    rng.shuffle(events)
    # Per-user order matters (Kinesis keeps it per partition key); restore it after mixing users.
    events.sort(key=lambda e: (e["timestamp"], e["event_id"]))
    return events


def run(users: int, per_user: int) -> dict[str, Any]:
    import boto3

    from runner.clock import SimulatedClock
    from runner.pipeline import LocalPipeline
    from runner.server import create_outbox
    from runner.template import load_template
    from shared.adapters.catalog import Catalog, CatalogItem

    manifest = json.loads((ROOT / "layers" / "model" / "manifest.json").read_text())
    items = [str(i) for i in manifest["item_vocab"] if not str(i).startswith("<")][:400]
    t0 = datetime(2026, 11, 27, 10, tzinfo=UTC)
    events = synthetic_events(users, per_user, items, t0)
    log_dir = Path(tempfile.mkdtemp(prefix="nudge-cost-logs-"))
    template = load_template(ROOT / "template.yaml")
    with (
        counting() as calls,
        LocalPipeline(
            ROOT / "template.yaml",
            stack_name="nudge-cost",
            clock=SimulatedClock(t0),
            env_overrides={"DecideFunction": {"MODEL_DIR": str(ROOT / "layers" / "model")}},
            log_dir=log_dir,
        ) as pipe,
    ):
        dynamodb = boto3.resource("dynamodb", region_name=pipe.region)
        Catalog(dynamodb, pipe.outputs["CatalogTableName"]).put_many(CatalogItem(item_id=i) for i in items)
        outbox = str(create_outbox(pipe, "cost-outbox", [pipe.outputs["PushTopicArn"]])["queue_url"])
        setup = len(calls)
        pipe.put_events(events, partition_key="user_id")
        pipe.pump()
        pushes = pipe.receive_json(outbox)
        before_feedback = len(calls)
        feedback = [
            {
                "schema_version": 1,
                "event_id": f"fb-{outcome}-{p['decision_id']}",
                "user_id": p["user_id"],
                "timestamp": (t0 + timedelta(minutes=50)).isoformat(),
                "type": outcome,
                "decision_id": p["decision_id"],
                "item_id": p["item_id"],
            }
            for p in pushes
            for outcome in ("delivered", "opened")
        ]
        pipe.put_events(feedback, partition_key="user_id")
        pipe.pump()
        pipe.clock.set(t0 + timedelta(hours=1))  # type: ignore[attr-defined]
        pipe.tick(t0 + timedelta(hours=1, minutes=5))  # one due sweep
        pipe.pump()
        billed = [c for c in calls[setup:] if (c[0], c[1]) not in POLLING]
        # Calls made by this script to read results are not part of the pipeline's bill.
        billed = [c for c in billed if not (c[0] == "SQS" and c[2].get("QueueUrl") == outbox)]
        del before_feedback
        sizes = {}
        for output in ("UserStateTableName", "LedgerTableName", "CatalogTableName", "IdempotencyTableName"):
            if output in pipe.outputs:
                scanned = dynamodb.Table(pipe.outputs[output]).scan()["Items"]
                sizes[pipe.outputs[output]] = (
                    sum(len(json.dumps(i, default=str)) for i in scanned) / len(scanned) if scanned else 0.0
                )
        stats = pipe.stats()
    memory = {fid: spec.memory_mb for fid, spec in template.functions.items()}
    lambda_invocations = sum(fs.invocations for fs in stats.functions.values())
    gb_s = sum(sum(fs.wall_s) * memory[fid] / 1024 for fid, fs in stats.functions.items())
    ops = Counter((s, o) for s, o, _ in billed)
    wru = rru = 0.0
    kinesis_units = s3_puts = s3_gets = sns = 0
    for service, op, params in billed:
        if service == "DynamoDB":
            table = params.get("TableName", "")
            size_kb = max(sizes.get(table, 1024.0), 1.0) / 1024
            if op in ("PutItem", "UpdateItem", "DeleteItem"):
                wru += math.ceil(size_kb)
            elif op == "BatchWriteItem":
                for name, requests in params.get("RequestItems", {}).items():
                    wru += len(requests) * math.ceil(max(sizes.get(name, 1024.0), 1.0) / 1024)
            elif op == "TransactWriteItems":
                wru += 2 * len(params.get("TransactItems", []))
            elif op == "GetItem":
                rru += math.ceil(size_kb / 4) * (1.0 if params.get("ConsistentRead") else 0.5)
            elif op == "BatchGetItem":
                for name, request in params.get("RequestItems", {}).items():
                    rru += len(request.get("Keys", [])) * 0.5 * math.ceil(max(sizes.get(name, 1.0), 1.0) / 4096)
            elif op == "Query":
                rru += 0.5 * math.ceil(size_kb / 4)
        elif service == "Kinesis" and op in ("PutRecords", "PutRecord"):
            records = params.get("Records", [params])
            kinesis_units += sum(max(1, math.ceil(len(r.get("Data", b"")) / 25600)) for r in records)
        elif service == "S3" and op == "PutObject":
            s3_puts += 1
        elif service == "S3" and op == "GetObject":
            s3_gets += 1
        elif service == "SNS" and op == "Publish":
            sns += 1
    n_events = len(events) + len(feedback)
    per_million = 1e6 / n_events
    # What the handlers wrote (structured logs + EMF metrics) is what CloudWatch Logs ingests.
    log_gb = sum(f.stat().st_size for f in log_dir.rglob("*") if f.is_file()) / 1e9
    shutil.rmtree(log_dir, ignore_errors=True)
    usage = {
        "lambda_request": lambda_invocations,
        "lambda_gb_s_arm64": gb_s,
        "dynamodb_wru": wru,
        "dynamodb_rru": rru,
        "kinesis_put_payload_unit": kinesis_units,
        "s3_put": s3_puts,
        "s3_get": s3_gets,
        "sns_publish": sns,
        "cloudwatch_logs_gb": log_gb,
    }
    dollars = {k: v * RATES[k] * per_million for k, v in usage.items()}
    variable = sum(dollars.values())
    shards = int(template.parameters.get("ShardCount", "2"))
    alarms = sum(1 for r in template.resources.values() if r.get("Type") == "AWS::CloudWatch::Alarm")
    idle_month = {
        "kinesis_shards": shards * RATES["kinesis_shard_hour"] * HOURS_PER_MONTH,
        "cloudwatch_alarms": alarms * RATES["cloudwatch_alarm_month"],
        "dashboard_if_over_3": RATES["cloudwatch_dashboard_month"],
    }
    decisions = sum(
        len(fs.batch_sizes) and sum(fs.batch_sizes) for fid, fs in stats.functions.items() if fid == "DecideFunction"
    )
    return {
        "rates_date": RATES_DATE,
        "rates": RATES,
        "replay": {"events": n_events, "users": users, "pushes": len(pushes), "decide_records": decisions},
        "calls": {f"{s}.{o}": n for (s, o), n in sorted(ops.items())},
        "usage_per_replay": usage,
        "dollars_per_million_events": {k: round(v, 4) for k, v in dollars.items()},
        "variable_per_million_events": round(variable, 4),
        "idle_per_month": {k: round(v, 2) for k, v in idle_month.items()},
        "personalize": personalize(n_events, decisions),
    }


def personalize(n_events: int, decide_records: int) -> dict[str, Any]:
    """Amazon Personalize for the same traffic: one real-time campaign (minProvisionedTPS >= 1,
    billed every hour even when idle), PutEvents ingestion, a daily one-hour retrain."""
    per_million = 1e6 / n_events
    recommendations_per_million = decide_records * per_million
    # Spread evenly over a day (1M events/day), the campaign needs this many TPS, minimum 1.
    tps = max(1.0, recommendations_per_million / 86400)
    campaign_day = tps * 24 * RATES["personalize_tps_hour"]
    ingest = 1e6 * 500 / 1e9 * RATES["personalize_ingest_gb"]  # ~500 B per event
    training_day = 1 * RATES["personalize_training_hour"]
    return {
        "assumption": "1M events/day, evenly spread; campaign minProvisionedTPS=1; one 1-hour retrain a day",
        "recommendation_requests_per_million_events": round(recommendations_per_million),
        "per_million_events": round(campaign_day + ingest + training_day, 2),
        "idle_per_month": round(1 * HOURS_PER_MONTH * RATES["personalize_tps_hour"], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--events-per-user", type=int, default=25)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "cost.json")
    args = parser.parse_args(argv)
    report = run(args.users, args.events_per_user)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(
        json.dumps(
            {
                k: report[k]
                for k in (
                    "replay",
                    "dollars_per_million_events",
                    "variable_per_million_events",
                    "idle_per_month",
                    "personalize",
                )
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
