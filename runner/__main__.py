"""Command line: `python -m runner serve ...`, `python -m runner invoke FUNCTION --event FILE` and
`python -m runner erase --user U --stack-name NAME` (runner/erase.py)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner.pipeline import LocalPipeline


def _parse_params(values: Sequence[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--param expects Name=Value, got {item!r}")
        params[key] = value
    return params


def _parse_env(values: Sequence[str], env_vars_file: str | None) -> dict[str, dict[str, str | None]]:
    """--env KEY=VALUE (every function) or --env Function.KEY=VALUE; --env-vars is sam's JSON file."""
    overrides: dict[str, dict[str, str | None]] = {}
    if env_vars_file is not None:
        data = json.loads(Path(env_vars_file).read_text(encoding="utf-8"))
        for target, variables in data.items():
            if target == "Parameters":
                target = "*"
            overrides.setdefault(target, {}).update({k: str(v) for k, v in variables.items()})
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--env expects [Function.]KEY=VALUE, got {item!r}")
        target, dot, name = key.rpartition(".")
        overrides.setdefault(target if dot else "*", {})[name] = value
    return overrides


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--template", "-t", default="template.yaml", help="SAM template (default: template.yaml)")
    parser.add_argument("--stack-name", default="nudge-local")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="parameter override")
    parser.add_argument(
        "--env", action="append", default=[], metavar="[FUNCTION.]KEY=VALUE", help="environment override"
    )
    parser.add_argument("--env-vars", metavar="FILE", help="sam-style JSON file {FunctionId: {KEY: VALUE}}")
    parser.add_argument("--log-dir", help="write each function's stdout/stderr to DIR/<FunctionId>.log")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runner", description="Run the SAM stack locally on moto.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the stack on a loopback moto endpoint and drive its functions")
    serve.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 (0 picks a free one)")
    serve.add_argument("--ready-file", help="write endpoint, names, ARNs and queue URLs here as JSON when ready")
    serve.add_argument("--poll-interval", type=float, default=0.2, help="seconds between idle polls")
    _common(serve)

    invoke = sub.add_parser("invoke", help="invoke one function once with an event file (like sam local invoke)")
    invoke.add_argument("function", metavar="FUNCTION_LOGICAL_ID")
    invoke.add_argument("--event", "-e", required=True, help="event JSON file ('-' reads stdin)")
    _common(invoke)

    erase = sub.add_parser("erase", help="erase users from a deployed stack or a `serve` stack (see runner/erase.py)")
    erase.add_argument("--user", action="append", required=True, metavar="USER_ID", help="raw user id (repeatable)")
    erase.add_argument("--stack-name", help="a CloudFormation stack (its outputs name the tables and bucket)")
    erase.add_argument("--ready-file", help="or the ready file of `python -m runner serve`")
    erase.add_argument("--region", default="us-east-1")
    erase.add_argument("--endpoint-url", help="an AWS-compatible endpoint (e.g. a moto server)")
    erase.add_argument(
        "--pseudonym-key-parameter", help="SSM SecureString name when ids are pseudonymous (default: the stack's)"
    )
    erase.add_argument("--via-function", action="store_true", help="invoke the stack's EraseFunction instead")
    return parser


def _read_event(path: str) -> Any:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    return json.loads(text)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Only the runner's own logger is configured: the root logger stays as Lambda leaves it, so
    # handlers' stdlib logging behaves the same here as there.
    runner_log = logging.getLogger("runner")
    if not runner_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        runner_log.addHandler(handler)
    runner_log.setLevel(logging.INFO)
    runner_log.propagate = False
    if args.command == "erase":
        from runner.erase import erase, stack_facts

        outputs, parameters, endpoint = stack_facts(
            stack_name=args.stack_name, ready_file=args.ready_file, region=args.region, endpoint_url=args.endpoint_url
        )
        key_parameter = args.pseudonym_key_parameter or parameters.get("PseudonymKeyParameter", "")
        report = erase(
            args.user,
            outputs,
            pseudonym_key_parameter=key_parameter,
            region=args.region,
            endpoint_url=endpoint,
            via_function=args.via_function,
        )
        print(json.dumps(report, indent=2))
        return 0
    params = _parse_params(args.param)
    env = _parse_env(args.env, args.env_vars)
    if args.command == "serve":
        from runner.server import serve

        return serve(
            port=args.port,
            template=args.template,
            stack_name=args.stack_name,
            ready_file=args.ready_file,
            log_dir=args.log_dir,
            parameter_overrides=params,
            env_overrides=env,
            region=args.region,
            poll_interval_s=args.poll_interval,
        )
    event = _read_event(args.event)
    pipeline = LocalPipeline(
        args.template,
        stack_name=args.stack_name,
        env_overrides=env,
        log_dir=args.log_dir,
        parameter_overrides=params,
        region=args.region,
        functions=[args.function],
    )
    # Like `sam local invoke`: handler logs on stderr, only the response on stdout.
    with pipeline, contextlib.redirect_stdout(sys.stderr):
        result = pipeline.invoke(args.function, event)
    if result.ok:
        print(json.dumps(result.response, indent=2))
        return 0
    print(json.dumps(result.error_payload(), indent=2))
    return 1


if __name__ == "__main__":
    sys.exit(main())
