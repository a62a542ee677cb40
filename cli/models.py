"""`nudge models list|publish|promote|rollback|compare|outcomes`: the model registry of one stack.

The stack is a deployed one (`--stack-name`, with `--profile`/`--region`) or `python -m runner serve`'s
(`--ready-file`); its outputs name the registry (`ModelRegistryUri`) and the pointer decide reads
(`ModelPointerParameterName`). A promotion or rollback reaches every warm decide container within the
stack's `ModelPointerTtlSeconds` (default 60). `outcomes` reads the ledger: how each version's decisions
turned out (training/version_outcomes.py). Layout and procedure: docs/operations.md.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cli.stack import CliError, open_stack, output
from shared.adapters.ledger import Ledger
from shared.adapters.model_registry import RegistryVersion, S3ModelRegistry, SsmModelPointer
from shared.domain.errors import NudgeError
from shared.domain.model_registry import ModelPointer, graph_version_of
from shared.model import ModelLoadError
from training.version_outcomes import by_version, hit_rate_difference

POINTER_OUTPUT = "ModelPointerParameterName"
REGISTRY_OUTPUT = "ModelRegistryUri"
DAY_SECONDS = 86_400


class ModelsError(CliError):
    """What the operator is told, on one line, with exit status 2."""


@dataclass(frozen=True)
class StackRegistry:
    registry: S3ModelRegistry
    pointer: SsmModelPointer


def stack_registry(session: Any, outputs: Mapping[str, str]) -> StackRegistry:
    if POINTER_OUTPUT not in outputs or REGISTRY_OUTPUT not in outputs:
        raise ModelsError(f"the stack has no model registry (outputs {POINTER_OUTPUT}, {REGISTRY_OUTPUT}): update it")
    return StackRegistry(
        S3ModelRegistry.at(session.client("s3"), outputs[REGISTRY_OUTPUT]),
        SsmModelPointer(session.client("ssm"), outputs[POINTER_OUTPUT]),
    )


def list_versions(stack: StackRegistry) -> dict[str, Any]:
    pointer = stack.pointer.read()
    versions = []
    for version in stack.registry.versions():
        described = stack.registry.describe(version)
        versions.append({**_summary(described), "role": _role(version, pointer)})
    return {"pointer": _pointer_json(pointer), "versions": versions}


def publish(stack: StackRegistry, model_dir: str) -> dict[str, Any]:
    version = stack.registry.publish(model_dir)
    return {"published": version, "registry": stack.registry.uri}


def promote(stack: StackRegistry, version: str, *, challenger: bool = False, share: float = 0.0) -> dict[str, Any]:
    """Point decide at ``version`` (as champion, or as challenger for ``share`` of users), after checking
    it downloads, matches its id and loads with its calibration, as decide will."""
    _check_loads(stack.registry, version)
    before = stack.pointer.read()
    if challenger:
        if before is None:
            raise ModelsError("promote a champion first: a challenger is measured against one")
        after = before.with_challenger(version, share)
    else:
        after = before.promoted(version) if before is not None else ModelPointer.first(version)
    stack.pointer.write(after)
    return {"before": _pointer_json(before), "after": _pointer_json(after)}


def rollback(stack: StackRegistry) -> dict[str, Any]:
    before = stack.pointer.read()
    if before is None:
        raise ModelsError("nothing promoted yet: decide serves the bootstrap default (the model layer)")
    after = before.rolled_back()
    _check_loads(stack.registry, after.champion)
    stack.pointer.write(after)
    return {"before": _pointer_json(before), "after": _pointer_json(after)}


def compare(stack: StackRegistry, first: str, second: str) -> dict[str, Any]:
    """Both versions' manifests and evaluation reports, and each shared number's difference (second - first)."""
    a, b = stack.registry.describe(first), stack.registry.describe(second)
    numbers_a, numbers_b = _numbers(a), _numbers(b)
    return {
        "a": _summary(a),
        "b": _summary(b),
        "same_graph": graph_version_of(first) == graph_version_of(second),
        "metrics": {
            key: {"a": numbers_a.get(key), "b": numbers_b.get(key), "delta": _delta(numbers_a, numbers_b, key)}
            for key in sorted(set(numbers_a) | set(numbers_b))
        },
    }


def outcomes(stack: StackRegistry, ledger: Ledger, *, since: int) -> dict[str, Any]:
    """Per model version since ``since``: decisions, push rate, delivered/opened/hit rates with intervals and
    the greedy policy's off-policy value; with a challenger, its hit rate minus the champion's."""
    pointer = stack.pointer.read()
    versions = by_version(ledger.decided_since(since))
    for version, report in versions.items():
        report["role"] = _role(version, pointer)
    result: dict[str, Any] = {"since": since, "pointer": _pointer_json(pointer), "versions": versions}
    if pointer is not None and pointer.challenger in versions and pointer.champion in versions:
        difference = hit_rate_difference(versions[pointer.challenger], versions[pointer.champion])
        result["challenger_minus_champion_hit_rate"] = difference
    return result


def run(args: Any) -> dict[str, Any]:
    """Dispatch one parsed `nudge models ...` command (cli/__main__.py builds the parser)."""
    with open_stack(args) as (session, facts):
        try:
            stack = stack_registry(session, facts.outputs)
            if args.action == "list":
                return list_versions(stack)
            if args.action == "publish":
                return publish(stack, args.model_dir)
            if args.action == "promote":
                return promote(stack, args.version, challenger=args.challenger, share=args.share)
            if args.action == "rollback":
                return rollback(stack)
            if args.action == "outcomes":
                ledger = Ledger(session.resource("dynamodb"), output(facts, "LedgerTableName"))
                return outcomes(stack, ledger, since=int(time.time()) - args.days * DAY_SECONDS)
            return compare(stack, args.version, args.other)
        except (NudgeError, ModelLoadError, ValueError) as exc:
            raise ModelsError(str(exc)) from exc


def _check_loads(registry: S3ModelRegistry, version: str) -> None:
    with tempfile.TemporaryDirectory(prefix="nudge-models-") as scratch:
        registry.load(version, scratch)


def _summary(described: RegistryVersion) -> dict[str, Any]:
    manifest = described.manifest
    return {
        "version": described.version,
        "graph": manifest.version,
        "kind": manifest.kind,
        "created_at": manifest.created_at.isoformat(),
        "metrics": manifest.metrics,
        "evaluation": described.evaluation,
    }


def _numbers(described: RegistryVersion) -> dict[str, float]:
    numbers = {f"manifest.{k}": float(v) for k, v in described.manifest.metrics.items()}
    for key, value in (described.evaluation or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            numbers[f"evaluation.{key}"] = float(value)
    return numbers


def _delta(a: Mapping[str, float], b: Mapping[str, float], key: str) -> float | None:
    return round(b[key] - a[key], 6) if key in a and key in b else None


def _role(version: str, pointer: ModelPointer | None) -> str:
    if pointer is None:
        return ""
    if version == pointer.champion:
        return "champion"
    if version == pointer.challenger:
        return f"challenger ({pointer.challenger_share:.0%})"
    return "previous" if version in pointer.previous else ""


def _pointer_json(pointer: ModelPointer | None) -> dict[str, Any] | None:
    return pointer.model_dump(mode="json") if pointer is not None else None
