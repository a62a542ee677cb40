"""Run a function's handler in this process the way one warm Lambda container would.

Each function gets its own "container": its app.py is imported once (the cold start) under a
unique module name with the function's environment in os.environ, and every invocation runs with
that environment again. Project modules (e.g. `shared`) and the loggers they create are kept per
container and swapped in and out around each call, because in Lambda each function has its own
interpreter: module-level state read from the environment at import time must not leak between
functions.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Protocol, TypeVar

from runner.specs import FunctionSpec

_RUNNER_DIR = str(Path(__file__).resolve().parent) + os.sep
# Values every handler process needs locally, whatever the stack says.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}

_T = TypeVar("_T")


class AbortInvocation(BaseException):
    """Raised inside a handler to end its execution environment the way Lambda would.

    A BaseException, so the handler's own ``except Exception`` cannot swallow it: the process
    dies (a crash) or is stopped at its deadline (a timeout). The invocation is a function
    error with ``error_type``, and the next invocation starts a fresh environment (cold start).
    """

    error_type = "Runtime.ExitError"
    timed_out = False


class InvocationHook(Protocol):
    """Sees every handler invocation (the fault injector, runner/faults.py)."""

    def invocation(self, function_id: str) -> contextlib.AbstractContextManager[None]: ...


def lambda_environment(
    spec: FunctionSpec,
    *,
    function_name: str,
    region: str,
    endpoint_url: str | None,
    overrides: Mapping[str, str | None] | None = None,
) -> dict[str, str | None]:
    """The environment a handler sees. None means "unset while the handler runs"."""
    env: dict[str, str | None] = {
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"local/[$LATEST]{uuid.uuid4().hex}",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
        "_HANDLER": spec.handler,
        "TZ": ":UTC",
        **spec.environment,
        **FAKE_CREDENTIALS,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        # botocore's account-id endpoint routing breaks in-process moto DynamoDB Streams.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        # No X-Ray daemon locally.
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_PROFILE": None,
        "AWS_DEFAULT_PROFILE": None,
    }
    return {**env, **(overrides or {})}


@contextlib.contextmanager
def patched_environ(env: Mapping[str, str | None]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in env}
    try:
        _set_environ(env)
        yield
    finally:
        _set_environ(saved)


def _set_environ(env: Mapping[str, str | None]) -> None:
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class LambdaContext:
    """The attributes and method of the Python runtime's context object that handlers use."""

    def __init__(self, *, function_name: str, function_arn: str, memory_mb: int, timeout_s: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function_arn
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"local/[$LATEST]{uuid.uuid4().hex}"
        self.identity = self.client_context = self.tenant_id = None
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class InvocationResult:
    request_id: str
    response: Any = None
    error_type: str | None = None
    error_message: str | None = None
    stack_trace: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error_type is None

    def fail(self, error_type: str, message: str) -> None:
        self.error_type, self.error_message = error_type, message

    def error_payload(self) -> dict[str, Any]:
        """The body Lambda returns for an unhandled error."""
        return {
            "errorMessage": self.error_message,
            "errorType": self.error_type,
            "requestId": self.request_id,
            "stackTrace": self.stack_trace,
        }


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; 0.0 for no data."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(max(1, math.ceil(pct / 100.0 * len(ordered))), len(ordered)) - 1]


@dataclass
class FunctionStats:
    function_id: str
    cold_starts: int = 0
    init_wall_s: list[float] = field(default_factory=list)
    invocations: int = 0
    errors: int = 0
    timeouts: int = 0
    records: int = 0
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)

    def per_record_ms(self, *, cpu: bool = False) -> list[float]:
        """Handler time per record of each invocation that carried records, in ms."""
        times = self.cpu_s if cpu else self.wall_s
        return [t * 1000.0 / n for t, n in zip(times, self.batch_sizes, strict=True) if n > 0]

    def summary(self) -> dict[str, Any]:
        counts = ("invocations", "errors", "timeouts", "records", "cold_starts")
        summary: dict[str, Any] = {name: getattr(self, name) for name in counts}
        summary["init_ms"] = [round(t * 1000.0, 3) for t in self.init_wall_s]
        summary["handler_ms_total"] = round(sum(self.wall_s) * 1000.0, 3)
        for name, values, scale, digits in (
            ("handler_ms_per_record", self.per_record_ms(), 1.0, 4),
            ("handler_cpu_ms_per_record", self.per_record_ms(cpu=True), 1.0, 4),
            ("invocation_ms", self.wall_s, 1000.0, 3),
        ):
            for pct in (50, 99):
                summary[f"{name}_p{pct}"] = round(percentile(values, pct) * scale, digits)
        return summary


