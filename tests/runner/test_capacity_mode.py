"""CapacityMode: template.yaml deployed through aws-sam-translator and moto's CloudFormation in both modes.

moto's CloudFormation creates the tables with the billing mode and throughput the template gives
them, but it has no model for AWS::ApplicationAutoScaling::* (moto.applicationautoscaling defines no
CloudFormationModel, so moto.cloudformation.parsing logs "No Moto CloudFormation support" and skips
them: the stack does not even list them, as with alarms). Their properties, as the transform
expanded them, are then registered through moto's Application Auto Scaling API, which checks the
resource ids and dimensions and makes the target-tracking alarms, as the service would.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from runner.deploy import package_stubs, transform
from runner.pipeline import LocalPipeline
from tests.runner.runner_testlib import REAL_TEMPLATE

TABLES = ("UserState", "Catalog", "Ledger", "PushCounters", "Idempotency", "EventIds")
INDEXES = {"UserState": "due-index", "Ledger": "outbox-index"}
PROVISIONED = {"CapacityMode": "provisioned", "ReadCapacityMin": "2", "WriteCapacityMin": "3", "WriteCapacityMax": "40"}
SCALING = ("AWS::ApplicationAutoScaling::ScalableTarget", "AWS::ApplicationAutoScaling::ScalingPolicy")


def _resolve(value: Any, refs: dict[str, str]) -> Any:
    """Fn::Sub and Ref against the stack's physical ids, as CloudFormation would (the only intrinsics used)."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        return re.sub(r"\$\{(\w+)\}", lambda m: refs[m.group(1)], value["Fn::Sub"])
    if isinstance(value, dict) and "Ref" in value:
        return refs[value["Ref"]]
    return value


def _expanded(pipeline: LocalPipeline) -> dict[str, Any]:
    return transform(package_stubs(pipeline.template), pipeline.parameters, pipeline.region)


@pytest.fixture(scope="module")
def provisioned() -> Any:
    with LocalPipeline(
        REAL_TEMPLATE, stack_name="nudge-provisioned", functions=[], parameter_overrides=PROVISIONED
    ) as p:
        yield p


def test_provisioned_tables_and_indexes_start_at_the_minimum(provisioned: LocalPipeline) -> None:
    dynamodb = provisioned.client("dynamodb")
    for table in TABLES:
        described = dynamodb.describe_table(TableName=provisioned.outputs[f"{table}TableName"])["Table"]
        assert described["BillingModeSummary"]["BillingMode"] == "PROVISIONED", table
        throughput = described["ProvisionedThroughput"]
        assert (throughput["ReadCapacityUnits"], throughput["WriteCapacityUnits"]) == (2, 3), table
        indexes = {i["IndexName"]: i["ProvisionedThroughput"] for i in described.get("GlobalSecondaryIndexes", [])}
        assert set(indexes) == ({INDEXES[table]} if table in INDEXES else set()), table
        for name, index in indexes.items():
            assert (index["ReadCapacityUnits"], index["WriteCapacityUnits"]) == (2, 3), name


