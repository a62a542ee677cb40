"""`make reliability`: fuzzing, fault injection and the load replay -> out/reliability/summary.json.

Every figure in the summary is counted by comparing what storage holds with what was put on the
stream (testkit/audit.py), never from a handler's own counters.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from reliability.bad_inputs import fuzz_contract, fuzz_through_ingest
from reliability.fault_scenario import FEEDBACK_RACE, DeliveryMode, run_scenario
from reliability.load_replay import compare_states, movielens_events, replay
from reliability.poison import ITEMS, POISON, run_isolation
from reliability.report import report_console
from testkit.faults import FaultInjector, FaultKind, uniform_rates
from testkit.progress import BarReporter, bar, live, say, ticking
from testkit.serve import clean_env, stop, wait_ready
from testkit.tiny_model import build_tiny_model
from training.movielens import DatasetNotFoundError, load_movielens, resolve_data_dir

ROOT = Path(__file__).resolve().parents[1]


def run_faults(rate: float, seeds: int, log_dir: Path) -> dict[str, Any]:
    """One scenario per fault kind alone, then all kinds together under several seeds; each in both
    delivery modes (the push topic, and SNS endpoints per device)."""
    runs: list[dict[str, Any]] = []
    plans: list[tuple[str, dict[str, float], int]] = [(k.value, {k.value: rate}, 0) for k in FaultKind]
    plans += [("all", uniform_rates(rate), seed) for seed in range(seeds)]
    modes: tuple[DeliveryMode, ...] = ("topic", "endpoint")
    line = bar("fault scenarios", len(plans) * len(modes), "scenarios")
    with live(line):
        for mode in modes:
            for name, rates, seed in plans:
                result = run_scenario(rates, seed=seed, log_dir=log_dir / f"{mode}-{name}-{seed}", delivery=mode)
                runs.append({"plan": name, "seed": seed, "delivery": mode, **result.as_dict()})
                say(
                    f"  {mode}, {name} (seed {seed}): {result.faults['injected_total']} faults; lost "
                    f"{result.events_lost}, applied twice {result.events_applied_twice}; pushes "
                    f"{result.pushes['decision_ids']}, sent twice {result.pushes_sent_twice} (sends interrupted "
                    f"{result.faults['sends_interrupted']}), recorded not sent {result.pushes_recorded_not_sent} "
                    f"({result.wall_s:.1f} s)"
                )
                line.update()
    return {"rate": rate, "runs": runs}


def run_poison(log_dir: Path) -> dict[str, Any]:
    """Each poison class in a drain of its own, inside 100 valid events of 10 users."""
    with tempfile.TemporaryDirectory(prefix="nudge-poison-model-") as tmp:
        model_dir = build_tiny_model(Path(tmp), vocab=ITEMS)
        line = bar("poison classes", len(POISON) * 101, "records")
        with live(line):
            results = run_isolation(sorted(POISON), model_dir, log_dir=log_dir, progress=BarReporter(line))
    for r in results:
        verdict = "isolated" if r.isolated else "NOT ISOLATED"
        say(
            f"  {r.kind}: quarantined as {', '.join(r.poison_reasons) or 'nothing'} (want {r.expected_reason}); "
            f"neighbours applied once {r.valid_applied_once}/{r.valid_events}: {verdict}"
        )
    return {"classes": [r.as_dict() for r in results], "isolated": sum(r.isolated for r in results)}


def run_hostile(out: Path) -> dict[str, Any]:
    """`python -m runner serve` exactly as runner/README.md shows it, and the hostile producer in another process."""
    ready, serve_log = out / "serve-ready.json", out / "serve.log"
    ready.unlink(missing_ok=True)
    env = clean_env()
    with serve_log.open("wb") as log:
        command = [sys.executable, "-m", "runner", "serve", "--port", "0", "--ready-file", str(ready)]
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(server, ready, serve_log, timeout_s=120)
        report_file = out / "hostile.json"
        command = [sys.executable, "-m", "reliability.hostile_producer", "--ready-file", str(ready)]
        producer = subprocess.run([*command, "--out", str(report_file)], cwd=ROOT, env=env, check=False)
        report: dict[str, Any] = json.loads(report_file.read_text())
        report["exit_code"] = producer.returncode
        return report
    finally:
        stop(server)


def run_load(
    data_dir: Path, rate: float, seed: int, limit: int | None, with_decide: bool, log_dir: Path
) -> dict[str, Any]:
    """Every rating through every stream stage (decide included unless told), clean then with faults."""
    data = load_movielens(data_dir)
    model_dir = ROOT / "layers" / "model"
    events = movielens_events(data, limit)
    stages = ["IngestFunction", "FeaturesFunction", *(["DecideFunction"] if with_decide else [])]
    common: dict[str, Any] = {"model_dir": model_dir, "with_decide": with_decide, "log_dir": log_dir}
    injector = FaultInjector(uniform_rates(rate), seed=seed, functions=frozenset(stages), race=FEEDBACK_RACE)
    runs = {}
    for label, fault_injector in (("clean", None), ("faults", injector)):
        line = bar(f"load, {label}", len(events), "events")
        with live(line):
            runs[label] = replay(
                data, events, label=label, injector=fault_injector, progress=BarReporter(line), **common
            )
    clean, faulty = runs["clean"], runs["faults"]
    return {
        "events": len(events),
        "fault_rate": rate,
        "stages": stages,
        "clean": clean.as_dict(),
        "faults": faulty.as_dict(),
        "final_state_vs_clean": compare_states(clean.final_state, faulty.final_state),
    }


def delivery_summary(faults: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per delivery mode, from the ledger and from what reached the devices (testkit/audit.py)."""
    out: dict[str, dict[str, int]] = {}
    for run in faults["runs"]:
        mode = out.setdefault(run["delivery"], Counter())
        pushes = run["pushes"]
        mode["scenarios"] += 1
        mode["pushes_decided"] += pushes["ledger_pushes"]
        mode["pushes_received"] += pushes["pushes_received"]
        mode["pushes_sent_twice"] += pushes["pushes_sent_twice"]
        # Invocations that ended after SNS took a push and before anything recorded it.
        mode["sends_interrupted"] += run["faults"]["sends_interrupted"]
        mode["pushes_sent_twice_unexplained"] += run["pushes_sent_twice_unexplained"]
        mode["pushes_recorded_not_sent"] += pushes["pushes_recorded_not_sent"]
        mode["pushes_undeliverable"] += pushes["pushes_undeliverable"]
        # Reached the device, but the ledger still waits for the send record of a crashed send.
        mode["ledger_not_marked_sent"] += pushes["ledger_unsent"]
    return {mode: dict(counts) for mode, counts in out.items()}