class _ContainerScope:
    """Keeps one container's project modules, and the loggers it created, to itself.

    Modules count as project code when loaded from the code or layer directories (not from
    site-packages, not the runner). Loggers are process-wide in logging's registry; a
    container's (e.g. Powertools' per-service Logger, configured once, with its level and the
    stdout it saw) would otherwise be reused by the next container of that name, where Lambda
    starts a new process.
    """

    def __init__(self, roots: Sequence[Path]) -> None:
        self._roots = tuple(str(r.resolve()) + os.sep for r in roots)
        self._modules: dict[str, ModuleType] = {}
        self._loggers: dict[str, Any] = {}
        # A name is project code or not for good; set arithmetic keeps the swap cheap.
        self._verdicts: dict[str, bool] = {}
        self._project_names: set[str] = set()

    def _is_project(self, module: ModuleType | None) -> bool:
        file = getattr(module, "__file__", None)
        paths = [file] if isinstance(file, str) else [str(p) for p in getattr(module, "__path__", None) or []]
        return any(p.startswith(self._roots) and not p.startswith(_RUNNER_DIR) and "-packages" not in p for p in paths)

    def _project_modules(self) -> dict[str, ModuleType]:
        modules = sys.modules
        for name in modules.keys() - self._verdicts.keys():
            self._verdicts[name] = verdict = self._is_project(modules.get(name))
            if verdict:
                self._project_names.add(name)
        return {name: modules[name] for name in self._project_names & modules.keys()}

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        outside = self._project_modules()
        for name in outside:
            del sys.modules[name]
        sys.modules.update(self._modules)
        registry = logging.Logger.manager.loggerDict
        shadowed = {name: registry[name] for name in self._loggers.keys() & registry.keys()}
        outside_loggers = registry.keys() - self._loggers.keys()
        registry.update(self._loggers)
        try:
            yield
        finally:
            self._modules = self._project_modules()
            for name in self._modules:
                del sys.modules[name]
            sys.modules.update(outside)
            self._loggers = {name: registry.pop(name) for name in registry.keys() - outside_loggers}
            registry.update(shadowed)


