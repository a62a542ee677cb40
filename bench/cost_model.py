"""Dollars per million events, from request counts measured in a replay through the local runner.

    python -m bench.cost_model [--users 12] [--days 2] [--events-per-day 30] [--out out/bench/cost.json]

Traffic: each user sends a profile event, then on every simulated day one or two app sessions at
a random local daytime hour (bursts of behaviour events 20-90 s apart over the shipped model's
items). Time runs hour by hour on a simulated clock; every hour's events go on the stream, the
pipeline drains, the due sweep fires on its schedule, and each push is answered with feedback the
way the MovieLens demo's users answer (delivered, then opened and converted for 18 %, dismissed
for the rest). The push rate is whatever the policy decides and is reported, together with the
MovieLens demo's own (82 pushes per 2,584 events, 32 per 1,000). A second replay of the same
events with pushing turned off (daily cap 0) gives the cost without pushes, so the result is also
given as a line: dollars per million behaviour events = base + dollars per push x pushes.
Every figure is priced at several traffic levels (RATES_PER_S), because what is paid per
invocation is shared by the records of a batch, and batches fill with traffic (see at_rate).

Every AWS call any client makes in the process (handlers' and runner's) is counted with a patch on
botocore's `_make_api_call`; the runner's own polling (GetRecords, GetShardIterator, ...) is not
billed to the user and is dropped, and so are the calls of the time-driven due sweep, which are
priced under idle. DynamoDB capacity is computed per request from the items involved: a write
costs 1 WRU per started KB of the larger of the item before and after (conditional failures
included), a strongly consistent read 1 RRU per started 4 KB (eventually consistent half that),
a Query the items it reads before its filter. Lambda GB-seconds are the runner's per-invocation
wall times (x86_64, a shared machine, moto in-process; Lambda's arm64 will differ) times each
function's MemorySize from template.yaml. Prices: RATES below, dated, copied into docs/cost.md.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
    "kinesis_extended_retention_shard_hour": 0.020,  # retention above 24 h, up to 7 days (provisioned)
    "kinesis_on_demand_stream_hour": 0.04,
    "kinesis_on_demand_ingest_gb": 0.08,
    "kinesis_on_demand_retrieval_gb": 0.04,
    "kms_customer_key_month": 1.00,  # AWS managed keys (alias/aws/...) have no monthly fee
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
# Traffic levels the result is priced at (events per second, all users): ~86K, 1M, 8.6M, 86M a day.
RATES_PER_S = (1.0, 11.574, 100.0, 1000.0)
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


@dataclass
class Call:
    service: str
    operation: str
    params: dict[str, Any]
    wru: float = 0.0
    rru: float = 0.0
    function: str = ""  # the function whose invocation made the call ("" for the producer and the runner)


# The function being invoked right now (set around each container invocation by replay()).
CURRENT = {"function": ""}
# Wall seconds each function spent inside AWS calls here (in-process moto plus this script's metering).
IN_CALLS: defaultdict[str, float] = defaultdict(float)
# Assumed in-region latency of one call in Lambda (p50-ish, seconds): billed duration replaces the
# time moto took with these. Assumptions, not measurements.
LATENCY_S = {
    ("DynamoDB", "BatchGetItem"): 0.008,
    ("DynamoDB", "BatchWriteItem"): 0.010,
    ("DynamoDB", "Query"): 0.006,
    "DynamoDB": 0.005,
    "S3": 0.025,
    "SNS": 0.015,
    "Kinesis": 0.010,
}


def latency_of(call: Call) -> float:
    return LATENCY_S.get((call.service, call.operation), LATENCY_S.get(call.service, 0.010))


def attribute_size(value: dict[str, Any]) -> int:
    """DynamoDB's size of one typed value (docs: "Item sizes and formats"), in bytes."""
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        digits = v.lstrip("-").replace(".", "").lstrip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(x.encode()) for x in v)
    if kind == "NS":
        return sum(attribute_size({"N": x}) for x in v)
    if kind == "BS":
        return sum(len(x) for x in v)
    if kind == "L":
        return 3 + sum(1 + attribute_size(x) for x in v)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_size(x) for k, x in v.items())
    raise ValueError(kind)


