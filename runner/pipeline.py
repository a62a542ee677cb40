"""LocalPipeline: the stack deployed through moto's CloudFormation, its functions driven in this process."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

import boto3
from botocore.config import Config
from moto import mock_aws

from runner.clock import Clock, RealClock, SimulatedClock, to_epoch
from runner.deploy import TemplateError, artifact_sources, check_parameters, load_yaml
from runner.lambda_invoke import (
    FAKE_CREDENTIALS,
    FunctionContainer,
    FunctionStats,
    InvocationHook,
    InvocationResult,
    lambda_environment,
)
from runner.schedules import ScheduleMapping
from runner.specs import EventSourceSpec, FunctionSpec, function_specs
from runner.stack import PhysicalResource, Stack, deploy_local
from runner.streams import DynamoDBStreamMapping, KinesisMapping, MappingStats, StreamMapping

log = logging.getLogger(__name__)

PUT_RECORDS_CHUNK = 500
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
EnvOverrides = Mapping[str, Mapping[str, str | None]]
PartitionKey = str | Callable[[Any], str]

T = TypeVar("T")


class PipelineHook(InvocationHook, Protocol):
    """Sees every handler invocation, installed before any handler runs (testkit/faults.py's
    FaultInjector); ``client`` is set to the pipeline's client factory first."""

    client: Callable[[str], Any] | None

    def install(self) -> None: ...

    def uninstall(self) -> None: ...


@dataclass
class PumpResult:
    rounds: int
    invocations: int
    quiescent: bool


@dataclass
class PipelineStats:
    functions: dict[str, FunctionStats]
    mappings: dict[str, MappingStats]

    def as_dict(self) -> dict[str, Any]:
        return {
            "functions": {
                fid: {
                    **fs.summary(),
                    "handler_wall_s": list(fs.wall_s),
                    "handler_cpu_s": list(fs.cpu_s),
                    "batch_sizes": list(fs.batch_sizes),
                }
                for fid, fs in self.functions.items()
            },
            "mappings": {key: ms.as_dict() for key, ms in self.mappings.items()},
        }