class FunctionContainer:
    """One warm execution environment for one function."""

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        function_name: str,
        function_arn: str,
        environment: Mapping[str, str | None],
        python_paths: Sequence[Path] = (),
        log_dir: Path | None = None,
        enforce_timeout: bool = False,
        hook: InvocationHook | None = None,
    ) -> None:
        self.spec = spec
        self.function_name = function_name
        self.function_arn = function_arn
        self.environment = dict(environment)
        self.stats = FunctionStats(spec.logical_id)
        self._paths = [spec.code_dir, *python_paths]
        self._log_dir = log_dir
        self._log: IO[str] | None = None
        self._handler: Callable[[Any, Any], Any] | None = None
        self._enforce_timeout = enforce_timeout
        self._hook = hook
        self._scope = _ContainerScope(self._paths)

    @property
    def warm(self) -> bool:
        return self._handler is not None

    @property
    def log_path(self) -> Path | None:
        return self._log_dir / f"{self.spec.logical_id}.log" if self._log_dir is not None else None

    def invoke(self, event: Any, *, records: int = 0) -> InvocationResult:
        """Invoke synchronously; `records` is how many stream records the event carries (for stats)."""
        context = LambdaContext(
            function_name=self.function_name,
            function_arn=self.function_arn,
            memory_mb=self.spec.memory_mb,
            timeout_s=self.spec.timeout_s,
        )
        result = InvocationResult(context.aws_request_id)
        with self._sandbox():
            self._write_log(f"START RequestId: {context.aws_request_id} Version: $LATEST")
            init_ms = self._cold_start(result)
            if self._handler is not None:
                self._run(self._handler, json.loads(json.dumps(event)), context, result)
                self.stats.invocations += 1
                self.stats.records += records
                self.stats.wall_s.append(result.wall_s)
                self.stats.cpu_s.append(result.cpu_s)
                self.stats.batch_sizes.append(records)
            if not result.ok:
                self.stats.errors += 1
                self._write_log(json.dumps(result.error_payload()))
            self._write_log(f"END RequestId: {context.aws_request_id}")
            self._write_log(
                f"REPORT RequestId: {context.aws_request_id}\tDuration: {result.wall_s * 1000:.2f} ms\t"
                f"Billed Duration: {math.ceil(result.wall_s * 1000)} ms\tMemory Size: {self.spec.memory_mb} MB"
                + (f"\tInit Duration: {init_ms:.2f} ms" if init_ms is not None else "")
            )
        return result

    def _run(self, handler: Callable[[Any, Any], Any], payload: Any, context: Any, result: InvocationResult) -> None:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        aborted: AbortInvocation | None = None
        response = None
        try:
            with self._hook.invocation(self.spec.logical_id) if self._hook else contextlib.nullcontext():
                response = handler(payload, context)
        except AbortInvocation as abort:
            aborted = abort
        except Exception as exc:  # the runtime reports any handler exception
            _record_error(result, exc)
        result.wall_s, result.cpu_s = time.perf_counter() - wall0, time.process_time() - cpu0
        if result.ok and aborted is None:
            try:
                result.response = json.loads(json.dumps(response))
            except (TypeError, ValueError) as exc:
                result.fail("Runtime.MarshalError", f"Unable to marshal response: {exc}")
        if result.wall_s > self.spec.timeout_s or (aborted is not None and aborted.timed_out):
            result.timed_out = True
            self.stats.timeouts += 1
            if self._enforce_timeout or aborted is not None:
                result.fail("Sandbox.Timedout", f"Task timed out after {self.spec.timeout_s:.2f} seconds")
        if aborted is not None:
            if not aborted.timed_out:
                result.fail(aborted.error_type, f"RequestId: {context.aws_request_id} Error: {aborted}")
            # The process is gone: the next invocation imports everything again (a cold start).
            self._handler = None
            self._scope = _ContainerScope(self._paths)

    def _cold_start(self, result: InvocationResult) -> float | None:
        if self._handler is not None:
            return None
        wall0 = time.perf_counter()
        try:
            handler = getattr(self._import(), self.spec.handler_function)
            if not callable(handler):
                raise TypeError(f"{self.spec.handler} is not callable")
        except Exception as exc:
            _record_error(result, exc)
            result.error_type = f"Runtime.ImportModuleError: {result.error_type}"
            return None
        self._handler = handler
        init_s = time.perf_counter() - wall0
        self.stats.cold_starts += 1
        self.stats.init_wall_s.append(init_s)
        return init_s * 1000.0

    def _import(self) -> ModuleType:
        path = self.spec.handler_file
        if not path.is_file():
            raise FileNotFoundError(f"handler module {path} not found")
        name = f"_lambda_{self.spec.logical_id}__{self.spec.handler_module.replace('.', '_')}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module

    def run_inside(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` in this container's environment and module scope, as the function's own code
        runs (what it imports binds to the container's modules, e.g. its composition root)."""
        with self._sandbox():
            return fn()

    @contextlib.contextmanager
    def _sandbox(self) -> Iterator[None]:
        saved_path = sys.path[:]
        sys.path[:0] = [str(p) for p in self._paths]
        if self._log is None and self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            self._log = (self._log_dir / f"{self.spec.logical_id}.log").open("a", encoding="utf-8")
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(patched_environ(self.environment))
                stack.enter_context(self._scope.active())
                if self._log is not None:
                    stack.enter_context(contextlib.redirect_stdout(self._log))
                    stack.enter_context(contextlib.redirect_stderr(self._log))
                yield
        finally:
            sys.path[:] = saved_path
            if self._log is not None:
                self._log.flush()

    def _write_log(self, line: str) -> None:
        if self._log is not None:
            self._log.write(line + "\n")

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _record_error(result: InvocationResult, exc: BaseException) -> None:
    result.fail(type(exc).__name__, str(exc))
    # Like the runtime, report only the handler's own frames.
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_RUNNER_DIR)]
    result.stack_trace = traceback.format_list(frames)