def test_provisioned_scaling_resources_are_declared_for_every_table_and_index(provisioned: LocalPipeline) -> None:
    from moto.cloudformation.parsing import get_model_map

    expanded = _expanded(provisioned)["Resources"]
    targets = {lid for lid, r in expanded.items() if r["Type"] == SCALING[0]}
    policies = {lid for lid, r in expanded.items() if r["Type"] == SCALING[1]}
    # A read and a write target per table (6) and per index (2), each with its policy.
    assert len(targets) == len(policies) == 2 * (len(TABLES) + len(INDEXES))
    assert {p.replace("ScalingPolicy", "ScalableTarget") for p in policies} == targets
    alarms = {lid for lid in expanded if lid.endswith("ThrottleAlarm")}
    assert len(alarms) == 2 * len(TABLES)
    for lid in targets | policies | alarms:
        assert expanded[lid]["Condition"] == "Provisioned", lid
    for lid in alarms:
        assert expanded[lid]["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], lid
    # moto's CloudFormation has no model for these types: it skips them (not even listed, like alarms).
    assert not set(SCALING) & set(get_model_map())
    assert not (targets | policies | alarms) & set(provisioned.stack.resources)


def test_provisioned_targets_register_with_application_auto_scaling(provisioned: LocalPipeline) -> None:
    """What CloudFormation would call with the expanded properties, against moto's service."""
    expanded = _expanded(provisioned)
    refs = {lid: r.ref for lid, r in provisioned.resources.items()}
    refs.update(provisioned.parameters)
    defaults = {k: str(v.get("Default", "")) for k, v in provisioned.template["Parameters"].items()}
    refs.update({k: v for k, v in defaults.items() if k not in provisioned.parameters})
    scaling = provisioned.client("application-autoscaling")
    specs = {lid: r for lid, r in expanded["Resources"].items() if r["Type"] in SCALING}
    for lid, spec in specs.items():
        assert spec["Condition"] == "Provisioned", lid
        props = {k: _resolve(v, refs) for k, v in spec["Properties"].items()}
        if spec["Type"] == SCALING[0]:
            props["MinCapacity"], props["MaxCapacity"] = int(props["MinCapacity"]), int(props["MaxCapacity"])
            refs[lid] = f"{props['ResourceId']}|{props['ScalableDimension']}|dynamodb"
            scaling.register_scalable_target(**props)
    for spec in specs.values():
        if spec["Type"] == SCALING[1]:
            props = dict(spec["Properties"])
            resource_id, dimension, namespace = refs[props.pop("ScalingTargetId")["Ref"]].split("|")
            config = props["TargetTrackingScalingPolicyConfiguration"]
            config["TargetValue"] = float(_resolve(config["TargetValue"], refs))
            scaling.put_scaling_policy(
                ServiceNamespace=namespace, ResourceId=resource_id, ScalableDimension=dimension, **props
            )
    targets = scaling.describe_scalable_targets(ServiceNamespace="dynamodb")["ScalableTargets"]
    tables = {provisioned.outputs[f"{t}TableName"] for t in TABLES}
    assert {t["ResourceId"].split("/")[1] for t in targets} == tables
    assert len(targets) == 16
    by_dimension: dict[str, int] = {}
    for target in targets:
        by_dimension[target["ScalableDimension"]] = by_dimension.get(target["ScalableDimension"], 0) + 1
        reads = target["ScalableDimension"].endswith("ReadCapacityUnits")
        assert (target["MinCapacity"], target["MaxCapacity"]) == ((2, 2000) if reads else (3, 40))
    assert by_dimension == {
        "dynamodb:table:ReadCapacityUnits": 6,
        "dynamodb:table:WriteCapacityUnits": 6,
        "dynamodb:index:ReadCapacityUnits": 2,
        "dynamodb:index:WriteCapacityUnits": 2,
    }
    policies = scaling.describe_scaling_policies(ServiceNamespace="dynamodb")["ScalingPolicies"]
    assert len(policies) == 16
    for policy in policies:
        config = policy["TargetTrackingScalingPolicyConfiguration"]
        assert policy["PolicyType"] == "TargetTrackingScaling" and config["TargetValue"] == 70.0
        kind = "Read" if policy["ScalableDimension"].endswith("ReadCapacityUnits") else "Write"
        assert config["PredefinedMetricSpecification"]["PredefinedMetricType"] == f"DynamoDB{kind}CapacityUtilization"
        # The service makes the target-tracking alarms (high and low) for each policy.
        assert len(policy["Alarms"]) >= 2


def test_on_demand_by_default() -> None:
    with LocalPipeline(REAL_TEMPLATE, stack_name="nudge-on-demand", functions=[]) as p:
        dynamodb = p.client("dynamodb")
        for table in TABLES:
            described = dynamodb.describe_table(TableName=p.outputs[f"{table}TableName"])["Table"]
            assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST", table
        assert p.stack.parameters["CapacityMode"] == "on-demand"
        # Every scaling resource and throttle alarm is conditional on Provisioned (checked above), so
        # CloudFormation makes none of them here.