def item_size(item: dict[str, Any] | None) -> int:
    return sum(len(k.encode()) + attribute_size(v) for k, v in (item or {}).items())


TYPE_TAGS = {"S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "L", "M"}


def typed(item: dict[str, Any] | None) -> dict[str, Any]:
    """Low-level (typed) attributes, whether a resource (plain values) or a client (typed) made the call."""
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()

    def is_typed(v: Any) -> bool:
        return isinstance(v, dict) and len(v) == 1 and next(iter(v)) in TYPE_TAGS

    return {k: v if is_typed(v) else serializer.serialize(v) for k, v in (item or {}).items()}


class DynamoMeter:
    """Capacity units of each DynamoDB request, from the items it touches (read with uncounted calls
    through a plain client of its own)."""

    def __init__(self, call: Any) -> None:
        self._call = call  # the unpatched _make_api_call
        self._keys: dict[str, list[str]] = {}
        self._clients: dict[str, Any] = {}

    def _client(self, client: Any) -> Any:
        import boto3

        region = client.meta.region_name
        if region not in self._clients:
            self._clients[region] = boto3.client("dynamodb", region_name=region)
        return self._clients[region]

    def key_of(self, client: Any, table: str, item: dict[str, Any]) -> dict[str, Any]:
        if table not in self._keys:
            described = self._call(self._client(client), "DescribeTable", {"TableName": table})
            self._keys[table] = [k["AttributeName"] for k in described["Table"]["KeySchema"]]
        return {k: item[k] for k in self._keys[table]}

    def get(self, client: Any, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self._call(
            self._client(client), "GetItem", {"TableName": table, "Key": typed(key), "ConsistentRead": True}
        ).get("Item")
        return item

    def measure(self, client: Any, operation: str, params: dict[str, Any], run: Any) -> tuple[Any, float, float]:
        """(response, WRU, RRU) of one request; `run()` makes it."""
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            return self._single_write(client, params, run)
        if operation == "BatchWriteItem":
            wru = self._batch_write_units(client, params)
            return run(), float(wru), 0.0
        if operation == "TransactWriteItems":
            response = run()
            return response, 2.0 * len(params.get("TransactItems", [])), 0.0
        response = run()
        return response, 0.0, self._read_units(client, operation, params, response)

    def _single_write(self, client: Any, params: dict[str, Any], run: Any) -> tuple[Any, float, float]:
        table = params.get("TableName", "")
        key = params["Key"] if "Key" in params else self.key_of(client, table, params["Item"])
        before = item_size(self.get(client, table, key))
        try:
            response = run()
        finally:
            after = item_size(self.get(client, table, key))
            wru = max(1, math.ceil(max(before, after, item_size(typed(params.get("Item")))) / 1024))
        return response, float(wru), 0.0

    def _batch_write_units(self, client: Any, params: dict[str, Any]) -> int:
        wru = 0
        for name, requests in params.get("RequestItems", {}).items():
            for request in requests:
                put = request.get("PutRequest", {}).get("Item")
                key = request["DeleteRequest"]["Key"] if put is None else self.key_of(client, name, put)
                wru += max(1, math.ceil(max(item_size(typed(put)), item_size(self.get(client, name, key))) / 1024))
        return wru

    def _read_units(self, client: Any, operation: str, params: dict[str, Any], response: Any) -> float:
        factor = 1.0 if params.get("ConsistentRead") else 0.5
        if operation == "GetItem":
            return factor * max(1, math.ceil(item_size(typed(response.get("Item"))) / 4096))
        if operation == "BatchGetItem":
            rru = 0.0
            for name, items in response.get("Responses", {}).items():
                consistent = params["RequestItems"].get(name, {}).get("ConsistentRead")
                rru += sum((1.0 if consistent else 0.5) * max(1, math.ceil(item_size(typed(i)) / 4096)) for i in items)
            return rru
        if operation in ("Query", "Scan"):
            read = self._call(self._client(client), operation, unfiltered(params)).get("Items", [])
            return factor * max(1, math.ceil(sum(item_size(i) for i in read) / 4096))
        return 0.0


def unfiltered(params: dict[str, Any]) -> dict[str, Any]:
    """A Query or Scan without its filter: read units count what the key condition reads, before any
    filter drops items."""
    out = {k: v for k, v in params.items() if k not in ("FilterExpression", "ProjectionExpression")}
    names = out.get("ExpressionAttributeNames", {})
    values = out.get("ExpressionAttributeValues", {})
    expressions = " ".join(str(out.get(k, "")) for k in ("KeyConditionExpression",))
    out["ExpressionAttributeNames"] = {k: v for k, v in names.items() if k in expressions}
    out["ExpressionAttributeValues"] = {k: v for k, v in values.items() if k in expressions}
    for empty in ("ExpressionAttributeNames", "ExpressionAttributeValues"):
        if not out[empty]:
            del out[empty]
    for k in ("ExpressionAttributeValues", "ExclusiveStartKey"):
        if k in out:
            out[k] = typed(out[k])
    return out


@contextmanager
def counting() -> Iterator[list[Call]]:
    from botocore.client import BaseClient

    calls: list[Call] = []
    original = BaseClient._make_api_call
    meter = DynamoMeter(original)

    def counted(self: Any, operation: str, params: dict[str, Any]) -> Any:
        started = time.perf_counter()
        service = self.meta.service_model.service_id
        call = Call(service, operation, params, function=CURRENT["function"])
        calls.append(call)
        try:
            if service == "DynamoDB":
                response, call.wru, call.rru = meter.measure(
                    self, operation, params, lambda: original(self, operation, params)
                )
                return response
            return original(self, operation, params)
        finally:
            IN_CALLS[call.function] += time.perf_counter() - started

    setattr(BaseClient, "_make_api_call", counted)  # noqa: B010 (mypy forbids assigning a method)
    try:
        yield calls
    finally:
        setattr(BaseClient, "_make_api_call", original)  # noqa: B010


TIMEZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]
KINDS = ["view", "view", "view", "click", "click", "rate", "add_to_cart", "purchase"]


def synthetic_events(
    users: int, days: int, per_day: int, items: list[str], t0: datetime, seed: int = 7
) -> list[dict[str, Any]]:
    """A profile per user, then each day one or two sessions at a local daytime hour; UUID event ids."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for u in range(users):
        uid = f"u{u}"
        zone = TIMEZONES[u % len(TIMEZONES)]
        events.append(
            {
                "schema_version": 1,
                "event_id": f"p-{uid}",
                "user_id": uid,
                "timestamp": t0.isoformat(),
                "type": "profile",
                "consent": True,
                "timezone": zone,
                "push_token": f"tok-{uid}",
            }
        )
        favourites = rng.sample(items, 40)
        k = 0
        for day in range(days):
            sessions = rng.choice([1, 1, 2])
            for s in range(sessions):
                local_start = datetime.combine(
                    (t0 + timedelta(days=day)).date(), datetime.min.time(), tzinfo=_zone(zone)
                ) + timedelta(hours=rng.randint(9, 19) if s == 0 else rng.randint(12, 20), minutes=rng.randint(0, 59))
                at = max(local_start.astimezone(UTC), t0 + timedelta(minutes=1))
                for _ in range(max(1, per_day // sessions)):
                    at += timedelta(seconds=rng.randint(20, 90))
                    kind = rng.choice(KINDS)
                    event: dict[str, Any] = {
                        "schema_version": 1,
                        # What producers send: a UUID (the item and the stream record grow with it).
                        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"nudge-cost/{uid}/{k}")),
                        "user_id": uid,
                        "timestamp": at.isoformat(),
                        "type": kind,
                        "item_id": rng.choice(favourites if rng.random() < 0.7 else items),
                    }
                    if kind == "rate":
                        event["value"] = float(rng.randint(1, 5))
                    events.append(event)
                    k += 1
    events.sort(key=lambda e: (e["timestamp"], e["event_id"]))
    return events


def _tagged(function_id: str, invoke: Any) -> Any:
    def tagged(event: Any, *, records: int = 0) -> Any:
        # Scheduled invocations (no records) are the due sweep, priced under idle.
        CURRENT["function"] = function_id if records else f"{function_id}:schedule"
        try:
            return invoke(event, records=records)
        finally:
            CURRENT["function"] = ""

    return tagged


def rounds(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The n-th round holds each user's n-th event (in time order)."""
    out: list[list[dict[str, Any]]] = []
    seen: Counter[str] = Counter()
    for event in events:
        n = seen[event["user_id"]]
        seen[event["user_id"]] += 1
        if n == len(out):
            out.append([])
        out[n].append(event)
    return out


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def feedback_for(push: dict[str, Any], at: datetime, rng: random.Random) -> list[dict[str, Any]]:
    """As the MovieLens demo's users answered: delivered, then opened+converted (18 %) or dismissed."""
    outcomes = ["delivered"] + (["opened", "converted"] if rng.random() < 0.18 else ["dismissed"])
    return [
        {
            "schema_version": 1,
            "event_id": f"fb-{outcome}-{push['decision_id']}",
            "user_id": push["user_id"],
            "timestamp": (at + timedelta(seconds=30 * (n + 1))).isoformat(),
            "type": outcome,
            "decision_id": push["decision_id"],
            "item_id": push["item_id"],
        }
        for n, outcome in enumerate(outcomes)
    ]


@dataclass
class Replay:
    events: int = 0
    feedback: int = 0
    pushes: int = 0
    decide_records: int = 0
    sweeps: int = 0
    calls: list[Call] = field(default_factory=list)
    sweep_calls: list[Call] = field(default_factory=list)
    gb_s: float = 0.0
    sweep_gb_s: float = 0.0
    invocations: int = 0
    log_gb: float = 0.0
    sizes: dict[str, float] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    lambda_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    functions: dict[str, FunctionUse] = field(default_factory=dict)


@dataclass
class FunctionUse:
    """One function's stream invocations in a replay, split into what scales per invocation and per record."""

    memory_mb: int
    batch_size: int
    window_s: float
    invocations: int
    records: int
    wall_per_invocation_s: float  # intercept of wall = a + b x records
    wall_per_record_s: float
    # Log bytes per invocation, over every invocation in the log file: decide's file also holds the
    # due sweep's (priced under idle), which must not be spread over the stream invocations.
    log_bytes_per_invocation: float


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares wall = a + b x records (a, b >= 0)."""
    n = len(points)
    if n < 2:
        return (points[0][1], 0.0) if points else (0.0, 0.0)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0
    b = max(0.0, b)
    return max(0.0, my - b * mx), b


def replay(
    users: int, days: int, per_day: int, pushing: bool = True, parameters: dict[str, str] | None = None
) -> Replay:
    from runner.clock import SimulatedClock
    from runner.pipeline import LocalPipeline

    manifest = json.loads((ROOT / "layers" / "model" / "manifest.json").read_text())
    items = [str(i) for i in manifest["item_vocab"] if not str(i).startswith("<")][:400]
    t0 = datetime(2026, 11, 23, 0, tzinfo=UTC)  # a Monday
    events = synthetic_events(users, days, per_day, items, t0)
    rng = random.Random(11)
    log_dir = Path(tempfile.mkdtemp(prefix="nudge-cost-logs-"))
    overrides = {"MODEL_DIR": str(ROOT / "layers" / "model")}
    if not pushing:
        overrides["DAILY_PUSH_CAP"] = "0"
    result = Replay(events=len(events))
    IN_CALLS.clear()
    with (
        counting() as calls,
        LocalPipeline(
            ROOT / "template.yaml",
            stack_name="nudge-cost",
            clock=SimulatedClock(t0 - timedelta(minutes=1)),
            env_overrides={"DecideFunction": overrides},
            parameter_overrides=parameters or {},
            log_dir=log_dir,
        ) as pipe,
    ):
        memory = {fid: spec.memory_mb for fid, spec in pipe.functions.items()}
        sources = {
            fid: next((e for e in spec.events if e.kind != "schedule"), None) for fid, spec in pipe.functions.items()
        }
        result.tables = {v: k.removesuffix("TableName") for k, v in pipe.outputs.items() if k.endswith("TableName")}
        for fid, container in pipe.containers.items():
            container.invoke = _tagged(fid, container.invoke)  # type: ignore[method-assign]
        dynamodb, outbox = _stock(pipe, items)
        del calls[:]
        decide = pipe.containers["DecideFunction"].stats
        billed: list[Call] = []
        hours = _hours(events, t0, t0 + timedelta(days=days, hours=12))
        for hour, due in hours:
            billed += _one_hour(pipe, calls, due, hour, outbox, result, rng)
        _settle(pipe, dynamodb, billed, outbox, result)
        stats = pipe.stats()
    _bill(result, stats, decide, memory, sources, log_dir, billed)
    shutil.rmtree(log_dir, ignore_errors=True)
    return result


def _bill(
    result: Replay,
    stats: Any,
    decide: Any,
    memory: dict[str, int],
    sources: dict[str, Any],
    log_dir: Path,
    billed: list[Call],
) -> None:
    """Invocations, log volume, the sweep's GB-seconds and each function's billed time."""
    result.invocations = sum(fs.invocations for fs in stats.functions.values()) - result.sweeps
    result.decide_records = sum(stats.functions["DecideFunction"].batch_sizes)
    result.log_gb = sum(f.stat().st_size for f in log_dir.rglob("*") if f.is_file()) / 1e9
    all_calls = billed + result.sweep_calls
    sweep_id = "DecideFunction:schedule"
    sweep_wall = sum(w for n, w in zip(decide.batch_sizes, decide.wall_s, strict=True) if n == 0)
    sweep_own = max(0.0, sweep_wall - IN_CALLS[sweep_id]) + sum(
        latency_of(c) for c in all_calls if c.function == sweep_id
    )
    result.sweep_gb_s = sweep_own * memory["DecideFunction"] / 1024
    for fid, fs in stats.functions.items():
        _bill_function(result, fid, fs, memory[fid], sources[fid], log_dir, all_calls)


def _settle(pipe: Any, dynamodb: Any, billed: list[Call], outbox: str, result: Replay) -> None:
    """The pipeline's billed calls (without this script's own reads) and the stored item sizes."""
    # Calls made by this script to read results are not part of the pipeline's bill.
    result.calls = [
        c
        for c in billed
        if (c.service, c.operation) not in POLLING and not (c.service == "SQS" and c.params.get("QueueUrl") == outbox)
    ]
    for output in ("UserStateTableName", "LedgerTableName", "IdempotencyTableName", "PushCountersTableName"):
        scanned = dynamodb.Table(pipe.outputs[output]).scan()["Items"]
        result.sizes[output] = round(sum(len(json.dumps(i, default=str)) for i in scanned) / max(1, len(scanned)))


def _stock(pipe: Any, items: list[str]) -> tuple[Any, str]:
    """The catalogue loaded and an outbox queue on the push topic: (the DynamoDB resource, the queue URL)."""
    import boto3

    from runner.server import create_outbox
    from shared.adapters.catalog import Catalog
    from shared.domain.catalog import CatalogItem

    dynamodb = boto3.resource("dynamodb", region_name=pipe.region)
    Catalog(dynamodb, pipe.outputs["CatalogTableName"]).put_many(CatalogItem(item_id=i) for i in items)
    outbox = str(create_outbox(pipe, "cost-outbox", [pipe.outputs["PushTopicArn"]])["queue_url"])
    return dynamodb, outbox


def _hours(
    events: list[dict[str, Any]], t0: datetime, end: datetime
) -> Iterator[tuple[datetime, list[dict[str, Any]]]]:
    """Each simulated hour after ``t0`` up to ``end``, with the events before its end not yet given."""
    position = 0
    hour = t0
    while hour < end:
        hour += timedelta(hours=1)
        due = []
        while position < len(events) and datetime.fromisoformat(events[position]["timestamp"]) < hour:
            due.append(events[position])
            position += 1
        yield hour, due


def _one_hour(
    pipe: Any,
    calls: list[Call],
    due: list[dict[str, Any]],
    hour: datetime,
    outbox: str,
    result: Replay,
    rng: random.Random,
) -> list[Call]:
    """One hour of traffic, the sweep and the feedback to its pushes; returns the calls billed as per-event work."""
    billed: list[Call] = []
    pipe.clock.set(hour)
    # Lambda's 1-second batching window rarely holds two events of one user (they are 20-90 s
    # apart), so each user's events are put and drained one round at a time: every event is
    # its own user-state change and decision, while a batch still carries many users.
    for batch in rounds(due):
        pipe.put_events(batch, partition_key="user_id")
        pipe.pump()
    billed += calls
    del calls[:]
    # The sweep is time-driven (every 5 minutes, traffic or not): priced under idle, except
    # the decisions it makes, which are per-event work.
    result.sweeps += pipe.tick(hour)
    pipe.pump()
    result.sweep_calls += [c for c in calls if c.params.get("IndexName") == "due-index"]
    billed += [c for c in calls if c.params.get("IndexName") != "due-index"]
    del calls[:]
    pushes = pipe.receive_json(outbox)
    result.pushes += len(pushes)
    feedback = [f for p in pushes for f in feedback_for(p, hour, rng)]
    if feedback:
        pipe.clock.set(hour + timedelta(minutes=5))
        for batch in rounds(feedback):
            pipe.put_events(batch, partition_key="user_id")
            pipe.pump()
        result.feedback += len(feedback)
    billed += calls
    del calls[:]
    return billed


def _bill_function(
    result: Replay,
    fid: str,
    fs: Any,
    memory_mb: int,
    source: Any,
    log_dir: Path,
    all_calls: list[Call],
) -> None:
    """One function's billed seconds and its per-invocation / per-record cost line."""
    points = [(n, w) for n, w in zip(fs.batch_sizes, fs.wall_s, strict=True) if n > 0]
    a, b = fit(points)
    # Lambda bills wall time: the handler's own time plus the calls' real latency, not moto's time.
    wall = sum(w for _, w in points)
    own = max(0.0, wall - IN_CALLS[fid]) + sum(latency_of(c) for c in all_calls if c.function == fid)
    a, b = (a * own / wall, b * own / wall) if wall else (a, b)
    result.gb_s += own * memory_mb / 1024
    result.lambda_seconds[fid] = {
        "wall": round(wall, 2),
        "in_calls": round(IN_CALLS[fid], 2),
        "billed": round(own, 2),
    }
    logs = sum(f.stat().st_size for f in log_dir.rglob(f"{fid}*") if f.is_file())
    result.functions[fid] = FunctionUse(
        memory_mb=memory_mb,
        batch_size=source.batch_size if source else 100,
        window_s=source.batching_window_s if source else 0.0,
        invocations=len(points),
        records=sum(n for n, _ in points),
        wall_per_invocation_s=a,
        wall_per_record_s=b,
        log_bytes_per_invocation=logs / max(1, len(fs.batch_sizes)),
    )


