"""Command line: `python -m runner serve ...` and `python -m runner invoke FUNCTION --event FILE`.

`python -m runner erase ...` is an alias kept for operators: it runs the project's own CLI
(`python -m cli erase`, cli/erase.py), which is not part of the runner.
"""

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


def _pairs(values: Sequence[str], option: str) -> list[tuple[str, str]]:
    pairs = [item.partition("=") for item in values]
    for item, (_, sep, _) in zip(values, pairs, strict=True):
        if not sep:
            raise SystemExit(f"{option} expects KEY=VALUE, got {item!r}")
    return [(key, value) for key, _, value in pairs]


def _env_overrides(values: Sequence[str], env_vars_file: str | None) -> dict[str, dict[str, str | None]]:
    """--env KEY=VALUE (every function) or --env Function.KEY=VALUE; --env-vars is sam's JSON file."""
    overrides: dict[str, dict[str, str | None]] = {}
    if env_vars_file is not None:
        for target, variables in json.loads(Path(env_vars_file).read_text(encoding="utf-8")).items():
            overrides.setdefault("*" if target == "Parameters" else target, {}).update(
                {k: str(v) for k, v in variables.items()}
            )
    for key, value in _pairs(values, "--env"):
        target, dot, name = key.rpartition(".")
        overrides.setdefault(target if dot else "*", {})[name] = value
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runner", description="Run a SAM stack locally on moto.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the stack on a loopback moto endpoint and drive its functions")
    serve.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 (0 picks a free one)")
    serve.add_argument("--ready-file", help="write endpoint, names, ARNs and queue URLs here as JSON when ready")
    serve.add_argument("--poll-interval", type=float, default=0.2, help="seconds between idle polls")
    serve.add_argument("--outbox", default="outbox", help="SQS queue subscribed to SNS topics ('' for none)")
    serve.add_argument("--outbox-topic", action="append", default=[], help="logical id or ARN (default: every topic)")
    invoke = sub.add_parser("invoke", help="invoke one function once with an event file (like sam local invoke)")
    invoke.add_argument("function", metavar="FUNCTION_LOGICAL_ID")
    invoke.add_argument("--event", "-e", required=True, help="event JSON file ('-' reads stdin)")
    for command in (serve, invoke):
        command.add_argument("--template", "-t", default="template.yaml", help="SAM template (default: template.yaml)")
        command.add_argument("--stack-name", default="local")
        command.add_argument("--region", default="us-east-1")
        command.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="parameter override")
        command.add_argument("--env", action="append", default=[], metavar="[FUNCTION.]KEY=VALUE")
        command.add_argument("--env-vars", metavar="FILE", help="sam-style JSON file {FunctionId: {KEY: VALUE}}")
        command.add_argument("--log-dir", help="write each function's stdout/stderr to DIR/<FunctionId>.log")
    sub.add_parser("erase", help="alias of `python -m cli erase` (the project's operator CLI)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["erase"]:
        from cli.__main__ import main as cli_main

        return cli_main(argv)
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
    options: dict[str, Any] = {
        "stack_name": args.stack_name,
        "region": args.region,
        "parameter_overrides": dict(_pairs(args.param, "--param")),
        "env_overrides": _env_overrides(args.env, args.env_vars),
        "log_dir": args.log_dir,
    }
    if args.command == "serve":
        from runner.server import serve

        outbox = {"outbox": args.outbox or None, "outbox_topics": args.outbox_topic}
        return serve(args.template, port=args.port, ready_file=args.ready_file, **outbox, **options)
    text = sys.stdin.read() if args.event == "-" else Path(args.event).read_text(encoding="utf-8")
    # Like `sam local invoke`: handler logs on stderr, only the response on stdout.
    pipeline = LocalPipeline(args.template, functions=[args.function], **options)
    with pipeline, contextlib.redirect_stdout(sys.stderr):
        result = pipeline.invoke(args.function, json.loads(text))
    print(json.dumps(result.response if result.ok else result.error_payload(), indent=2))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
