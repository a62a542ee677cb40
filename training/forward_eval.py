"""Forward in time: models trained before a cutoff T, judged on what users did after T, at decision time.

The promotion gate of a retrained model (issue 13): a challenger replaces the champion only if it wins
on the most recent days by a margin and does not lose on cold items. Leave-last-out
(``make evaluate``) asks about each user's last item, whenever it happened; here every user with
events at or after T gets a case for each of their first ``per_user`` events from T on, with
everything they did before that event as history and the request at the newest history event's time
(decide's clock on a stream trigger). Cold cases are those whose target had at most ``cold_max``
interactions before T: the items a model trained before T knows least.

    python -m training.forward_eval --source movielens --cutoff-quantile 0.9 \
        --artifact layers/model/sasrec/int8 --artifact layers/model --out out/retrain/forward.json

The first artifact is the champion, the second the challenger; the report holds both models' metrics
(``all`` and ``cold``), the number of cases, and the gate's decision with its reasons.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shared.model import OnnxRecommender
from training.decision_eval import Case, artifact_ranks, rank_metrics
from training.sources import SOURCES, load_source

GATE_METRIC = "NDCG@10"
COLD_METRIC = "HR@10"


def forward_cases(rows: Iterable[tuple[str, str, int]], cutoff: int, *, per_user: int = 1) -> list[Case]:
    """Cases from (user, item, epoch seconds) rows: each user's first ``per_user`` events at or after
    ``cutoff``, each with the user's earlier events (oldest first) as history. Users with no history
    before their first such event are left out (there is nothing to rank from)."""
    by_user: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for user, item, ts in rows:
        by_user[user].append((int(ts), str(item)))
    cases: list[Case] = []
    for user in sorted(by_user):
        events = sorted(by_user[user], key=lambda pair: pair[0])  # stable: same-second events keep file order
        later = [i for i, (ts, _) in enumerate(events) if ts >= cutoff][:per_user]
        for index in later:
            history = events[:index]
            if not history:
                continue
            cases.append(Case([i for _, i in history], [t for t, _ in history], events[index][1], events[index][0]))
    return cases


def counts_before(rows: Iterable[tuple[str, str, int]], cutoff: int) -> Counter[str]:
    return Counter(str(item) for _, item, ts in rows if ts < cutoff)


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reasons: list[str] = field(default_factory=list)


def gate(
    champion: Mapping[str, Any],
    challenger: Mapping[str, Any],
    *,
    margin: float = 0.0,
    cold_tolerance: float = 0.0,
) -> Verdict:
    """Promote only if the challenger's GATE_METRIC beats the champion's by ``margin`` and its COLD_METRIC on
    cold cases is not lower by more than ``cold_tolerance`` (checked only when there are cold cases)."""
    reasons: list[str] = []
    ours, theirs = challenger["all"][GATE_METRIC], champion["all"][GATE_METRIC]
    wins = ours >= theirs + margin
    reasons.append(
        f"{GATE_METRIC} {ours:.4f} vs champion {theirs:.4f}: "
        + (f"wins by at least {margin:.4f}" if wins else f"does not win by {margin:.4f}")
    )
    cold_ok = True
    if challenger.get("cold") and champion.get("cold"):
        ours_cold, theirs_cold = challenger["cold"][COLD_METRIC], champion["cold"][COLD_METRIC]
        cold_ok = ours_cold >= theirs_cold - cold_tolerance
        reasons.append(
            f"cold {COLD_METRIC} {ours_cold:.4f} vs champion {theirs_cold:.4f}: "
            + ("holds" if cold_ok else f"loses more than {cold_tolerance:.4f}")
        )
    else:
        reasons.append("no cold cases: the cold check does not apply")
    return Verdict(wins and cold_ok, reasons)


def judge(rec: OnnxRecommender, cases: Sequence[Case], cold: Sequence[bool]) -> dict[str, Any]:
    """The artifact's metrics on every case and on the cold ones, as decide would serve it."""
    return metrics_of(artifact_ranks(rec, cases), cold)