def usage_of(r: Replay) -> dict[str, float]:
    wru = sum(c.wru for c in r.calls)
    rru = sum(c.rru for c in r.calls)
    kinesis_units = s3_puts = s3_gets = sns = 0
    for c in r.calls:
        if c.service == "Kinesis" and c.operation in ("PutRecords", "PutRecord"):
            records = c.params.get("Records", [c.params])
            kinesis_units += sum(max(1, math.ceil(len(x.get("Data", b"")) / 25600)) for x in records)
        elif c.service == "S3" and c.operation == "PutObject":
            s3_puts += 1
        elif c.service == "S3" and c.operation == "GetObject":
            s3_gets += 1
        elif c.service == "SNS" and c.operation == "Publish":
            sns += 1
    return {
        "lambda_request": r.invocations,
        "lambda_gb_s_arm64": r.gb_s,
        "dynamodb_wru": wru,
        "dynamodb_rru": rru,
        "kinesis_put_payload_unit": kinesis_units,
        "s3_put": s3_puts,
        "s3_get": s3_gets,
        "sns_publish": sns,
        "cloudwatch_logs_gb": r.log_gb,
    }


def priced(r: Replay) -> dict[str, Any]:
    n_events = r.events + r.feedback
    per_million = 1e6 / n_events
    usage = usage_of(r)
    dollars = {k: v * RATES[k] * per_million for k, v in usage.items()}
    wru_by_table: defaultdict[str, float] = defaultdict(float)
    for c in r.calls:
        if c.service == "DynamoDB" and c.wru:
            wru_by_table[f"{c.function or 'runner'}:{_table_kind(c, r.tables)}"] += c.wru
    return {
        "replay": {
            "events": r.events,
            "feedback_events": r.feedback,
            "pushes": r.pushes,
            "pushes_per_1000_events": round(1000 * r.pushes / n_events, 1),
            "decide_records": r.decide_records,
            "sweeps_fired": r.sweeps,
        },
        "calls": {f"{s}.{o}": n for (s, o), n in sorted(Counter((c.service, c.operation) for c in r.calls).items())},
        "wru_by_table": {k: round(v) for k, v in sorted(wru_by_table.items(), key=lambda kv: -kv[1])},
        "average_item_bytes": r.sizes,
        "lambda_seconds": r.lambda_seconds,
        "usage_per_replay": usage,
        "dollars_per_million_events": {k: round(v, 4) for k, v in dollars.items()},
        "variable_per_million_events": round(sum(dollars.values()), 4),
    }


