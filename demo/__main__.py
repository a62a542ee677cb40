"""`python -m demo`: replay MovieLens-100k through the whole pipeline, then summarise."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from demo.outcomes import RatingLog, SameMomentsPopularity
from demo.push_moments import Sessions, pushes_by_depth
from demo.replay import ROOT, RunResult, replay_records, run_policy
from demo.report_html import write_report
from demo.retrain import MidReplay, write_history
from demo.summary import report_console, report_markdown, summarize
from shared.domain.policy import PolicyConfig
from shared.plumbing.config import DecideSettings
from testkit.progress import Bars, say, ticking
from training.movielens import (
    DatasetNotFoundError,
    Interactions,
    MovieLens,
    load_movielens,
    resolve_data_dir,
    time_split,
)


def _model_command(kind: str, data_dir: Path, out: Path, quantile: float) -> list[str]:
    """Trains on the earliest part of time only; the replay period is never seen."""
    command = [sys.executable, "-m", "training.build_model", "--data", str(data_dir), "--kind", kind]
    return [*command, "--split-quantile", str(quantile), "--out", str(out)]


def build_models(data_dir: Path, models_dir: Path, quantile: float, kinds: set[str]) -> None:
    """The co-occurrence and popularity models side by side, then the engagement calibration of the
    co-occurrence model (fitted inside the training window only). Output goes to models_dir/*.log."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with ticking("building models"):
        builds = []
        for kind in sorted(kinds):
            log = (models_dir / f"{kind}.log").open("w")
            command = _model_command(kind, data_dir, models_dir / kind, quantile)
            builds.append((kind, subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log))
        for kind, process, log in builds:
            if process.wait() != 0:
                raise SystemExit(f"building the {kind} model failed; see {log.name}")
            log.close()
    if "cooccurrence" in kinds:
        with ticking("calibrating"), (models_dir / "calibration.log").open("w") as log:
            command = [sys.executable, "-m", "training.calibration", "--data", str(data_dir)]
            command += ["--model-dir", str(models_dir / "cooccurrence"), "--split-quantile", str(quantile)]
            subprocess.run(command, check=True, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


# The policy whose model the demo retrains mid-replay (the learning loop; the baselines keep theirs).
RETRAINED_POLICY = "full"


# The policies compared on the same replay: (model, decide settings, baseline). "full" is Nudge.
# A baseline's name is installed into the local decide function (demo/baselines.py); None keeps
# Nudge's own policy. The popularity model ships no calibration, so its runs have no engagement test.
def policies(overrides: dict[str, str]) -> dict[str, tuple[str, dict[str, str], str | None]]:
    return {
        "full": ("cooccurrence", dict(overrides), None),
        "popularity": ("popularity", {"EXPLORATION_SHARE": "0"}, None),
        "random": ("popularity", {"CANDIDATES": "2000"}, "random"),
        "model": ("cooccurrence", {"EXPLORATION_SHARE": "0"}, "model"),
        # Diagnostics, not in the default set: the full policy without quiet hours.
        "full-no-quiet": ("cooccurrence", {"QUIET_HOURS_START": "0", "QUIET_HOURS_END": "0", **overrides}, None),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=None, help="ml-100k folder (default ../shared/datasets/ml-100k)")
    parser.add_argument("--users", type=int, default=0, help="replay only users 1..N (0 = all)")
    parser.add_argument("--out", default=str(ROOT / "out" / "demo"))
    parser.add_argument("--split-quantile", type=float, default=0.8)
    parser.add_argument("--tick-seconds", type=int, default=300, help="simulated time per pipeline drain")
    parser.add_argument(
        "--policies", default="full,popularity,random,model", help="which of full,popularity,random,model to replay"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="decide setting for the full policy, e.g. FATIGUE_BASE=0.35 (repeatable)",
    )
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter for every policy's stack, e.g. DecisionIntervalSeconds=0 (repeatable)",
    )
    parser.add_argument(
        "--retrain",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="retrain the full policy's model from the archive mid-replay, gate and promote it (demo/retrain.py)",
    )
    return parser.parse_args(argv)


def mid_replay(replay: Interactions, users: set[str]) -> int:
    """When half the replayed users' events have been archived."""
    stamps = replay.timestamp[[str(u) in users for u in replay.user.tolist()]]
    return int(np.median(stamps))


def replay_all(
    selected: dict[str, tuple[str, dict[str, str], str | None]],
    models_dir: Path,
    data: MovieLens,
    train: Interactions,
    replay: Interactions,
    users: set[str],
    out_dir: Path,
    args: argparse.Namespace,
    retrain: MidReplay | None = None,
) -> dict[str, RunResult]:
    """Each policy replays in its own process with its own moto: they share nothing, so the
    machine's cores run them side by side. One progress bar per policy, in records put."""
    total = len(replay_records(data, replay, users))
    parameters = dict(item.split("=", 1) for item in args.parameter)
    with (
        Bars(dict.fromkeys(selected, total), unit="records") as bars,
        ProcessPoolExecutor(max_workers=min(len(selected), os.cpu_count() or 1)) as pool,
    ):
        futures = {
            policy: pool.submit(
                run_policy,
                policy,
                models_dir / model,
                data,
                train,
                replay,
                users,
                out_dir,
                args.tick_seconds,
                bars.reporter(policy),
                env,
                parameters,
                baseline,
                retrain=retrain if policy == RETRAINED_POLICY else None,
            )
            for policy, (model, env, baseline) in selected.items()
        }
        return {policy: future.result() for policy, future in futures.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        data_dir = resolve_data_dir(args.data)
        data = load_movielens(data_dir)
    except DatasetNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    started = time.perf_counter()
    train, replay = time_split(data.interactions, args.split_quantile)
    replay_users = {str(u) for u in set(replay.user.tolist())}
    if args.users > 0:
        replay_users = {u for u in replay_users if int(u) <= args.users}
    selected = {
        name: policies(dict(item.split("=", 1) for item in args.set))[name] for name in args.policies.split(",")
    }
    say(
        f"[1/4] MovieLens-100k: {len(train)} ratings before the {args.split_quantile:.0%} time cutoff train the "
        f"models; {len(replay)} after it are replayed for {len(replay_users)} users "
        f"({'all' if args.users <= 0 else f'users 1 to {args.users}'}), policies: {', '.join(selected)}"
    )
    say("[2/4] building the models from the training period (logs in " + str(out_dir / "models") + ")")
    build_models(data_dir, out_dir / "models", args.split_quantile, {model for model, _, _ in selected.values()})
    say(f"[3/4] replaying, one stack per policy, {min(len(selected), os.cpu_count() or 1)} at a time")
    retrain = None
    if args.retrain and RETRAINED_POLICY in selected:
        retrain = MidReplay(
            at=mid_replay(replay, replay_users),
            bootstrap_model=out_dir / "models" / selected[RETRAINED_POLICY][0],
            history=write_history(train, out_dir / "history"),
            out=out_dir / "retrain",
        )
        say(f"      the {RETRAINED_POLICY} policy's model is retrained from the archive mid-replay (demo/retrain.py)")
    runs = replay_all(selected, out_dir / "models", data, train, replay, replay_users, out_dir, args, retrain)
    say("[4/4] summarising from storage and writing the report")
    with ticking("report and charts"):
        summary = summarise_runs(runs, train, replay, len(replay_users), out_dir)
    summary["total_wall_seconds"] = round(time.perf_counter() - started, 1)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(report_console(summary, out_dir))
    return 0 if summary["accounted_for"] and not summary["problems"] else 1


def summarise_runs(
    runs: dict[str, RunResult], train: Interactions, replay: Interactions, users: int, out_dir: Path
) -> dict[str, Any]:
    defaults = DecideSettings.model_fields
    config = PolicyConfig(
        daily_push_cap=int(defaults["daily_push_cap"].default),
        quiet_hours_start=int(defaults["quiet_hours_start"].default),
        quiet_hours_end=int(defaults["quiet_hours_end"].default),
    )
    for policy, run in runs.items():
        with (out_dir / f"pushes-{policy}.jsonl").open("w") as fh:
            for push in run.pushes:
                fh.write(json.dumps(push.__dict__) + "\n")
    everything = Interactions.concat([train, replay])
    same_moments = SameMomentsPopularity(train, everything)
    log = RatingLog(replay)
    summary = summarize(runs, log, users, config, same_moments)
    main_run = next(iter(runs.values()))
    # Where in users' sessions the main policy pushed, and what popularity would have hit there.
    summary["pushes_by_session_depth"] = pushes_by_depth(main_run.pushes, log, Sessions(everything), same_moments)
    (out_dir / "report.md").write_text(report_markdown(summary))
    write_report(summary, runs, log, out_dir)
    return summary


if __name__ == "__main__":
    sys.exit(main())
