"""Dollars per million events, from request counts measured in a replay through the local runner.

    python -m bench.cost_model [--users 12] [--days 2] [--events-per-day 30] [--out out/bench/cost.json]

Traffic (testkit/traffic.py ``app_sessions``): each user sends a profile event, then on every
simulated day one or two app sessions at a random local daytime hour (bursts of behaviour events
20-90 s apart over the shipped model's items). The scenario driver (testkit/scenario.py) runs time
hour by hour: every hour's events go on the stream, each user's n-th event of the hour in the n-th
put (Lambda's 1-second batching window rarely holds two events of one user, 20-90 s apart), the
pipeline drains, the due sweep fires, and each push is answered by simulated users
(testkit/feedback.py: delivered, then opened and converted for 18 %, dismissed for the rest). The
push rate is whatever the policy decides and is reported. A second replay of the same events with
pushing turned off (daily cap 0) gives the cost without pushes, so the result is also given as a
line: dollars per million behaviour events = base + dollars per push x pushes. Every figure is
priced at several traffic levels (RATES_PER_S), because what is paid per invocation is shared by
the records of a batch, and batches fill with traffic (see at_rate). What is counted and how it is
priced: bench/cost_meter.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.cost_meter import (
    HOURS_PER_MONTH,
    RATES,
    RATES_DATE,
    RATES_PER_S,
    Call,
    FunctionUse,
    Meter,
    Replay,
    at_rate,
    fit,
    item_size,
    latency_of,
    priced,
)
from bench.personalize_pricing import personalize_summary
from bench.pricing import capacity_modes, console_lines
from runner.pipeline import LocalPipeline
from shared.adapters.user_state_codec import is_profile_key
from shared.domain.catalog import CatalogItem
from testkit import traffic
from testkit.feedback import SimulatedUsers, engaging_share
from testkit.progress import BarReporter, bar, live, say
from testkit.scenario import Scenario, ScenarioRun, StackSpec, Timeline, progress_total
from testkit.scenario import run as run_scenario
from testkit.text import table

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 23, 0, tzinfo=UTC)  # a Monday
OPEN_SHARE = 0.18  # as the MovieLens demo's users answered


class _Metering:
    """The scenario's hooks: tag each function's calls once the stack is up, read what is left at the end."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.memory: dict[str, int] = {}
        self.sources: dict[str, Any] = {}
        self.tables: dict[str, str] = {}
        self.sizes: dict[str, float] = {}

    def start(self, pipe: LocalPipeline) -> None:
        self.memory = {fid: spec.memory_mb for fid, spec in pipe.functions.items()}
        self.sources = {
            fid: next((e for e in spec.events if e.kind != "schedule"), None) for fid, spec in pipe.functions.items()
        }
        self.tables = {v: k.removesuffix("TableName") for k, v in pipe.outputs.items() if k.endswith("TableName")}
        for fid, container in pipe.containers.items():
            container.invoke = self.meter.tag(fid, container.invoke)  # type: ignore[method-assign]
        del self.meter.calls[:]  # setting up (catalog, outbox) is not the pipeline's bill

    def finish(self, pipe: LocalPipeline) -> None:
        """Average item size by DynamoDB's rules (what a write is billed by), the user-state table's hot
        and profile items apart (shared/adapters/user_state_codec.py)."""
        dynamodb = pipe.client("dynamodb")
        for output in ("UserStateTableName", "LedgerTableName", "IdempotencyTableName", "PushCountersTableName"):
            items = dynamodb.scan(TableName=pipe.outputs[output])["Items"]
            groups: dict[str, list[int]] = {}
            for item in items:
                profile = output == "UserStateTableName" and is_profile_key(item["user_id"]["S"])
                groups.setdefault(f"{output}#profile" if profile else output, []).append(item_size(item))
            for name, sizes in groups.items():
                self.sizes[name] = round(sum(sizes) / len(sizes))


def replay(
    users: int, days: int, per_day: int, pushing: bool = True, parameters: dict[str, str] | None = None, label: str = ""
) -> Replay:
    manifest = json.loads((ROOT / "layers" / "model" / "manifest.json").read_text())
    items = [str(i) for i in manifest["item_vocab"] if not str(i).startswith("<")][:400]
    records = traffic.records_of(traffic.app_sessions(users, days, per_day, items, T0))
    log_dir = Path(tempfile.mkdtemp(prefix="nudge-cost-logs-"))
    stack = StackSpec(
        name="nudge-cost",
        model_dir=ROOT / "layers" / "model",
        env={} if pushing else {"DecideFunction": {"DAILY_PUSH_CAP": "0"}},
        parameters=parameters or {},
        catalog=[CatalogItem(item_id=i) for i in items],
        log_dir=log_dir,
    )
    start = int(T0.timestamp())
    until = int((T0 + timedelta(days=days, hours=12)).timestamp())
    timeline = Timeline(step_s=3600, start=start, until=until, sweep=True, waves="user_rounds")
    meter = Meter()
    hooks = _Metering(meter)
    scenario = Scenario(
        stack,
        records,
        timeline,
        users=SimulatedUsers(engaging_share(OPEN_SHARE)),
        read_back=None,
        on_start=hooks.start,
        on_finish=hooks.finish,
    )
    line = bar(label or ("with pushes" if pushing else "without pushes"), progress_total(scenario), "sim. hours")
    scenario.progress = BarReporter(line)
    with live(line), meter.counting():
        result = run_scenario(scenario)
    replayed = _replay_of(result, meter, hooks, log_dir, events=len(records))
    shutil.rmtree(log_dir, ignore_errors=True)
    return replayed


