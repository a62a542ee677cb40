"""`python -m demo.push_moments`: where in a user's session a push can beat popularity, and by how much.

Offline, on the demo's time split (models trained on the earliest 80 % of time): at every replayed
rating, each model's best unseen item is a hit when the user rates it within 7 days. Events are
grouped by their position in the user's session (a session ends after 30 minutes without a rating).
The first rating of a session (after a gap of at least 30 minutes) is where a push is realistic, so
that row is also printed on its own: each model's hit@1 there against popularity's.
Every model is asked as decide asks it (``recommend_in_context``, the event's own time as ``now``).

``--build`` first trains what is missing in ``--models`` on the earliest 80 %: popularity and
co-occurrence (``training.build_model``) and the served transformer's recipe
(``training.build_model --kind sasrec``, needs torch).
With ``--pushes out/demo/pushes-full.jsonl`` it also splits a demo run's actual pushes the same way and
judges popularity at exactly those moments (``SameMomentsPopularity``).

    python -m demo.push_moments --data ../shared/datasets/ml-100k --models out/demo/models --build
    python -m demo.push_moments --data ../shared/datasets/ml-100k --models out/demo/models \
        --pushes out/demo/pushes-full.jsonl --out out/demo/push_moments.json
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from demo.outcomes import HIT_WINDOW_SECONDS, Push, RatingLog, SameMomentsPopularity
from shared.model import OnnxRecommender, recommend_in_context
from training.movielens import Interactions, load_movielens, resolve_data_dir, time_split

SESSION_GAP_S = 30 * 60
BUCKETS = ((0, 0), (1, 1), (2, 3), (4, 10), (11, 30), (31, 100), (101, 10**9))


def in_bucket_order(rows: dict[str, Any]) -> dict[str, Any]:
    names = [bucket_name(low) for low, _ in BUCKETS]
    return {name: rows[name] for name in names if name in rows}


def bucket_name(depth: int) -> str:
    for low, high in BUCKETS:
        if low <= depth <= high:
            return str(low) if low == high else (f"{low}+" if high == 10**9 else f"{low}-{high}")
    raise ValueError(depth)


class Sessions:
    """Each user's rating times, to say how deep into a session a moment is (0 = not in one)."""

    def __init__(self, everything: Interactions) -> None:
        self._times: dict[str, list[int]] = defaultdict(list)
        for user, ts in zip(everything.user.tolist(), everything.timestamp.tolist(), strict=True):
            self._times[str(user)].append(int(ts))
        for times in self._times.values():
            times.sort()

    def depth(self, user_id: str, at: int) -> int:
        times = self._times.get(user_id, [])
        index = bisect.bisect_right(times, at)
        if index == 0 or at - times[index - 1] > SESSION_GAP_S:
            return 0
        depth = 1
        while index - depth - 1 >= 0 and times[index - depth] - times[index - depth - 1] <= SESSION_GAP_S:
            depth += 1
        return depth


def offline_by_depth(models: dict[str, Path], train: Interactions, replay: Interactions) -> dict[str, Any]:
    everything = Interactions.concat([train, replay]).sorted_by_time()
    start = int(replay.timestamp.min())
    users = sorted({int(u) for u in replay.user.tolist()})
    cases: list[tuple[list[str], list[int], int, frozenset[str], int]] = []
    for user in users:
        rows = everything.user == user
        items = [str(i) for i in everything.item[rows]]
        stamps = [int(t) for t in everything.timestamp[rows]]
        depth = 0
        for i in range(len(items)):
            depth = depth + 1 if i and stamps[i] - stamps[i - 1] <= SESSION_GAP_S else 1
            if stamps[i] < start:
                continue
            end = bisect.bisect_right(stamps, stamps[i] + HIT_WINDOW_SECONDS)
            cases.append((items[: i + 1], stamps[: i + 1], stamps[i], frozenset(items[i + 1 : end]), depth))
    out: dict[str, Any] = {}
    for name, model_dir in models.items():
        recommender = OnnxRecommender.from_dir(model_dir)
        hits: dict[str, list[bool]] = defaultdict(list)
        for history, stamps, now, future, depth in cases:
            ranked = recommend_in_context(recommender, [history], 20, [stamps], now)[0]
            seen = set(history)
            best = next((r.item_id for r in ranked if r.item_id not in seen), None)
            hits[bucket_name(depth)].append(best is not None and best in future)
        out[name] = in_bucket_order(
            {b: {"events": len(v), "hit_at_1": round(float(np.mean(v)), 4)} for b, v in hits.items()}
        )
    return out


