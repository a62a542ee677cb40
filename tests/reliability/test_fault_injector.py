"""The fault injector itself: each kind produces the failure it claims, and is counted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from runner.faults import ConcurrentWrite, FaultInjector, FunctionCrash, FunctionTimeout

REGION = "us-east-1"
NO_SDK_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def client(service: str, config: Config | None = None) -> Any:
    # A new session: sessions pick up botocore hooks when created (as a handler's cold start does).
    return boto3.session.Session().client(service, region_name=REGION, config=config or NO_SDK_RETRY)


def make_table(dynamodb: Any) -> None:
    dynamodb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="t", Item={"user_id": {"S": "u1"}, "version": {"N": "1"}})


def test_nothing_is_injected_outside_a_handler_invocation(aws: None) -> None:
    with FaultInjector({"dynamodb_throttle": 1.0, "timeout": 1.0}) as injector:
        make_table(client("dynamodb"))
    assert injector.total == 0


def test_throttling_reaches_the_caller_as_the_real_error_and_the_sdk_retries_it(aws: None) -> None:
    with FaultInjector({"dynamodb_throttle": 1.0}) as injector:
        dynamodb = client("dynamodb", Config(retries={"max_attempts": 3, "mode": "standard"}))
        make_table(dynamodb)
        with injector.invocation("F"), pytest.raises(ClientError) as error:
            dynamodb.get_item(TableName="t", Key={"user_id": {"S": "u1"}})
    assert error.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert injector.injected["dynamodb_throttle"] == 4  # the first attempt and three SDK retries
    assert injector.sdk_backoff_s > 0  # counted, not slept


def test_s3_and_sns_failures_are_server_errors(aws: None) -> None:
    with FaultInjector({"s3_internal_error": 1.0, "sns_publish_failure": 1.0}) as injector:
        s3, sns = client("s3"), client("sns")
        s3.create_bucket(Bucket="fault-bucket")
        topic = sns.create_topic(Name="t")["TopicArn"]
        with injector.invocation("F"):
            with pytest.raises(ClientError) as s3_error:
                s3.put_object(Bucket="fault-bucket", Key="k", Body=b"x")
            with pytest.raises(ClientError) as sns_error:
                sns.publish(TopicArn=topic, Message="m")
        assert "Contents" not in s3.list_objects_v2(Bucket="fault-bucket")  # the write never happened
    assert s3_error.value.response["Error"]["Code"] == "InternalError"
    assert sns_error.value.response["Error"]["Code"] == "InternalError"
    assert injector.injected["s3_internal_error"] == 1 and injector.injected["sns_publish_failure"] == 1


RACE = ConcurrentWrite(
    condition_marker="version = :expected",
    update_expression="ADD version :one SET last_writer = :w",
    values={":one": {"N": "1"}, ":w": {"S": "other-writer"}},
    guard="attribute_exists(version)",
)


def test_a_race_is_a_real_concurrent_write_and_a_real_conditional_failure(aws: None) -> None:
    with pytest.raises(ValueError, match="race"):
        FaultInjector({"conditional_race": 1.0})  # the caller says which writes race, and how
    with FaultInjector({"conditional_race": 1.0}, client=client, race=RACE) as injector:
        dynamodb = client("dynamodb")
        make_table(dynamodb)
        with injector.invocation("F"):  # a write the race does not recognise is left alone
            dynamodb.put_item(
                TableName="t", Item={"user_id": {"S": "u2"}}, ConditionExpression="attribute_not_exists(user_id)"
            )
        assert injector.injected["conditional_race"] == 0
        with injector.invocation("F"), pytest.raises(ClientError) as error:
            dynamodb.put_item(
                TableName="t",
                Item={"user_id": {"S": "u1"}, "version": {"N": "2"}},
                ConditionExpression="version = :expected",
                ExpressionAttributeValues={":expected": {"N": "1"}},
            )
        item = dynamodb.get_item(TableName="t", Key={"user_id": {"S": "u1"}})["Item"]
    assert error.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert item["version"] == {"N": "2"} and item["last_writer"] == {"S": "other-writer"}  # the other writer's
    assert injector.injected["conditional_race"] == 1


def test_a_crash_happens_after_the_write_landed_and_a_timeout_before_the_call(aws: None) -> None:
    with FaultInjector({"crash_mid_batch": 1.0}, seed=3) as crashing:
        dynamodb = client("dynamodb")
        make_table(dynamodb)
        with crashing.invocation("F"), pytest.raises(FunctionCrash):
            for n in range(5):
                dynamodb.put_item(TableName="t", Item={"user_id": {"S": f"w{n}"}})
        landed = dynamodb.scan(TableName="t")["Count"] - 1
    assert 1 <= landed <= 3 and crashing.injected["crash_mid_batch"] == 1
    with FaultInjector({"timeout": 1.0}) as timing_out:
        dynamodb = client("dynamodb")
        with timing_out.invocation("F"), pytest.raises(FunctionTimeout):
            for n in range(10):
                dynamodb.put_item(TableName="t", Item={"user_id": {"S": f"x{n}"}})
        written = sum(1 for i in dynamodb.scan(TableName="t")["Items"] if i["user_id"]["S"].startswith("x"))
    assert written < 6 and timing_out.injected["timeout"] == 1
