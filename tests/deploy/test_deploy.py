"""template.yaml deployed through CloudFormation (moto's), then the pipeline run on what it created.

Packaging uploads the source directories the template names, or with NUDGE_BUILD_DIR set (as
`make deploy-test` does after `sam build`) the built artifacts, and then the handlers import
`shared` from the built shared layer and read the model from the built model layer.
The Serverless transform is aws-sam-translator's, the library SAM CLI and CloudFormation use.
The runner then reads the stack's resources and outputs and gives each handler the environment
CloudFormation gave the deployed function: the stack, not the runner, decides what the code sees.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.awslambda.models import LambdaBackend

from runner import moto_cfn
from runner.clock import SimulatedClock
from runner.deploy import create_stack, load_yaml, transform, without_aliases
from runner.pipeline import LocalPipeline
from shared.adapters.catalog import Catalog
from shared.adapters.dynamo_codec import from_dynamo
from shared.adapters.object_archive import ObjectArchive
from shared.domain.catalog import CatalogItem
from shared.domain.contract import BehaviourEvent
from testkit import traffic
from testkit.queues import receive_json, receive_messages
from tests.deploy.packaging import package

pytestmark = [pytest.mark.deploy, pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")]

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
STACK = "nudge-deploy-test"
T0 = datetime(2026, 11, 27, 10, tzinfo=UTC)
PARAMETERS = {"ShardCount": "1", "DailyPushCap": "2", "ExplorationShare": "0.1", "AlarmEmail": ""}
# Types moto's CloudFormation accepts without creating anything (it reports no physical id).
# A real deployment creates them; the template's own lint (cfn-lint, sam validate) checks them.
NOT_EMULATED = {"AWS::S3::BucketPolicy", "AWS::CloudWatch::Alarm", "AWS::Lambda::Permission", "AWS::Lambda::Version"}
# Not even accepted: runner.deploy.without_aliases drops them and points their references at the function.
NOT_EMULATED |= {"AWS::Lambda::Alias"}


def _build_dir() -> Path | None:
    # Opt-in: a `.aws-sam/build` left from an earlier `sam build` may predate the source under test.
    configured = os.environ.get("NUDGE_BUILD_DIR")
    if not configured:
        return None
    build_dir = Path(configured).resolve()
    if not (build_dir / "template.yaml").is_file():
        pytest.fail(f"NUDGE_BUILD_DIR={configured} holds no sam build output: run `make build`")
    return build_dir


@pytest.fixture(scope="module")
def deployed() -> Iterator[dict[str, Any]]:
    with mock_aws(), warnings.catch_warnings(), pytest.MonkeyPatch.context() as patch:
        # moto delivers DynamoDB stream records to deployed event source mappings itself (through
        # Docker) and then drops them from the stream; the runner is the poller here, and real
        # streams keep records for 24 h whoever reads them, so moto's own delivery is switched off.
        patch.setattr(LambdaBackend, "send_dynamodb_items", lambda *args, **kwargs: "")
        # moto warns for every resource type its CloudFormation does not emulate (see NOT_EMULATED).
        warnings.simplefilter("ignore", UserWarning)
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="nudge-artifacts")
        build_dir = _build_dir()
        packaged = package(TEMPLATE, s3, "nudge-artifacts", build_dir=build_dir)
        expanded = transform(packaged, PARAMETERS, REGION)
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        # The retraining job's schedule, Glue table, Athena work group and state machine substitutions.
        moto_cfn.install()
        # moto has no AWS::Lambda::Alias: references to "live" point at the function (runner/deploy.py).
        stack = create_stack(cloudformation, STACK, without_aliases(expanded), PARAMETERS)
        yield {"stack": stack, "expanded": expanded, "build_dir": build_dir, "cfn": cloudformation}


@pytest.fixture(scope="module")
def pipeline(deployed: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    build_dir: Path | None = deployed["build_dir"]
    # Without a build the runner finds the served model (/opt/model/...) in the model layer's
    # source; with one, decide reads the built layer's content instead.
    model_dir = str(build_dir / "ModelLayer" / "model" / "sasrec" / "int8") if build_dir else None
    # With a build, `shared` is imported from the built shared layer: its layout is tested too.
    paths = [build_dir / "SharedLayer" / "python"] if build_dir else None
    with (
        mock_aws(),
        LocalPipeline(
            TEMPLATE,
            deployed_stack=STACK,
            clock=SimulatedClock(T0),
            env_overrides={"DecideFunction": {"MODEL_DIR": model_dir}} if model_dir else None,
            parameter_overrides=PARAMETERS,
            log_dir=tmp_path_factory.mktemp("logs"),
            python_paths=paths,
        ) as pipe,
    ):
        yield pipe


def test_stack_reaches_create_complete_with_every_resource(deployed: dict[str, Any]) -> None:
    assert deployed["stack"]["StackStatus"] == "CREATE_COMPLETE"
    summaries = deployed["cfn"].describe_stack_resources(StackName=STACK)["StackResources"]
    with_id = {r["LogicalResourceId"] for r in summaries if r.get("PhysicalResourceId")}
    expanded = deployed["expanded"]["Resources"]
    # Conditional resources (the alarm e-mail subscription) are off with these parameters.
    missing = {lid: spec["Type"] for lid, spec in expanded.items() if lid not in with_id and "Condition" not in spec}
    # Layer versions are created (functions reference them) but moto reports them without an id.
    missing = {lid: t for lid, t in missing.items() if t != "AWS::Lambda::LayerVersion"}
    assert set(missing.values()) <= NOT_EMULATED, missing
    outputs = {o["OutputKey"] for o in deployed["stack"]["Outputs"]}
    assert {"EventsStreamName", "UserStateTableName", "PushTopicArn", "AlarmTopicArn"} <= outputs


def test_event_source_mappings_are_the_ones_the_runner_emulates(pipeline: LocalPipeline) -> None:
    """The runner drives what template.yaml declares, read back from the stack CloudFormation made."""
    declared = {
        f"{fid}.{name}": event["Properties"]
        for fid, resource in load_yaml(TEMPLATE)["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
        for name, event in (resource["Properties"].get("Events") or {}).items()
        if event["Type"] in ("Kinesis", "DynamoDB")
    }
    deployed = pipeline.client("lambda").list_event_source_mappings()["EventSourceMappings"]
    assert set(pipeline.stream_mappings) == set(declared) and len(deployed) == len(declared)
    for key, props in declared.items():
        spec = pipeline.stream_mappings[key].spec
        assert spec.batch_size == props["BatchSize"]
        assert spec.batching_window_s == props["MaximumBatchingWindowInSeconds"]
        assert spec.bisect_on_error is props["BisectBatchOnFunctionError"]
        assert spec.max_retries == props["MaximumRetryAttempts"]
        assert spec.max_record_age_s == props["MaximumRecordAgeInSeconds"]
        assert set(spec.function_response_types) == set(props["FunctionResponseTypes"])
        filters = (props.get("FilterCriteria") or {}).get("Filters", [])
        assert [json.loads(p) for p in spec.filter_patterns] == [json.loads(f["Pattern"]) for f in filters]
        source, attribute = props["Stream"]["Fn::GetAtt"]
        assert spec.source_arn == pipeline.resources[source].attributes[attribute]
        queue = props["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
        assert spec.on_failure_arn == pipeline.resources[queue].arn
    rules = pipeline.client("events").list_rules()["Rules"]
    assert [r["ScheduleExpression"] for r in rules] == ["rate(5 minutes)"]
    assert {k: s.spec.rule_arn for k, s in pipeline.schedules.items()} == {"DecideFunction.DueSweep": rules[0]["Arn"]}


def test_pipeline_runs_on_the_deployed_stack(pipeline: LocalPipeline) -> None:
    outputs = pipeline.outputs
    decide_env = pipeline.containers["DecideFunction"].environment
    assert decide_env["USER_STATE_TABLE"] == outputs["UserStateTableName"]
    assert decide_env["EXPLORATION_SHARE"] == "0.1"
    if not os.environ.get("NUDGE_BUILD_DIR"):
        # /opt/model/sasrec/int8, the served default, found in the model layer's source directory.
        assert decide_env["MODEL_DIR"] == str(ROOT / "layers" / "model" / "sasrec" / "int8")
    dynamodb = boto3.resource("dynamodb", region_name=REGION)
    catalog = Catalog(dynamodb, outputs["CatalogTableName"])
    items = ["1", "2", "3", "4", "5", "7"]
    catalog.put_many(CatalogItem(item_id=i, title=f"Film {i}") for i in items)
    sqs, sns = pipeline.client("sqs"), pipeline.client("sns")
    outbox = sqs.create_queue(QueueName="deploy-outbox")["QueueUrl"]
    outbox_arn = sqs.get_queue_attributes(QueueUrl=outbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(
        TopicArn=outputs["PushTopicArn"],
        Protocol="sqs",
        Endpoint=outbox_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    users = [f"u{i}" for i in range(6)]
    events: list[Any] = []
    for u in users:
        events.append(traffic.profile(u, T0))
        events += [
            BehaviourEvent(
                schema_version=1,
                event_id=f"{u}-{k}",
                user_id=u,
                timestamp=T0 + timedelta(minutes=k),
                type="rate",
                item_id=items[(k + len(u)) % len(items)],
                value=5.0,
            )
            for k in range(4)
        ]
    records = [json.loads(e.model_dump_json(exclude_none=True)) for e in events]
    pipeline.put_events(records, partition_key="user_id", stream=outputs["EventsStreamName"])
    assert pipeline.pump().quiescent

    archive = ObjectArchive(pipeline.client("s3"), outputs["ArchiveBucketName"])
    archived = [line for key in archive.keys("archive/") for line in archive.read_lines(key)]
    assert len(archived) == len(records)
    states = dynamodb.Table(outputs["UserStateTableName"]).scan()["Items"]
    # Each user's hot item and profile item (shared/adapters/user_state_codec.py).
    assert {s["user_id"] for s in states} == {k for u in users for k in (u, f"{u}#profile")}
    ledger = [from_dynamo(i) for i in dynamodb.Table(outputs["LedgerTableName"]).scan()["Items"]]
    assert ledger, "decide ran on the deployed user-state stream"
    pushes = receive_json(pipeline, outbox)
    assert {p["decision_id"] for p in pushes} == {r["decision_id"] for r in ledger if r.get("status") == "sent"}
    assert max(Counter(p["user_id"] for p in pushes).values(), default=0) <= 2
    for queue in ("IngestDeadLetterQueueUrl", "FeaturesDeadLetterQueueUrl", "DecideDeadLetterQueueUrl"):
        assert receive_messages(pipeline, outputs[queue]) == []
    assert all(s.errors == 0 for s in pipeline.stats().functions.values())

    # The erase function runs with the environment CloudFormation gave it and removes one user.
    erased = pipeline.invoke("EraseFunction", {"user_ids": ["u0"]})
    assert erased.ok and erased.response["users"] == 1 and erased.response["lines_removed"] == 5
    states = dynamodb.Table(outputs["UserStateTableName"]).scan()["Items"]
    # Both of the erased user's items are gone.
    assert {s["user_id"] for s in states} == {k for u in users for k in (u, f"{u}#profile")} - {"u0", "u0#profile"}
    archived = [line for key in archive.keys("archive/") for line in archive.read_lines(key)]
    assert len(archived) == len(records) - 5 and all(line["event"]["user_id"] != "u0" for line in archived)


def test_data_at_rest_is_under_the_stacks_rotating_key(deployed: dict[str, Any]) -> None:
    """What moto's CloudFormation records of the encryption settings (DynamoDB and Kinesis key
    ids it drops, so the expanded template is checked for those)."""
    summaries = deployed["cfn"].describe_stack_resources(StackName=STACK)["StackResources"]
    physical = {r.get("LogicalResourceId"): r.get("PhysicalResourceId") for r in summaries}
    key_id = physical["DataKey"]
    kms = boto3.client("kms", region_name=REGION)
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    # (moto's DescribeKey chokes on a key policy CloudFormation passed as an object; ListKeys does not.)
    key_arn = next(k["KeyArn"] for k in kms.list_keys()["Keys"] if k["KeyId"] == key_id)
    sqs = boto3.client("sqs", region_name=REGION)
    queues = [lid for lid in physical if lid and lid.endswith("DeadLetterQueue")]
    assert len(queues) == 6  # ingest, features, decide, feedback, catalog, erase
    for lid in queues:
        attributes = sqs.get_queue_attributes(QueueUrl=physical[lid], AttributeNames=["KmsMasterKeyId"])["Attributes"]
        assert attributes["KmsMasterKeyId"] == key_id, lid
    sns = boto3.client("sns", region_name=REGION)
    for lid in ("PushTopic", "AlarmTopic"):
        assert sns.get_topic_attributes(TopicArn=physical[lid])["Attributes"]["KmsMasterKeyId"] == key_id, lid
    rules = boto3.client("s3").get_bucket_encryption(Bucket=physical["ArchiveBucket"])
    default = rules["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    assert default == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}
    expanded = deployed["expanded"]["Resources"]
    for lid, spec in expanded.items():
        if spec["Type"] == "AWS::DynamoDB::Table":
            sse = spec["Properties"]["SSESpecification"]
            assert sse["SSEType"] == "KMS" and sse["KMSMasterKeyId"] == {"Ref": "DataKey"}, lid
    assert expanded["EventsStream"]["Properties"]["StreamEncryption"]["KeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    erase = boto3.client("lambda", region_name=REGION).get_function(FunctionName=physical["EraseFunction"])
    assert erase["Concurrency"]["ReservedConcurrentExecutions"] == 1


def test_roles_name_exact_resources_and_may_reach_their_dead_letter_queues(deployed: dict[str, Any]) -> None:
    """Inline statements never use a wildcard resource (the AWS-managed policies SAM attaches for
    logs, X-Ray and stream polling are listed in docs/reliability.md), and a stream consumer's role
    may send to the queue its mapping gives up to."""
    resources = deployed["expanded"]["Resources"]
    statements: dict[str, list[dict[str, Any]]] = {}
    for lid, spec in resources.items():
        if spec["Type"] == "AWS::IAM::Role":
            statements[lid] = [
                s for p in spec["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]
            ]
    function_roles = {
        spec["Properties"]["Role"]["Fn::GetAtt"][0]
        for spec in resources.values()
        if spec["Type"] == "AWS::Lambda::Function"
    }
    assert function_roles <= set(statements)
    for role, found in statements.items():
        if role in function_roles:
            # SAM's managed policies (logs, X-Ray, stream polling) name "*": the boundary caps them.
            assert resources[role]["Properties"]["PermissionsBoundary"] == {"Ref": "FunctionBoundary"}, role
        else:
            # The retraining roles (jobs, state machine, schedule) have no managed policies to cap.
            assert "ManagedPolicyArns" not in resources[role]["Properties"], role
        for statement in found:
            targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            # Only actions AWS authorises on no resource (ECR login, CloudWatch metrics) name "*", said so.
            wildcard_ok = role not in function_roles and str(statement.get("Sid", "")).endswith(
                ("HasNoResourceLevelPermissions", "HaveNoResourceLevelPermissions")
            )
            assert wildcard_ok or "*" not in targets, (role, statement)
    for spec in resources.values():
        if spec["Type"] != "AWS::Lambda::EventSourceMapping":
            continue
        # Every mapping invokes the function's alias (published versions: SnapStart).
        alias = resources[spec["Properties"]["FunctionName"]["Ref"]]
        assert alias["Type"] == "AWS::Lambda::Alias"
        function = alias["Properties"]["FunctionName"]["Ref"]
        queue = spec["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
        sends = [s for s in statements[f"{function}Role"] if "sqs:SendMessage" in s["Action"]]
        assert any(s["Resource"] == queue for s in sends), function