def at_rate(r: Replay, events_per_s: float, shards: int) -> dict[str, Any]:
    """Dollars per million events when `events_per_s` arrive on `shards` shards (and the user-state
    stream has as many): each consumer's batch is what one shard brings it in its batching window
    (at least 1, at most its BatchSize; feedback sees only feedback records, through its filter).
    Per-record work is as measured in the replay; what is paid per invocation (request, S3 object,
    the wall-time intercept, the log lines) is divided by the batch size."""
    n_events = r.events + r.feedback
    per_million = 1e6 / n_events
    usage = {k: 0.0 for k in ("lambda_request", "lambda_gb_s_arm64", "s3_put")}
    batches: dict[str, float] = {}
    logs = 0.0
    for fid, use in r.functions.items():
        if not use.records:
            continue
        # The records this function sees (all events, the user-state changes, or only feedback).
        rate = use.records / n_events * events_per_s / shards
        batch = min(float(use.batch_size), max(1.0, rate * max(use.window_s, 1.0)))
        batches[fid] = round(batch, 1)
        invocations = use.records / batch
        usage["lambda_request"] += invocations
        usage["lambda_gb_s_arm64"] += (
            (invocations * use.wall_per_invocation_s + use.records * use.wall_per_record_s) * use.memory_mb / 1024
        )
        logs += use.log_bytes_per_invocation * invocations / 1e9
        puts = sum(1 for c in r.calls if c.function == fid and c.service == "S3" and c.operation == "PutObject")
        usage["s3_put"] += puts / max(1, use.invocations) * invocations
    measured = usage_of(r)
    for k in ("dynamodb_wru", "dynamodb_rru", "kinesis_put_payload_unit", "sns_publish", "s3_get"):
        usage[k] = measured[k]
    usage["cloudwatch_logs_gb"] = logs
    dollars = {k: v * RATES[k] * per_million for k, v in usage.items()}
    return {
        "events_per_s": events_per_s,
        "events_per_day": round(events_per_s * 86400),
        "records_per_batch": batches,
        "dollars_per_million_events": {k: round(v, 4) for k, v in sorted(dollars.items(), key=lambda x: -x[1])},
        "total": round(sum(dollars.values()), 3),
    }


