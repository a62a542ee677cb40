"""Stream event source mappings (Kinesis, DynamoDB Streams): what Lambda's pollers do.

One batch in flight per shard, batching after filtering, bisect, retries, record age,
ReportBatchItemFailures checkpoints and the on-failure invocation record (runner/README.md).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from runner.clock import Clock, iso_z
from runner.filters import FilterCriteria, kinesis_filter_document
from runner.lambda_invoke import FunctionContainer, InvocationResult
from runner.specs import EventSourceSpec

log = logging.getLogger(__name__)

ArrivalHint = Callable[[str, str], float | None]
Send = Callable[[str], None]  # delivers a JSON body to the on-failure destination


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
    sat_out: bool = False  # skipped in the last round (skip_idle), so not read since

    @property
    def busy(self) -> bool:
        return bool(self.buffer or self.pending)


class StreamMapping:
    """Polling, batching and failure handling shared by Kinesis and DynamoDB Streams."""

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
        client: Any,
        clock: Clock,
        destination: Send | None = None,
        arrival_hint: ArrivalHint | None = None,
    ) -> None:
        self.spec = spec
        self.container = container
        self.source_arn = str(spec.source_arn)
        self.destination = destination
        self.stats = MappingStats(spec.key, self.kind)
        self._client = client
        self._clock = clock
        self._region, self._account = self.source_arn.split(":")[3:5]
        self._arrival_hint = arrival_hint
        self._filters = FilterCriteria(spec.filter_patterns)
        self._shards: dict[str, ShardState] = {}

    def _list_shards(self) -> list[str]:
        raise NotImplementedError

    def _shard_iterator(self, shard_id: str, position: str) -> str:
        raise NotImplementedError

    def _convert(self, shard_id: str, raw: dict[str, Any]) -> StreamRecord:
        raise NotImplementedError

    def _filter_document(self, record: StreamRecord) -> Mapping[str, Any]:
        return record.event

    def start(self) -> None:
        """Open an iterator per shard at StartingPosition (LATEST means: from now on)."""
        self.refresh_shards(self.spec.starting_position)

    def refresh_shards(self, position: str = "TRIM_HORIZON") -> None:
        for shard_id in self._list_shards():
            if shard_id not in self._shards:
                self._shards[shard_id] = ShardState(shard_id, self._shard_iterator(shard_id, position))

    @property
    def busy(self) -> bool:
        return any(s.busy for s in self._shards.values())

    def poll(self, *, honor_window: bool = False, skip_idle: bool = False, only_sat_out: bool = False) -> bool:
        """Process at most one batch per shard; True if anything was read or invoked.

        skip_idle: a shard empty at its last read sits out a few rounds (moto reads a Kinesis shard from its
        start at every GetRecords: re-reading idle shards would cost more than a long drain). only_sat_out:
        read just the shards that sat out the last round (after a round that invoked nothing, the rest are empty).
        """
        worked = False
        for shard in self._shards.values() if self.spec.enabled else ():
            if not only_sat_out or shard.sat_out:
                worked = self._poll_shard(shard, honor_window, skip_idle) or worked
        return worked

    def _poll_shard(self, shard: ShardState, honor_window: bool, skip_idle: bool) -> bool:
        worked = False
        if not shard.pending:
            shard.sat_out = skip_idle and not shard.buffer and shard.idle_skip > 0
            if shard.sat_out:
                shard.idle_skip -= 1
                return False
            worked = self._fill(shard)
            if worked:
                shard.idle_backoff = shard.idle_skip = 0
            elif not shard.buffer:
                shard.idle_backoff = shard.idle_skip = min(max(1, shard.idle_backoff * 2), self.max_idle_backoff)
            if not shard.buffer:
                return worked
            waiting = time.monotonic() - (shard.first_buffered or 0.0) < self.spec.batching_window_s
            if honor_window and len(shard.buffer) < self.spec.batch_size and waiting:
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
        while shard.iterator is not None and len(shard.buffer) < self.spec.batch_size:
            page = self._client.get_records(ShardIterator=shard.iterator, Limit=self.max_fetch)
            raw_records, shard.iterator = page.get("Records", []), page.get("NextShardIterator")
            if not raw_records:
                break
            read_any = True
            self.stats.records_read += len(raw_records)
            for raw in raw_records:
                record = self._convert(shard.shard_id, raw)
                if not self._filters.matches(self._filter_document(record)):
                    self.stats.records_filtered += 1
                    continue
                if not shard.buffer:
                    shard.first_buffered = time.monotonic()
                shard.buffer.append(record)
            if len(raw_records) < self.max_fetch:
                break
        return read_any

    def _process(self, shard: ShardState, batch: Batch) -> None:
        if self.spec.max_record_age_s >= 0:
            now = self._clock.now()
            expired = [now - r.arrival > self.spec.max_record_age_s for r in batch.records]
            if any(expired):
                old = [r for r, gone in zip(batch.records, expired, strict=True) if gone]
                self._give_up(shard, Batch(old, batch.retries, batch.invoke_count, batch.last_result), True)
                batch.records = [r for r, gone in zip(batch.records, expired, strict=True) if not gone]
                if not batch.records:
                    return
        records = batch.records
        result = self.container.invoke({"Records": [r.event for r in records]}, records=len(records))
        batch.invoke_count += 1
        batch.last_result = result
        self.stats.invocations += 1
        self.stats.records_delivered += len(records)
        failed_from = self._failed_from(records, result)
        if failed_from is None:
            self.stats.records_succeeded += len(records)
            return
        if not result.ok:
            self.stats.function_errors += 1
        if failed_from >= 0:
            # Checkpoint at the lowest reported failure; with bisect on, Lambda also splits the
            # batch there, so either way the retry carries only the records from it onwards.
            self.stats.partial_failures += 1
            self.stats.records_succeeded += failed_from
            self._retry_or_give_up(shard, Batch(records[failed_from:], batch.retries, batch.invoke_count, result))
        elif self.spec.bisect_on_error and len(records) > 1:
            self.stats.bisects += 1
            half = (len(records) + 1) // 2
            for part in (records[half:], records[:half]):
                shard.pending.appendleft(Batch(part, batch.retries, batch.invoke_count, result))
        else:
            self._retry_or_give_up(shard, batch)

    def _failed_from(self, records: list[StreamRecord], result: InvocationResult) -> int | None:
        """None: the batch succeeded; -1: it failed as a whole; i: records from index i failed."""
        if not result.ok:
            return -1
        response = result.response
        failures = response.get("batchItemFailures") if isinstance(response, dict) else None
        if not self.spec.reports_item_failures or not failures:
            return None  # no response, an empty or null list: success
        if not isinstance(failures, list):
            return -1
        index = {r.sequence_number: i for i, r in enumerate(records)}
        idents = [f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures]
        # An empty, null or unknown itemIdentifier fails the whole batch.
        valid = all(isinstance(i, str) and i in index for i in idents)
        return min(index[str(i)] for i in idents) if valid else -1

    def _retry_or_give_up(self, shard: ShardState, batch: Batch) -> None:
        batch.retries += 1
        if 0 <= self.spec.max_retries < batch.retries:
            self._give_up(shard, batch, False)
        else:
            self.stats.retries += 1
            shard.pending.appendleft(batch)

    def _give_up(self, shard: ShardState, batch: Batch, expired: bool) -> None:
        count, condition = len(batch.records), "RecordAgeExceeded" if expired else "RetryAttemptsExhausted"
        self.stats.records_expired += count if expired else 0
        if self.destination is None:
            self.stats.records_discarded += count
            log.warning("%s: dropped %d record(s) (%s), no on-failure destination", self.spec.key, count, condition)
            return
        last, first, final = batch.last_result, batch.records[0], batch.records[-1]
        response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if last is not None and not last.ok:
            response_context["functionError"] = "Unhandled"
        record = {
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
                "batchSize": count,
                "streamArn": self.source_arn,
            },
        }
        self.destination(json.dumps(record))
        self.stats.records_to_destination += count
        self.stats.destination_messages += 1

    def _arrival(self, shard_id: str, sequence_number: str, source_time: Any) -> float:
        if self._clock.simulated:
            hinted = self._arrival_hint(shard_id, sequence_number) if self._arrival_hint else None
            return hinted if hinted is not None else self._clock.now()
        if isinstance(source_time, datetime):
            return source_time.timestamp()
        return float(source_time) if isinstance(source_time, int | float) else self._clock.now()


class KinesisMapping(StreamMapping):
    kind = "kinesis"
    batch_info_key = "KinesisBatchInfo"
    max_fetch = 10000
    max_idle_backoff = 64

    @property
    def _name(self) -> str:
        # Calls go by name: moto's shard iterators for a StreamARN name no stream.
        return self.source_arn.split("/", 1)[1]

    def _list_shards(self) -> list[str]:
        pages = self._client.get_paginator("list_shards").paginate(StreamName=self._name)
        return [shard["ShardId"] for page in pages for shard in page.get("Shards", [])]

    def _shard_iterator(self, shard_id: str, position: str) -> str:
        kwargs: dict[str, Any] = {}
        if position == "AT_TIMESTAMP":
            if self.spec.starting_position_timestamp is None:
                raise ValueError(f"{self.spec.key}: AT_TIMESTAMP needs StartingPositionTimestamp")
            kwargs["Timestamp"] = datetime.fromtimestamp(self.spec.starting_position_timestamp, tz=UTC)
        response = self._client.get_shard_iterator(
            StreamName=self._name, ShardId=shard_id, ShardIteratorType=position, **kwargs
        )
        return str(response["ShardIterator"])

    def _convert(self, shard_id: str, raw: dict[str, Any]) -> StreamRecord:
        seq = str(raw["SequenceNumber"])
        arrival = self._arrival(shard_id, seq, raw.get("ApproximateArrivalTimestamp"))
        data = raw["Data"]
        event = {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": raw["PartitionKey"],
                "sequenceNumber": seq,
                "data": base64.b64encode(data if isinstance(data, bytes) else str(data).encode()).decode(),
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
    keys = (
        "ApproximateCreationDateTime",
        "Keys",
        "NewImage",
        "OldImage",
        "SequenceNumber",
        "SizeBytes",
        "StreamViewType",
    )

    def _list_shards(self) -> list[str]:
        shards: list[str] = []
        kwargs: dict[str, Any] = {"StreamArn": self.source_arn}
        while True:
            description = self._client.describe_stream(**kwargs)["StreamDescription"]
            shards.extend(s["ShardId"] for s in description.get("Shards", []))
            if not description.get("LastEvaluatedShardId"):
                return shards
            kwargs["ExclusiveStartShardId"] = description["LastEvaluatedShardId"]

    def _shard_iterator(self, shard_id: str, position: str) -> str:
        response = self._client.get_shard_iterator(
            StreamArn=self.source_arn, ShardId=shard_id, ShardIteratorType=position
        )
        return str(response["ShardIterator"])

    def _convert(self, shard_id: str, raw: dict[str, Any]) -> StreamRecord:
        ddb = dict(raw["dynamodb"])
        seq = str(ddb["SequenceNumber"])
        arrival = self._arrival(shard_id, seq, ddb.get("ApproximateCreationDateTime"))
        # Streams report creation time rounded down to the second.
        ddb["ApproximateCreationDateTime"] = int(arrival)
        event = {
            "eventID": raw.get("eventID") or uuid.uuid4().hex,
            "eventName": raw["eventName"],
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": self._region,
            "dynamodb": {k: _json_safe(ddb[k]) for k in self.keys if k in ddb},
            "eventSourceARN": self.source_arn,
            **({"userIdentity": raw["userIdentity"]} if "userIdentity" in raw else {}),
        }
        return StreamRecord(seq, float(arrival), event)


def _json_safe(value: Any) -> Any:
    """boto3 hands binary attributes over as bytes; Lambda's JSON event has them base64-encoded."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_json_safe(v) for v in value]
    return value
