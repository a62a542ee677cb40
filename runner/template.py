"""Read a SAM template the way the runner needs it: functions, their event sources, intrinsics.

The YAML loader keeps CloudFormation short tags as their long-form dicts ({"Ref": ..},
{"Fn::GetAtt": [..]}); the Resolver evaluates them against the physical resources the runner
created, so what a handler sees in its environment is what CloudFormation would have given it.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

SAM_FUNCTION = "AWS::Serverless::Function"
AWS_FUNCTION = "AWS::Lambda::Function"

EventKind = Literal["kinesis", "dynamodb", "schedule"]


class TemplateError(ValueError):
    """The template asks for something the runner cannot read or resolve."""


# ---------------------------------------------------------------- YAML with CloudFormation tags


def _construct_tag(loader: Any, tag_suffix: str, node: Any) -> Any:
    tag = tag_suffix.lstrip("!")
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag == "Ref":
        return {"Ref": value}
    if tag == "Condition":
        return {"Condition": value}
    if tag == "GetAtt" and isinstance(value, str):
        # !GetAtt Res.Attr.Sub keeps everything after the first dot as the attribute name.
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag}": value}


# yaml ships without type information, so the loader class is built dynamically to keep
# mypy --strict from rejecting a subclass of an Any-typed base.
_CfnLoader: Any = type("_CfnLoader", (yaml.SafeLoader,), {})
_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=_CfnLoader)
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: not a template (top level is {type(data).__name__})")
    return data


# ---------------------------------------------------------------- specs


@dataclass(frozen=True)
class EventSourceSpec:
    """One entry of a function's Events, as an event source mapping or schedule rule sees it."""

    function_id: str
    name: str
    kind: EventKind
    source_logical_id: str | None = None
    source_arn: str | None = None
    batch_size: int = 100
    batching_window_s: float = 0.0
    starting_position: str = "TRIM_HORIZON"
    starting_position_timestamp: float | None = None
    bisect_on_error: bool = False
    max_retries: int = -1
    max_record_age_s: int = -1
    function_response_types: tuple[str, ...] = ()
    filter_patterns: tuple[dict[str, Any], ...] = ()
    on_failure_logical_id: str | None = None
    on_failure_arn: str | None = None
    schedule_expression: str | None = None
    schedule_input: str | None = None
    enabled: bool = True
    parallelization_factor: int = 1

    @property
    def key(self) -> str:
        return f"{self.function_id}.{self.name}"

    @property
    def reports_item_failures(self) -> bool:
        return "ReportBatchItemFailures" in self.function_response_types


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str
    runtime: str
    memory_mb: int
    timeout_s: int
    environment: dict[str, Any]
    layers: tuple[Any, ...]
    events: tuple[EventSourceSpec, ...]
    function_name: Any = None
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def handler_module(self) -> str:
        return self.handler.rsplit(".", 1)[0]

    @property
    def handler_function(self) -> str:
        return self.handler.rsplit(".", 1)[1]

    @property
    def handler_file(self) -> Path:
        return self.code_dir / (self.handler_module.replace(".", "/") + ".py")


@dataclass
class Template:
    path: Path
    raw: dict[str, Any]
    parameters: dict[str, str]
    functions: dict[str, FunctionSpec]
    warnings: list[str]

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        res: dict[str, dict[str, Any]] = self.raw.get("Resources") or {}
        return res

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = self.raw.get("Outputs") or {}
        return out

    @property
    def conditions(self) -> dict[str, Any]:
        cond: dict[str, Any] = self.raw.get("Conditions") or {}
        return cond

    def resource_type(self, logical_id: str) -> str:
        return str(self.resources[logical_id].get("Type", ""))


def load_template(path: str | Path, parameter_overrides: Mapping[str, Any] | None = None) -> Template:
    template_path = Path(path).resolve()
    raw = load_yaml(template_path)
    parameters = _parameter_values(raw, parameter_overrides or {})
    warnings: list[str] = []
    globals_fn: dict[str, Any] = (raw.get("Globals") or {}).get("Function") or {}
    functions: dict[str, FunctionSpec] = {}
    for logical_id, resource in (raw.get("Resources") or {}).items():
        if resource.get("Type") != SAM_FUNCTION:
            continue
        props = merge_globals(globals_fn, resource.get("Properties") or {})
        functions[logical_id] = _function_spec(template_path.parent, logical_id, props, warnings)
    return Template(template_path, raw, parameters, functions, warnings)


