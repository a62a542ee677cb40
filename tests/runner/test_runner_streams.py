"""Kinesis and DynamoDB Streams event source mappings: batching, filtering, failures, order."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from runner.clock import SimulatedClock, iso_z
from testkit.queues import receive_json
from tests.runner.runner_testlib import ids

pytestmark = pytest.mark.slow(seconds=9)

Invocations = Callable[..., list[dict[str, Any]]]
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_batch_size_event_shape_context_and_stats(toy: Any, read_invocations: Invocations) -> None:
    p = toy("BatchFunction")
    seqs = p.put_events([{"id": i, "user_id": "u1"} for i in range(10)])
    result = p.pump()
    assert result.quiescent and result.invocations == 4

    invs = read_invocations("BatchFunction")
    assert [len(i["event"]["Records"]) for i in invs] == [3, 3, 3, 1]
    assert [x for i in invs for x in ids(i)] == list(range(10))

    record = invs[0]["event"]["Records"][0]
    assert set(record) == {
        "kinesis",
        "eventSource",
        "eventVersion",
        "eventID",
        "eventName",
        "invokeIdentityArn",
        "awsRegion",
        "eventSourceARN",
    }
    assert set(record["kinesis"]) == {
        "kinesisSchemaVersion",
        "partitionKey",
        "sequenceNumber",
        "data",
        "approximateArrivalTimestamp",
    }
    assert record["kinesis"]["kinesisSchemaVersion"] == "1.0"
    assert record["kinesis"]["partitionKey"] == "u1"
    assert record["kinesis"]["sequenceNumber"] == seqs[0]
    assert abs(record["kinesis"]["approximateArrivalTimestamp"] - time.time()) < 60
    assert record["eventID"] == f"shardId-000000000000:{seqs[0]}"
    assert (record["eventSource"], record["eventVersion"], record["eventName"]) == (
        "aws:kinesis",
        "1.0",
        "aws:kinesis:record",
    )
    assert record["awsRegion"] == "us-east-1"
    assert record["eventSourceARN"] == p.resources["ToyStream"].arn

    first = invs[0]
    assert first["memory"] == 128
    assert first["arn"] == p.containers["BatchFunction"].function_arn == p.resources["BatchFunction"].arn
    assert 0 < first["remaining_ms"] <= 30_000
    assert first["env"]["GREETING"] == "hello"
    assert first["env"]["TABLE_NAME"] == p.resources["ToyTable"].ref
    assert first["env"]["QUEUE_URL"] == p.resources["ToyDeadLetterQueue"].ref
    assert first["env"]["TOPIC_NAME"] == p.resources["ToyTopic"].attributes["TopicName"]
    assert first["service"] == "batch"

    stats = p.stats()
    fs = stats.functions["BatchFunction"]
    assert (fs.invocations, fs.records, fs.cold_starts, fs.errors) == (4, 10, 1, 0)
    assert fs.batch_sizes == [3, 3, 3, 1] and len(fs.per_record_ms()) == 4
    assert fs.summary()["handler_ms_per_record_p99"] >= fs.summary()["handler_ms_per_record_p50"] > 0
    ms = stats.mappings["BatchFunction.Stream"]
    assert (ms.records_read, ms.records_delivered, ms.records_succeeded, ms.invocations) == (10, 10, 10, 4)
    assert stats.as_dict()["mappings"]["BatchFunction.Stream"]["retries"] == 0

    assert p.pump().invocations == 0


def test_filter_criteria_match_non_match_and_non_json(toy: Any, read_invocations: Invocations) -> None:
    p = toy("FilterFunction")
    events: list[Any] = [
        {"id": 0, "kind": "keep"},
        {"id": 1, "kind": "drop"},
        {"id": 2, "n": 150},
        {"id": 3, "n": 50},
        {"id": 4, "kind": "also"},
        b"\x00\x01 binary, not json",
        "plain text",
        {"id": 5, "kind": "keep"},
    ]
    p.put_events(events, partition_key=lambda e: "k")
    assert p.pump().quiescent
    delivered = [x for i in read_invocations("FilterFunction") for x in ids(i)]
    assert delivered == [0, 2, 4, 5]
    ms = p.stats().mappings["FilterFunction.Stream"]
    assert (ms.records_read, ms.records_filtered, ms.records_delivered) == (8, 4, 4)


def test_partial_batch_response_checkpoints_at_lowest_failure(toy: Any, read_invocations: Invocations) -> None:
    p = toy("PartialFunction")
    p.put_events(
        [
            {"id": 0},
            {"id": 1},
            {"id": 2, "action": "fail_once"},
            {"id": 3},
            {"id": 4, "action": "fail_once"},
        ],
        partition_key=lambda e: "k",
    )
    assert p.pump().quiescent
    assert [ids(i) for i in read_invocations("PartialFunction")] == [[0, 1, 2, 3, 4], [2, 3, 4]]
    ms = p.stats().mappings["PartialFunction.Stream"]
    assert (ms.partial_failures, ms.retries, ms.records_succeeded, ms.records_delivered) == (1, 1, 5, 8)
    assert ms.records_to_destination == 0
    assert receive_json(p, "ToyDeadLetterQueue") == []


def test_partial_failures_exhaust_retries_then_destination(toy: Any, read_invocations: Invocations) -> None:
    p = toy("PartialFunction")
    seqs = p.put_events([{"id": 0}, {"id": 1, "action": "fail_always"}, {"id": 2}], partition_key=lambda e: "k")
    assert p.pump().quiescent
    # MaximumRetryAttempts 3: the first attempt plus three retries of the records from the checkpoint.
    assert [ids(i) for i in read_invocations("PartialFunction")] == [[0, 1, 2], [1, 2], [1, 2], [1, 2]]
    (message,) = receive_json(p, "ToyDeadLetterQueue")
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 4
    assert "functionError" not in message["responseContext"]
    info = message["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        seqs[1],
        seqs[2],
        2,
    )


def test_invalid_item_identifier_fails_whole_batch(toy: Any, read_invocations: Invocations) -> None:
    p = toy("PartialFunction")
    seqs = p.put_events([{"id": 0, "action": "bad_identifier"}, {"id": 1}], partition_key=lambda e: "k")
    assert p.pump().quiescent
    assert [ids(i) for i in read_invocations("PartialFunction")] == [[0, 1]] * 4
    (message,) = receive_json(p, "ToyDeadLetterQueue")
    info = message["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        seqs[0],
        seqs[1],
        2,
    )


def test_exception_bisects_retries_and_sends_failure_record(toy: Any, read_invocations: Invocations) -> None:
    p = toy("BisectFunction")
    events = [{"id": i, **({"action": "raise"} if i == 5 else {})} for i in range(10)]
    seqs = p.put_events(events, partition_key=lambda e: "k")
    assert p.pump().quiescent

    assert [ids(i) for i in read_invocations("BisectFunction")] == [
        [0, 1, 2, 3, 4, 5, 6, 7],  # fails -> split 4/4
        [0, 1, 2, 3],
        [4, 5, 6, 7],  # fails -> split 2/2
        [4, 5],  # fails -> split 1/1
        [4],
        [5],  # fails; splitting is over, so retries start (MaximumRetryAttempts 2)
        [5],
        [5],
        [6, 7],
        [8, 9],
    ]
    (message,) = receive_json(p, "ToyDeadLetterQueue")
    assert set(message) == {"requestContext", "responseContext", "version", "timestamp", "KinesisBatchInfo"}
    assert message["version"] == "1.0"
    assert ISO_MS.match(message["timestamp"])
    context = message["requestContext"]
    assert context["condition"] == "RetryAttemptsExhausted"
    assert context["functionArn"] == p.resources["BisectFunction"].arn
    assert context["approximateInvokeCount"] == 6
    assert re.match(r"^[0-9a-f-]{36}$", context["requestId"])
    assert message["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    info = message["KinesisBatchInfo"]
    assert info["shardId"] == "shardId-000000000000"
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == seqs[5]
    assert info["batchSize"] == 1
    assert info["streamArn"] == p.resources["ToyStream"].arn
    assert ISO_MS.match(info["approximateArrivalOfFirstRecord"])
    assert ISO_MS.match(info["approximateArrivalOfLastRecord"])

    ms = p.stats().mappings["BisectFunction.Stream"]
    assert (ms.bisects, ms.retries, ms.function_errors) == (3, 2, 6)
    assert (ms.records_succeeded, ms.records_to_destination, ms.destination_messages) == (9, 1, 1)


def test_max_retries_bound_a_batch_and_the_shard_waits(toy: Any, read_invocations: Invocations) -> None:
    p = toy("RetryFunction")
    events = [{"id": i, **({"action": "raise"} if i == 2 else {})} for i in range(12)]
    seqs = p.put_events(events, partition_key=lambda e: "k")
    assert p.pump().quiescent
    # One attempt + MaximumRetryAttempts (2) on the whole batch; later records wait for it.
    assert [ids(i) for i in read_invocations("RetryFunction")] == [
        [0, 1, 2, 3, 4],
        [0, 1, 2, 3, 4],
        [0, 1, 2, 3, 4],
        [5, 6, 7, 8, 9],
        [10, 11],
    ]
    (message,) = receive_json(p, "ToyDeadLetterQueue")
    assert message["requestContext"]["approximateInvokeCount"] == 3
    info = message["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        seqs[0],
        seqs[4],
        5,
    )
    ms = p.stats().mappings["RetryFunction.Stream"]
    assert (ms.retries, ms.records_to_destination, ms.records_succeeded) == (2, 5, 7)


def _shard(invocation: dict[str, Any]) -> str:
    shards = {str(r["eventID"]).split(":")[0] for r in invocation["event"]["Records"]}
    assert len(shards) == 1, "a batch never mixes shards"
    return shards.pop()


def _ids_by_user(invocations: list[dict[str, Any]]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for inv in invocations:
        for record, payload_id in zip(inv["event"]["Records"], ids(inv), strict=True):
            seen.setdefault(record["kinesis"]["partitionKey"], []).append(payload_id)
    return seen


def test_per_shard_order_across_two_shards(toy: Any, read_invocations: Invocations) -> None:
    p = toy("BatchFunction", parameter_overrides={"ShardCount": 2})
    users = [f"user-{n}" for n in range(6)]
    p.put_events([{"id": i, "user_id": users[i % 6]} for i in range(60)])
    assert p.pump().quiescent
    invs = read_invocations("BatchFunction")
    assert {_shard(i) for i in invs} == {"shardId-000000000000", "shardId-000000000001"}
    by_user = _ids_by_user(invs)
    assert sorted(x for got in by_user.values() for x in got) == list(range(60))
    for user, got in by_user.items():
        assert got == sorted(got), f"{user} out of order: {got}"


def test_a_failing_shard_does_not_block_the_other(toy: Any, read_invocations: Invocations) -> None:
    p = toy("RetryFunction", parameter_overrides={"ShardCount": 2})
    users = [f"user-{n}" for n in range(6)]
    p.put_events([{"id": i, "user_id": users[i % 6], **({"action": "raise"} if i == 0 else {})} for i in range(60)])
    assert p.pump().quiescent
    invs = read_invocations("RetryFunction")
    poisoned = _shard(next(i for i in invs if 0 in ids(i)))
    mine = [i for i in invs if _shard(i) == poisoned]
    assert ids(mine[0]) == ids(mine[1]) == ids(mine[2]), "the poisoned batch is retried before moving on"
    third_attempt = invs.index(mine[2])
    assert any(_shard(i) != poisoned for i in invs[:third_attempt]), "the other shard kept going"
    for user, got in _ids_by_user(invs).items():
        deduped = list(dict.fromkeys(got))
        assert deduped == sorted(deduped), f"{user} out of order: {got}"
    (message,) = receive_json(p, "ToyDeadLetterQueue")
    assert message["KinesisBatchInfo"]["shardId"] == poisoned


def test_record_age_exceeded_with_simulated_clock(toy: Any, read_invocations: Invocations) -> None:
    clock = SimulatedClock(1_700_000_000.0)
    p = toy("AgeFunction", clock=clock)
    p.put_events([{"id": i} for i in range(3)], partition_key=lambda e: "k")
    clock.advance(120)
    p.put_events([{"id": i} for i in range(3, 5)], partition_key=lambda e: "k")
    assert p.pump().quiescent

    (inv,) = read_invocations("AgeFunction")
    assert ids(inv) == [3, 4]
    assert {r["kinesis"]["approximateArrivalTimestamp"] for r in inv["event"]["Records"]} == {1_700_000_120.0}
    (message,) = receive_json(p, "ToyDeadLetterQueue")
    assert message["requestContext"]["condition"] == "RecordAgeExceeded"
    assert message["requestContext"]["approximateInvokeCount"] == 0
    assert message["timestamp"] == iso_z(1_700_000_120.0)
    info = message["KinesisBatchInfo"]
    assert info["batchSize"] == 3
    assert info["approximateArrivalOfFirstRecord"] == "2023-11-14T22:13:20.000Z"
    ms = p.stats().mappings["AgeFunction.Stream"]
    assert (ms.records_expired, ms.records_to_destination, ms.records_succeeded) == (3, 3, 2)


def test_dynamodb_stream_new_image_records_and_filter(toy: Any, read_invocations: Invocations) -> None:
    clock = SimulatedClock(1_700_000_000.7)
    p = toy("TableFunction", clock=clock)
    ddb, table = p.client("dynamodb"), p.resources["ToyTable"].ref
    ddb.put_item(TableName=table, Item={"pk": {"S": "a"}, "kind": {"S": "keep"}, "n": {"N": "1"}})
    ddb.put_item(TableName=table, Item={"pk": {"S": "b"}, "kind": {"S": "drop"}})
    ddb.put_item(TableName=table, Item={"pk": {"S": "a"}, "kind": {"S": "keep"}, "n": {"N": "2"}})
    ddb.delete_item(TableName=table, Key={"pk": {"S": "b"}})
    assert p.pump().quiescent

    (inv,) = read_invocations("TableFunction")
    records = inv["event"]["Records"]
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY"]
    record = records[1]
    assert set(record) == {
        "eventID",
        "eventName",
        "eventVersion",
        "eventSource",
        "awsRegion",
        "dynamodb",
        "eventSourceARN",
    }
    assert (record["eventVersion"], record["eventSource"], record["awsRegion"]) == (
        "1.1",
        "aws:dynamodb",
        "us-east-1",
    )
    assert record["eventSourceARN"] == p.resources["ToyTable"].attributes["StreamArn"]
    ddb_part = record["dynamodb"]
    assert set(ddb_part) == {
        "ApproximateCreationDateTime",
        "Keys",
        "NewImage",
        "SequenceNumber",
        "SizeBytes",
        "StreamViewType",
    }
    assert ddb_part["StreamViewType"] == "NEW_IMAGE"
    assert ddb_part["Keys"] == {"pk": {"S": "a"}}
    assert ddb_part["NewImage"] == {"pk": {"S": "a"}, "kind": {"S": "keep"}, "n": {"N": "2"}}
    assert ddb_part["ApproximateCreationDateTime"] == 1_700_000_000
    assert int(records[0]["dynamodb"]["SequenceNumber"]) < int(ddb_part["SequenceNumber"])
    ms = p.stats().mappings["TableFunction.Changes"]
    assert (ms.records_read, ms.records_filtered, ms.records_delivered) == (4, 2, 2)


def test_pump_drains_work_handlers_cause_on_other_streams(toy: Any, read_invocations: Invocations) -> None:
    p = toy("BatchFunction", "TableFunction")
    p.put_events([{"id": "x1", "user_id": "u", "action": "write"}, {"id": "x2", "user_id": "u"}])
    result = p.pump()
    assert result.quiescent and result.invocations == 2
    (table_inv,) = read_invocations("TableFunction")
    assert [r["dynamodb"]["Keys"] for r in table_inv["event"]["Records"]] == [{"pk": {"S": "x1"}}]
    assert table_inv["service"] == "table"


def test_batching_window_is_honoured_when_polling_live(toy: Any, read_invocations: Invocations) -> None:
    p = toy("WindowFunction")
    p.put_events([{"id": 0}, {"id": 1}], partition_key=lambda e: "k")
    p.poll_once(honor_window=True)
    assert read_invocations("WindowFunction") == []  # 2 < BatchSize, window (1 s) still open
    p.put_events([{"id": 2}], partition_key=lambda e: "k")
    p.poll_once(honor_window=True)  # a full batch goes at once
    p.put_events([{"id": 3}], partition_key=lambda e: "k")
    p.poll_once(honor_window=True)
    assert [ids(i) for i in read_invocations("WindowFunction")] == [[0, 1, 2]]
    time.sleep(1.05)
    p.poll_once(honor_window=True)
    p.put_events([{"id": 4}], partition_key=lambda e: "k")
    assert p.pump().quiescent  # a drain does not wait for windows
    assert [ids(i) for i in read_invocations("WindowFunction")] == [[0, 1, 2], [3], [4]]


def test_sns_on_failure_destination(toy: Any) -> None:
    p = toy("WindowFunction")
    sqs, sns = p.client("sqs"), p.client("sns")
    url = sqs.create_queue(QueueName="watch")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = p.resources["ToyTopic"].ref
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    seqs = p.put_events([{"id": 0, "action": "raise"}], partition_key=lambda e: "k")
    assert p.pump().quiescent
    (message,) = receive_json(p, url)
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 1  # MaximumRetryAttempts 0
    assert message["KinesisBatchInfo"]["startSequenceNumber"] == seqs[0]
