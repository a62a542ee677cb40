"""Run a function's handler in this process the way one warm Lambda container would.

Each function gets its own "container": its app.py is imported once (the cold start) under a
unique module name with the function's environment in os.environ, and every invocation runs with
that environment again. Project modules (e.g. `shared`) are imported separately per container and
swapped in and out of sys.modules around each call, because in Lambda each function has its own
interpreter: module-level state read from the environment at import time must not leak between
functions.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
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

from runner.template import FunctionSpec

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


# Values every handler process needs locally, whatever the template says.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def lambda_environment(
    spec: FunctionSpec,
    *,
    function_name: str,
    region: str,
    template_env: Mapping[str, str],
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
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
        "_HANDLER": spec.handler,
        "TZ": ":UTC",
    }
    env.update(template_env)
    env.update(FAKE_CREDENTIALS)
    env.update(
        {
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
    )
    if overrides:
        env.update(overrides)
    return env


@contextlib.contextmanager
def patched_environ(env: Mapping[str, str | None]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in env}
    try:
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


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
        self.identity = None
        self.client_context = None
        self.tenant_id = None
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
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


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
        per_record = self.per_record_ms()
        per_record_cpu = self.per_record_ms(cpu=True)
        return {
            "invocations": self.invocations,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "records": self.records,
            "cold_starts": self.cold_starts,
            "init_ms": [round(t * 1000.0, 3) for t in self.init_wall_s],
            "handler_ms_total": round(sum(self.wall_s) * 1000.0, 3),
            "handler_ms_per_record_p50": round(percentile(per_record, 50), 4),
            "handler_ms_per_record_p99": round(percentile(per_record, 99), 4),
            "handler_cpu_ms_per_record_p50": round(percentile(per_record_cpu, 50), 4),
            "handler_cpu_ms_per_record_p99": round(percentile(per_record_cpu, 99), 4),
            "invocation_ms_p50": round(percentile(self.wall_s, 50) * 1000.0, 3),
            "invocation_ms_p99": round(percentile(self.wall_s, 99) * 1000.0, 3),
        }


class _ModuleScope:
    """Keeps one container's copies of project modules out of everyone else's sys.modules."""

    def __init__(self, roots: Sequence[Path], excluded: Sequence[Path]) -> None:
        self._roots = tuple(str(r.resolve()) + os.sep for r in roots)
        self._excluded = tuple(str(e.resolve()) + os.sep for e in excluded)
        self._own: dict[str, ModuleType] = {}
        # Verdict per module name (a name is taken to be project code or not for good); set
        # arithmetic on the names keeps the per-invocation swap cheap with thousands of modules.
        self._verdicts: dict[str, bool] = {}
        self._project_names: set[str] = set()

    def _classify(self, module: ModuleType) -> bool:
        paths: list[str] = []
        file = getattr(module, "__file__", None)
        if isinstance(file, str):
            paths.append(file)
        else:
            with contextlib.suppress(Exception):
                paths.extend(str(p) for p in getattr(module, "__path__", []) or [])
        for path in paths:
            if "site-packages" in path or "dist-packages" in path:
                continue
            if path.startswith(self._excluded):
                continue
            if path.startswith(self._roots):
                return True
        return False

    def _project_modules(self) -> dict[str, ModuleType]:
        modules = sys.modules
        for name in modules.keys() - self._verdicts.keys():
            module = modules.get(name)
            verdict = module is not None and self._classify(module)
            self._verdicts[name] = verdict
            if verdict:
                self._project_names.add(name)
        return {name: modules[name] for name in self._project_names & modules.keys()}

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        outside = self._project_modules()
        for name in outside:
            del sys.modules[name]
        sys.modules.update(self._own)
        try:
            yield
        finally:
            self._own = self._project_modules()
            for name in self._own:
                del sys.modules[name]
            sys.modules.update(outside)


class _Sink(Protocol):
    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class _RoutedStream(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr while handlers run; writes go to the active target.

    Loggers bind the stream object they see at creation (Powertools' Logger keeps sys.stdout,
    and reuses an already configured logger of the same service). Binding them to this one
    process-wide object keeps their output going to the current invocation's destination, even
    for a logger first created by an earlier, already closed pipeline.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name
        self._targets: list[_Sink] = []

    def _target(self) -> _Sink:
        if self._targets:
            return self._targets[-1]
        current: _Sink = getattr(sys, self._name)
        if current is self:
            fallback: _Sink = getattr(sys, f"__{self._name}__")
            return fallback
        return current

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def writable(self) -> bool:
        return True

    @contextlib.contextmanager
    def routed_to(self, target: _Sink) -> Iterator[None]:
        self._targets.append(target)
        try:
            yield
        finally:
            self._targets.pop()


_STDOUT = _RoutedStream("stdout")
_STDERR = _RoutedStream("stderr")


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
        isolate_modules: bool = True,
        enforce_timeout: bool = False,
        hook: InvocationHook | None = None,
    ) -> None:
        self.spec = spec
        self.function_name = function_name
        self.function_arn = function_arn
        self.environment = dict(environment)
        self.stats = FunctionStats(spec.logical_id)
        self._python_paths = [str(spec.code_dir), *(str(p) for p in python_paths)]
        self._log_dir = log_dir
        self._log: IO[str] | None = None
        self._handler: Callable[[Any, Any], Any] | None = None
        self._module: ModuleType | None = None
        self._enforce_timeout = enforce_timeout
        self._hook = hook
        self._isolate = isolate_modules
        self._scope = self._new_scope()

    def _new_scope(self) -> _ModuleScope | None:
        if not self._isolate:
            return None
        runner_dir = Path(__file__).resolve().parent
        roots = [self.spec.code_dir, *(Path(p) for p in self._python_paths[1:])]
        return _ModuleScope(roots, excluded=[runner_dir])

    def _discard_environment(self) -> None:
        """The process died: the next invocation imports everything again (a cold start)."""
        self._handler = None
        self._module = None
        self._scope = self._new_scope()

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
        payload = json.loads(json.dumps(event))
        with self._sandbox():
            self._write_log(f"START RequestId: {context.aws_request_id} Version: $LATEST")
            init_ms = self._cold_start(result)
            if self._handler is not None:
                handler = self._handler
                wall0, cpu0 = time.perf_counter(), time.process_time()
                aborted: AbortInvocation | None = None
                try:
                    with self._hook.invocation(self.spec.logical_id) if self._hook else contextlib.nullcontext():
                        response = handler(payload, context)
                except AbortInvocation as abort:
                    aborted = abort
                    response = None
                except Exception as exc:  # the runtime reports any handler exception
                    _record_error(result, exc)
                    response = None
                result.wall_s = time.perf_counter() - wall0
                result.cpu_s = time.process_time() - cpu0
                if result.ok:
                    try:
                        result.response = json.loads(json.dumps(response))
                    except (TypeError, ValueError) as exc:
                        result.error_type = "Runtime.MarshalError"
                        result.error_message = f"Unable to marshal response: {exc}"
                self.stats.invocations += 1
                self.stats.records += records
                self.stats.wall_s.append(result.wall_s)
                self.stats.cpu_s.append(result.cpu_s)
                self.stats.batch_sizes.append(records)
                if result.wall_s > self.spec.timeout_s or (aborted is not None and aborted.timed_out):
                    result.timed_out = True
                    self.stats.timeouts += 1
                    if self._enforce_timeout or aborted is not None:
                        result.error_type = "Sandbox.Timedout"
                        result.error_message = f"Task timed out after {self.spec.timeout_s:.2f} seconds"
                if aborted is not None:
                    if not aborted.timed_out:
                        result.error_type = aborted.error_type
                        result.error_message = f"RequestId: {context.aws_request_id} Error: {aborted}"
                    self._discard_environment()
            if not result.ok:
                self.stats.errors += 1
                self._write_log(json.dumps(result.error_payload()))
            self._write_log(f"END RequestId: {context.aws_request_id}")
            report = (
                f"REPORT RequestId: {context.aws_request_id}\tDuration: {result.wall_s * 1000:.2f} ms\t"
                f"Billed Duration: {math.ceil(result.wall_s * 1000)} ms\t"
                f"Memory Size: {self.spec.memory_mb} MB"
            )
            if init_ms is not None:
                report += f"\tInit Duration: {init_ms:.2f} ms"
            self._write_log(report)
        return result

    def _cold_start(self, result: InvocationResult) -> float | None:
        if self._handler is not None:
            return None
        wall0 = time.perf_counter()
        try:
            module = self._import()
            handler = getattr(module, self.spec.handler_function)
            if not callable(handler):
                raise TypeError(f"{self.spec.handler} is not callable")
        except Exception as exc:
            _record_error(result, exc)
            result.error_type = f"Runtime.ImportModuleError: {result.error_type}"
            return None
        self._module = module
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
        sys.path[:0] = self._python_paths
        log = self._open_log()
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(patched_environ(self.environment))
                if self._scope is not None:
                    stack.enter_context(self._scope.active())
                stack.enter_context(_STDOUT.routed_to(log or _real(sys.stdout, _STDOUT)))
                stack.enter_context(_STDERR.routed_to(log or _real(sys.stderr, _STDERR)))
                stack.enter_context(contextlib.redirect_stdout(_STDOUT))
                stack.enter_context(contextlib.redirect_stderr(_STDERR))
                yield
        finally:
            sys.path[:] = saved_path
            if log is not None:
                log.flush()

    def _open_log(self) -> IO[str] | None:
        if self._log is None and self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            self._log = (self._log_dir / f"{self.spec.logical_id}.log").open("a", encoding="utf-8")
        return self._log

    def _write_log(self, line: str) -> None:
        if self._log is not None:
            self._log.write(line + "\n")

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _real(stream: _Sink, proxy: _RoutedStream) -> _Sink:
    return proxy._target() if stream is proxy else stream


def _record_error(result: InvocationResult, exc: BaseException) -> None:
    result.error_type = type(exc).__name__
    result.error_message = str(exc)
    # Like the runtime, report only the handler's own frames.
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_RUNNER_DIR)]
    result.stack_trace = traceback.format_list(frames)


_RUNNER_DIR = str(Path(__file__).resolve().parent) + os.sep
