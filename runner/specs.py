"""The stack's functions and event sources, read back from what CloudFormation created.

Configuration, event source mappings and the EventBridge rules that target each function come from
the service; what it does not report (the local code and layer directories) from the expanded template.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from runner.deploy import TemplateError, scalar_str, stub_owner
from runner.stack import Stack

log = logging.getLogger(__name__)

EventKind = Literal["kinesis", "dynamodb", "schedule"]


@dataclass(frozen=True)
class EventSourceSpec:
    """One event source mapping or schedule rule of a function, as deployed."""

    function_id: str
    name: str
    kind: EventKind
    source_arn: str | None = None
    batch_size: int = 100
    batching_window_s: float = 0.0
    starting_position: str = "TRIM_HORIZON"
    starting_position_timestamp: float | None = None
    bisect_on_error: bool = False
    max_retries: int = -1
    max_record_age_s: int = -1
    function_response_types: tuple[str, ...] = ()
    filter_patterns: tuple[str, ...] = ()
    on_failure_arn: str | None = None
    schedule_expression: str | None = None
    schedule_input: str | None = None
    rule_arn: str | None = None
    enabled: bool = True

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
    environment: dict[str, str]
    layer_dirs: tuple[Path, ...] = ()
    events: tuple[EventSourceSpec, ...] = ()

    @property
    def handler_module(self) -> str:
        return self.handler.rsplit(".", 1)[0]

    @property
    def handler_function(self) -> str:
        return self.handler.rsplit(".", 1)[1]

    @property
    def handler_file(self) -> Path:
        return self.code_dir / (self.handler_module.replace(".", "/") + ".py")


def function_specs(
    stack: Stack,
    expanded: Mapping[str, Any],
    sources: Mapping[str, Path],
    clients: Callable[[str], Any],
    selected: Sequence[str],
) -> dict[str, FunctionSpec]:
    resources: dict[str, Any] = expanded.get("Resources") or {}
    functions = stack.of_type("AWS::Lambda::Function")
    events = _event_sources(stack, clients, {r.attributes["Arn"]: lid for lid, r in functions.items()}, selected)
    specs: dict[str, FunctionSpec] = {}
    for fid in selected:
        props = (resources.get(fid) or {}).get("Properties") or {}
        owner = stub_owner(props.get("Code"))
        if fid not in functions or owner is None or owner not in sources:
            raise TemplateError(f"{fid}: not a function of the stack with local code")
        config = clients("lambda").get_function_configuration(FunctionName=functions[fid].ref)
        variables = (config.get("Environment") or {}).get("Variables") or {}
        layers = [_layer_dir(layer, resources, sources) for layer in props.get("Layers") or []]
        layer_dirs = tuple(d for d in layers if d is not None)
        specs[fid] = FunctionSpec(
            logical_id=fid,
            code_dir=sources[owner],
            handler=str(config["Handler"]),
            runtime=str(config.get("Runtime", "python3.12")),
            memory_mb=int(config.get("MemorySize", 128)),
            timeout_s=int(config.get("Timeout", 3)),
            # Lambda stores strings; moto's CloudFormation passes Number parameters through as numbers.
            environment=mount_layers(fid, {k: scalar_str(v) for k, v in variables.items()}, layer_dirs),
            layer_dirs=layer_dirs,
            events=tuple(events[fid]),
        )
    return specs


def _event_sources(
    stack: Stack, clients: Callable[[str], Any], by_arn: Mapping[str, str], selected: Sequence[str]
) -> dict[str, list[EventSourceSpec]]:
    """Each function's mappings and schedules, named as in SAM's `<Function><Event>` logical ids."""
    events: dict[str, list[EventSourceSpec]] = {fid: [] for fid in selected}
    for lid, mapping in stack.of_type("AWS::Lambda::EventSourceMapping").items():
        config = clients("lambda").get_event_source_mapping(UUID=mapping.ref)
        fid = by_arn.get(config["FunctionArn"]) or by_arn.get(config["FunctionArn"].rsplit(":", 1)[0], "")
        if fid in events and (source := _stream_source(fid, lid.removeprefix(fid) or lid, config)) is not None:
            events[fid].append(source)
    for lid, rule in stack.of_type("AWS::Events::Rule").items():
        description = clients("events").describe_rule(Name=rule.ref)
        for target in clients("events").list_targets_by_rule(Rule=rule.ref)["Targets"]:
            fid = by_arn.get(target["Arn"], "")
            if fid not in events or not description.get("ScheduleExpression"):
                continue
            events[fid].append(
                EventSourceSpec(
                    function_id=fid,
                    name=lid.removeprefix(fid) or lid,
                    kind="schedule",
                    schedule_expression=description["ScheduleExpression"],
                    schedule_input=target.get("Input"),
                    rule_arn=description["Arn"],
                    enabled=description.get("State", "ENABLED") == "ENABLED",
                )
            )
    return events


def _stream_source(fid: str, name: str, config: Mapping[str, Any]) -> EventSourceSpec | None:
    arn = str(config["EventSourceArn"])
    service = arn.split(":")[2]
    if service not in ("kinesis", "dynamodb"):
        log.warning("%s.%s: %s event sources are not emulated", fid, name, service)
        return None
    timestamp = config.get("StartingPositionTimestamp")
    return EventSourceSpec(
        function_id=fid,
        name=name,
        kind="kinesis" if service == "kinesis" else "dynamodb",
        source_arn=arn,
        batch_size=int(config.get("BatchSize", 100)),
        batching_window_s=float(config.get("MaximumBatchingWindowInSeconds", 0)),
        starting_position=str(config.get("StartingPosition", "TRIM_HORIZON")),
        starting_position_timestamp=timestamp.timestamp() if isinstance(timestamp, datetime) else timestamp,
        bisect_on_error=bool(config.get("BisectBatchOnFunctionError", False)),
        max_retries=int(config.get("MaximumRetryAttempts", -1)),
        max_record_age_s=int(config.get("MaximumRecordAgeInSeconds", -1)),
        function_response_types=tuple(config.get("FunctionResponseTypes") or ()),
        filter_patterns=tuple(_pattern(f["Pattern"]) for f in (config.get("FilterCriteria") or {}).get("Filters", [])),
        on_failure_arn=((config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination"),
        enabled=config.get("State", "Enabled") == "Enabled",
    )


def _pattern(pattern: Any) -> str:
    return pattern if isinstance(pattern, str) else json.dumps(pattern)


def _layer_dir(layer: Any, resources: Mapping[str, Any], sources: Mapping[str, Path]) -> Path | None:
    """The source directory of a layer the stack builds; None for a layer ARN from elsewhere."""
    if not isinstance(layer, dict) or "Ref" not in layer:
        return None
    content = ((resources.get(str(layer["Ref"])) or {}).get("Properties") or {}).get("Content")
    return sources.get(stub_owner(content) or "")


def mount_layers(fid: str, environment: Mapping[str, str], layer_dirs: Sequence[Path]) -> dict[str, str]:
    """Point environment values naming a path under /opt at the layer source that holds it.

    Lambda extracts every layer's archive into /opt, later layers over earlier ones. A built
    layer holds its source directory either as laid out (python/, bin/ ...) or under the
    directory's own name (a build copying layers/model/ to model/, so /opt/model). A value whose
    path no layer source holds is left as it is, as Lambda would leave it.
    """
    mounted = dict(environment)
    for key, value in environment.items():
        if not value.startswith("/opt/"):
            continue
        parts = PurePosixPath(value).relative_to("/opt").parts
        for layer in reversed(layer_dirs):
            candidates = [layer.joinpath(*parts)]
            if parts[0] == layer.name:
                candidates.append(layer.joinpath(*parts[1:]))
            found = next((c for c in candidates if c.exists()), None)
            if found is not None:
                log.info("%s: %s=%s is layer source %s", fid, key, value, found)
                mounted[key] = str(found)
                break
    return mounted
