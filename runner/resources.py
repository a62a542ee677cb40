"""Create the template's resources in moto (in-process or a moto server) under stack-derived names."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runner.template import (
    SAM_FUNCTION,
    PhysicalResource,
    Resolver,
    Template,
    TemplateError,
    referenced_ids,
    scalar_str,
)

log = logging.getLogger(__name__)

# Resource types that only matter to a real deployment (permissions, layers packaging).
IGNORED_TYPES = (
    "AWS::S3::BucketPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::IAM::Role",
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::Lambda::Permission",
    "AWS::Logs::LogGroup",
    "AWS::CloudWatch::Alarm",
    "AWS::CloudWatch::Dashboard",
    "AWS::Serverless::LayerVersion",
    "AWS::Lambda::LayerVersion",
    SAM_FUNCTION,
)


@dataclass
class Stack:
    stack_name: str
    region: str
    account_id: str
    resources: dict[str, PhysicalResource]
    outputs: dict[str, str]
    skipped: dict[str, str]


def physical_name(stack_name: str, logical_id: str, *, lower: bool = False, max_len: int = 128) -> str:
    name = f"{stack_name}-{logical_id}"
    name = re.sub(r"[^A-Za-z0-9._-]", "-", name)
    return (name.lower() if lower else name)[:max_len]


class StackBuilder:
    """Creates resources in dependency order, resolving each one's properties as it goes."""

    def __init__(
        self,
        template: Template,
        clients: Callable[[str], Any],
        *,
        stack_name: str,
        region: str,
        account_id: str,
    ) -> None:
        self._template = template
        self._client = clients
        self._stack_name = stack_name
        self._region = region
        self._account = account_id
        self._physical: dict[str, PhysicalResource] = {}
        self._skipped: dict[str, str] = {}
        self.resolver = Resolver(
            template, stack_name=stack_name, region=region, account_id=account_id, physical=self._physical
        )
        self._creators: dict[str, Callable[[str, dict[str, Any]], PhysicalResource]] = {
            "AWS::Kinesis::Stream": self._kinesis_stream,
            "AWS::DynamoDB::Table": self._dynamodb_table,
            "AWS::S3::Bucket": self._s3_bucket,
            "AWS::SNS::Topic": self._sns_topic,
            "AWS::SQS::Queue": self._sqs_queue,
            "AWS::SNS::Subscription": self._sns_subscription,
            "AWS::KMS::Key": self._kms_key,
            "AWS::KMS::Alias": self._kms_alias,
        }

    def build(self) -> Stack:
        for logical_id in self._creation_order():
            spec = self._template.resources[logical_id]
            condition = spec.get("Condition")
            if condition is not None and not self.resolver.condition(str(condition)):
                self._skipped[logical_id] = f"condition {condition} is false"
                continue
            rtype = str(spec.get("Type"))
            creator = self._creators.get(rtype)
            if creator is None:
                self._physical[logical_id] = self._placeholder(logical_id, rtype)
                if rtype not in IGNORED_TYPES:
                    self._skipped[logical_id] = f"{rtype} is not emulated by the local runner"
                    log.warning("local runner does not create %s (%s)", logical_id, rtype)
                continue
            props = self.resolver.resolve(spec.get("Properties") or {})
            self._physical[logical_id] = creator(logical_id, props)
        outputs = {
            name: self.resolver.resolve_str(out.get("Value"))
            for name, out in self._template.outputs.items()
            if out.get("Condition") is None or self.resolver.condition(str(out["Condition"]))
        }
        return Stack(self._stack_name, self._region, self._account, dict(self._physical), outputs, self._skipped)

    def _creation_order(self) -> list[str]:
        resources = self._template.resources
        deps: dict[str, set[str]] = {}
        for logical_id, spec in resources.items():
            refs = set(referenced_ids(spec.get("Properties") or {}))
            depends_on = spec.get("DependsOn") or []
            refs.update([depends_on] if isinstance(depends_on, str) else depends_on)
            deps[logical_id] = {r for r in refs if r in resources and r != logical_id}
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(node: str, path: tuple[str, ...]) -> None:
            if state.get(node) == 2:
                return
            if state.get(node) == 1:
                raise TemplateError(f"circular dependency: {' -> '.join((*path, node))}")
            state[node] = 1
            for dep in sorted(deps[node]):
                visit(dep, (*path, node))
            state[node] = 2
            order.append(node)

        for logical_id in resources:
            visit(logical_id, ())
        return order

    # ------------------------------------------------------------ per-type creators

    def _arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self._region}:{self._account}:{resource}"

    def _placeholder(self, logical_id: str, rtype: str) -> PhysicalResource:
        name = physical_name(self._stack_name, logical_id)
        if rtype in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            arn = self._arn("lambda", f"layer:{name}:1")
            return PhysicalResource(logical_id, rtype, arn, {"Arn": arn}, created=False)
        if rtype == SAM_FUNCTION:
            props = self._template.resources[logical_id].get("Properties") or {}
            fn_name = props.get("FunctionName")
            fname = self.resolver.resolve_str(fn_name) if fn_name is not None else name[:64]
            arn = self._arn("lambda", f"function:{fname}")
            return PhysicalResource(logical_id, rtype, fname, {"Arn": arn}, created=False)
        return PhysicalResource(logical_id, rtype, name, {"Arn": self._arn("local", name)}, created=False)

    def _kinesis_stream(self, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
        name = str(props.get("Name") or physical_name(self._stack_name, logical_id))
        kinesis = self._client("kinesis")
        mode = (props.get("StreamModeDetails") or {}).get("StreamMode", "PROVISIONED")
        if mode == "ON_DEMAND":
            # On-demand streams start with 4 shards in AWS.
            kinesis.create_stream(StreamName=name, ShardCount=4)
        else:
            kinesis.create_stream(StreamName=name, ShardCount=int(props.get("ShardCount", 1)))
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        retention = props.get("RetentionPeriodHours")
        if retention is not None and int(retention) > 24:
            kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=int(retention))
        return PhysicalResource(logical_id, "AWS::Kinesis::Stream", name, {"Arn": summary["StreamARN"]})

    def _dynamodb_table(self, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
        name = str(props.get("TableName") or physical_name(self._stack_name, logical_id, max_len=255))
        billing = props.get("BillingMode", "PROVISIONED")
        request: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": billing,
        }
        throughput = props.get("ProvisionedThroughput") or {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        if billing != "PAY_PER_REQUEST":
            request["ProvisionedThroughput"] = _int_values(throughput)
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            indexes = props.get(key)
            if not indexes:
                continue
            cleaned = []
            for index in indexes:
                index = dict(index)
                if billing == "PAY_PER_REQUEST":
                    index.pop("ProvisionedThroughput", None)
                elif key == "GlobalSecondaryIndexes" and "ProvisionedThroughput" not in index:
                    index["ProvisionedThroughput"] = _int_values(throughput)
                cleaned.append(index)
            request[key] = cleaned
        stream_spec = props.get("StreamSpecification")
        if stream_spec:
            request["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": stream_spec["StreamViewType"],
            }
        dynamodb = self._client("dynamodb")
        table = dynamodb.create_table(**request)["TableDescription"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        attributes = {"Arn": table["TableArn"]}
        if table.get("LatestStreamArn"):
            attributes["StreamArn"] = table["LatestStreamArn"]
        return PhysicalResource(logical_id, "AWS::DynamoDB::Table", name, attributes)

    def _s3_bucket(self, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
        name = str(props.get("BucketName") or physical_name(self._stack_name, logical_id, lower=True, max_len=63))
        s3 = self._client("s3")
        if self._region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": self._region})
        status = (props.get("VersioningConfiguration") or {}).get("Status")
        if status:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": status})
        attributes = {
            "Arn": f"arn:aws:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{self._region}.amazonaws.com",
        }
        return PhysicalResource(logical_id, "AWS::S3::Bucket", name, attributes)

    def _sns_topic(self, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
        fifo = bool(props.get("FifoTopic"))
        default = physical_name(self._stack_name, logical_id, max_len=251) + (".fifo" if fifo else "")
        name = str(props.get("TopicName") or default)
        attributes: dict[str, str] = {}
        if fifo:
            attributes["FifoTopic"] = "true"
            if props.get("ContentBasedDeduplication"):
                attributes["ContentBasedDeduplication"] = "true"
        sns = self._client("sns")
        arn = sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
        for sub in props.get("Subscription") or []:
            sns.subscribe(TopicArn=arn, Protocol=sub["Protocol"], Endpoint=sub["Endpoint"])
        return PhysicalResource(logical_id, "AWS::SNS::Topic", arn, {"TopicArn": arn, "TopicName": name, "Arn": arn})

    def _sqs_queue(self, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
        fifo = bool(props.get("FifoQueue"))
        default = physical_name(self._stack_name, logical_id, max_len=75) + (".fifo" if fifo else "")
        name = str(props.get("QueueName") or default)
        attributes: dict[str, str] = {}
        for key in (
            "DelaySeconds",
            "MaximumMessageSize",
            "MessageRetentionPeriod",
            "ReceiveMessageWaitTimeSeconds",
            "VisibilityTimeout",
            "FifoQueue",
            "ContentBasedDeduplication",
            "SqsManagedSseEnabled",
        ):
            if key in props:
                attributes[key] = scalar_str(props[key])
        for key in ("RedrivePolicy", "RedriveAllowPolicy"):
            if key in props:
                value = props[key]
                attributes[key] = value if isinstance(value, str) else json.dumps(value)
        sqs = self._client("sqs")
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return PhysicalResource(logical_id, "AWS::SQS::Queue", url, {"Arn": arn, "QueueName": name, "QueueUrl": url})

    def _sns_subscription(self, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
        attributes = {}
        if props.get("RawMessageDelivery"):
            attributes["RawMessageDelivery"] = "true"
        if props.get("FilterPolicy"):
            attributes["FilterPolicy"] = json.dumps(props["FilterPolicy"])
        arn = self._client("sns").subscribe(
            TopicArn=props["TopicArn"],
            Protocol=props["Protocol"],
            Endpoint=props["Endpoint"],
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        return PhysicalResource(logical_id, "AWS::SNS::Subscription", arn, {"Arn": arn})

    def _kms_key(self, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
        # Ref is the key id, as in CloudFormation; the data services here do not enforce the key.
        kms = self._client("kms")
        key = kms.create_key(Description=str(props.get("Description", logical_id)))["KeyMetadata"]
        if props.get("EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=key["KeyId"])
        return PhysicalResource(logical_id, "AWS::KMS::Key", key["KeyId"], {"Arn": key["Arn"], "KeyId": key["KeyId"]})

    def _kms_alias(self, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
        name = str(props["AliasName"])
        self._client("kms").create_alias(AliasName=name, TargetKeyId=str(props["TargetKeyId"]))
        return PhysicalResource(logical_id, "AWS::KMS::Alias", name)


def _int_values(throughput: dict[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in throughput.items()}
