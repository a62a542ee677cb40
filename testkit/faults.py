"""Fault injection for the local runner: AWS errors, races, crashes and timeouts inside handlers.

The injector wraps moto's botocore ``before-send`` hook, so it sees every AWS call a handler
makes through any boto3 client, and acts only while a handler runs (the runner's polling,
PutRecords and dead-lettering are Lambda's service side, never faulted). ``rates`` gives each
FaultKind a probability per opportunity, from one seeded RNG; runner/README.md describes each.
Crash and timeout end the execution environment (lambda_invoke.AbortInvocation): a function
error for the mapping, and a cold start next time. Injected faults are counted by kind and function.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import types
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import botocore.endpoint
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.handlers import BUILTIN_HANDLERS

from runner.lambda_invoke import AbortInvocation


class FaultKind(StrEnum):
    DYNAMODB_THROTTLE = "dynamodb_throttle"
    CONDITIONAL_RACE = "conditional_race"
    S3_INTERNAL_ERROR = "s3_internal_error"
    SNS_PUBLISH_FAILURE = "sns_publish_failure"
    CRASH_MID_BATCH = "crash_mid_batch"
    TIMEOUT = "timeout"


class FunctionCrash(AbortInvocation):
    """The handler's process exited in the middle of a batch."""

    error_type = "Runtime.ExitError"


class FunctionTimeout(AbortInvocation):
    """The handler ran into its deadline."""

    timed_out = True


# Writes that land (a crash mid-batch comes right after the n-th of them).
DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
WRITE_OPERATIONS = frozenset({*DYNAMODB_WRITES, "PutObject", "DeleteObject", "Publish", "PublishBatch", "SendMessage"})
CRASH_AFTER_WRITES = (1, 3)
TIMEOUT_AT_CALLS = (1, 6)


@dataclass(frozen=True)
class ConcurrentWrite:
    """The other writer of a ``conditional_race``: right before a PutItem/UpdateItem whose
    ConditionExpression contains ``condition_marker``, the same item gets UpdateItem
    ``update_expression`` with ``values`` (DynamoDB JSON), guarded by ``guard`` if given."""

    condition_marker: str
    update_expression: str
    values: Mapping[str, Any]
    guard: str | None = None


@dataclass
class _Invocation:
    function_id: str
    calls: int = 0
    writes: int = 0
    crash_after_write: int | None = None
    timeout_at_call: int | None = None
    # SNS took a push and no DynamoDB write has landed since (neither its send record nor the ledger).
    send_unrecorded: bool = False