class LocalPipeline:
    """Deploys the template's stack to moto and runs its functions as Lambda would.

    The stack goes through aws-sam-translator and moto's CloudFormation with stub artifacts;
    handlers run from their source directories with what the stack gives them (environment,
    event source mappings, schedule rules). endpoint_url=None: an in-process `mock_aws` (nested
    in the caller's if active); else a moto server, handed to handlers as AWS_ENDPOINT_URL.
    env_overrides: function logical id (or "*") -> variables that win, None unsets one.
    deployed_stack: drive an existing stack (e.g. deployed with real artifacts) instead.
    fault_injector: a PipelineHook (testkit/faults.py), in-process only.
    """

    def __init__(
        self,
        template_path: str | Path = "template.yaml",
        *,
        stack_name: str = "local",
        clock: Clock | None = None,
        env_overrides: EnvOverrides | None = None,
        log_dir: str | Path | None = None,
        parameter_overrides: Mapping[str, Any] | None = None,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        functions: Iterable[str] | None = None,
        python_paths: Sequence[str | Path] | None = None,
        enforce_timeout: bool = False,
        deployed_stack: str | None = None,
        fault_injector: PipelineHook | None = None,
    ) -> None:
        self.template_path = Path(template_path).resolve()
        self.template = load_yaml(self.template_path)
        self.parameters = check_parameters(self.template, parameter_overrides or {})
        self.stack_name = deployed_stack or stack_name
        self._deployed = deployed_stack is not None
        self.clock: Clock = clock or RealClock()
        self.region = region
        self.endpoint_url = endpoint_url
        self.log_dir = Path(log_dir) if log_dir is not None else None
        declared = [lid for lid, r in (self.template.get("Resources") or {}).items() if r.get("Type") in FUNCTION_TYPES]
        self._env_overrides = {k: dict(v) for k, v in (env_overrides or {}).items()}
        unknown = set(self._env_overrides) - set(declared) - {"*"}
        if unknown:
            raise TemplateError(f"env overrides for unknown function(s): {sorted(unknown)}")
        self._selected = list(functions) if functions is not None else declared
        missing = set(self._selected) - set(declared)
        if missing:
            raise TemplateError(f"no such function(s) in the template: {sorted(missing)}")
        # The repo root plays the part of the code layers (the shared package lives there).
        self._python_paths = [Path(p).resolve() for p in (python_paths or [self.template_path.parent])]
        self._enforce_timeout = enforce_timeout
        self._mock: Any = None
        self._clients: dict[str, Any] = {}
        self._stack: Stack | None = None
        self.account_id = ""
        self.functions: dict[str, FunctionSpec] = {}
        self.containers: dict[str, FunctionContainer] = {}
        self.stream_mappings: dict[str, StreamMapping] = {}
        self.schedules: dict[str, ScheduleMapping] = {}
        self._arrivals: dict[tuple[str, str], float] = {}
        self.fault_injector = fault_injector
        # (shard id, sequence number) of every record put_events wrote, in order.
        self.positions: list[tuple[str, str]] = []
        self._closed = False

    def start(self) -> LocalPipeline:
        if self._stack is not None:
            return self
        if self.endpoint_url is None:
            self._mock = mock_aws()
            self._mock.start()
        try:
            if self.fault_injector is not None:
                if self.endpoint_url is not None:
                    raise ValueError("fault injection needs in-process moto (endpoint_url=None)")
                self.fault_injector.client = self.client
                # Before any handler creates its boto3 session: sessions pick the hook up at creation.
                self.fault_injector.install()
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self._stack, expanded = deploy_local(
            self.template, self.client, self.stack_name, self.parameters, self.region, create=not self._deployed
        )
        self.account_id = self._stack.account_id
        for lid, reason in self._stack.skipped.items():
            log.debug("not created locally: %s (%s)", lid, reason)
        sources = artifact_sources(self.template, self.template_path.parent)
        self.functions = function_specs(self._stack, expanded, sources, self.client, self._selected)
        for fid, spec in self.functions.items():
            self.containers[fid] = self._container(spec)
        for spec in self.functions.values():
            for event in spec.events:
                self._add_mapping(event)

    def _container(self, spec: FunctionSpec) -> FunctionContainer:
        resource = self.resources[spec.logical_id]
        fid = spec.logical_id
        overrides = {**self._env_overrides.get("*", {}), **self._env_overrides.get(fid, {})}
        environment = lambda_environment(
            spec, function_name=resource.ref, region=self.region, endpoint_url=self.endpoint_url, overrides=overrides
        )
        return FunctionContainer(
            spec,
            function_name=resource.ref,
            function_arn=resource.attributes["Arn"],
            environment=environment,
            python_paths=self._python_paths,
            log_dir=self.log_dir,
            enforce_timeout=self._enforce_timeout,
            hook=self.fault_injector,
        )

    def _add_mapping(self, event: EventSourceSpec) -> None:
        container = self.containers[event.function_id]
        if event.kind == "schedule":
            self.schedules[event.key] = ScheduleMapping(event, container, clock=self.clock)
            return
        mapping_cls: type[StreamMapping] = KinesisMapping if event.kind == "kinesis" else DynamoDBStreamMapping
        client = self.client("kinesis" if event.kind == "kinesis" else "dynamodbstreams")
        destination = self._sender(event.on_failure_arn) if event.on_failure_arn else None
        mapping = mapping_cls(
            event, container, client=client, clock=self.clock, destination=destination, arrival_hint=self._arrival_hint
        )
        mapping.start()
        self.stream_mappings[event.key] = mapping

    def _sender(self, arn: str) -> Callable[[str], None]:
        """Sends a JSON body to an on-failure destination (an SQS queue or an SNS topic)."""
        service, name = arn.split(":")[2], arn.rsplit(":", 1)[1]
        if service == "sns":
            return lambda body: self.client("sns").publish(TopicArn=arn, Message=body)
        if service != "sqs":
            raise TemplateError(f"unsupported on-failure destination {arn}")
        url = self.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
        return lambda body: self.client("sqs").send_message(QueueUrl=url, MessageBody=body)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for container in self.containers.values():
            container.close()
        if self.fault_injector is not None:
            self.fault_injector.uninstall()
        if self._mock is not None:
            self._mock.stop()
            self._mock = None

    def __enter__(self) -> LocalPipeline:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def client(self, service: str) -> Any:
        """A boto3 client bound to this pipeline's moto (created once per pipeline)."""
        if service not in self._clients:
            config = Config(
                account_id_endpoint_mode="disabled",
                retries={"mode": "standard", "max_attempts": 3},
                # In-process mode must reach moto's interception, whatever AWS_ENDPOINT_URL says.
                ignore_configured_endpoint_urls=self.endpoint_url is None,
            )
            self._clients[service] = _runner_session().client(
                service,
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                config=config,
                aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            )
        return self._clients[service]

    @property
    def stack(self) -> Stack:
        if self._stack is None:
            raise RuntimeError("LocalPipeline.start() has not been called")
        return self._stack

    @property
    def resources(self) -> dict[str, PhysicalResource]:
        return self.stack.resources

    @property
    def outputs(self) -> dict[str, str]:
        """The stack's Outputs, plus every created resource's Ref under its logical id."""
        merged = {lid: r.ref for lid, r in self.resources.items() if r.created}
        merged.update(self.stack.outputs)
        return merged

    def run_inside(self, function_id: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` inside a function's container (its environment and modules); see FunctionContainer."""
        return self.containers[function_id].run_inside(fn)

    def describe(self) -> dict[str, Any]:
        """Everything a client needs to reach the stack (the serve mode's ready file)."""
        return {
            "stack_name": self.stack_name,
            "region": self.region,
            "account_id": self.account_id,
            "endpoint_url": self.endpoint_url,
            "outputs": dict(self.stack.outputs),
            "parameters": dict(self.stack.parameters),
            "resources": {lid: r.as_dict() for lid, r in self.resources.items()},
            "functions": {fid: c.function_name for fid, c in self.containers.items()},
            "mappings": sorted([*self.stream_mappings, *self.schedules]),
        }

    def put_events(
        self, events: Sequence[Any], partition_key: PartitionKey = "user_id", *, stream: str | None = None
    ) -> list[str]:
        """Put events on a Kinesis stream with PutRecords (500 a call, failed entries retried).

        Mappings are JSON-encoded; bytes and str are sent as they are. partition_key is either
        the name of a field of each event or a function of the event. stream: a logical id or
        name (default: the stack's only stream). Returns the sequence numbers.
        """
        streams = self.stack.of_type("AWS::Kinesis::Stream")
        if stream is None and len(streams) != 1:
            raise ValueError(f"the stack has {len(streams)} Kinesis streams; say which one")
        name = streams[stream].ref if stream in streams else stream or next(iter(streams.values())).ref
        sequence_numbers: list[str] = []
        for start in range(0, len(events), PUT_RECORDS_CHUNK):
            entries = [
                {"Data": _encode(e), "PartitionKey": _partition_key(e, partition_key)}
                for e in events[start : start + PUT_RECORDS_CHUNK]
            ]
            results: dict[int, dict[str, Any]] = {}
            for attempt in range(5):
                todo = [i for i in range(len(entries)) if i not in results]
                response = self.client("kinesis").put_records(StreamName=name, Records=[entries[i] for i in todo])
                results.update({i: r for i, r in zip(todo, response["Records"], strict=True) if not r.get("ErrorCode")})
                if len(results) == len(entries):
                    break
                time.sleep(0.05 * 2**attempt)
            else:
                raise RuntimeError(f"put_records: {len(entries) - len(results)} record(s) still failing")
            for i in range(len(entries)):
                position = (str(results[i]["ShardId"]), str(results[i]["SequenceNumber"]))
                sequence_numbers.append(position[1])
                self.positions.append(position)
                if self.clock.simulated:
                    self._arrivals[position] = self.clock.now()
        return sequence_numbers

    def _arrival_hint(self, shard_id: str, sequence_number: str) -> float | None:
        return self._arrivals.get((shard_id, sequence_number))

    def poll_once(self, *, honor_window: bool = False, skip_idle: bool = False, only_sat_out: bool = False) -> bool:
        """One round: at most one batch per shard of every mapping. True if anything happened."""
        worked = False
        for mapping in self.stream_mappings.values():
            worked = mapping.poll(honor_window=honor_window, skip_idle=skip_idle, only_sat_out=only_sat_out) or worked
        return worked

    @property
    def busy(self) -> bool:
        return any(m.busy for m in self.stream_mappings.values())

    def refresh_shards(self) -> None:
        for mapping in self.stream_mappings.values():
            mapping.refresh_shards()

    def pump(self, max_rounds: int = 10_000) -> PumpResult:
        """Poll every mapping round-robin until all streams are drained and nothing awaits a retry.

        Batching windows are not waited for: a drain delivers whatever is there. Work that
        handlers cause on other streams (a table write feeding a DynamoDB stream) is drained too.
        A round is at most one batch per shard per mapping; a batch that fails forever (no retry
        limit, no record age limit, as in Lambda) keeps the pipeline busy until max_rounds.
        """
        self.refresh_shards()
        before = self._invocations()
        for rounds in range(1, max_rounds + 1):
            if self.poll_once(skip_idle=True) or self.busy:
                continue
            # Quiet round: read the idle shards that sat that round out before calling the pipeline drained.
            if not self.poll_once(only_sat_out=True) and not self.busy:
                return PumpResult(rounds, self._invocations() - before, True)
        log.warning("pump: still busy after %d rounds (a batch failing without retry limit?)", max_rounds)
        return PumpResult(max_rounds, self._invocations() - before, False)

    def tick(self, now: float | datetime | None = None) -> int:
        """Fire the schedules due at `now` (default: the clock). A simulated clock is moved to `now`.

        Each due occurrence fires once, stamped with its own scheduled time under a simulated
        clock. Work the scheduled invocations cause on streams is left for the next pump().
        """
        if now is not None and isinstance(self.clock, SimulatedClock):
            self.clock.set(now)
        current = to_epoch(now) if now is not None else self.clock.now()
        return sum(s.tick(current) for s in self.schedules.values())

    def invoke(self, function_id: str, event: Any) -> InvocationResult:
        """Invoke a function directly and synchronously (like `sam local invoke`)."""
        if function_id not in self.containers:
            raise KeyError(f"no such function: {function_id} (have {sorted(self.containers)})")
        records = event.get("Records") if isinstance(event, dict) else None
        return self.containers[function_id].invoke(event, records=len(records) if isinstance(records, list) else 0)

    def _invocations(self) -> int:
        return sum(c.stats.invocations for c in self.containers.values())

    def stats(self) -> PipelineStats:
        mappings: dict[str, MappingStats] = {k: m.stats for k, m in self.stream_mappings.items()}
        mappings.update({k: s.stats for k, s in self.schedules.items()})
        return PipelineStats({fid: c.stats for fid, c in self.containers.items()}, mappings)


@cache
def _runner_session() -> Any:
    """The runner's own clients share one session: botocore parses each service model once per process."""
    return boto3.session.Session()


def _encode(event: Any) -> bytes:
    if isinstance(event, bytes):
        return event
    if isinstance(event, str):
        return event.encode("utf-8")
    return json.dumps(event, separators=(",", ":"), default=str).encode("utf-8")


def _partition_key(event: Any, partition_key: PartitionKey) -> str:
    if callable(partition_key):
        return str(partition_key(event))
    if isinstance(event, Mapping) and partition_key in event:
        return str(event[partition_key])
    raise ValueError(f"event has no field {partition_key!r} to use as partition key: {event!r:.200}")