def _table_kind(c: Call, tables: dict[str, str]) -> str:
    names = list(c.params.get("RequestItems", {})) or [c.params.get("TableName", "")]
    return ",".join(sorted({tables.get(n, n) for n in names}))


def run(
    users: int, days: int, per_day: int, baseline: bool = True, parameters: dict[str, str] | None = None
) -> dict[str, Any]:
    from runner.deploy import load_yaml

    template = load_yaml(ROOT / "template.yaml")
    shards = int(template["Parameters"]["ShardCount"]["Default"])
    pushing = replay(users, days, per_day, pushing=True, parameters=parameters)
    report = priced(pushing)
    report["by_traffic"] = [at_rate(pushing, rate, shards) for rate in RATES_PER_S]
    if baseline:
        silent_replay = replay(users, days, per_day, pushing=False, parameters=parameters)
        silent = priced(silent_replay)
        silent["by_traffic"] = [at_rate(silent_replay, rate, shards) for rate in RATES_PER_S]
        report["without_pushes"] = silent
        # Per push (with the feedback it brings), from the two replays' absolute bills; expressed per
        # million *behaviour* events, so the line does not move with the feedback events pushes add.
        events = report["replay"]["events"]
        all_events = events + report["replay"]["feedback_events"]
        pushes = max(1, report["replay"]["pushes"])
        lines = []
        for with_p, without in zip(report["by_traffic"], silent["by_traffic"], strict=True):
            per_push = (with_p["total"] * all_events - without["total"] * events) / 1e6 / pushes
            base = without["total"]
            lines.append(
                {
                    "events_per_day": with_p["events_per_day"],
                    "base": base,
                    "dollars_per_push": round(per_push, 8),
                    "at_pushes_per_1000": {str(p): round(base + per_push * p * 1000, 3) for p in (10, 30, 75, 100)},
                }
            )
        report["line"] = {
            "formula": "$ per million behaviour events = base + dollars_per_push x pushes per million behaviour events",
            "by_traffic": lines,
        }
    alarms = sum(1 for r in template["Resources"].values() if r.get("Type") == "AWS::CloudWatch::Alarm")
    sweep_usage_per_run = {
        "invocations": pushing.sweeps,
        "rru": sum(c.rru for c in pushing.sweep_calls),
        "gb_s": pushing.sweep_gb_s,
    }
    sweeps_per_month = HOURS_PER_MONTH * 12
    per_sweep = {k: v / max(1, pushing.sweeps) for k, v in sweep_usage_per_run.items()}
    sweep_month = sweeps_per_month * (
        per_sweep["invocations"] * RATES["lambda_request"]
        + per_sweep["rru"] * RATES["dynamodb_rru"]
        + per_sweep["gb_s"] * RATES["lambda_gb_s_arm64"]
    )
    report["idle_per_month"] = {
        "kinesis_provisioned_shards": round(shards * RATES["kinesis_shard_hour"] * HOURS_PER_MONTH, 2),
        "kinesis_on_demand_stream": round(RATES["kinesis_on_demand_stream_hour"] * HOURS_PER_MONTH, 2),
        "due_sweep": round(sweep_month, 3),
        "cloudwatch_alarms": round(alarms * RATES["cloudwatch_alarm_month"], 2),
        "dashboard_if_over_3": RATES["cloudwatch_dashboard_month"],
    }
    report["parameters"] = parameters or {}
    report["rates_date"] = RATES_DATE
    report["rates"] = RATES
    report["personalize"] = personalize(
        report["replay"]["events"] + report["replay"]["feedback_events"], report["replay"]["decide_records"]
    )
    return report


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
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--events-per-day", type=int, default=30, help="behaviour events per user per day")
    parser.add_argument("--no-baseline", action="store_true", help="skip the replay without pushes")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "cost.json")
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter override, e.g. DecisionIntervalSeconds=0 (repeatable)",
    )
    args = parser.parse_args(argv)
    parameters = dict(item.split("=", 1) for item in args.parameter)
    report = run(args.users, args.days, args.events_per_day, baseline=not args.no_baseline, parameters=parameters)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    shown = (
        "replay",
        "wru_by_table",
        "lambda_seconds",
        "by_traffic",
        "line",
        "variable_per_million_events",
        "line",
        "idle_per_month",
    )
    print(json.dumps({k: report[k] for k in shown if k in report}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
