"""CloudFormation resource types moto's CloudFormation skips, made in moto's own backends.

moto emulates EventBridge Scheduler, Glue, Athena and Step Functions as services but its CloudFormation
creates no `AWS::Scheduler::Schedule`, `AWS::Glue::Database`/`Table` or `AWS::Athena::WorkGroup` (it warns
and skips them), and creates state machines without applying `DefinitionSubstitutions`. The retraining
job (template.yaml) is made of exactly these, so the deploy test could not see it. `install()` registers
the models below; a real deployment needs none of this.
"""

from __future__ import annotations

import re
from typing import Any

from moto.athena.models import athena_backends
from moto.cloudformation import parsing
from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
from moto.core.common_models import CloudFormationModel
from moto.glue.models import glue_backends
from moto.scheduler.models import Schedule, scheduler_backends
from moto.stepfunctions.models import StateMachine

# Step Functions substitutes ${Name} placeholders only (no ${!Literal} or ${A.B} forms as in Fn::Sub).
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def substitute_definition(definition: str, substitutions: dict[str, Any]) -> str:
    """What CloudFormation does with DefinitionSubstitutions: unknown placeholders stay as they are."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(substitutions[name]) if name in substitutions else match.group(0)

    return _PLACEHOLDER.sub(value, definition)


class SchedulerSchedule(CloudFormationModel):
    """AWS::Scheduler::Schedule in moto's scheduler backend (Ref: the name, GetAtt Arn)."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    @property
    def physical_resource_id(self) -> str:
        return str(self.schedule.name)

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Scheduler::Schedule"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name == "Arn":
            return str(self.schedule.arn)
        raise UnformattedGetAttTemplateException()

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str, **kwargs: Any
    ) -> SchedulerSchedule:
        # Any: moto's signature says str where the API (and CloudFormation) leave the value out.
        props: Any = cloudformation_json.get("Properties") or {}
        schedule = scheduler_backends[account_id][region_name].create_schedule(
            description=props.get("Description"),
            end_date=props.get("EndDate"),
            flexible_time_window=props.get("FlexibleTimeWindow") or {"Mode": "OFF"},
            group_name=props.get("GroupName"),
            kms_key_arn=props.get("KmsKeyArn"),
            name=resource_name,
            schedule_expression=props["ScheduleExpression"],
            schedule_expression_timezone=props.get("ScheduleExpressionTimezone"),
            start_date=props.get("StartDate"),
            state=props.get("State"),
            target=dict(props["Target"]),
            action_after_completion=None,
        )
        return cls(schedule)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        group = (cloudformation_json.get("Properties") or {}).get("GroupName")
        scheduler_backends[account_id][region_name].delete_schedule(group, resource_name)

    def is_created(self) -> bool:
        return True


class _Emulated:
    """What the models below share: no attributes for Fn::GetAtt, a generated name, created at once.
    A mixin, not a base class: moto finds models as *direct* subclasses of CloudFormationModel."""

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return False

    def is_created(self) -> bool:
        return True


class GlueDatabase(_Emulated, CloudFormationModel):
    """AWS::Glue::Database in moto's Glue backend (Ref: the database name)."""

    def __init__(self, name: str) -> None:
        self.physical_resource_id = name

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Glue::Database"

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str, **kwargs: Any
    ) -> GlueDatabase:
        database_input = dict(cloudformation_json["Properties"]["DatabaseInput"])
        name = str(database_input.get("Name") or resource_name).lower()
        glue_backends[account_id][region_name].create_database(name, database_input)
        return cls(name)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        glue_backends[account_id][region_name].delete_database(resource_name)


class GlueTable(_Emulated, CloudFormationModel):
    """AWS::Glue::Table in moto's Glue backend (Ref: the table name)."""

    def __init__(self, database: str, name: str) -> None:
        self.database = database
        self.physical_resource_id = name

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Glue::Table"

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str, **kwargs: Any
    ) -> GlueTable:
        props = cloudformation_json["Properties"]
        table_input = dict(props["TableInput"])
        database, name = str(props["DatabaseName"]).lower(), str(table_input.get("Name") or resource_name).lower()
        glue_backends[account_id][region_name].create_table(database, name, table_input)
        return cls(database, name)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        database = str(cloudformation_json["Properties"]["DatabaseName"]).lower()
        glue_backends[account_id][region_name].delete_table(database, resource_name)


class AthenaWorkGroup(_Emulated, CloudFormationModel):
    """AWS::Athena::WorkGroup in moto's Athena backend (Ref: the work group's name)."""

    def __init__(self, name: str) -> None:
        self.physical_resource_id = name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Athena::WorkGroup"

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str, **kwargs: Any
    ) -> AthenaWorkGroup:
        props = cloudformation_json.get("Properties") or {}
        athena_backends[account_id][region_name].create_work_group(
            name=resource_name,
            configuration=props.get("WorkGroupConfiguration") or {},
            description=props.get("Description") or "",
            tags=props.get("Tags") or [],
        )
        return cls(resource_name)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        athena_backends[account_id][region_name].delete_work_group(resource_name)


class SubstitutedStateMachine(CloudFormationModel):
    """moto's AWS::StepFunctions::StateMachine, with DefinitionSubstitutions applied first (the values
    arrive resolved: Refs and GetAtts are the created resources')."""

    @staticmethod
    def cloudformation_name_type() -> str:
        return str(StateMachine.cloudformation_name_type())

    @staticmethod
    def cloudformation_type() -> str:
        return str(StateMachine.cloudformation_type())

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return bool(StateMachine.has_cfn_attr(attr))

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str, **kwargs: Any
    ) -> StateMachine:
        props = dict(cloudformation_json.get("Properties") or {})
        substitutions = props.pop("DefinitionSubstitutions", None) or {}
        if isinstance(props.get("DefinitionString"), str):
            props["DefinitionString"] = substitute_definition(props["DefinitionString"], substitutions)
        resolved = {**cloudformation_json, "Properties": props}
        return StateMachine.create_from_cloudformation_json(resource_name, resolved, account_id, region_name, **kwargs)

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> StateMachine:
        props = dict(cloudformation_json.get("Properties") or {})
        substitutions = props.pop("DefinitionSubstitutions", None) or {}
        if isinstance(props.get("DefinitionString"), str):
            props["DefinitionString"] = substitute_definition(props["DefinitionString"], substitutions)
        resolved = {**cloudformation_json, "Properties": props}
        return StateMachine.update_from_cloudformation_json(
            original_resource, new_resource_name, resolved, account_id, region_name
        )

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        StateMachine.delete_from_cloudformation_json(resource_name, cloudformation_json, account_id, region_name)

    def is_created(self) -> bool:
        return True


MODELS: tuple[type[CloudFormationModel], ...] = (
    SchedulerSchedule,
    GlueDatabase,
    GlueTable,
    AthenaWorkGroup,
    SubstitutedStateMachine,
)


def install() -> None:
    """Make moto's CloudFormation use the models above (idempotent).

    moto finds its models through `CloudFormationModel.__subclasses__()`, cached (lru_cache) at first use:
    the classes exist from this module's import on, and the caches are cleared so a CloudFormation that
    already ran sees them. For a type moto itself has (state machines), the later subclass, ours, wins the
    map; checked here so a moto that changes that order fails loudly instead of silently skipping.
    """
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()
    chosen = parsing.get_model_map()
    wrong = [m.cloudformation_type() for m in MODELS if chosen.get(m.cloudformation_type()) is not m]
    if wrong:
        raise RuntimeError(f"moto's CloudFormation does not use runner.moto_cfn for {wrong}")
