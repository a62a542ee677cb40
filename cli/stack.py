"""Which stack a command works on, shared by every `nudge` command that reads or changes one.

A deployed stack is named by `--stack-name` (CloudFormation's outputs and parameters, with `--profile`/`--region`);
`python -m runner serve`'s by `--ready-file` (its endpoint, outputs and parameters). `open_stack` resolves either
and yields a boto3 session whose clients reach it (cli/erase.py's `using_endpoint`: a loopback endpoint gets dummy
credentials). Every failure is a `CliError`: one line for the operator, exit status 2.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.exceptions import BotoCoreError, ClientError

NAME_THE_STACK = "name the stack: --stack-name NAME (AWS) or --ready-file FILE (python -m runner serve)"


class CliError(Exception):
    """What the operator is told, on one line, with exit status 2."""


@dataclass(frozen=True)
class StackFacts:
    outputs: dict[str, str]
    parameters: dict[str, str] = field(default_factory=dict)


def read_ready_file(ready_file: str) -> dict[str, Any]:
    try:
        ready = json.loads(Path(ready_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read the ready file {ready_file}: {exc}") from exc
    if not isinstance(ready, dict) or not isinstance(ready.get("outputs"), dict):
        raise CliError(f"cannot read the ready file {ready_file}: no stack outputs in it")
    return ready


def ready_endpoint(ready_file: str | None) -> str | None:
    if ready_file is None:
        return None
    endpoint = read_ready_file(ready_file).get("endpoint_url")
    return str(endpoint) if endpoint else None


def stack_facts(session: Any, *, stack_name: str | None, ready_file: str | None) -> StackFacts:
    """The stack's outputs and parameters (the session's clients follow `using_endpoint`)."""
    if ready_file is not None:
        ready = read_ready_file(ready_file)
        return StackFacts(dict(ready["outputs"]), dict(ready.get("parameters") or {}))
    if stack_name is None:
        raise CliError(NAME_THE_STACK)
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            raise CliError(f"no stack named {stack_name!r} in {session.region_name}") from exc
        raise CliError(f"cannot describe stack {stack_name!r}: {exc}") from exc
    except BotoCoreError as exc:
        raise CliError(f"cannot reach CloudFormation: {exc}") from exc
    stack = stacks[0]
    return StackFacts(
        {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])},
    )


def output(facts: StackFacts, name: str) -> str:
    if name not in facts.outputs:
        raise CliError(f"the stack has no output {name}: update it")
    return facts.outputs[name]


@contextlib.contextmanager
def open_stack(args: Any) -> Iterator[tuple[Any, StackFacts]]:
    """(session, facts) of the stack `args` names (--stack-name | --ready-file, --region, --endpoint-url,
    --profile when the parser has it), with every AWS client made inside reaching it."""
    from cli.erase import LOOPBACK_HOSTS, using_endpoint

    endpoint = args.endpoint_url or ready_endpoint(args.ready_file)
    local = endpoint is not None and urlparse(endpoint).hostname in LOOPBACK_HOSTS
    with using_endpoint(endpoint, args.region):
        # A local endpoint gets using_endpoint's dummy credentials; a profile only means something for AWS.
        profile = None if local else getattr(args, "profile", None)
        session = boto3.session.Session(profile_name=profile, region_name=args.region)
        yield session, stack_facts(session, stack_name=args.stack_name, ready_file=args.ready_file)


def pseudonymizer(ssm: Any, key_parameter: str) -> Callable[[str], str] | None:
    """The stack's raw id -> stored id mapping when it keeps pseudonymous ids (PseudonymKeyParameter), else None.

    A pseudonym maps to itself, so an operator may pass either."""
    if not key_parameter:
        return None
    from shared.adapters.pseudonym_key import read_pseudonym_key
    from shared.domain.pseudonym import Pseudonymizer

    return Pseudonymizer(read_pseudonym_key(ssm, key_parameter))
