"""LocalPipeline: the deployed stack, in moto, with its functions driven in this process."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from moto import mock_aws

from runner.clock import Clock, RealClock, SimulatedClock, to_epoch
from runner.deploy import deployed_stack as read_deployed_stack
from runner.deploy import function_environment
from runner.event_sources import (
    Destination,
    DynamoDBStreamMapping,
    KinesisMapping,
    MappingStats,
    ScheduleMapping,
    StreamMapping,
)
from runner.faults import FaultInjector
from runner.lambda_invoke import (
    FAKE_CREDENTIALS,
    FunctionContainer,
    FunctionStats,
    InvocationResult,
    lambda_environment,
)
from runner.resources import Stack, StackBuilder, physical_name
from runner.template import (
    EventSourceSpec,
    PhysicalResource,
    Resolver,
    Template,
    TemplateError,
    load_template,
)

log = logging.getLogger(__name__)

PUT_RECORDS_CHUNK = 500
EnvOverrides = Mapping[str, Mapping[str, str | None]]
PartitionKey = str | Callable[[Any], str]

T = TypeVar("T")


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
    """Creates the template's stack in moto and runs its functions as Lambda would.

    In-process mode (endpoint_url=None) starts a moto `mock_aws` (nesting inside the caller's if
    one is active). Endpoint mode talks to a moto server and hands AWS_ENDPOINT_URL to handlers.

    env_overrides maps a function logical id (or "*" for all) to variables that win over the
    template's, e.g. {"DecideFunction": {"MODEL_DIR": "/tmp/model"}}; None unsets a variable.

    fault_injector (runner/faults.py) injects AWS errors, races, crashes and timeouts into the
    handlers' AWS calls while they run; the mappings retry, bisect and dead-letter as Lambda would.

    deployed_stack names a CloudFormation stack that already exists in the same moto (or behind
    endpoint_url): its resources are used instead of created, and each function gets the
    environment CloudFormation gave the deployed function (see runner/deploy.py).
    """

    def __init__(
        self,
        template_path: str | Path = "template.yaml",
        *,
        stack_name: str = "nudge-local",
        clock: Clock | None = None,
        env_overrides: EnvOverrides | None = None,
        log_dir: str | Path | None = None,
        parameter_overrides: Mapping[str, Any] | None = None,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        functions: Iterable[str] | None = None,
        python_paths: Sequence[str | Path] | None = None,
        isolate_modules: bool = True,
        enforce_timeout: bool = False,
        deployed_stack: str | None = None,
        fault_injector: FaultInjector | None = None,
    ) -> None:
        self.template: Template = load_template(template_path, parameter_overrides)
        for warning in self.template.warnings:
            log.warning("template: %s", warning)
        self.stack_name = deployed_stack or stack_name
        self._deployed = deployed_stack is not None
        self.clock: Clock = clock or RealClock()
        self.region = region
        self.endpoint_url = endpoint_url
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._env_overrides = {k: dict(v) for k, v in (env_overrides or {}).items()}
        unknown = set(self._env_overrides) - set(self.template.functions) - {"*"}
        if unknown:
            raise TemplateError(f"env overrides for unknown function(s): {sorted(unknown)}")
        selected = list(functions) if functions is not None else list(self.template.functions)
        missing = set(selected) - set(self.template.functions)
        if missing:
            raise TemplateError(f"no such function(s) in the template: {sorted(missing)}")
        self._selected = selected
        # The repo root plays the part of the layers (the shared package lives there).
        self._python_paths = [Path(p).resolve() for p in (python_paths or [self.template.root])]
        self._isolate = isolate_modules
        self._enforce_timeout = enforce_timeout
        self._mock: Any = None
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        self._stack: Stack | None = None
        self.account_id = ""
        self.resolver: Resolver | None = None
        self.containers: dict[str, FunctionContainer] = {}
        self.stream_mappings: dict[str, StreamMapping] = {}
        self.schedules: dict[str, ScheduleMapping] = {}
        self._arrivals: dict[tuple[str, str], float] = {}
        self.fault_injector = fault_injector
        # (shard id, sequence number) of every record put_events wrote, in order.
        self.positions: list[tuple[str, str]] = []
        self._closed = False

    # ------------------------------------------------------------ lifecycle

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
        self.account_id = str(self.client("sts").get_caller_identity()["Account"])
        if self._deployed:
            self._stack = read_deployed_stack(self.client, self.stack_name, self.region, self.account_id)
            resolver = Resolver(
                self.template,
                stack_name=self.stack_name,
                region=self.region,
                account_id=self.account_id,
                physical=self._stack.resources,
            )
        else:
            builder = StackBuilder(
                self.template,
                self.client,
                stack_name=self.stack_name,
                region=self.region,
                account_id=self.account_id,
            )
            self._stack = builder.build()
            resolver = builder.resolver
        self.resolver = resolver
        for fid in self._selected:
            self.containers[fid] = self._container(fid, resolver)
        for fid in self._selected:
            for event in self.template.functions[fid].events:
                self._add_mapping(event)

    def _container(self, fid: str, resolver: Resolver) -> FunctionContainer:
        spec = self.template.functions[fid]
        resource = self.resources[fid]
        if self._deployed:
            # What CloudFormation wired is what the deployed handler reads, not our resolution of it.
            template_env = function_environment(self.client("lambda"), resource.ref)
        else:
            template_env = {key: resolver.resolve_str(value) for key, value in spec.environment.items()}
        overrides = {**self._env_overrides.get("*", {}), **self._env_overrides.get(fid, {})}
        environment = lambda_environment(
            spec,
            function_name=resource.ref,
            region=self.region,
            template_env=template_env,
            endpoint_url=self.endpoint_url,
            overrides=overrides,
        )
        return FunctionContainer(
            spec,
            function_name=resource.ref,
            function_arn=resource.attributes["Arn"],
            environment=environment,
            python_paths=self._python_paths,
            log_dir=self.log_dir,
            isolate_modules=self._isolate,
            enforce_timeout=self._enforce_timeout,
            hook=self.fault_injector,
        )

    def _add_mapping(self, event: EventSourceSpec) -> None:
        container = self.containers[event.function_id]
        if event.kind == "schedule":
            rule = physical_name(self.stack_name, f"{event.function_id}{event.name}", max_len=64)
            schedule = ScheduleMapping(
                event,
                container,
                clock=self.clock,
                region=self.region,
                account_id=self.account_id,
                rule_name=rule,
            )
            schedule.start()
            self.schedules[event.key] = schedule
            return
        source_arn = self._source_arn(event)
        mapping_cls: type[StreamMapping] = KinesisMapping if event.kind == "kinesis" else DynamoDBStreamMapping
        mapping = mapping_cls(
            event,
            container,
            source_arn=source_arn,
            client=self.client("kinesis" if event.kind == "kinesis" else "dynamodbstreams"),
            clock=self.clock,
            region=self.region,
            account_id=self.account_id,
            destination=self._destination(event),
            arrival_hint=self._arrival_hint,
        )
        mapping.start()
        self.stream_mappings[event.key] = mapping

    def _source_arn(self, event: EventSourceSpec) -> str:
        if event.source_arn is not None:
            return event.source_arn
        resource = self.resources.get(event.source_logical_id or "")
        attribute = "Arn" if event.kind == "kinesis" else "StreamArn"
        if resource is None or attribute not in resource.attributes:
            raise TemplateError(f"{event.key}: {event.source_logical_id} has no {attribute}")
        return resource.attributes[attribute]

    def _destination(self, event: EventSourceSpec) -> Destination | None:
        sqs, sns = self.client("sqs"), self.client("sns")
        if event.on_failure_logical_id is not None:
            resource = self.resources[event.on_failure_logical_id]
            queue_url = resource.ref if resource.type == "AWS::SQS::Queue" else None
            arn = resource.attributes.get("Arn") or resource.ref
            return Destination(arn, sqs=sqs, sns=sns, queue_url=queue_url)
        if event.on_failure_arn is not None:
            return Destination(event.on_failure_arn, sqs=sqs, sns=sns)
        return None

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

    # ------------------------------------------------------------ stack facts

    def client(self, service: str) -> Any:
        """A boto3 client bound to this pipeline's moto (created once per pipeline)."""
        if service not in self._clients:
            if self._session is None:
                self._session = boto3.session.Session(
                    aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                    region_name=self.region,
                )
            config = Config(
                account_id_endpoint_mode="disabled",
                retries={"mode": "standard", "max_attempts": 3},
                # In-process mode must reach moto's interception, whatever AWS_ENDPOINT_URL says.
                ignore_configured_endpoint_urls=self.endpoint_url is None,
            )
            self._clients[service] = self._session.client(service, endpoint_url=self.endpoint_url, config=config)
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
        """Template Outputs (resolved), plus every created resource's Ref under its logical id."""
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
            "resources": {lid: r.as_dict() for lid, r in self.resources.items()},
            "functions": {fid: c.function_name for fid, c in self.containers.items()},
            "mappings": sorted([*self.stream_mappings, *self.schedules]),
        }

    # ------------------------------------------------------------ driving

    def put_events(
        self,
        events: Sequence[Any],
        partition_key: PartitionKey = "user_id",
        *,
        stream: str | None = None,
        max_attempts: int = 5,
    ) -> list[str]:
        """Put events on a Kinesis stream with PutRecords (chunks of 500, failed entries retried).

        Mappings are JSON-encoded; bytes and str are sent as they are. partition_key is either
        the name of a field of each event or a function of the event. Returns sequence numbers.
        """
        stream_name = self._stream_name(stream)
        kinesis = self.client("kinesis")
        sequence_numbers: list[str] = []
        for start in range(0, len(events), PUT_RECORDS_CHUNK):
            chunk = events[start : start + PUT_RECORDS_CHUNK]
            entries = [{"Data": _encode(e), "PartitionKey": _partition_key(e, partition_key)} for e in chunk]
            results: list[dict[str, Any] | None] = [None] * len(entries)
            todo = list(range(len(entries)))
            for attempt in range(max_attempts):
                response = kinesis.put_records(StreamName=stream_name, Records=[entries[i] for i in todo])
                failed: list[int] = []
                for i, outcome in zip(todo, response["Records"], strict=True):
                    if outcome.get("ErrorCode"):
                        failed.append(i)
                    else:
                        results[i] = outcome
                todo = failed
                if not todo:
                    break
                time.sleep(0.05 * 2**attempt)
            if todo:
                raise RuntimeError(f"put_records: {len(todo)} record(s) still failing after {max_attempts} attempts")
            now = self.clock.now()
            for outcome in results:
                assert outcome is not None
                seq = str(outcome["SequenceNumber"])
                sequence_numbers.append(seq)
                self.positions.append((str(outcome["ShardId"]), seq))
                if self.clock.simulated:
                    self._arrivals[(str(outcome["ShardId"]), seq)] = now
        return sequence_numbers

    def _stream_name(self, stream: str | None) -> str:
        streams = {lid: r for lid, r in self.resources.items() if r.type == "AWS::Kinesis::Stream" and r.created}
        if stream is None:
            if len(streams) != 1:
                raise ValueError(f"the stack has {len(streams)} Kinesis streams; say which one")
            return next(iter(streams.values())).ref
        if stream in streams:
            return streams[stream].ref
        return stream

    def _arrival_hint(self, shard_id: str, sequence_number: str) -> float | None:
        return self._arrivals.get((shard_id, sequence_number))

    def poll_once(self, *, honor_window: bool = False, skip_idle: bool = False) -> bool:
        """One round: at most one batch per shard of every mapping. True if anything happened."""
        worked = False
        for mapping in self.stream_mappings.values():
            worked = mapping.poll(honor_window=honor_window, skip_idle=skip_idle) or worked
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
            # Quiet round: read every shard (idle ones too) before calling the pipeline drained.
            if not self.poll_once() and not self.busy:
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

    # ------------------------------------------------------------ conveniences for demos and tests

    def queue_url(self, queue: str) -> str:
        """Queue URL for a logical id, a queue name or a URL."""
        resource = self.resources.get(queue)
        if resource is not None and resource.type == "AWS::SQS::Queue":
            return resource.ref
        if queue.startswith(("http://", "https://")):
            return queue
        url: str = self.client("sqs").get_queue_url(QueueName=queue)["QueueUrl"]
        return url

    def receive_messages(self, queue: str, *, max_messages: int = 1000, wait_s: float = 0.0) -> list[str]:
        """Receive (and delete) message bodies from a queue until it is empty or max_messages."""
        sqs = self.client("sqs")
        url = self.queue_url(queue)
        bodies: list[str] = []
        deadline = time.monotonic() + wait_s
        while len(bodies) < max_messages:
            page = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=min(10, max_messages - len(bodies)))
            messages = page.get("Messages", [])
            if not messages:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
                continue
            for message in messages:
                bodies.append(message["Body"])
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
        return bodies

    def receive_json(self, queue: str, **kwargs: Any) -> list[Any]:
        return [json.loads(body) for body in self.receive_messages(queue, **kwargs)]


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