def merge_globals(globals_props: Mapping[str, Any], local: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals merge: maps merge key by key, lists concatenate (Globals first), scalars: local wins."""
    merged: dict[str, Any] = copy.deepcopy(dict(globals_props))
    for key, value in local.items():
        if key in merged and isinstance(merged[key], dict) and isinstance(value, dict):
            merged[key] = merge_globals(merged[key], value)
        elif key in merged and isinstance(merged[key], list) and isinstance(value, list):
            merged[key] = merged[key] + copy.deepcopy(value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _parameter_values(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, str]:
    declared: dict[str, Any] = raw.get("Parameters") or {}
    unknown = set(overrides) - set(declared)
    if unknown:
        raise TemplateError(f"unknown parameter override(s): {sorted(unknown)}")
    values: dict[str, str] = {}
    for name, decl in declared.items():
        if name in overrides:
            values[name] = scalar_str(overrides[name])
        elif "Default" in (decl or {}):
            values[name] = scalar_str(decl["Default"])
        else:
            raise TemplateError(f"parameter {name} has no Default and no override")
        allowed = (decl or {}).get("AllowedValues")
        if allowed is not None and values[name] not in [scalar_str(a) for a in allowed]:
            raise TemplateError(f"parameter {name}={values[name]!r} not in AllowedValues {allowed}")
    return values


def scalar_str(value: Any) -> str:
    """CloudFormation hands every parameter and env value over as a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(scalar_str(v) for v in value)
    return str(value)


def _function_spec(root: Path, logical_id: str, props: dict[str, Any], warnings: list[str]) -> FunctionSpec:
    code_uri = props.get("CodeUri")
    if not isinstance(code_uri, str):
        raise TemplateError(f"{logical_id}: CodeUri must be a local directory, got {code_uri!r}")
    handler = props.get("Handler")
    if not isinstance(handler, str) or "." not in handler:
        raise TemplateError(f"{logical_id}: Handler must look like module.function, got {handler!r}")
    env = dict(((props.get("Environment") or {}).get("Variables")) or {})
    layers = _dedupe_layers(logical_id, props.get("Layers") or [], warnings)
    events = tuple(_event_spec(logical_id, name, event) for name, event in (props.get("Events") or {}).items())
    return FunctionSpec(
        logical_id=logical_id,
        code_dir=(root / code_uri).resolve(),
        handler=handler,
        runtime=str(props.get("Runtime", "python3.12")),
        memory_mb=int(props.get("MemorySize", 128)),
        timeout_s=int(props.get("Timeout", 3)),
        environment=env,
        layers=layers,
        events=tuple(e for e in events if e is not None),
        function_name=props.get("FunctionName"),
        properties=props,
    )


def _dedupe_layers(logical_id: str, layers: list[Any], warnings: list[str]) -> tuple[Any, ...]:
    seen: list[Any] = []
    for layer in layers:
        if layer in seen:
            warnings.append(
                f"{logical_id}: layer {layer} listed twice after the Globals merge "
                "(SAM concatenates Globals and function Layers)"
            )
            continue
        seen.append(layer)
    return tuple(seen)


def _event_spec(function_id: str, name: str, event: Mapping[str, Any]) -> EventSourceSpec | None:
    etype = event.get("Type")
    props: dict[str, Any] = dict(event.get("Properties") or {})
    if etype in ("Kinesis", "DynamoDB"):
        kind: EventKind = "kinesis" if etype == "Kinesis" else "dynamodb"
        source_id, source_arn = reference_target(props.get("Stream"))
        destination = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        dest_id, dest_arn = reference_target(destination) if destination is not None else (None, None)
        filters = tuple(
            _parse_pattern(function_id, name, f.get("Pattern"))
            for f in ((props.get("FilterCriteria") or {}).get("Filters") or [])
        )
        return EventSourceSpec(
            function_id=function_id,
            name=name,
            kind=kind,
            source_logical_id=source_id,
            source_arn=source_arn,
            batch_size=int(props.get("BatchSize", 100)),
            batching_window_s=float(props.get("MaximumBatchingWindowInSeconds", 0)),
            starting_position=str(props.get("StartingPosition", "TRIM_HORIZON")),
            starting_position_timestamp=_optional_float(props.get("StartingPositionTimestamp")),
            bisect_on_error=bool(props.get("BisectBatchOnFunctionError", False)),
            max_retries=int(props.get("MaximumRetryAttempts", -1)),
            max_record_age_s=int(props.get("MaximumRecordAgeInSeconds", -1)),
            function_response_types=tuple(props.get("FunctionResponseTypes") or ()),
            filter_patterns=filters,
            on_failure_logical_id=dest_id,
            on_failure_arn=dest_arn,
            enabled=bool(props.get("Enabled", True)),
            parallelization_factor=int(props.get("ParallelizationFactor", 1)),
        )
    if etype in ("Schedule", "ScheduleV2"):
        expression = props.get("Schedule") or props.get("ScheduleExpression")
        if not isinstance(expression, str):
            raise TemplateError(f"{function_id}.{name}: Schedule must be a literal expression")
        enabled = props.get("Enabled", True)
        state = props.get("State", "ENABLED")
        return EventSourceSpec(
            function_id=function_id,
            name=name,
            kind="schedule",
            schedule_expression=expression,
            schedule_input=props.get("Input"),
            enabled=bool(enabled) and state == "ENABLED",
        )
    # Api, SQS, S3 ... are outside what this system deploys; the runner leaves them alone.
    return None


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _parse_pattern(function_id: str, name: str, pattern: Any) -> dict[str, Any]:
    if isinstance(pattern, dict):
        return pattern
    if not isinstance(pattern, str):
        raise TemplateError(f"{function_id}.{name}: filter Pattern must be a JSON string")
    try:
        parsed = json.loads(pattern)
    except json.JSONDecodeError as exc:
        raise TemplateError(f"{function_id}.{name}: filter Pattern is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise TemplateError(f"{function_id}.{name}: filter Pattern must be a JSON object")
    return parsed


def reference_target(value: Any) -> tuple[str | None, str | None]:
    """(logical id, None) for a Ref/GetAtt to a template resource, (None, arn) for a literal ARN."""
    if isinstance(value, str):
        return None, value
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"]), None
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            if isinstance(target, str):
                target = target.split(".", 1)
            return str(target[0]), None
    raise TemplateError(f"cannot tell which resource {value!r} points at")


def referenced_ids(value: Any) -> Iterator[str]:
    """Logical ids a (sub)tree refers to, for creation order."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                yield inner
            elif key == "Fn::GetAtt":
                target = inner.split(".", 1) if isinstance(inner, str) else inner
                yield str(target[0])
            elif key == "Fn::Sub":
                text = inner if isinstance(inner, str) else inner[0]
                for match in _SUB_VAR.finditer(text):
                    yield match.group(1).split(".", 1)[0]
                if not isinstance(inner, str):
                    yield from referenced_ids(inner[1:])
            else:
                yield from referenced_ids(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from referenced_ids(inner)


# ---------------------------------------------------------------- intrinsic resolution

_SUB_VAR = re.compile(r"\$\{(?!!)([^}]+)\}")
_NO_VALUE = object()


@dataclass
class PhysicalResource:
    """What CloudFormation would report for a created resource: Ref value and GetAtt attributes."""

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


class Resolver:
    """Evaluates CloudFormation intrinsics against parameters, pseudo parameters and physical ids."""

    def __init__(
        self,
        template: Template,
        *,
        stack_name: str,
        region: str,
        account_id: str,
        physical: Mapping[str, PhysicalResource],
    ) -> None:
        self._template = template
        self._physical = physical
        self._pseudo = {
            "AWS::StackName": stack_name,
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{account_id}:stack/{stack_name}/local",
            "AWS::NotificationARNs": "",
        }
        self._conditions: dict[str, bool] = {}

    def resolve(self, value: Any) -> Any:
        result = self._resolve(value)
        return None if result is _NO_VALUE else result

    def resolve_str(self, value: Any) -> str:
        return scalar_str(self.resolve(value))

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            if name not in self._template.conditions:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self._resolve(self._template.conditions[name]))
        return self._conditions[name]

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self._resolve(v) for v in value]
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = self._intrinsics.get(key)
            if handler is not None:
                return handler(self, arg)
        resolved = {k: self._resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _ref(self, name: Any) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self._pseudo:
            return self._pseudo[name]
        if name in self._template.parameters:
            return self._template.parameters[name]
        if name in self._physical:
            return self._physical[name].ref
        raise TemplateError(f"Ref {name}: no such parameter or created resource")

    def _get_att(self, arg: Any) -> Any:
        target = arg.split(".", 1) if isinstance(arg, str) else [self._resolve(a) for a in arg]
        logical_id, attribute = str(target[0]), str(target[1])
        resource = self._physical.get(logical_id)
        if resource is None:
            raise TemplateError(f"GetAtt {logical_id}.{attribute}: resource not created")
        if attribute not in resource.attributes:
            raise TemplateError(f"GetAtt {logical_id}.{attribute}: {resource.type} has {sorted(resource.attributes)}")
        return resource.attributes[attribute]

    def _sub(self, arg: Any) -> Any:
        if isinstance(arg, str):
            text, variables = arg, {}
        else:
            text, variables = arg[0], {k: self._resolve(v) for k, v in (arg[1] or {}).items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                return scalar_str(variables[name])
            if "." in name and name.split(".", 1)[0] in self._physical:
                return scalar_str(self._get_att(name))
            return scalar_str(self._ref(name))

        return _SUB_VAR.sub(replace, text).replace("${!", "${")

    def _join(self, arg: Any) -> Any:
        delimiter, items = arg[0], self._resolve(arg[1])
        return str(delimiter).join(scalar_str(i) for i in items)

    def _select(self, arg: Any) -> Any:
        index, items = int(self._resolve(arg[0])), self._resolve(arg[1])
        return items[index]

    def _split(self, arg: Any) -> Any:
        return str(self._resolve(arg[1])).split(str(arg[0]))

    def _if(self, arg: Any) -> Any:
        name, when_true, when_false = arg
        return self._resolve(when_true if self.condition(str(name)) else when_false)

    def _equals(self, arg: Any) -> Any:
        left, right = (scalar_str(self._resolve(a)) for a in arg)
        return left == right

    def _not(self, arg: Any) -> Any:
        return not self._truth(arg[0])

    def _and(self, arg: Any) -> Any:
        return all(self._truth(a) for a in arg)

    def _or(self, arg: Any) -> Any:
        return any(self._truth(a) for a in arg)

    def _truth(self, value: Any) -> bool:
        if isinstance(value, dict) and set(value) == {"Condition"}:
            return self.condition(str(value["Condition"]))
        return bool(self._resolve(value))

    def _condition_ref(self, arg: Any) -> Any:
        return self.condition(str(arg))

    def _find_in_map(self, arg: Any) -> Any:
        map_name, top, second = (self._resolve(a) for a in arg)
        return self._template.raw["Mappings"][map_name][top][second]

    def _base64(self, arg: Any) -> Any:
        return base64.b64encode(scalar_str(self._resolve(arg)).encode()).decode()

    def _get_azs(self, arg: Any) -> Any:
        region = self._resolve(arg) or self._pseudo["AWS::Region"]
        return [f"{region}a", f"{region}b", f"{region}c"]

    def _unsupported(self, arg: Any) -> Any:
        raise TemplateError(f"intrinsic not supported by the local runner: {arg!r}")

    _intrinsics: dict[str, Callable[[Resolver, Any], Any]] = {
        "Ref": _ref,
        "Fn::GetAtt": _get_att,
        "Fn::Sub": _sub,
        "Fn::Join": _join,
        "Fn::Select": _select,
        "Fn::Split": _split,
        "Fn::If": _if,
        "Fn::Equals": _equals,
        "Fn::Not": _not,
        "Fn::And": _and,
        "Fn::Or": _or,
        "Condition": _condition_ref,
        "Fn::FindInMap": _find_in_map,
        "Fn::Base64": _base64,
        "Fn::GetAZs": _get_azs,
        "Fn::ImportValue": _unsupported,
        "Fn::Cidr": _unsupported,
    }
