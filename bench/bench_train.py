"""``make bench-train``: the default recipe against a plain full-softmax SASRec and tuned co-occurrence.

    python -m bench.bench_train --source sequences --data ../shared/datasets/yelp/yelp.txt

In one run on this machine, one seed, one thread each, one after the other:

1. **Nudge**: ``python -m training.train_sasrec --source S --data D`` and nothing else (plus where
   to write): the recipe sizes itself from the data (``training.recipe``).
2. **plain SASRec**: ids only, L = 50, d = 64, 2 blocks, 1 head, full softmax cross-entropy at every
   position, Adam lr 1e-3 constant, batch 128, dropout 0.2, a validation check every epoch, patience
   5, no content, no time context, no history masking, no co-occurrence; the same wall-clock
   budget as Nudge's recipe.
3. **co-occurrence**, tuned by coordinate ascent on the validation targets (``training.evaluate``).

Each trainer runs in its own process, so its wall time and peak resident memory (``wait4``) are its
own. Test metrics are leave-last-out at decision time (the request time is the newest history
event; Yelp's stamps are invented, so no model here uses time). Writes ``out/bench/train.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PLAIN_FLAGS = [
    "--no-content",
    "--no-context",
    "--no-mask-seen",
    "--no-mask-history",
    "--negatives", "0",
    "--cooc-weight", "0",
    "--lr", "1e-3",
    "--batch-size", "128",
    "--no-cosine",
    "--warmup", "0",
    "--dropout", "0.2",
    "--id-dropout", "0",
    "--request", "target",
    "--eval-every", "1",
    "--patience", "5",
    "--epochs", "200",
    "--no-cold-report",
]  # fmt: skip


def run_trainer(name: str, args: list[str], log: Path) -> dict[str, float]:
    """One trainer in a child process: wall seconds and peak RSS (MB) of that child alone."""
    began = time.perf_counter()
    with log.open("w") as handle:
        child = subprocess.Popen(
            [sys.executable, "-m", "training.train_sasrec", *args], cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed, see {log}")
    return {"wall_seconds": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def trainer_row(report_path: Path, process: dict[str, float]) -> dict[str, Any]:
    report = json.loads(report_path.read_text())
    (summary,) = report["seeds"].values()
    (run,) = summary["runs"]
    train = run["train"]
    return {
        **process,
        "train_seconds": train["train_seconds"],
        "seconds_per_epoch": train["seconds_per_epoch"],
        "epochs": train["epochs"],
        "best_epoch": train["best_epoch"],
        "stopped_by_time_budget": bool(train["stopped_by_time_budget"]),
        "recipe": report.get("recipe", {}).get("chosen", {}),
        "cooc_weight": run.get("cooc", {}).get("weight", 0.0),
        "valid": run["valid"],
        "test": run["test"],
        "artifact_test": report.get("fp32", {}).get("test"),
        "artifact_eval_seconds": report.get("fp32", {}).get("eval_seconds"),
    }


def cooccurrence_row(source: str, data: str) -> dict[str, Any]:
    from training.cooccurrence import build_cooccurrence, build_vocab, encode_sequences
    from training.evaluate import arrays_ranker, evaluate_leave_last_out, leave_last_out, tune_cooccurrence
    from training.evaluate_artifacts import _upper
    from training.sources import load_source

    began = time.perf_counter()
    split = leave_last_out(load_source(source, data).interactions)
    config, _ = tune_cooccurrence(split, log=lambda line: print(f"    {line}", flush=True))
    tuned = time.perf_counter() - began
    vocab = build_vocab(split.train)
    ranker = arrays_ranker("cooc", build_cooccurrence(encode_sequences(split.train, vocab), len(vocab), config), vocab)
    return {
        "tuning_seconds": tuned,
        "config": config.__dict__,
        "valid": _upper(evaluate_leave_last_out(ranker, split, "valid")),
        "test": _upper(evaluate_leave_last_out(ranker, split, "test")),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="sequences")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "yelp" / "yelp.txt"))
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench" / "train")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench" / "train.json")
    parser.add_argument("--skip", nargs="*", default=[], choices=("nudge", "plain", "cooccurrence"))
    args = parser.parse_args(argv)
    if not Path(args.data).exists():
        print(f"{args.data} not found: point --data at the data set (see ../shared/datasets/yelp/README.md)")
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    common = ["--source", args.source, "--data", args.data]
    rows: dict[str, Any] = {}
    budget = None
    if "nudge" not in args.skip:
        print("Nudge default recipe ...", flush=True)
        report = args.work / "nudge.json"
        process = run_trainer(
            "nudge", [*common, "--out", str(args.work / "nudge"), "--report", str(report)], args.work / "nudge.log"
        )
        rows["Nudge default recipe"] = trainer_row(report, process)
        budget = json.loads(report.read_text())["time_budget_s"]
    if "plain" not in args.skip:
        print("plain full-softmax SASRec ...", flush=True)
        report = args.work / "plain.json"
        flags = [*common, *PLAIN_FLAGS, "--report", str(report)]
        if budget is not None:
            flags += ["--time-budget", str(budget)]
        process = run_trainer("plain", flags, args.work / "plain.log")
        rows["plain full-softmax SASRec"] = trainer_row(report, process)
    if "cooccurrence" not in args.skip:
        print("co-occurrence, tuned on validation ...", flush=True)
        rows["co-occurrence (tuned)"] = cooccurrence_row(args.source, args.data)
    print(f"\n{args.source} {args.data}, one seed, one thread, test at decision time")
    print(f"{'':<28}{'s/epoch':>9}{'epochs':>8}{'best':>6}{'wall s':>8}{'peak MB':>9}{'NDCG@10':>9}{'HR@10':>8}")
    for name, row in rows.items():
        if "seconds_per_epoch" in row:
            print(
                f"{name:<28}{row['seconds_per_epoch']:>9.1f}{row['epochs']:>8.0f}{row['best_epoch']:>6.0f}"
                f"{row['wall_seconds']:>8.0f}{row['peak_rss_mb']:>9.0f}"
                f"{row['test']['NDCG@10']:>9.4f}{row['test']['HR@10']:>8.4f}"
            )
        else:
            print(
                f"{name:<28}{'-':>9}{'-':>8}{'-':>6}{row['tuning_seconds']:>8.0f}{'-':>9}"
                f"{row['test']['NDCG@10']:>9.4f}{row['test']['HR@10']:>8.4f}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"source": args.source, "data": args.data, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
