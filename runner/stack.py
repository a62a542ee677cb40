"""The stack as CloudFormation created it: each resource's Ref value and GetAtt attributes, outputs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner import moto_cfn
from runner.deploy import create_stack, package_stubs, transform, unemulated_quiet, without_aliases

Clients = Callable[[str], Any]


@dataclass
class PhysicalResource:
    logical_id: str
    type: str
    ref: str
    attributes: dict[str, str] = field(default_factory=dict)
    created: bool = True

    @property
    def arn(self) -> str | None:
        return self.attributes.get("Arn")

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "ref": self.ref, "created": self.created, **self.attributes}


@dataclass
class Stack:
    stack_name: str
    region: str
    account_id: str
    resources: dict[str, PhysicalResource]
    outputs: dict[str, str]
    parameters: dict[str, str]
    # Logical id -> why it has no physical resource (a type the backend does not emulate).
    skipped: dict[str, str]

    def of_type(self, rtype: str) -> dict[str, PhysicalResource]:
        return {lid: r for lid, r in self.resources.items() if r.type == rtype and r.created}


def deploy_local(
    template: Mapping[str, Any],
    clients: Clients,
    stack_name: str,
    parameters: Mapping[str, str],
    region: str,
    *,
    create: bool = True,
) -> tuple[Stack, dict[str, Any]]:
    """Create the SAM template's stack with stub artifacts (create=False: read the existing one).

    Returns the stack and the expanded template, made either way: it says which layers each
    function has, which moto's Lambda does not report.
    """
    expanded = transform(package_stubs(template, clients("s3") if create else None), parameters, region)
    account_id = str(clients("sts").get_caller_identity()["Account"])
    with unemulated_quiet():
        if create:
            # Scheduler, Glue and Athena resources and state machine substitutions (runner/moto_cfn.py).
            moto_cfn.install()
            create_stack(clients("cloudformation"), stack_name, without_aliases(expanded), parameters)
        stack = read_stack(clients, stack_name, region, account_id)
    if create:
        apply_dropped_properties(stack, expanded, clients)
    detach_moto_delivery(stack)
    return stack, expanded


def read_stack(clients: Clients, stack_name: str, region: str, account_id: str) -> Stack:
    """Resources reported without a physical id (moto creates no alarms, bucket policies or
    permissions) are kept as not created."""
    cloudformation = clients("cloudformation")
    description = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    stack = Stack(
        stack_name,
        region,
        account_id,
        resources={},
        outputs={o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])},
        parameters={p["ParameterKey"]: p.get("ParameterValue", "") for p in description.get("Parameters", [])},
        skipped={},
    )
    for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name):
        for summary in page["StackResourceSummaries"]:
            lid, rtype, ref = (
                summary.get("LogicalResourceId"),
                summary["ResourceType"],
                summary.get("PhysicalResourceId"),
            )
            if lid and ref:
                stack.resources[lid] = PhysicalResource(lid, rtype, ref, _attributes(clients, rtype, ref, stack))
            elif lid:
                stack.skipped[lid] = f"{rtype} has no physical id in this CloudFormation"
                stack.resources[lid] = PhysicalResource(lid, rtype, lid, created=False)
    return stack


def _attributes(clients: Clients, rtype: str, ref: str, stack: Stack) -> dict[str, str]:
    """The GetAtt attributes callers use (CloudFormation has no API for them)."""
    if rtype == "AWS::Kinesis::Stream":
        return {
            "Arn": clients("kinesis").describe_stream_summary(StreamName=ref)["StreamDescriptionSummary"]["StreamARN"]
        }
    if rtype == "AWS::DynamoDB::Table":
        table = clients("dynamodb").describe_table(TableName=ref)["Table"]
        return {
            "Arn": table["TableArn"],
            **({"StreamArn": table["LatestStreamArn"]} if "LatestStreamArn" in table else {}),
        }
    if rtype == "AWS::SNS::Topic":
        return {"Arn": ref, "TopicArn": ref, "TopicName": ref.rsplit(":", 1)[-1]}
    if rtype == "AWS::SQS::Queue":
        arn = clients("sqs").get_queue_attributes(QueueUrl=ref, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return {"Arn": arn, "QueueName": ref.rstrip("/").rsplit("/", 1)[-1], "QueueUrl": ref}
    where = f"{stack.region}:{stack.account_id}"
    return {
        "AWS::S3::Bucket": {"Arn": f"arn:aws:s3:::{ref}", "DomainName": f"{ref}.s3.amazonaws.com"},
        "AWS::Lambda::Function": {"Arn": f"arn:aws:lambda:{where}:function:{ref}"},
        "AWS::Events::Rule": {"Arn": f"arn:aws:events:{where}:rule/{ref}"},
    }.get(rtype, {})


def apply_dropped_properties(stack: Stack, expanded: Mapping[str, Any], clients: Clients) -> None:
    """Apply the properties moto's CloudFormation drops that moto itself emulates: a bucket's
    versioning (erasure must then remove every version) and a table's TTL setting."""
    for lid, spec in (expanded.get("Resources") or {}).items():
        resource, props = stack.resources.get(lid), spec.get("Properties") or {}
        if resource is None or not resource.created:
            continue
        status = (props.get("VersioningConfiguration") or {}).get("Status")
        if resource.type == "AWS::S3::Bucket" and isinstance(status, str):
            clients("s3").put_bucket_versioning(Bucket=resource.ref, VersioningConfiguration={"Status": status})
        ttl = props.get("TimeToLiveSpecification") or {}
        if resource.type == "AWS::DynamoDB::Table" and ttl.get("Enabled") is True:
            spec = {"Enabled": True, "AttributeName": str(ttl["AttributeName"])}
            clients("dynamodb").update_time_to_live(TableName=resource.ref, TimeToLiveSpecification=spec)


def detach_moto_delivery(stack: Stack) -> None:
    """Stop moto from delivering the stack's stream records to mapped functions itself.

    moto invokes the functions mapped to a Kinesis stream or DynamoDB table on every write
    (through Docker) and, for DynamoDB, then empties the stream. Here the runner is the poller,
    and a real stream keeps its records for its retention period whoever reads them. A no-op
    when moto does not run in this process (its backends then hold none of these resources).
    """
    from moto.dynamodb.models import dynamodb_backends
    from moto.kinesis.models import kinesis_backends

    holders: dict[str, Mapping[str, Any]] = {
        "AWS::DynamoDB::Table": dynamodb_backends[stack.account_id][stack.region].tables,
        "AWS::Kinesis::Stream": kinesis_backends[stack.account_id][stack.region].streams,
    }
    for rtype, objects in holders.items():
        for resource in stack.of_type(rtype).values():
            if (found := objects.get(resource.ref)) is not None:
                found.lambda_event_source_mappings.clear()