def unexplained_sent_twice(delivery: dict[str, dict[str, int]], load: dict[str, Any] | None) -> int:
    """Second sends beyond the interrupted ones (the window no sender can close): must be 0."""
    total = sum(m["pushes_sent_twice_unexplained"] for m in delivery.values())
    if load is not None:
        for label in ("clean", "faults"):
            run = load[label]
            interrupted = int(run["faults"].get("sends_interrupted", 0))
            total += max(0, int(run["push_audit"]["pushes_sent_twice"]) - interrupted)
    return total


def summarise(
    fuzz: dict[str, Any],
    faults: dict[str, Any],
    load: dict[str, Any] | None,
    wall_s: float,
    poison: dict[str, Any] | None = None,
    hostile: dict[str, Any] | None = None,
) -> dict[str, Any]:
    by_kind: Counter[str] = Counter()
    lost = twice = sent_twice = dead_events = dead_decisions = archived_twice = 0
    for run in faults["runs"]:
        by_kind.update(run["faults"]["injected"])
        lost += run["events_lost"]
        twice += run["events_applied_twice"]
        sent_twice += run["pushes_sent_twice"]
        dead_events += run["ingest"]["dead_lettered"] + run["features"]["events_dead_lettered"]
        dead_events += run["feedback"]["dead_lettered"]
        dead_decisions += run["decide_triggers_dead_lettered"]
        archived_twice += run["ingest"]["archived_more_than_once"]
    ingest_fuzz = fuzz["through_ingest"]
    lost += ingest_fuzz["bad_lost"] + ingest_fuzz["good_lost"]
    summary: dict[str, Any] = {
        "bad_inputs_tried": fuzz["contract"]["inputs_tried"] + ingest_fuzz["bad_records_put"],
        "faults_injected": 0,
        "faults_injected_by_kind": {},
        "events_lost": 0,
        "events_applied_twice": 0,
        "pushes_sent_twice": 0,
    }
    if load is not None:
        for label in ("clean", "faults"):
            run = load[label]
            by_kind.update(run["faults"].get("injected", {}))
            lost += run["audit"]["events_lost"]
            twice += run["audit"]["events_applied_twice"]
            sent_twice += run["push_audit"]["pushes_sent_twice"]
            dead_events += run["audit"]["events_dead_lettered"]
            dead_decisions += run["decide_triggers_dead_lettered"]
        summary["load"] = {
            "events": load["events"],
            "fault_rate": load["fault_rate"],
            "stages": load["stages"],
            "clean_wall_s": round(load["clean"]["wall_s"], 1),
            "clean_events_per_s": round(load["clean"]["events_per_s"], 1),
            "faults_wall_s": round(load["faults"]["wall_s"], 1),
            "faults_events_per_s": round(load["faults"]["events_per_s"], 1),
            "faults_injected": load["faults"]["faults"]["injected_total"],
            "pushes_clean": load["clean"]["pushes"],
            "pushes_with_faults": load["faults"]["pushes"],
            "final_state_equals_clean_run": load["final_state_vs_clean"]["users_differing"] == 0,
            "users_compared": load["final_state_vs_clean"]["users_compared"],
            "users_differing_from_reference_fold": load["faults"]["audit"]["users_differing_from_reference"],
        }
    summary["faults_injected"] = sum(by_kind.values())
    summary["faults_injected_by_kind"] = dict(sorted(by_kind.items()))
    summary["events_lost"] = lost
    summary["events_applied_twice"] = twice
    summary["pushes_sent_twice"] = sent_twice
    # Not lost: these sit in a dead-letter queue with their reason (details.json has the reasons).
    summary["events_dead_lettered"] = dead_events
    summary["decision_triggers_dead_lettered"] = dead_decisions
    summary["archive_lines_written_twice"] = archived_twice
    summary["fault_scenarios"] = len(faults["runs"])
    summary["delivery"] = delivery_summary(faults)
    summary["pushes_recorded_not_sent"] = sum(m["pushes_recorded_not_sent"] for m in summary["delivery"].values())
    summary["sends_interrupted"] = sum(m["sends_interrupted"] for m in summary["delivery"].values())
    summary["pushes_sent_twice_unexplained"] = unexplained_sent_twice(summary["delivery"], load)
    if poison is not None:
        summary["poison_classes"] = len(poison["classes"])
        summary["poison_classes_isolated"] = poison["isolated"]
        summary["poison_dead_letter_messages"] = sum(c["dead_letter_messages"] for c in poison["classes"])
        summary["poison_valid_events_not_applied_once"] = sum(
            c["valid_events"] - c["valid_applied_once"] for c in poison["classes"]
        )
    if hostile is not None:
        summary["hostile_producer"] = {
            k: hostile[k]
            for k in (
                "records_put",
                "archived",
                "quarantined",
                "unaccounted",
                "archived_or_quarantined_twice",
                "dead_letter_messages",
                "later_stage_quarantined",
                "users_with_wrong_event_count",
                "clean",
            )
        }
    summary["wall_time_s"] = round(wall_s, 1)
    if load is not None:
        summary["events_per_second"] = summary["load"]["faults_events_per_s"]
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__)
    parser.add_argument("--data", default=None, help="MovieLens-100k directory (default ../shared/datasets/ml-100k)")
    parser.add_argument("--out", default=str(ROOT / "out" / "reliability"))
    parser.add_argument("--fuzz-examples", type=int, default=1000, help="hypothesis examples per strategy")
    parser.add_argument("--ingest-generated", type=int, default=500, help="generated bad records through ingest")
    parser.add_argument("--scenario-rate", type=float, default=0.3, help="fault rate in the fault scenarios")
    parser.add_argument("--scenario-seeds", type=int, default=3, help="all-kinds scenarios (one per seed)")
    parser.add_argument("--load-rate", type=float, default=0.05, help="fault rate in the load replay")
    parser.add_argument("--load-events", type=int, default=None, help="replay only the first N ratings")
    parser.add_argument("--without-decide", action="store_true", help="load through ingest and features only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-hostile", action="store_true", help="no hostile producer against runner serve")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    phases = 4 + (not args.skip_hostile)
    say(f"[1/{phases}] fuzzing the contract ({args.fuzz_examples} examples a strategy) and the ingest path")
    with ticking("contract fuzzing"):
        contract = fuzz_contract(args.fuzz_examples, seed=args.seed)
    with ticking("through ingest"):
        through_ingest = fuzz_through_ingest(args.ingest_generated, seed=args.seed, log_dir=out / "logs" / "fuzz")
    fuzz = {"contract": contract, "through_ingest": through_ingest}
    say(f"[2/{phases}] fault scenarios: each fault kind alone, then all together ({args.scenario_seeds} seeds)")
    faults = run_faults(args.scenario_rate, args.scenario_seeds, out / "logs" / "faults")
    say(f"[3/{phases}] poison classes, each in a batch of 100 valid events from 10 users")
    poison = run_poison(out / "logs" / "poison")
    hostile = None
    if not args.skip_hostile:
        say(f"[4/{phases}] hostile producer against `python -m runner serve` (another process)")
        with ticking("hostile producer"):
            hostile = run_hostile(out)
    load = None
    if not args.skip_load:
        try:
            data_dir = resolve_data_dir(args.data)
            say(f"[{phases}/{phases}] load replay of {data_dir}, clean then with {args.load_rate:.0%} faults")
            load = run_load(
                data_dir, args.load_rate, args.seed, args.load_events, not args.without_decide, out / "logs" / "load"
            )
        except DatasetNotFoundError as exc:
            say(f"MovieLens-100k not found, load replay skipped: {exc}")
    summary = summarise(fuzz, faults, load, time.perf_counter() - started, poison, hostile)
    details = {"fuzz": fuzz, "faults": faults, "load": load, "poison": poison, "hostile": hostile}
    (out / "details.json").write_text(json.dumps(details, indent=2) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(report_console(summary, out))
    failed = summary["events_lost"] or summary["events_applied_twice"] or summary["pushes_sent_twice_unexplained"]
    failed = failed or summary["pushes_recorded_not_sent"]
    failed = failed or summary["poison_classes_isolated"] != summary["poison_classes"]
    failed = failed or (hostile is not None and not hostile["clean"])
    if load is not None and not summary["load"]["final_state_equals_clean_run"]:
        failed = True
    if load is not None and summary["load"]["users_differing_from_reference_fold"]:
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
