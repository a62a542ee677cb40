"""Event source mappings (Kinesis, DynamoDB Streams) and schedule rules, driven in-process.

Stream mappings follow Lambda's documented behaviour:
- one batch in flight per shard; a shard does not move past a failing batch until the batch
  succeeds or is given up (sent to the on-failure destination, or dropped without one);
- BatchSize counts records after filtering; records that match no filter are consumed without
  an invocation;
- a function error retries the batch; with BisectBatchOnFunctionError the failing batch is split
  in half first (splitting does not consume the retry quota); MaximumRetryAttempts bounds the
  retries of a batch, MaximumRecordAgeInSeconds bounds how old a record may be when invoked;
- with ReportBatchItemFailures the lowest reported sequence number is the checkpoint: records
  before it are done, the rest is retried; an empty, null or unknown itemIdentifier fails the
  whole batch, an empty or null list (or no response) is a success.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from runner.clock import Clock, iso_z
from runner.filters import kinesis_filter_document, matches_any
from runner.lambda_invoke import FunctionContainer, InvocationResult
from runner.template import EventSourceSpec

log = logging.getLogger(__name__)

ArrivalHint = Callable[[str, str], float | None]


@dataclass
class MappingStats:
    mapping: str
    kind: str
    records_read: int = 0
    records_filtered: int = 0
    records_delivered: int = 0
    records_succeeded: int = 0
    invocations: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    retries: int = 0
    bisects: int = 0
    records_to_destination: int = 0
    destination_messages: int = 0
    records_discarded: int = 0
    records_expired: int = 0
    schedules_fired: int = 0
    schedules_skipped: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Destination:
    """An on-failure destination: an SQS queue or an SNS topic."""

    def __init__(self, arn: str, *, sqs: Any, sns: Any, queue_url: str | None = None) -> None:
        self.arn = arn
        self._sqs = sqs
        self._sns = sns
        service = arn.split(":")[2]
        if service not in ("sqs", "sns"):
            raise ValueError(f"unsupported on-failure destination {arn}")
        self.service = service
        if service == "sqs" and queue_url is None:
            queue_url = sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[1])["QueueUrl"]
        self._queue_url = queue_url

    def send(self, message: Mapping[str, Any]) -> None:
        body = json.dumps(message)
        if self.service == "sqs":
            self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=body)
        else:
            self._sns.publish(TopicArn=self.arn, Message=body)


@dataclass
class StreamRecord:
    sequence_number: str
    arrival: float
    event: dict[str, Any]


@dataclass
class Batch:
    records: list[StreamRecord]
    retries: int = 0
    invoke_count: int = 0
    last_result: InvocationResult | None = None


@dataclass
class ShardState:
    shard_id: str
    iterator: str | None
    buffer: deque[StreamRecord] = field(default_factory=deque)
    pending: deque[Batch] = field(default_factory=deque)
    first_buffered: float | None = None
    idle_backoff: int = 0
    idle_skip: int = 0

    @property
    def busy(self) -> bool:
        return bool(self.buffer or self.pending)


class StreamMapping:
    """Shared polling, batching and failure handling for Kinesis and DynamoDB Streams."""

    kind = "stream"
    batch_info_key = "BatchInfo"
    max_fetch = 1000
    # While draining, an idle shard is re-read only every 1, 2, 4 ... up to this many rounds.
    max_idle_backoff = 0

    def __init__(
        self,
        spec: EventSourceSpec,
        container: FunctionContainer,
        *,
        source_arn: str,
        client: Any,
        clock: Clock,
        region: str,
        account_id: str,
        destination: Destination | None = None,
        arrival_hint: ArrivalHint | None = None,
    ) -> None:
        self.spec = spec
        self.container = container
        self.source_arn = source_arn
        self.destination = destination
        self.stats = MappingStats(spec.key, self.kind)
        self._client = client
        self._clock = clock
        self._region = region
        self._account = account_id
        self._arrival_hint = arrival_hint
        self._shards: dict[str, ShardState] = {}
        self._started = False

    # ------------------------------------------------------------ source-specific hooks

    def _list_shards(self) -> list[str]:
        raise NotImplementedError

    def _shard_iterator(self, shard_id: str, position: str) -> str:
        raise NotImplementedError

    def _fetch(self, shard: ShardState, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        # Kinesis and DynamoDB Streams share the GetRecords shape.
        page = self._client.get_records(ShardIterator=shard.iterator, Limit=limit)
        return list(page.get("Records", [])), page.get("NextShardIterator")

    def _convert(self, shard_id: str, raw: dict[str, Any]) -> StreamRecord:
        raise NotImplementedError

    def _filter_document(self, record: StreamRecord) -> Mapping[str, Any]:
        return record.event

    # ------------------------------------------------------------ driving

    def start(self) -> None:
        """Open an iterator per shard at StartingPosition (LATEST means: from now on)."""
        self.refresh_shards(self.spec.starting_position)
        self._started = True

    def refresh_shards(self, position: str = "TRIM_HORIZON") -> None:
        for shard_id in self._list_shards():
            if shard_id not in self._shards:
                self._shards[shard_id] = ShardState(shard_id, self._shard_iterator(shard_id, position))

    @property
    def busy(self) -> bool:
        return any(s.busy for s in self._shards.values())

    def poll(self, *, honor_window: bool = False, skip_idle: bool = False) -> bool:
        """Process at most one batch per shard; True if anything was read or invoked.

        skip_idle lets a shard that was empty at its last read sit out a few rounds: moto reads
        a Kinesis shard from its start on every GetRecords, so re-reading idle shards every round
        of a long drain costs more than the drain itself.
        """
        if not self.spec.enabled:
            return False
        worked = False
        for shard in self._shards.values():
            worked = self._poll_shard(shard, honor_window, skip_idle) or worked
        return worked

    def _poll_shard(self, shard: ShardState, honor_window: bool, skip_idle: bool) -> bool:
        worked = False
        if not shard.pending:
            if skip_idle and not shard.buffer and shard.idle_skip > 0:
                shard.idle_skip -= 1
                return False
            worked = self._fill(shard)
            if worked:
                shard.idle_backoff = shard.idle_skip = 0
            elif not shard.buffer:
                shard.idle_backoff = min(max(1, shard.idle_backoff * 2), self.max_idle_backoff)
                shard.idle_skip = shard.idle_backoff
            if not shard.buffer:
                return worked
            if (
                honor_window
                and len(shard.buffer) < self.spec.batch_size
                and shard.first_buffered is not None
                and time.monotonic() - shard.first_buffered < self.spec.batching_window_s
            ):
                return worked
            size = min(self.spec.batch_size, len(shard.buffer))
            shard.pending.append(Batch([shard.buffer.popleft() for _ in range(size)]))
            shard.first_buffered = time.monotonic() if shard.buffer else None
        self._process(shard, shard.pending.popleft())
        return True

    def _fill(self, shard: ShardState) -> bool:
        read_any = False
        # moto scans a Kinesis shard from its start on every GetRecords, so few large reads beat
        # many small ones when replaying a large backlog.
        limit = self.max_fetch
        while shard.iterator is not None and len(shard.buffer) < self.spec.batch_size:
            raw_records, shard.iterator = self._fetch(shard, limit)
            if not raw_records:
                break
            read_any = True
            self.stats.records_read += len(raw_records)
            for raw in raw_records:
                record = self._convert(shard.shard_id, raw)
                if matches_any(self.spec.filter_patterns, self._filter_document(record)):
                    if not shard.buffer:
                        shard.first_buffered = time.monotonic()
                    shard.buffer.append(record)
                else:
                    self.stats.records_filtered += 1
            if len(raw_records) < limit:
                break
        return read_any

    def _process(self, shard: ShardState, batch: Batch) -> None:
        if self.spec.max_record_age_s >= 0:
            now = self._clock.now()
            expired = [r for r in batch.records if now - r.arrival > self.spec.max_record_age_s]
            if expired:
                kept = [r for r in batch.records if now - r.arrival <= self.spec.max_record_age_s]
                self._give_up(
                    shard,
                    Batch(expired, batch.retries, batch.invoke_count, batch.last_result),
                    "RecordAgeExceeded",
                )
                if not kept:
                    return
                batch.records = kept

        records = batch.records
        result = self.container.invoke({"Records": [r.event for r in records]}, records=len(records))
        batch.invoke_count += 1
        batch.last_result = result
        self.stats.invocations += 1
        self.stats.records_delivered += len(records)

        outcome, failed_from = self._outcome(records, result)
        if outcome == "success":
            self.stats.records_succeeded += len(records)
            return
        if not result.ok:
            self.stats.function_errors += 1
        if outcome == "partial":
            # Checkpoint at the lowest reported failure; with bisect on, Lambda also splits the
            # batch there, so either way the retry carries only the records from it onwards.
            self.stats.partial_failures += 1
            self.stats.records_succeeded += failed_from
            remaining = Batch(records[failed_from:], batch.retries, batch.invoke_count, result)
            self._retry_or_give_up(shard, remaining)
            return
        if self.spec.bisect_on_error and len(records) > 1:
            self.stats.bisects += 1
            half = (len(records) + 1) // 2
            for part in (records[half:], records[:half]):
                shard.pending.appendleft(Batch(part, batch.retries, batch.invoke_count, result))
            return
        self._retry_or_give_up(shard, batch)

    def _outcome(self, records: list[StreamRecord], result: InvocationResult) -> tuple[str, int]:
        """("success", n), ("partial", index of the lowest failed record) or ("failed", 0)."""
        if not result.ok:
            return "failed", 0
        if not self.spec.reports_item_failures:
            return "success", len(records)
        response = result.response
        if not isinstance(response, dict):
            return "success", len(records)
        failures = response.get("batchItemFailures")
        if not failures:
            return "success", len(records)
        if not isinstance(failures, list):
            return "failed", 0
        index = {r.sequence_number: i for i, r in enumerate(records)}
        lowest = len(records)
        for failure in failures:
            ident = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not isinstance(ident, str) or ident not in index:
                return "failed", 0
            lowest = min(lowest, index[ident])
        return "partial", lowest

    def _retry_or_give_up(self, shard: ShardState, batch: Batch) -> None:
        batch.retries += 1
        if 0 <= self.spec.max_retries < batch.retries:
            self._give_up(shard, batch, "RetryAttemptsExhausted")
            return
        self.stats.retries += 1
        shard.pending.appendleft(batch)

    def _give_up(self, shard: ShardState, batch: Batch, condition: str) -> None:
        count = len(batch.records)
        if condition == "RecordAgeExceeded":
            self.stats.records_expired += count
        if self.destination is None:
            self.stats.records_discarded += count
            log.warning("%s: dropped %d record(s) (%s), no on-failure destination", self.spec.key, count, condition)
            return
        self.destination.send(self._failure_record(shard, batch, condition))
        self.stats.records_to_destination += count
        self.stats.destination_messages += 1

    def _failure_record(self, shard: ShardState, batch: Batch, condition: str) -> dict[str, Any]:
        last = batch.last_result
        response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if last is not None and not last.ok:
            response_context["functionError"] = "Unhandled"
        first, final = batch.records[0], batch.records[-1]
        return {
            "requestContext": {
                "requestId": last.request_id if last is not None else str(uuid.uuid4()),
                "functionArn": self.container.function_arn,
                "condition": condition,
                "approximateInvokeCount": batch.invoke_count,
            },
            "responseContext": response_context,
            "version": "1.0",
            "timestamp": iso_z(self._clock.now()),
            self.batch_info_key: {
                "shardId": shard.shard_id,
                "startSequenceNumber": first.sequence_number,
                "endSequenceNumber": final.sequence_number,
                "approximateArrivalOfFirstRecord": iso_z(first.arrival),
                "approximateArrivalOfLastRecord": iso_z(final.arrival),
                "batchSize": len(batch.records),
                "streamArn": self.source_arn,
            },
        }

    def _arrival(self, shard_id: str, sequence_number: str, source_time: Any) -> float:
        if self._clock.simulated:
            hinted = self._arrival_hint(shard_id, sequence_number) if self._arrival_hint else None
            return hinted if hinted is not None else self._clock.now()
        if isinstance(source_time, datetime):
            return source_time.timestamp()
        if isinstance(source_time, int | float):
            return float(source_time)
        return self._clock.now()


class KinesisMapping(StreamMapping):
    kind = "kinesis"
    batch_info_key = "KinesisBatchInfo"
    max_fetch = 10000
    max_idle_backoff = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stream_name = self.source_arn.split(":", 5)[5].split("/", 1)[1]

    def _list_shards(self) -> list[str]:
        shards: list[str] = []
        kwargs: dict[str, Any] = {"StreamName": self._stream_name}
        while True:
            page = self._client.list_shards(**kwargs)
            shards.extend(s["ShardId"] for s in page.get("Shards", []))
            token = page.get("NextToken")
            if not token:
                return shards
            kwargs = {"NextToken": token}

    def _shard_iterator(self, shard_id: str, position: str) -> str:
        kwargs: dict[str, Any] = {}
        if position == "AT_TIMESTAMP":
            if self.spec.starting_position_timestamp is None:
                raise ValueError(f"{self.spec.key}: AT_TIMESTAMP needs StartingPositionTimestamp")
            kwargs["Timestamp"] = datetime.fromtimestamp(self.spec.starting_position_timestamp, tz=UTC)
        iterator: str = self._client.get_shard_iterator(
            StreamName=self._stream_name, ShardId=shard_id, ShardIteratorType=position, **kwargs
        )["ShardIterator"]
        return iterator

    def _convert(self, shard_id: str, raw: dict[str, Any]) -> StreamRecord:
        seq = str(raw["SequenceNumber"])
        arrival = self._arrival(shard_id, seq, raw.get("ApproximateArrivalTimestamp"))
        data = raw["Data"]
        encoded = base64.b64encode(data if isinstance(data, bytes) else str(data).encode()).decode()
        event = {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": raw["PartitionKey"],
                "sequenceNumber": seq,
                "data": encoded,
                "approximateArrivalTimestamp": round(arrival, 3),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{seq}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": f"arn:aws:iam::{self._account}:role/{self.container.function_name}-role",
            "awsRegion": self._region,
            "eventSourceARN": self.source_arn,
        }
        return StreamRecord(seq, arrival, event)

    def _filter_document(self, record: StreamRecord) -> Mapping[str, Any]:
        return kinesis_filter_document(record.event)


class DynamoDBStreamMapping(StreamMapping):
    kind = "dynamodb"
    batch_info_key = "DDBStreamBatchInfo"
    max_fetch = 1000

    def _list_shards(self) -> list[str]:
        shards: list[str] = []
        kwargs: dict[str, Any] = {"StreamArn": self.source_arn}
        while True:
            desc = self._client.describe_stream(**kwargs)["StreamDescription"]
            shards.extend(s["ShardId"] for s in desc.get("Shards", []))
            last = desc.get("LastEvaluatedShardId")
            if not last:
                return shards
            kwargs = {"StreamArn": self.source_arn, "ExclusiveStartShardId": last}

    def _shard_iterator(self, shard_id: str, position: str) -> str:
        iterator: str = self._client.get_shard_iterator(
            StreamArn=self.source_arn, ShardId=shard_id, ShardIteratorType=position
        )["ShardIterator"]
        return iterator

    def _convert(self, shard_id: str, raw: dict[str, Any]) -> StreamRecord:
        ddb = dict(raw["dynamodb"])
        seq = str(ddb["SequenceNumber"])
        arrival = self._arrival(shard_id, seq, ddb.get("ApproximateCreationDateTime"))
        # Streams report creation time rounded down to the second.
        ddb["ApproximateCreationDateTime"] = int(arrival)
        for image in ("Keys", "NewImage", "OldImage"):
            if image in ddb:
                ddb[image] = _json_safe(ddb[image])
        event = {
            "eventID": raw.get("eventID") or uuid.uuid4().hex,
            "eventName": raw["eventName"],
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": self._region,
            "dynamodb": {k: ddb[k] for k in _DDB_KEY_ORDER if k in ddb},
            "eventSourceARN": self.source_arn,
        }
        if "userIdentity" in raw:
            event["userIdentity"] = raw["userIdentity"]
        return StreamRecord(seq, float(arrival), event)


_DDB_KEY_ORDER = (
    "ApproximateCreationDateTime",
    "Keys",
    "NewImage",
    "OldImage",
    "SequenceNumber",
    "SizeBytes",
    "StreamViewType",
)


def _json_safe(value: Any) -> Any:
    """boto3 hands binary attributes over as bytes; Lambda's JSON event has them base64-encoded."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_json_safe(v) for v in value]
    return value