@dataclass
class FaultInjector:
    """Injects faults into handler AWS calls under moto; see the module docstring.

    ``functions`` limits injection to those function logical ids (default: all).
    ``race`` is the concurrent write a ``conditional_race`` stages (required for that kind).
    ``client`` (set by LocalPipeline) gives boto3 clients for the racing writer.
    """

    rates: Mapping[str, float]
    seed: int = 0
    functions: frozenset[str] | None = None
    race: ConcurrentWrite | None = None
    client: Callable[[str], Any] | None = None
    injected: Counter[str] = field(default_factory=Counter)
    injected_by_function: Counter[tuple[str, str]] = field(default_factory=Counter)
    handler_calls: int = 0
    invocations: int = 0
    sdk_backoff_s: float = 0.0
    # Invocations that ended after a push was published and before anything recorded it.
    sends_interrupted: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.rates) - {k.value for k in FaultKind}
        if unknown:
            raise ValueError(f"unknown fault kind(s): {sorted(unknown)}")
        if self.rates.get(FaultKind.CONDITIONAL_RACE, 0) > 0 and self.race is None:
            raise ValueError("conditional_race needs race=ConcurrentWrite(...): which writes race, and how")
        self._rng = random.Random(self.seed)
        self._current: _Invocation | None = None
        self._passthrough = threading.local()
        self._installed: list[tuple[int, Any]] = []
        self._saved_time: Any = None
        self._key_schemas: dict[str, list[str]] = {}

    # ------------------------------------------------------------ install / uninstall

    def install(self) -> None:
        """Wrap moto's before-send hook for every boto3 session created from now on."""
        if self._installed:
            return
        for index, entry in enumerate(BUILTIN_HANDLERS):
            event, handler = entry[0], entry[1]
            if event == "before-send" and type(handler).__name__ == "BotocoreStubber":
                BUILTIN_HANDLERS[index] = (event, _Wrapped(self, handler), *entry[2:])
                self._installed.append((index, entry))
        if not self._installed:
            raise RuntimeError("moto's botocore stubber is not registered: import moto first")
        # SDK retry backoff is counted as simulated time instead of slept.
        self._saved_time = botocore.endpoint.time
        botocore.endpoint.time = types.SimpleNamespace(sleep=self._backoff)

    def uninstall(self) -> None:
        for index, entry in self._installed:
            if index < len(BUILTIN_HANDLERS) and isinstance(BUILTIN_HANDLERS[index][1], _Wrapped):
                BUILTIN_HANDLERS[index] = entry
        self._installed.clear()
        if self._saved_time is not None:
            botocore.endpoint.time = self._saved_time
            self._saved_time = None

    def _backoff(self, seconds: float) -> None:
        self.sdk_backoff_s += float(seconds)

    def __enter__(self) -> FaultInjector:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    # ------------------------------------------------------------ the runner's hook

    @contextlib.contextmanager
    def invocation(self, function_id: str) -> Iterator[None]:
        """Active while one handler invocation runs; decides its crash and timeout points."""
        state = _Invocation(function_id)
        if self.functions is None or function_id in self.functions:
            self.invocations += 1
            if self._draw(FaultKind.CRASH_MID_BATCH):
                state.crash_after_write = self._rng.randint(*CRASH_AFTER_WRITES)
            if self._draw(FaultKind.TIMEOUT):
                state.timeout_at_call = self._rng.randint(*TIMEOUT_AT_CALLS)
            self._current = state
        try:
            yield
        finally:
            # The invocation ended (a crash, a timeout, an error) between SNS taking a push and any
            # record of it: the one window where no sender can know whether its push went out.
            self.sends_interrupted += int(state.send_unrecorded)
            self._current = None

    @property
    def total(self) -> int:
        return sum(self.injected.values())

    def summary(self) -> dict[str, Any]:
        by_function: dict[str, dict[str, int]] = {}
        for (kind, fid), n in sorted(self.injected_by_function.items()):
            by_function.setdefault(fid, {})[kind] = n
        return {
            "rates": dict(self.rates),
            "seed": self.seed,
            "injected": {k.value: self.injected.get(k.value, 0) for k in FaultKind},
            "injected_total": self.total,
            "injected_by_function": by_function,
            "handler_invocations_seen": self.invocations,
            "handler_aws_calls_seen": self.handler_calls,
            "sdk_backoff_simulated_s": round(self.sdk_backoff_s, 3),
            "sends_interrupted": self.sends_interrupted,
        }

    # ------------------------------------------------------------ per request

    def _draw(self, kind: FaultKind) -> bool:
        rate = self.rates.get(kind.value, 0.0)
        return rate > 0 and self._rng.random() < rate

    def _count(self, kind: FaultKind, state: _Invocation) -> None:
        self.injected[kind.value] += 1
        self.injected_by_function[(kind.value, state.function_id)] += 1

    def handle(self, moto: Any, event_name: str, request: AWSPreparedRequest, **kwargs: Any) -> Any:
        state = self._current
        if state is None or getattr(self._passthrough, "on", False):
            return moto(event_name, request, **kwargs)
        _, service, operation = [*event_name.split(".", 2), "", ""][:3]
        self.handler_calls += 1
        state.calls += 1
        if state.timeout_at_call is not None and state.calls >= state.timeout_at_call:
            state.timeout_at_call = None
            self._count(FaultKind.TIMEOUT, state)
            raise FunctionTimeout(f"stopped at its deadline before {service}.{operation}")
        if service == "dynamodb" and self._draw(FaultKind.DYNAMODB_THROTTLE):
            self._count(FaultKind.DYNAMODB_THROTTLE, state)
            return _error(request, 400, "ProvisionedThroughputExceededException", "Rate of requests exceeds", "json")
        if service == "s3" and self._draw(FaultKind.S3_INTERNAL_ERROR):
            self._count(FaultKind.S3_INTERNAL_ERROR, state)
            return _error(request, 500, "InternalError", "We encountered an internal error.", "rest-xml")
        if service == "sns" and operation == "Publish" and self._draw(FaultKind.SNS_PUBLISH_FAILURE):
            self._count(FaultKind.SNS_PUBLISH_FAILURE, state)
            return _error(request, 500, "InternalError", "Request could not be processed", "query")
        if service == "dynamodb" and operation in ("PutItem", "UpdateItem"):
            self._maybe_race(request, state)
        response = moto(event_name, request, **kwargs)
        if _succeeded(response):
            self._landed(state, service, operation)
        return response

    def _landed(self, state: _Invocation, service: str, operation: str) -> None:
        """A call succeeded: track unrecorded sends, and crash after the chosen write."""
        if operation in ("Publish", "PublishBatch"):
            state.send_unrecorded = True
        elif service == "dynamodb" and operation in DYNAMODB_WRITES:
            state.send_unrecorded = False
        if operation not in WRITE_OPERATIONS:
            return
        state.writes += 1
        if state.crash_after_write is not None and state.writes >= state.crash_after_write:
            state.crash_after_write = None
            self._count(FaultKind.CRASH_MID_BATCH, state)
            raise FunctionCrash(f"process exited after {service}.{operation} (write {state.writes}) landed")

    def _maybe_race(self, request: AWSPreparedRequest, state: _Invocation) -> None:
        """A concurrent writer changes the item a conditional write is about to replace."""
        race = self.race
        if self.client is None or race is None:
            return
        body = _json_body(request)
        condition = str(body.get("ConditionExpression", ""))
        if race.condition_marker not in condition or not self._draw(FaultKind.CONDITIONAL_RACE):
            return
        table = str(body.get("TableName", ""))
        key = body.get("Key")
        if key is None:
            item = body.get("Item") or {}
            key = {name: item[name] for name in self._key_schema(table) if name in item}
        if not key:
            return
        guard = {"ConditionExpression": race.guard} if race.guard else {}
        try:
            with self._unfaulted():
                self.client("dynamodb").update_item(
                    TableName=table,
                    Key=key,
                    UpdateExpression=race.update_expression,
                    ExpressionAttributeValues=dict(race.values),
                    **guard,
                )
        except Exception:  # the guard refused (the item is gone or new): no race to have
            return
        self._count(FaultKind.CONDITIONAL_RACE, state)

    def _key_schema(self, table: str) -> list[str]:
        if table not in self._key_schemas and self.client is not None:
            with self._unfaulted():
                schema = self.client("dynamodb").describe_table(TableName=table)["Table"]["KeySchema"]
            self._key_schemas[table] = [str(k["AttributeName"]) for k in schema]
        return self._key_schemas.get(table, [])

    @contextlib.contextmanager
    def _unfaulted(self) -> Iterator[None]:
        """The injector's own calls (the racing writer's) go straight to moto."""
        self._passthrough.on = True
        try:
            yield
        finally:
            self._passthrough.on = False