def metrics_of(ranks: NDArray[np.int64], cold: Sequence[bool]) -> dict[str, Any]:
    cold_mask = np.asarray(cold, dtype=bool)
    report: dict[str, Any] = {"all": rank_metrics(ranks), "cases": len(ranks), "cold_cases": int(cold_mask.sum())}
    report["cold"] = rank_metrics(ranks[cold_mask]) if cold_mask.any() else None
    return report


def run(
    rows: Sequence[tuple[str, str, int]],
    cutoff: int,
    champion: Path,
    challenger: Path,
    *,
    per_user: int = 1,
    cold_max: int = 5,
    margin: float = 0.0,
    cold_tolerance: float = 0.0,
) -> dict[str, Any]:
    cases = forward_cases(rows, cutoff, per_user=per_user)
    if not cases:
        raise ValueError(f"no user has events both before and at or after the cutoff {cutoff}")
    seen = counts_before(rows, cutoff)
    cold = [seen[case.target] <= cold_max for case in cases]
    models = {"champion": champion, "challenger": challenger}
    ranks = {role: artifact_ranks(OnnxRecommender.from_dir(path), cases) for role, path in models.items()}
    judged = {role: metrics_of(ranks[role], cold) for role in models}
    verdict = gate(judged["champion"], judged["challenger"], margin=margin, cold_tolerance=cold_tolerance)
    return {
        "cutoff": cutoff,
        "per_user": per_user,
        "cold_max": cold_max,
        "models": {role: {"path": str(path), **judged[role]} for role, path in models.items()},
        "gate": {"promote": verdict.promote, "reasons": verdict.reasons, "metric": GATE_METRIC, "margin": margin},
        "difference": paired_difference(ranks["champion"], ranks["challenger"]),
    }


def paired_difference(champion: NDArray[np.int64], challenger: NDArray[np.int64], k: int = 10) -> dict[str, Any]:
    """Challenger minus champion NDCG@k, case by case (the same cases), with a 95 % normal interval: how far
    the margin the gate applies is from the noise of this many cases."""
    gains = [np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0) for r in (champion, challenger)]
    diff = gains[1] - gains[0]
    half = 1.96 * float(diff.std(ddof=1)) / np.sqrt(len(diff)) if len(diff) > 1 else float("inf")
    mean = float(diff.mean()) if len(diff) else 0.0
    return {
        "metric": f"NDCG@{k}",
        "mean": mean,
        "ci95": [mean - half, mean + half],
        "challenger_better": int((diff > 0).sum()),
        "champion_better": int((diff < 0).sum()),
        "ties": int((diff == 0).sum()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.forward_eval",
        description="Champion and challenger judged forward in time; the promotion gate.",
    )
    p.add_argument("--source", choices=SOURCES, default="movielens")
    p.add_argument("--data", default=None, help="what the source reads (default for movielens: ../shared/...)")
    p.add_argument("--cutoff-quantile", type=float, default=0.9, help="T = this quantile of the event times")
    p.add_argument("--artifact", type=Path, action="append", required=True, help="champion, then challenger")
    p.add_argument("--per-user", type=int, default=5, help="cases per user: their first N events from T on")
    p.add_argument("--cold-max", type=int, default=5, help="a target with at most this many events before T is cold")
    p.add_argument("--margin", type=float, default=0.005, help="the challenger must beat NDCG@10 by this much")
    p.add_argument("--cold-tolerance", type=float, default=0.0)
    p.add_argument("--out", type=Path, default=Path("out/retrain/forward.json"))
    args = p.parse_args(argv)
    if len(args.artifact) != 2:
        p.error("give exactly two --artifact: the champion, then the challenger")
    if args.data is None and args.source == "movielens":
        from training.movielens import resolve_data_dir

        args.data = resolve_data_dir(None)
    data = load_source(args.source, args.data)
    rows = data.rows()
    cutoff = int(np.quantile(data.interactions.timestamp, args.cutoff_quantile))
    report = run(
        rows,
        cutoff,
        args.artifact[0],
        args.artifact[1],
        per_user=args.per_user,
        cold_max=args.cold_max,
        margin=args.margin,
        cold_tolerance=args.cold_tolerance,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    decision = "promote" if report["gate"]["promote"] else "keep the champion"
    print(f"{decision}: " + "; ".join(report["gate"]["reasons"]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