# ---------------------------------------------------------------- schedules

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def parse_rate(expression: str) -> float:
    """Seconds between firings of a `rate(N unit)` expression."""
    match = _RATE.match(expression.strip())
    if match is None:
        raise ValueError(f"unsupported schedule expression {expression!r} (only rate(...) is emulated)")
    value, unit = int(match.group(1)), match.group(2)
    if value <= 0:
        raise ValueError(f"rate must be positive: {expression!r}")
    if (value == 1) == unit.endswith("s"):
        raise ValueError(f"EventBridge rejects {expression!r}: use 1 minute / N minutes")
    return float(value * _UNIT_SECONDS[unit.rstrip("s")])


class ScheduleMapping:
    """An EventBridge schedule rule targeting the function (asynchronous invoke)."""

    kind = "schedule"
    # Lambda retries a failed asynchronous invocation twice by default.
    async_retries = 2
    # A simulated clock that jumps far ahead (e.g. from a default start to a replay's first
    # event) would otherwise fire every missed occurrence; beyond this many, only the latest fires.
    max_catch_up = 1000

    def __init__(
        self,
        spec: EventSourceSpec,
        container: FunctionContainer,
        *,
        clock: Clock,
        region: str,
        account_id: str,
        rule_name: str,
    ) -> None:
        self.spec = spec
        self.container = container
        self.stats = MappingStats(spec.key, self.kind)
        self.rule_arn = f"arn:aws:events:{region}:{account_id}:rule/{rule_name}"
        self.period = parse_rate(spec.schedule_expression or "")
        self._clock = clock
        self._region = region
        self._account = account_id
        self.next_due: float | None = None

    def start(self) -> None:
        # A new rate rule first fires one period after it is created.
        self.next_due = self._clock.now() + self.period

    @property
    def busy(self) -> bool:
        return False

    def tick(self, now: float | None = None) -> int:
        """Fire every occurrence due at or before `now`; returns how many fired."""
        if not self.spec.enabled or self.next_due is None:
            return 0
        current = self._clock.now() if now is None else now
        fired = 0
        missed = int((current - self.next_due) // self.period)
        if missed >= self.max_catch_up:
            log.warning("%s: skipping %d missed occurrences after a clock jump", self.spec.key, missed)
            self.stats.schedules_skipped += missed
            self.next_due += missed * self.period
        while self.next_due <= current:
            when = self.next_due if self._clock.simulated else current
            self.fire(when)
            fired += 1
            self.next_due += self.period
        return fired

    def scheduled_event(self, when: float) -> Any:
        if self.spec.schedule_input is not None:
            return json.loads(self.spec.schedule_input)
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self._account,
            "time": iso_z(when, millis=False),
            "region": self._region,
            "resources": [self.rule_arn],
            "detail": {},
        }

    def fire(self, when: float) -> InvocationResult:
        event = self.scheduled_event(when)
        self.stats.schedules_fired += 1
        result = self.container.invoke(event, records=0)
        self.stats.invocations += 1
        attempts = 0
        while not result.ok and attempts < self.async_retries:
            self.stats.function_errors += 1
            self.stats.retries += 1
            attempts += 1
            result = self.container.invoke(event, records=0)
            self.stats.invocations += 1
        if result.ok:
            self.stats.records_succeeded += 1
        else:
            self.stats.function_errors += 1
            self.stats.records_discarded += 1
            log.warning("%s: scheduled invocation failed after %d retries", self.spec.key, attempts)
        return result