def _replay_of(result: ScenarioRun, meter: Meter, hooks: _Metering, log_dir: Path, events: int) -> Replay:
    stats = result.stats
    assert stats is not None
    out = Replay(events=events, feedback=len(result.feedback), pushes=len(result.pushes), sweeps=result.sweeps)
    out.calls, out.sweep_calls = meter.billed(), meter.sweep_calls()
    out.tables, out.sizes = hooks.tables, hooks.sizes
    out.invocations = sum(fs.invocations for fs in stats.functions.values()) - result.sweeps
    out.decide_records = sum(stats.functions["DecideFunction"].batch_sizes)
    out.log_gb = sum(f.stat().st_size for f in log_dir.rglob("*") if f.is_file()) / 1e9
    all_calls = out.calls + out.sweep_calls
    decide = stats.functions["DecideFunction"]
    sweep_wall = sum(w for n, w in zip(decide.batch_sizes, decide.wall_s, strict=True) if n == 0)
    out.sweep_gb_s = _billed_s(meter, all_calls, "DecideFunction:schedule", sweep_wall) * hooks.memory["DecideFunction"]
    out.sweep_gb_s /= 1024
    for fid, fs in stats.functions.items():
        points = [(n, w) for n, w in zip(fs.batch_sizes, fs.wall_s, strict=True) if n > 0]
        a, b = fit(points)
        wall = sum(w for _, w in points)
        own = _billed_s(meter, all_calls, fid, wall)
        a, b = (a * own / wall, b * own / wall) if wall else (a, b)
        out.gb_s += own * hooks.memory[fid] / 1024
        out.lambda_seconds[fid] = {
            "wall": round(wall, 2),
            "in_calls": round(meter.in_calls[fid], 2),
            "billed": round(own, 2),
        }
        source = hooks.sources[fid]
        logs = sum(f.stat().st_size for f in log_dir.rglob(f"{fid}*") if f.is_file())
        out.functions[fid] = FunctionUse(
            memory_mb=hooks.memory[fid],
            batch_size=source.batch_size if source else 100,
            window_s=source.batching_window_s if source else 0.0,
            invocations=len(points),
            records=sum(n for n, _ in points),
            wall_per_invocation_s=a,
            wall_per_record_s=b,
            log_bytes_per_invocation=logs / max(1, len(fs.batch_sizes)),
        )
    return out


def _billed_s(meter: Meter, calls: list[Call], function: str, wall: float) -> float:
    """Lambda bills wall time: the handler's own time plus the calls' real latency, not moto's time."""
    return max(0.0, wall - meter.in_calls[function]) + sum(latency_of(c) for c in calls if c.function == function)


