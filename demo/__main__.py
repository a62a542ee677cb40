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

from demo.outcomes import RatingLog, SameMomentsPopularity
from demo.push_moments import Sessions, pushes_by_depth
from demo.replay import ROOT, progress_bar, run_policy
from demo.report_html import write_report
from demo.summary import report_markdown, summarize
from shared.domain.policy import PolicyConfig
from shared.plumbing.config import DecideSettings
from training.movielens import DatasetNotFoundError, Interactions, load_movielens, resolve_data_dir, time_split


def build_model(kind: str, data_dir: Path, out: Path, quantile: float) -> Path:
    """Trains on the earliest part of time only; the replay period is never seen."""
    command = [
        sys.executable,
        "-m",
        "training.build_model",
        "--data",
        str(data_dir),
        "--kind",
        kind,
        "--split-quantile",
        str(quantile),
        "--out",
        str(out),
    ]
    subprocess.run(command, check=True, cwd=ROOT)
    return out


def calibrate(data_dir: Path, model_dir: Path, quantile: float) -> None:
    """Engagement calibration for the full policy, fitted inside the training window only."""
    command = [sys.executable, "-m", "training.calibration", "--data", str(data_dir), "--model-dir", str(model_dir)]
    subprocess.run([*command, "--split-quantile", str(quantile)], check=True, cwd=ROOT)


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    parameters = dict(item.split("=", 1) for item in args.parameter)
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
    print(
        f"MovieLens-100k: {len(train)} ratings before the cutoff train the models; "
        f"{len(replay)} after it are replayed ({len(replay_users)} users selected)",
        file=sys.stderr,
    )
    models_dir = out_dir / "models"
    cooc = build_model("cooccurrence", data_dir, models_dir / "cooccurrence", args.split_quantile)
    popularity = build_model("popularity", data_dir, models_dir / "popularity", args.split_quantile)
    calibrate(data_dir, cooc, args.split_quantile)
    # The policies compared on the same replay: (model, decide settings). "full" is Nudge.
    # A baseline's name is installed into the local decide function (demo/baselines.py); None keeps
    # Nudge's own policy. The popularity model ships no calibration, so its runs have no engagement test.
    policies: dict[str, tuple[Path, dict[str, str], str | None]] = {
        "full": (cooc, dict(overrides), None),
        "popularity": (popularity, {"EXPLORATION_SHARE": "0"}, None),
        "random": (popularity, {"CANDIDATES": "2000"}, "random"),
        "model": (cooc, {"EXPLORATION_SHARE": "0"}, "model"),
        # Diagnostics, not in the default set: the full policy without quiet hours.
        "full-no-quiet": (cooc, {"QUIET_HOURS_START": "0", "QUIET_HOURS_END": "0", **overrides}, None),
    }
    selected = {name: policies[name] for name in args.policies.split(",")}
    # Each policy replays in its own process with its own moto: they share nothing, so the
    # machine's cores run them side by side.
    with ProcessPoolExecutor(max_workers=min(len(selected), os.cpu_count() or 1)) as pool:
        futures = {
            policy: pool.submit(
                run_policy,
                policy,
                model_dir,
                data,
                train,
                replay,
                replay_users,
                out_dir,
                args.tick_seconds,
                progress_bar,
                env,
                parameters,
                baseline,
            )
            for policy, (model_dir, env, baseline) in selected.items()
        }
        runs = {policy: future.result() for policy, future in futures.items()}
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
    summary = summarize(runs, RatingLog(replay), len(replay_users), config, same_moments)
    main_run = next(iter(runs.values()))
    # Where in users' sessions the main policy pushed, and what popularity would have hit there.
    summary["pushes_by_session_depth"] = pushes_by_depth(
        main_run.pushes, RatingLog(replay), Sessions(everything), same_moments
    )
    summary["total_wall_seconds"] = round(time.perf_counter() - started, 1)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "report.md").write_text(report_markdown(summary))
    report = write_report(summary, runs, RatingLog(replay), out_dir)
    print(report_markdown(summary))
    print(f"written: {out_dir / 'summary.json'}, {out_dir / 'report.md'} and {report} (charts in {out_dir / 'charts'})")
    return 0 if summary["accounted_for"] and not summary["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
