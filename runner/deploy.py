"""Deploy the SAM template through CloudFormation (moto's, or any endpoint) and read the stack back.

This is what `sam package` + `sam deploy` do, minus the CLI: zip every CodeUri/ContentUri
directory into an S3 bucket, expand the Serverless transform with aws-sam-translator (the
library SAM CLI and CloudFormation use), and create the stack. ``deployed_stack`` then turns
the stack's resources and outputs into the runner's ``Stack``, so LocalPipeline can drive the
handlers against what CloudFormation created instead of creating resources itself.
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from runner.resources import Stack
from runner.template import AWS_FUNCTION, PhysicalResource, load_yaml, scalar_str

ARTIFACT_KEYS = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}
TERMINAL_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE"}


def zip_dir(directory: Path) -> bytes:
    """Zip a directory's files with paths relative to it (as Lambda unpacks code and layers)."""
    buffer = io.BytesIO()
    # Stored, not deflated: moto does not care and the 130 MB dependencies layer zips in ~1 s.
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def package(
    template_path: Path, s3: Any, bucket: str, *, build_dir: Path | None = None, prefix: str = "artifacts"
) -> dict[str, Any]:
    """Upload each function's and layer's directory and point the template at the S3 objects.

    With build_dir (`.aws-sam/build`), the artifact of a resource is the directory `sam build`
    made for it (named after its logical id), as `sam package` would upload; resources without
    one, or no build_dir, fall back to the CodeUri/ContentUri directory next to the template.
    """
    template = load_yaml(template_path)
    packaged = copy.deepcopy(template)
    for logical_id, resource in (packaged.get("Resources") or {}).items():
        key_name = ARTIFACT_KEYS.get(str(resource.get("Type")))
        props = resource.get("Properties") or {}
        uri = props.get(key_name) if key_name else None
        if not isinstance(uri, str) or uri.startswith("s3://"):
            continue
        built = build_dir / logical_id if build_dir is not None else None
        directory = built if built is not None and built.is_dir() else (template_path.parent / uri).resolve()
        if not directory.is_dir():
            raise FileNotFoundError(f"{logical_id}: {key_name} {uri} is not a directory")
        key = f"{prefix}/{logical_id}.zip"
        s3.put_object(Bucket=bucket, Key=key, Body=zip_dir(directory))
        props[key_name] = f"s3://{bucket}/{key}"
    return packaged


def transform(template: Mapping[str, Any], parameters: Mapping[str, str], region: str) -> dict[str, Any]:
    """Expand AWS::Serverless-2016-10-31 into plain CloudFormation, as the service would."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.public.exceptions import InvalidDocumentException
    from samtranslator.translator.translator import Translator

    # managed_policy_map=None: the translator's bundled table of AWS managed policy ARNs.
    translator = Translator(
        managed_policy_map=None, sam_parser=Parser(), boto_session=boto3.session.Session(region_name=region)
    )
    try:
        result: dict[str, Any] = translator.translate(sam_template=dict(template), parameter_values=dict(parameters))
    except InvalidDocumentException as exc:
        causes = "; ".join(str(cause) for cause in exc.causes)
        raise ValueError(f"SAM transform failed: {causes}") from exc
    return result


def create_stack(
    cloudformation: Any,
    stack_name: str,
    template: Mapping[str, Any],
    parameters: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Create the stack and wait for a terminal state; raises unless it is CREATE_COMPLETE."""
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": str(v)} for k, v in (parameters or {}).items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    cloudformation.get_waiter("stack_create_complete").wait(
        StackName=stack_name, WaiterConfig={"Delay": 1, "MaxAttempts": 600}
    )
    stack: dict[str, Any] = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    if stack["StackStatus"] not in TERMINAL_OK:
        raise RuntimeError(f"{stack_name}: {stack['StackStatus']} {stack.get('StackStatusReason', '')}")
    return stack


def deployed_stack(clients: Callable[[str], Any], stack_name: str, region: str, account_id: str) -> Stack:
    """The runner's view of a stack CloudFormation created: Ref values, the GetAtt attributes the
    template uses, and the outputs. Resources CloudFormation reports without a physical id (types
    the backend does not emulate) are kept as not created."""
    cloudformation = clients("cloudformation")
    description = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
    resources: dict[str, PhysicalResource] = {}
    skipped: dict[str, str] = {}
    paginator = cloudformation.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=stack_name):
        for summary in page["StackResourceSummaries"]:
            logical_id = summary.get("LogicalResourceId")
            rtype = summary.get("ResourceType", "")
            physical_id = summary.get("PhysicalResourceId")
            if not logical_id:
                continue
            if not physical_id:
                skipped[logical_id] = f"{rtype} has no physical id in this CloudFormation"
                resources[logical_id] = PhysicalResource(logical_id, rtype, logical_id, created=False)
                continue
            attributes = _attributes(clients, rtype, physical_id, region, account_id)
            resources[logical_id] = PhysicalResource(logical_id, rtype, physical_id, attributes)
    return Stack(stack_name, region, account_id, resources, outputs, skipped)


def _attributes(clients: Callable[[str], Any], rtype: str, ref: str, region: str, account: str) -> dict[str, str]:
    if rtype == "AWS::Kinesis::Stream":
        summary = clients("kinesis").describe_stream_summary(StreamName=ref)["StreamDescriptionSummary"]
        return {"Arn": summary["StreamARN"]}
    if rtype == "AWS::DynamoDB::Table":
        table = clients("dynamodb").describe_table(TableName=ref)["Table"]
        attributes = {"Arn": table["TableArn"]}
        if table.get("LatestStreamArn"):
            attributes["StreamArn"] = table["LatestStreamArn"]
        return attributes
    if rtype == "AWS::S3::Bucket":
        return {"Arn": f"arn:aws:s3:::{ref}", "DomainName": f"{ref}.s3.amazonaws.com"}
    if rtype == "AWS::SNS::Topic":
        return {"Arn": ref, "TopicArn": ref, "TopicName": ref.rsplit(":", 1)[-1]}
    if rtype == "AWS::SQS::Queue":
        arn = clients("sqs").get_queue_attributes(QueueUrl=ref, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return {"Arn": arn, "QueueName": ref.rstrip("/").rsplit("/", 1)[-1], "QueueUrl": ref}
    if rtype == AWS_FUNCTION:
        return {"Arn": f"arn:aws:lambda:{region}:{account}:function:{ref}"}
    return {}


def function_environment(lambda_client: Any, function_name: str) -> dict[str, str]:
    """The environment CloudFormation gave a deployed function (what its handler will read)."""
    config = lambda_client.get_function_configuration(FunctionName=function_name)
    variables: dict[str, Any] = (config.get("Environment") or {}).get("Variables") or {}
    # Lambda stores strings; moto's CloudFormation passes Number parameters through as numbers.
    return {key: scalar_str(value) for key, value in variables.items()}