class _Wrapped:
    """Stands where moto's hook stood in botocore's handler list."""

    def __init__(self, injector: FaultInjector, moto: Any) -> None:
        self._injector = injector
        self._moto = moto

    def __call__(self, event_name: str, request: AWSPreparedRequest, **kwargs: Any) -> Any:
        return self._injector.handle(self._moto, event_name, request, **kwargs)


def _succeeded(response: Any) -> bool:
    return response is not None and 200 <= int(getattr(response, "status_code", 0)) < 300


def _json_body(request: AWSPreparedRequest) -> dict[str, Any]:
    raw = request.body
    if isinstance(raw, bytes | bytearray):
        raw = raw.decode("utf-8")
    try:
        parsed = json.loads(raw or "{}")
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _error(request: AWSPreparedRequest, status: int, code: str, message: str, protocol: str) -> AWSResponse:
    """An error response in the service's protocol: DynamoDB's JSON, S3's REST-XML, SNS's query XML."""
    from moto.core.botocore_stubber import MockRawResponse

    if protocol == "json":
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message})
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code}
    else:
        error = f"<Code>{code}</Code><Message>{message}</Message>"
        body = (
            f"<Error>{error}</Error>"
            if protocol == "rest-xml"
            else f"<ErrorResponse><Error>{error}</Error></ErrorResponse>"
        )
        headers = {"Content-Type": "application/xml"}
    return AWSResponse(request.url, status, headers, MockRawResponse(body))


def uniform_rates(rate: float) -> dict[str, float]:
    """Every fault kind at the same rate."""
    return {kind.value: rate for kind in FaultKind}