SESSION_START = bucket_name(1)
BASELINE = "popularity"


def session_starts(by_depth: dict[str, Any], baseline: str = BASELINE) -> dict[str, Any]:
    """Each model's hit@1 at session starts, and its ratio to the baseline's on the same events."""
    base = by_depth.get(baseline, {}).get(SESSION_START, {}).get("hit_at_1")
    out: dict[str, Any] = {}
    for name, rows in by_depth.items():
        row = rows.get(SESSION_START)
        if row is None:
            continue
        ratio = row["hit_at_1"] / base if base else None
        out[name] = {**row, f"vs_{baseline}": round(ratio, 3) if ratio is not None else None}
    return out


def build_missing(models: Path, data_dir: Path, quantile: float) -> None:
    """Popularity, co-occurrence and the transformer recipe trained on the earliest ``quantile`` of time."""
    import subprocess

    for kind in ("popularity", "cooccurrence", "sasrec"):
        target = models / kind
        if (target / "model.onnx").exists():
            continue
        command = ["-m", "training.build_model", "--data", str(data_dir), "--kind", kind]
        command += ["--split-quantile", str(quantile), "--out", str(target)]
        subprocess.run([sys.executable, *command], check=True)


def pushes_by_depth(
    pushes: Sequence[Push], log: RatingLog, sessions: Sessions, baseline: SameMomentsPopularity
) -> dict[str, Any]:
    shadow = {p.decision_id.removeprefix("same-moments-"): p for p in baseline.pushes_at(pushes)}
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for push in pushes:
        row = rows[bucket_name(sessions.depth(push.user_id, push.at))]
        row[0] += 1
        row[1] += log.is_hit(push)
        same = shadow.get(push.decision_id)
        row[2] += same is not None and log.is_hit(same)
    return in_bucket_order(
        {
            b: {"pushes": n, "hit_rate_7d": round(h / n, 4), "popularity_same_moments": round(s / n, 4)}
            for b, (n, h, s) in rows.items()
        }
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None)
    parser.add_argument("--split-quantile", type=float, default=0.8)
    parser.add_argument("--models", default="out/demo/models", help="folder with the demo's model folders")
    parser.add_argument("--extra-model", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--build", action="store_true", help="train the missing models into --models first")
    parser.add_argument("--pushes", default=None, help="a demo run's pushes-<policy>.jsonl")
    parser.add_argument("--out", default="out/demo/push_moments.json")
    args = parser.parse_args(argv)
    data_dir = resolve_data_dir(args.data)
    data = load_movielens(data_dir)
    train, replay = time_split(data.interactions, args.split_quantile)
    if args.build:
        build_missing(Path(args.models), data_dir, args.split_quantile)
    models = {p.name: p for p in sorted(Path(args.models).iterdir()) if (p / "model.onnx").exists()}
    models.update({name: Path(path) for name, path in (m.split("=", 1) for m in args.extra_model)})
    by_depth = offline_by_depth(models, train, replay)
    result: dict[str, Any] = {
        "offline_hit_at_1_by_session_depth": by_depth,
        "session_starts": session_starts(by_depth),
        "models": {name: str(path) for name, path in models.items()},
    }
    if args.pushes:
        everything = Interactions.concat([train, replay])
        with open(args.pushes) as fh:
            pushes = [Push(**json.loads(line)) for line in fh if line.strip()]
        result["pushes_by_session_depth"] = pushes_by_depth(
            pushes, RatingLog(replay), Sessions(everything), SameMomentsPopularity(train, everything)
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"\nsession starts (first rating after >= {SESSION_GAP_S // 60} min), hit@1 within 7 days:")
    for name, row in result["session_starts"].items():
        ratio = row[f"vs_{BASELINE}"]
        print(
            f"  {name:<24} {row['hit_at_1']:.4f} on {row['events']} events"
            + (f"  ({ratio:.2f}x {BASELINE})" if ratio else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
