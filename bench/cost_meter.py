"""The cost meter: which AWS calls a replay made, what each costs, and dollars per million events.

Every AWS call any client makes in the process is counted with a patch on botocore's
`_make_api_call` (``Meter``), tagged with the function whose invocation made it. The bill is those
calls plus the producer's puts: the runner's own polling (GetRecords, GetShardIterator, ...) is
Lambda's, not billed to the user, and the time-driven due sweep's queries are priced under idle.
DynamoDB capacity is computed per request from the items involved (``DynamoMeter``): a write costs
1 WRU per started KB of the larger of the item before and after (conditional failures included), a
strongly consistent read 1 RRU per started 4 KB (eventually consistent half that), a Query the
items it reads before its filter. Lambda GB-seconds are the runner's per-invocation wall times
(x86_64, a shared machine, moto in-process; Lambda's arm64 will differ), with the time moto took
inside calls replaced by an assumed in-region latency (LATENCY_S), times each function's
MemorySize from template.yaml. Prices: RATES below, dated, copied into docs/cost.md. The replay
that drives the traffic is bench/cost_model.py.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from shared.adapters.user_state_codec import is_profile_key

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
# Calls outside a function's invocation that are billed: the producer putting records.
PRODUCER = {("Kinesis", "PutRecords"), ("Kinesis", "PutRecord")}
# The due sweep's queries every 5 minutes, traffic or not (priced under idle): deferred pushes and the outbox.
SWEEP_INDEXES = ("due-index", "outbox-index")


@dataclass
class Call:
    service: str
    operation: str
    params: dict[str, Any]
    wru: float = 0.0
    rru: float = 0.0
    function: str = ""  # the function whose invocation made the call ("" for the producer and the runner)


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

    def measure(
        self, client: Any, operation: str, params: dict[str, Any], run: Callable[[], Any]
    ) -> tuple[Any, float, float]:
        """(response, WRU, RRU) of one request; ``run()`` makes it."""
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            return self._single_write(client, params, run)
        if operation == "BatchWriteItem":
            return run(), float(self._batch_write_units(client, params)), 0.0
        if operation == "TransactWriteItems":
            return run(), 2.0 * len(params.get("TransactItems", [])), 0.0
        response = run()
        return response, 0.0, self._read_units(client, operation, params, response)

    def _single_write(self, client: Any, params: dict[str, Any], run: Callable[[], Any]) -> tuple[Any, float, float]:
        """1 WRU per started KB of the larger of the item before and after (conditional failures included)."""
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
            read = self._call(self._client(client), operation, _unfiltered(params)).get("Items", [])
            return factor * max(1, math.ceil(sum(item_size(i) for i in read) / 4096))
        return 0.0


def _unfiltered(params: dict[str, Any]) -> dict[str, Any]:
    """A Query or Scan without its filter: read units count what the key condition reads."""
    unfiltered = {k: v for k, v in params.items() if k not in ("FilterExpression", "ProjectionExpression")}
    condition = str(unfiltered.get("KeyConditionExpression", ""))
    for name in ("ExpressionAttributeNames", "ExpressionAttributeValues"):
        kept = {k: v for k, v in unfiltered.get(name, {}).items() if k in condition}
        if kept:
            unfiltered[name] = kept
        else:
            unfiltered.pop(name, None)
    for k in ("ExpressionAttributeValues", "ExclusiveStartKey"):
        if k in unfiltered:
            unfiltered[k] = typed(unfiltered[k])
    return unfiltered


class Meter:
    """Counts every AWS call made in this process (a patch on botocore's ``_make_api_call``), each
    tagged with the function whose invocation made it, DynamoDB calls with their capacity units."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        # Wall seconds each function spent inside AWS calls here (in-process moto plus this metering).
        self.in_calls: defaultdict[str, float] = defaultdict(float)
        self.current = ""  # the function being invoked right now ("" for the producer and the runner)

    @contextmanager
    def counting(self) -> Iterator[list[Call]]:
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        dynamo = DynamoMeter(original)
        meter = self

        def counted(client: Any, operation: str, params: dict[str, Any]) -> Any:
            started = time.perf_counter()
            service = client.meta.service_model.service_id
            call = Call(service, operation, params, function=meter.current)
            meter.calls.append(call)
            try:
                if service != "DynamoDB":
                    return original(client, operation, params)
                response, call.wru, call.rru = dynamo.measure(
                    client, operation, params, lambda: original(client, operation, params)
                )
                return response
            finally:
                meter.in_calls[call.function] += time.perf_counter() - started

        setattr(BaseClient, "_make_api_call", counted)  # noqa: B010 (mypy forbids assigning a method)
        try:
            yield self.calls
        finally:
            setattr(BaseClient, "_make_api_call", original)  # noqa: B010

    def tag(self, function_id: str, invoke: Callable[..., Any]) -> Callable[..., Any]:
        """Wraps a container's invoke: calls made inside are the function's (scheduled ones, with no
        records, are the due sweep's, priced under idle)."""

        def tagged(event: Any, *, records: int = 0) -> Any:
            self.current = function_id if records else f"{function_id}:schedule"
            try:
                return invoke(event, records=records)
            finally:
                self.current = ""

        return tagged

    def billed(self) -> list[Call]:
        """What the user pays for: the functions' calls and the producer's puts (not the runner's
        polling, the sweep's due-index and outbox-index queries or what this script reads)."""
        return [
            c
            for c in self.calls
            if (c.function or (c.service, c.operation) in PRODUCER) and c.params.get("IndexName") not in SWEEP_INDEXES
        ]

    def sweep_calls(self) -> list[Call]:
        return [c for c in self.calls if c.params.get("IndexName") in SWEEP_INDEXES]


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
    kind = ",".join(sorted({tables.get(n, n) for n in names}))
    # A user's profile item shares the user-state table with the hot item; its writes are told apart.
    key = c.params.get("Key") or c.params.get("Item") or {}
    user_id = key.get("user_id") if isinstance(key, dict) else None
    user_id = user_id.get("S") if isinstance(user_id, dict) else user_id
    return f"{kind}#profile" if isinstance(user_id, str) and is_profile_key(user_id) else kind
