"""Nudge's operator commands (also `python -m cli ...`):

nudge erase --user U (--stack-name NAME | --ready-file FILE)
nudge platform create --name NAME --platform APNS|APNS_SANDBOX|FCM --credentials-secret SECRET_ID
nudge models list|publish DIR|promote VERSION|rollback|compare A B|outcomes [--days N]
    (--stack-name NAME | --ready-file FILE)
nudge explain USER [--limit N] [--text] (--stack-name NAME | --ready-file FILE)
nudge user USER [--text] (--stack-name NAME | --ready-file FILE)
nudge retrain (--stack-name NAME | --ready-file FILE [--history DIR] [--holdout-days D] [--time-budget S])

A deployed stack takes --region, --profile (models, explain, user) and --endpoint-url; a stack is resolved in
cli/stack.py. Output is JSON (explain and user: --text for a table); a refusal is one line on stderr, status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nudge",
        description="Nudge's operator commands: erase, platform create, models, explain, user, retrain.",
        epilog="`nudge COMMAND --help` for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    erase = sub.add_parser("erase", help="erase users from a deployed stack or a `python -m runner serve` stack")
    erase.add_argument("--user", action="append", required=True, metavar="USER_ID", help="raw user id (repeatable)")
    _stack_arguments(erase, profile=False, pseudonyms=True)
    erase.add_argument("--via-function", action="store_true", help="invoke the stack's EraseFunction instead")
    platform = sub.add_parser(
        "platform", help="SNS platform applications for endpoint delivery (DeliveryMode=endpoint)"
    )
    platform_sub = platform.add_subparsers(dest="action", required=True)
    create = platform_sub.add_parser("create", help="create one from credentials kept in Secrets Manager")
    create.add_argument("--name", required=True, help="the application's name, e.g. myapp-ios")
    create.add_argument("--platform", required=True, choices=["APNS", "APNS_SANDBOX", "FCM"])
    create.add_argument("--credentials-secret", required=True, help="Secrets Manager id of the attributes JSON")
    create.add_argument("--region", default="us-east-1")
    create.add_argument("--endpoint-url", help="an AWS-compatible endpoint (e.g. a moto server)")
    _models_parser(sub)
    _users_parser(sub)
    _retrain_parser(sub)
    return parser


def _retrain_parser(sub: Any) -> None:
    retrain = sub.add_parser(
        "retrain",
        help="retrain now: a deployed stack's state machine, or every step here against a local stack",
    )
    local = "(local stack only) "
    retrain.add_argument("--history", action="append", default=[], help=local + "events from before the stack")
    retrain.add_argument("--holdout-days", type=float, help=local + "days the gate judges on (default 14)")
    retrain.add_argument("--time-budget", type=float, help=local + "seconds of training (default 120)")
    retrain.add_argument(
        "--bootstrap-model", default="layers/model/sasrec/int8", help=local + "the champion while no pointer exists"
    )
    retrain.add_argument("--out", default="out/retrain", help=local + "report.json and the training log")
    _stack_arguments(retrain, profile=True, pseudonyms=False)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _users_parser(sub: Any) -> None:
    explain = sub.add_parser("explain", help="a user's recent decisions (ledger), newest first, with outcomes")
    explain.add_argument("--limit", type=_positive, default=20, help="how many decisions (default 20)")
    user = sub.add_parser("user", help="a user's state (hot and profile items) and today's push counts; no token")
    for parser in (explain, user):
        parser.add_argument(
            "user", metavar="USER", help="raw user id (mapped to its pseudonym when the stack uses them)"
        )
        parser.add_argument("--text", action="store_true", help="a human-readable table instead of JSON")
        _stack_arguments(parser, profile=True, pseudonyms=True)


def _models_parser(sub: Any) -> None:
    models = sub.add_parser("models", help="the model registry: what decide serves, promotion and rollback")
    actions = models.add_subparsers(dest="action", required=True)
    parsers = {
        "list": actions.add_parser("list", help="every registry version, with the pointer's roles"),
        "publish": actions.add_parser("publish", help="upload a model folder (with calibration.json) as a version"),
        "promote": actions.add_parser("promote", help="make a version the champion (or --challenger)"),
        "rollback": actions.add_parser("rollback", help="serve the champion before the current one again"),
        "compare": actions.add_parser("compare", help="two versions' manifests and evaluation reports"),
        "outcomes": actions.add_parser("outcomes", help="how each version's decisions turned out (the ledger)"),
    }
    parsers["publish"].add_argument("model_dir", help="holds model.onnx, manifest.json, calibration.json")
    parsers["promote"].add_argument("version")
    parsers["promote"].add_argument("--challenger", action="store_true", help="serve it to --share of users")
    parsers["promote"].add_argument("--share", type=float, default=0.0, help="the challenger's share, 0..1")
    parsers["compare"].add_argument("version")
    parsers["compare"].add_argument("other")
    parsers["outcomes"].add_argument("--days", type=_positive, default=14, help="decisions of the last N days")
    for parser in parsers.values():
        _stack_arguments(parser, profile=True, pseudonyms=False)


def _stack_arguments(parser: argparse.ArgumentParser, *, profile: bool, pseudonyms: bool) -> None:
    """Which stack a command works on (cli/stack.py resolves them)."""
    parser.add_argument("--stack-name", help="a CloudFormation stack (its outputs name the tables and bucket)")
    parser.add_argument("--ready-file", help="or the ready file of `python -m runner serve`")
    if profile:
        parser.add_argument("--profile", help="AWS profile (a deployed stack)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--endpoint-url", help="an AWS-compatible endpoint (e.g. a moto server)")
    if pseudonyms:
        parser.add_argument(
            "--pseudonym-key-parameter", help="SSM SecureString name when ids are pseudonymous (default: the stack's)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "platform":
        return _platform(args)
    if args.command == "models":
        return _models(args)
    if args.command in ("explain", "user"):
        return _users(args)
    if args.command == "retrain":
        from cli.retrain import run

        return _answer("retrain", run, args, _as_json)
    return _erase(args)


def _erase(args: argparse.Namespace) -> int:
    from cli.erase import erase
    from cli.stack import CliError, open_stack, ready_endpoint

    try:
        with open_stack(args) as (_, facts):
            key_parameter = args.pseudonym_key_parameter or facts.parameters.get("PseudonymKeyParameter", "")
        endpoint = args.endpoint_url or ready_endpoint(args.ready_file)
    except CliError as exc:
        print(f"nudge erase: {exc}", file=sys.stderr)
        return 2
    report = erase(
        args.user,
        facts.outputs,
        pseudonym_key_parameter=key_parameter,
        region=args.region,
        endpoint_url=endpoint,
        via_function=args.via_function,
    )
    print(json.dumps(report, indent=2))
    return 0


def _platform(args: argparse.Namespace) -> int:
    import boto3

    from cli.erase import using_endpoint
    from cli.platforms import PlatformError, create_platform_application

    with using_endpoint(args.endpoint_url, args.region):
        kwargs = {"region_name": args.region, "endpoint_url": args.endpoint_url}
        try:
            created = create_platform_application(
                args.name,
                args.platform,
                args.credentials_secret,
                boto3.client("sns", **kwargs),
                boto3.client("secretsmanager", **kwargs),
            )
        except PlatformError as exc:
            print(f"nudge platform create: {exc}", file=sys.stderr)
            return 2
    print(json.dumps(created, indent=2))
    return 0


def _models(args: argparse.Namespace) -> int:
    from cli.models import run

    return _answer(f"models {args.action}", run, args, _as_json)


def _users(args: argparse.Namespace) -> int:
    from cli.users import explain_text, run, user_text

    text = explain_text if args.command == "explain" else user_text
    return _answer(args.command, run, args, text if args.text else _as_json)


def _answer(
    command: str,
    run: Callable[[argparse.Namespace], dict[str, Any]],
    args: argparse.Namespace,
    render: Callable[[dict[str, Any]], str],
) -> int:
    """The command's result on stdout, or its refusal on one line of stderr with exit status 2."""
    from cli.stack import CliError

    try:
        result = run(args)
    except CliError as exc:
        print(f"nudge {command}: {exc}", file=sys.stderr)
        return 2
    print(render(result))
    return 0


def _as_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2)


if __name__ == "__main__":
    sys.exit(main())
