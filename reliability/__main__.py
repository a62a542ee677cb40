"""`make reliability`: fuzzing, fault injection and the load replay -> out/reliability/summary.json.

Every figure in the summary is counted by comparing what storage holds with what was put on the
stream (reliability/audit.py), never from a handler's own counters.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from reliability.bad_inputs import fuzz_contract, fuzz_through_ingest
from reliability.fault_scenario import FEEDBACK_RACE, run_scenario
from reliability.load_replay import compare_states, movielens_events, replay
from reliability.poison import ITEMS, POISON, run_isolation
from runner.faults import FaultInjector, FaultKind, uniform_rates
from training.movielens import DatasetNotFoundError, load_movielens, resolve_data_dir

ROOT = Path(__file__).resolve().parents[1]


def _say(message: str) -> None:
    sys.stderr.write(f"[reliability] {message}\n")
    sys.stderr.flush()


def _progress(label: str, done: int, total: int) -> None:
    if done == total or done % 20_000 < 5_000:
        _say(f"  load {label}: {done}/{total} events")


def run_faults(rate: float, seeds: int, log_dir: Path) -> dict[str, Any]:
    """One scenario per fault kind alone, then all kinds together under several seeds."""
    runs: list[dict[str, Any]] = []
    plans: list[tuple[str, dict[str, float], int]] = [(k.value, {k.value: rate}, 0) for k in FaultKind]
    plans += [("all", uniform_rates(rate), seed) for seed in range(seeds)]
    for name, rates, seed in plans:
        result = run_scenario(rates, seed=seed, log_dir=log_dir / f"{name}-{seed}")
        row = {"plan": name, "seed": seed, **result.as_dict()}
        runs.append(row)
        _say(
            f"  faults {name} seed {seed}: injected {result.faults['injected_total']}, "
            f"lost {result.events_lost}, applied twice {result.events_applied_twice}, "
            f"sent twice {result.pushes_sent_twice} ({result.wall_s:.1f} s)"
        )
    return {"rate": rate, "runs": runs}


def run_poison(log_dir: Path) -> dict[str, Any]:
    """Each poison class in a drain of its own, inside 100 valid events of 10 users."""
    from tests.support.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="nudge-poison-model-") as tmp:
        model_dir = build_tiny_model(Path(tmp), vocab=ITEMS)
        results = run_isolation(sorted(POISON), model_dir, log_dir=log_dir)
    for r in results:
        _say(
            f"  poison {r.kind}: {r.poison_reasons} (want {r.expected_reason}), valid applied once "
            f"{r.valid_applied_once}/{r.valid_events}, dead letters {r.dead_letter_messages}, "
            f"archived twice {r.archived_more_than_once}: {'isolated' if r.isolated else 'NOT ISOLATED'}"
        )
    return {"classes": [r.as_dict() for r in results], "isolated": sum(r.isolated for r in results)}


def run_hostile(out: Path) -> dict[str, Any]:
    """`python -m runner serve` exactly as runner/README.md shows it, and the hostile producer in another process."""
    ready = out / "serve-ready.json"
    ready.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    serve_log = (out / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "runner", "serve", "--port", "0", "--ready-file", str(ready)],
        cwd=ROOT,
        env=env,
        stdout=serve_log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"runner serve did not start; see {out / 'serve.log'}")
            time.sleep(0.2)
        report_file = out / "hostile.json"
        producer = subprocess.run(
            [
                sys.executable,
                "-m",
                "reliability.hostile_producer",
                "--ready-file",
                str(ready),
                "--out",
                str(report_file),
            ],
            cwd=ROOT,
            env=env,
            check=False,
        )
        report: dict[str, Any] = json.loads(report_file.read_text())
        report["exit_code"] = producer.returncode
        return report
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        serve_log.close()


def run_load(
    data_dir: Path, rate: float, seed: int, limit: int | None, with_decide: bool, log_dir: Path
) -> dict[str, Any]:
    """Every rating through every stream stage (decide included unless told), clean then with faults."""
    data = load_movielens(data_dir)
    model_dir = ROOT / "layers" / "model"
    events = movielens_events(data, limit)
    stages = ["IngestFunction", "FeaturesFunction", *(["DecideFunction"] if with_decide else [])]
    common: dict[str, Any] = {"model_dir": model_dir, "with_decide": with_decide, "progress": _progress}
    clean = replay(data, events, label="clean", log_dir=log_dir, **common)
    faulty = replay(
        data,
        events,
        label="faults",
        injector=FaultInjector(uniform_rates(rate), seed=seed, functions=frozenset(stages), race=FEEDBACK_RACE),
        log_dir=log_dir,
        **common,
    )
    return {
        "events": len(events),
        "fault_rate": rate,
        "stages": stages,
        "clean": clean.as_dict(),
        "faults": faulty.as_dict(),
        "final_state_vs_clean": compare_states(clean.final_state, faulty.final_state),
    }


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

    _say("fuzzing the contract and the ingest path")
    fuzz = {
        "contract": fuzz_contract(args.fuzz_examples, seed=args.seed),
        "through_ingest": fuzz_through_ingest(args.ingest_generated, seed=args.seed, log_dir=out / "logs" / "fuzz"),
    }
    tried, put = fuzz["contract"]["inputs_tried"], fuzz["through_ingest"]["records_put"]
    _say(f"  {tried} inputs on the contract, {put} records through ingest")
    _say("fault scenarios")
    faults = run_faults(args.scenario_rate, args.scenario_seeds, out / "logs" / "faults")
    _say("poison classes, each in a batch of 100 valid events from 10 users")
    poison = run_poison(out / "logs" / "poison")
    hostile = None
    if not args.skip_hostile:
        _say("hostile producer against `python -m runner serve` (another process)")
        hostile = run_hostile(out)
    load = None
    if not args.skip_load:
        try:
            data_dir = resolve_data_dir(args.data)
            _say(f"load replay of {data_dir}")
            load = run_load(
                data_dir, args.load_rate, args.seed, args.load_events, not args.without_decide, out / "logs" / "load"
            )
        except DatasetNotFoundError as exc:
            _say(f"MovieLens-100k not found, load replay skipped: {exc}")
    summary = summarise(fuzz, faults, load, time.perf_counter() - started, poison, hostile)
    details = {"fuzz": fuzz, "faults": faults, "load": load, "poison": poison, "hostile": hostile}
    (out / "details.json").write_text(json.dumps(details, indent=2) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    failed = summary["events_lost"] or summary["events_applied_twice"] or summary["pushes_sent_twice"]
    failed = failed or summary["poison_classes_isolated"] != summary["poison_classes"]
    failed = failed or (hostile is not None and not hostile["clean"])
    if load is not None and not summary["load"]["final_state_equals_clean_run"]:
        failed = True
    if load is not None and summary["load"]["users_differing_from_reference_fold"]:
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
