"""template.yaml's scheduled retraining, deployed through moto's CloudFormation: the state machine, its
schedule and the archive table exist, and the definition calls Athena, SageMaker training and
processing with the template's parameters wired in (runner/moto_cfn.py makes what moto skips)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from runner import moto_cfn
from runner.deploy import create_stack, load_yaml, package_stubs, transform, unemulated_quiet, without_aliases
from training.sources import BEHAVIOUR_TYPES

pytestmark = [pytest.mark.deploy, pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")]

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
STACK = "nudge-retrain-test"
PARAMETERS = {
    "ShardCount": "1",
    "RetrainScheduleState": "ENABLED",
    "RetrainSchedule": "rate(3 days)",
    "RetrainWindowDays": "21",
    "RetrainHoldoutDays": "2",
    "RetrainUserSharePercent": "25",
    "RetrainInstanceType": "ml.c5.2xlarge",
    "RetrainTimeBudgetSeconds": "900",
    "PromotionMargin": "0.01",
    "ColdTolerance": "0.02",
    # A custom image in the stack's own account: the job role may pull exactly that repository.
    "TrainingImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/nudge-train:2026-12",
}


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, Any]]:
    with mock_aws(), unemulated_quiet():
        # Stub artifacts: this test is about the retraining resources, not the functions' code.
        expanded = transform(
            package_stubs(load_yaml(TEMPLATE), boto3.client("s3", region_name=REGION)), PARAMETERS, REGION
        )
        moto_cfn.install()
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        description = create_stack(cloudformation, STACK, without_aliases(expanded), PARAMETERS)
        summaries = cloudformation.describe_stack_resources(StackName=STACK)["StackResources"]
        yield {
            "outputs": {o["OutputKey"]: o["OutputValue"] for o in description["Outputs"]},
            "physical": {r.get("LogicalResourceId"): r.get("PhysicalResourceId") for r in summaries},
            "expanded": expanded,
            "sfn": boto3.client("stepfunctions", region_name=REGION),
            "scheduler": boto3.client("scheduler", region_name=REGION),
            "glue": boto3.client("glue", region_name=REGION),
            "athena": boto3.client("athena", region_name=REGION),
            "iam": boto3.client("iam", region_name=REGION),
        }


def _definition(stack: dict[str, Any]) -> dict[str, Any]:
    arn = stack["outputs"]["RetrainStateMachineArn"]
    described = stack["sfn"].describe_state_machine(stateMachineArn=arn)
    definition: dict[str, Any] = json.loads(described["definition"])
    return definition


def test_state_machine_exists_with_its_role_and_output(stack: dict[str, Any]) -> None:
    arn = stack["outputs"]["RetrainStateMachineArn"]
    machines = stack["sfn"].list_state_machines()["stateMachines"]
    assert [m["stateMachineArn"] for m in machines] == [arn]
    described = stack["sfn"].describe_state_machine(stateMachineArn=arn)
    role = stack["iam"].get_role(RoleName=stack["physical"]["RetrainStateMachineRole"])["Role"]
    assert described["roleArn"] == role["Arn"]
    # Every placeholder was substituted (a leftover ${X} would be sent to AWS as text).
    assert not re.search(r"\$\{[A-Za-z0-9_]+\}", described["definition"])


def test_definition_extracts_trains_and_gates_with_the_templates_parameters(stack: dict[str, Any]) -> None:
    definition = _definition(stack)
    outputs, physical = stack["outputs"], stack["physical"]
    bucket = outputs["ArchiveBucketName"]
    states = definition["States"]
    assert definition["QueryLanguage"] == "JSONata"
    path, name = [], definition["StartAt"]
    while "Next" in states[name]:
        path.append(name)
        name = states[name]["Next"]
    assert path == ["Plan", "Extract", "Train", "Gate", "ReadReport"]
    plan = states["Plan"]["Assign"]
    assert "- 2 * 86400" in plan["cutoff"] and "(2 + 21) * 86400000" in plan["firstDay"]

    extract = states["Extract"]
    assert extract["Resource"] == "arn:aws:states:::athena:startQueryExecution.sync"
    assert extract["Arguments"]["WorkGroup"] == outputs["RetrainWorkGroupName"] == f"{STACK}-retrain"
    assert extract["Arguments"]["QueryExecutionContext"]["Database"] == outputs["RetrainDatabaseName"]
    query = extract["Arguments"]["QueryString"]
    assert query.startswith('{% "UNLOAD (SELECT event FROM archive_events WHERE dt BETWEEN')
    assert f"s3://{bucket}/retrain/runs/" in query and "format = 'JSON', compression = 'GZIP'" in query
    # The same behaviour events the trainer keeps (training/sources.py).
    # A quarter of the users, whole (the condition is JSONata's: at 100 % the query has no hash clause).
    assert '(25 < 100 ? " AND bitwise_and(from_big_endian_64(xxhash64(to_utf8(event.user_id)))' in query
    assert query.endswith(
        '% 100 < 25" : "") & ")" & " TO \'s3://'
        + bucket
        + "/retrain/runs/\" & $run & \"/events/' WITH (format = 'JSON', compression = 'GZIP')\" %}"
    )
    listed = re.search(r"event\.type IN \(([^)]*)\)", query)
    assert listed and {t.strip(" '") for t in listed.group(1).split(",")} == BEHAVIOUR_TYPES

    train = states["Train"]
    assert train["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"
    job = train["Arguments"]
    job_role = stack["iam"].get_role(RoleName=physical["RetrainJobRole"])["Role"]["Arn"]
    assert job["RoleArn"] == job_role
    pulls = stack["iam"].get_role_policy(RoleName=physical["RetrainJobRole"], PolicyName="retrain-jobs")
    # (moto keeps the document CloudFormation resolved as the text of a Python dict, not JSON.)
    assert "'Resource': 'arn:aws:ecr:us-east-1:123456789012:repository/nudge-train'" in str(pulls["PolicyDocument"])
    assert job["AlgorithmSpecification"]["TrainingImage"] == PARAMETERS["TrainingImageUri"]
    assert job["ResourceConfig"]["InstanceType"] == "ml.c5.2xlarge"
    hyper = job["HyperParameters"]
    assert hyper["sagemaker_program"] == "training/sagemaker_entry.py"
    assert hyper["sagemaker_submit_directory"] == outputs["RetrainCodeS3Uri"]
    assert outputs["RetrainCodeS3Uri"] == f"s3://{bucket}/retrain/code/sourcedir.tar.gz"
    assert hyper["time-budget"] == "900" and hyper["seeds"] == "0" and hyper["before"] == "{% $string($cutoff) %}"
    assert [c["ChannelName"] for c in job["InputDataConfig"]] == ["train"]
    assert job["OutputDataConfig"]["KmsKeyId"] == outputs["DataKeyArn"]
    assert job["StoppingCondition"]["MaxRuntimeInSeconds"] == "{% 900 + 3600 %}"
    assert [c["ErrorEquals"] for c in train["Catch"]] == [["States.ALL"]]

    gate = states["Gate"]
    assert gate["Resource"] == "arn:aws:states:::sagemaker:createProcessingJob.sync"
    processing = gate["Arguments"]
    assert processing["RoleArn"] == job_role
    assert processing["AppSpecification"]["ImageUri"] == PARAMETERS["TrainingImageUri"]
    assert processing["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.c5.2xlarge"
    args = processing["AppSpecification"]["ContainerArguments"]
    options = dict(zip(args[::2], args[1::2], strict=True))
    assert options["--margin"] == "0.01" and options["--cold-tolerance"] == "0.02"
    assert options["--registry-uri"] == outputs["ModelRegistryUri"]
    assert options["--pointer-parameter"] == outputs["ModelPointerParameterName"] == f"/nudge/{STACK}/model-pointer"
    assert options["--cutoff"] == "{% $string($cutoff) %}"
    inputs = {i["InputName"]: i["S3Input"] for i in processing["ProcessingInputs"]}
    assert inputs["code"]["S3Uri"] == outputs["RetrainCodeS3Uri"]
    assert options["--events"] == inputs["events"]["LocalPath"]
    assert options["--challenger"].startswith(inputs["challenger"]["LocalPath"] + "/")
    assert inputs["challenger"]["S3Uri"] == "{% $challenger %}"
    report = processing["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]
    assert options["--report"].startswith(report["LocalPath"] + "/")

    assert states["Verdict"]["Type"] == "Choice"
    assert {states[n]["Type"] for n in ("Promoted", "KeptChampion")} == {"Succeed"}
    assert states["RunFailed"]["Type"] == "Fail"
    for step in ("Extract", "Train", "Gate", "ReadReport"):
        assert states[step]["Catch"][0]["Next"] == "RunFailed"


def test_schedule_starts_the_state_machine_with_its_own_role(stack: dict[str, Any]) -> None:
    schedules = stack["scheduler"].list_schedules()["Schedules"]
    assert [s["Name"] for s in schedules] == [f"{STACK}-retrain"]
    schedule = stack["scheduler"].get_schedule(Name=f"{STACK}-retrain")
    assert schedule["ScheduleExpression"] == "rate(3 days)" and schedule["State"] == "ENABLED"
    target = schedule["Target"]
    assert target["Arn"] == stack["outputs"]["RetrainStateMachineArn"]
    role_name = stack["physical"]["RetrainStateMachineScheduledRole"]
    assert target["RoleArn"] == stack["iam"].get_role(RoleName=role_name)["Role"]["Arn"]
    policy = stack["expanded"]["Resources"]["RetrainStateMachineScheduledRole"]["Properties"]["Policies"][0]
    assert policy["PolicyDocument"]["Statement"] == [
        {"Action": "states:StartExecution", "Effect": "Allow", "Resource": {"Ref": "RetrainStateMachine"}}
    ]


def test_archive_table_projects_the_partitions_ingest_writes(stack: dict[str, Any]) -> None:
    database = stack["outputs"]["RetrainDatabaseName"]
    assert database == "nudge_nudge_retrain_test"
    table = stack["glue"].get_table(DatabaseName=database, Name="archive_events")["Table"]
    bucket = stack["outputs"]["ArchiveBucketName"]
    parameters = table["Parameters"]
    assert parameters["projection.enabled"] == "true"
    # shared/services/ingest.py batch_key: archive/dt=YYYY-MM-DD/hour=HH/...
    assert parameters["storage.location.template"] == f"s3://{bucket}/archive/dt=${{dt}}/hour=${{hour}}/"
    assert [k["Name"] for k in table["PartitionKeys"]] == ["dt", "hour"]
    event = next(c for c in table["StorageDescriptor"]["Columns"] if c["Name"] == "event")
    assert all(f"{field}:" in event["Type"] for field in ("type", "user_id", "item_id", "timestamp"))
    workgroup = stack["athena"].get_work_group(WorkGroup=stack["outputs"]["RetrainWorkGroupName"])["WorkGroup"]
    results = workgroup["Configuration"]["ResultConfiguration"]
    assert results["OutputLocation"] == f"s3://{bucket}/retrain/athena-results/"


def test_schedule_is_off_by_default() -> None:
    """A fresh stack starts no run (and pays for none) until the schedule is switched on."""
    declared = load_yaml(TEMPLATE)["Parameters"]
    assert declared["RetrainScheduleState"]["Default"] == "DISABLED"
    assert declared["PromotionMargin"]["Default"] == 0.005


def test_nudge_retrain_starts_a_run_of_the_deployed_state_machine(
    stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.__main__ import main

    assert main(["retrain", "--stack-name", STACK, "--region", REGION]) == 0
    started = json.loads(capsys.readouterr().out)
    arn = stack["outputs"]["RetrainStateMachineArn"]
    assert started["state_machine"] == arn
    executions = stack["sfn"].list_executions(stateMachineArn=arn)["executions"]
    assert [e["executionArn"] for e in executions] == [started["execution_arn"]]
    assert executions[0]["name"] == started["started"] and started["started"].startswith("manual-")
    assert main(["retrain", "--stack-name", "no-such-stack", "--region", REGION]) == 2
    assert "no stack named 'no-such-stack'" in capsys.readouterr().err
