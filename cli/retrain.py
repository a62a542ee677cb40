"""`nudge retrain`: one retraining run of a stack now, instead of waiting for its schedule.

A deployed stack (`--stack-name`) starts an execution of its retraining state machine (output
`RetrainStateMachineArn`: Athena extracts, SageMaker trains, the gate decides; docs/operations.md). A
`python -m runner serve` stack (`--ready-file`) has no SageMaker: the same steps run here
(training/retrain.py), with the trainer in a subprocess under SageMaker's environment conventions, and
the report is printed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cli.stack import CliError, StackFacts, output
from training.retrain import DEFAULT_HOLDOUT_DAYS, DEFAULT_TIME_BUDGET_S, LocalRun, RetrainError, registry_of, run_local

STATE_MACHINE_OUTPUT = "RetrainStateMachineArn"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BOOTSTRAP = ROOT / "layers" / "model" / "sasrec" / "int8"


def start_execution(session: Any, facts: StackFacts) -> dict[str, Any]:
    """A deployed stack: start its state machine; the run takes as long as the SageMaker jobs."""
    arn = output(facts, STATE_MACHINE_OUTPUT)
    name = time.strftime("manual-%Y%m%dT%H%M%SZ", time.gmtime())
    try:
        started = session.client("stepfunctions").start_execution(stateMachineArn=arn, name=name, input="{}")
    except Exception as exc:  # botocore's ClientError and connection errors alike: one line for the operator
        raise CliError(f"cannot start {arn}: {exc}") from exc
    return {"execution_arn": started["executionArn"], "state_machine": arn, "started": name}


def run_here(
    session: Any,
    facts: StackFacts,
    *,
    out: Path,
    history: list[str],
    bootstrap_model: Path = DEFAULT_BOOTSTRAP,
    holdout_days: float = DEFAULT_HOLDOUT_DAYS,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
) -> dict[str, Any]:
    """A local stack: extract from its archive bucket, train, gate and maybe promote, in this process."""
    stack = registry_of(
        session, output(facts, "ModelRegistryUri"), output(facts, "ModelPointerParameterName"), bootstrap_model
    )
    run = LocalRun(
        archive=f"s3://{output(facts, 'ArchiveBucketName')}/archive/",
        history=history,
        holdout_days=holdout_days,
        time_budget_s=time_budget_s,
    )
    try:
        return run_local(stack, run, out, session.client("s3"))
    except (RetrainError, ValueError) as exc:
        raise CliError(f"retraining stopped: {exc}") from exc


def run(args: Any) -> dict[str, Any]:
    """Dispatch a parsed `nudge retrain ...` (cli/__main__.py builds the parser)."""
    from cli.stack import open_stack

    with open_stack(args) as (session, facts):
        if args.ready_file is None:
            return start_execution(session, facts)
        return run_here(
            session,
            facts,
            out=Path(args.out),
            history=list(args.history),
            bootstrap_model=Path(args.bootstrap_model),
            holdout_days=args.holdout_days or DEFAULT_HOLDOUT_DAYS,
            time_budget_s=args.time_budget or DEFAULT_TIME_BUDGET_S,
        )