def run(
    users: int, days: int, per_day: int, baseline: bool = True, parameters: dict[str, str] | None = None
) -> dict[str, Any]:
    from runner.deploy import load_yaml

    template = load_yaml(ROOT / "template.yaml")
    shards = int(template["Parameters"]["ShardCount"]["Default"])
    pushing = replay(users, days, per_day, pushing=True, parameters=parameters)
    report = priced(pushing)
    report["by_traffic"] = [at_rate(pushing, rate, shards) for rate in RATES_PER_S]
    if baseline:
        silent_replay = replay(users, days, per_day, pushing=False, parameters=parameters)
        silent = priced(silent_replay)
        silent["by_traffic"] = [at_rate(silent_replay, rate, shards) for rate in RATES_PER_S]
        report["without_pushes"] = silent
        # Per push (with the feedback it brings), from the two replays' absolute bills; expressed per
        # million *behaviour* events, so the line does not move with the feedback events pushes add.
        events = report["replay"]["events"]
        all_events = events + report["replay"]["feedback_events"]
        pushes = max(1, report["replay"]["pushes"])
        lines = []
        for with_p, without in zip(report["by_traffic"], silent["by_traffic"], strict=True):
            per_push = (with_p["total"] * all_events - without["total"] * events) / 1e6 / pushes
            base = without["total"]
            lines.append(
                {
                    "events_per_day": with_p["events_per_day"],
                    "base": base,
                    "dollars_per_push": round(per_push, 8),
                    "at_pushes_per_1000": {str(p): round(base + per_push * p * 1000, 3) for p in (10, 30, 75, 100)},
                }
            )
        report["line"] = {
            "formula": "$ per million behaviour events = base + dollars_per_push x pushes per million behaviour events",
            "by_traffic": lines,
        }
    # Alarms made in every mode (CapacityMode=provisioned's throttle alarms are in capacity_modes).
    alarms = sum(
        1 for r in template["Resources"].values() if r.get("Type") == "AWS::CloudWatch::Alarm" and "Condition" not in r
    )
    sweep_usage_per_run = {
        "invocations": pushing.sweeps,
        "rru": sum(c.rru for c in pushing.sweep_calls),
        "gb_s": pushing.sweep_gb_s,
    }
    sweeps_per_month = HOURS_PER_MONTH * 12
    per_sweep = {k: v / max(1, pushing.sweeps) for k, v in sweep_usage_per_run.items()}
    sweep_month = sweeps_per_month * (
        per_sweep["invocations"] * RATES["lambda_request"]
        + per_sweep["rru"] * RATES["dynamodb_rru"]
        + per_sweep["gb_s"] * RATES["lambda_gb_s_arm64"]
    )
    report["idle_per_month"] = {
        "kinesis_provisioned_shards": round(shards * RATES["kinesis_shard_hour"] * HOURS_PER_MONTH, 2),
        "kinesis_on_demand_stream": round(RATES["kinesis_on_demand_stream_hour"] * HOURS_PER_MONTH, 2),
        "due_sweep": round(sweep_month, 3),
        "cloudwatch_alarms": round(alarms * RATES["cloudwatch_alarm_month"], 2),
        "dashboard_if_over_3": RATES["cloudwatch_dashboard_month"],
    }
    report["parameters"] = parameters or {}
    report["rates_date"] = RATES_DATE
    report["rates"] = RATES
    # Both capacity modes and Amazon Personalize from this one replay (bench/pricing.py, personalize_pricing.py).
    report["capacity_modes"] = capacity_modes(pushing, report["by_traffic"], template)
    report["personalize"] = personalize_summary(pushing)
    report["dollars_per_million_events"].update(
        report["capacity_modes"]["dollars"],
        personalize={k: v["total"] for k, v in report["personalize"]["by_level"].items()},
    )
    return report


def report_console(report: dict[str, Any], out: Path) -> str:
    """What the replay did and what it costs, for a person at a terminal (cost.json has every figure)."""
    r = report["replay"]
    lines = [
        "",
        f"Replayed {r['events']:,} events and {r['feedback_events']:,} feedback events: {r['pushes']:,} pushes "
        f"({r['pushes_per_1000_events']} per 1,000 events), {r['decide_records']:,} decisions, "
        f"{r['sweeps_fired']:,} due sweeps",
        f"Prices: {report['rates_date']}",
        "",
        "Dollars per million events, by traffic (records per batch grow with traffic):",
        table(
            ["events/day", "total $", "Lambda requests $", "Lambda GB-s $", "DynamoDB writes $", "S3 puts $"],
            [
                [
                    level["events_per_day"],
                    level["total"],
                    level["dollars_per_million_events"].get("lambda_request", 0.0),
                    level["dollars_per_million_events"].get("lambda_gb_s_arm64", 0.0),
                    level["dollars_per_million_events"].get("dynamodb_wru", 0.0),
                    level["dollars_per_million_events"].get("s3_put", 0.0),
                ]
                for level in report["by_traffic"]
            ],
        ),
    ]
    if "line" in report:
        lines += ["", "As a line ($ per million behaviour events = base + $ per push x pushes):"]
        lines.append(
            table(
                ["events/day", "base $", "$ per push", "at 10 / 30 / 100 pushes per 1,000"],
                [
                    [
                        row["events_per_day"],
                        row["base"],
                        f"{row['dollars_per_push']:.6f}",
                        " / ".join(f"{row['at_pushes_per_1000'][k]:.3f}" for k in ("10", "30", "100")),
                    ]
                    for row in report["line"]["by_traffic"]
                ],
            )
        )
    lines += console_lines(report)
    idle = report["idle_per_month"]
    lines += [
        "",
        f"Idle, per month: Kinesis ${idle['kinesis_provisioned_shards']} (provisioned shards) or "
        f"${idle['kinesis_on_demand_stream']} (on demand), due sweep ${idle['due_sweep']}, "
        f"alarms ${idle['cloudwatch_alarms']}; Amazon Personalize for the same traffic: "
        f"${report['personalize']['per_million_events']} per million events, "
        f"${report['personalize']['idle_per_month']} a month idle",
        f"Written: {out}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--events-per-day", type=int, default=30, help="behaviour events per user per day")
    parser.add_argument("--no-baseline", action="store_true", help="skip the replay without pushes")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "cost.json")
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter override, e.g. DecisionIntervalSeconds=0 (repeatable)",
    )
    args = parser.parse_args(argv)
    parameters = dict(item.split("=", 1) for item in args.parameter)
    replays = 1 if args.no_baseline else 2
    say(
        f"[cost] {replays} replay(s) of {args.users} users x {args.days} days x {args.events_per_day} events a day "
        "through the local stack, every AWS call counted"
    )
    report = run(args.users, args.days, args.events_per_day, baseline=not args.no_baseline, parameters=parameters)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(report_console(report, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
