"""The demo's HTML report: how each policy behaved, at a glance (charts also saved as PNG)."""

from __future__ import annotations

import base64
import html
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from demo.outcomes import RatingLog
from demo.replay import RunResult

DAY = 24 * 3600


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _figure().close(fig)
    return base64.b64encode(path.read_bytes()).decode()


def pushes_per_day(runs: dict[str, RunResult], out: Path) -> str:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for name, run in runs.items():
        days = Counter(p.at // DAY for p in run.pushes)
        if days:
            xs = sorted(days)
            ax.plot([datetime.fromtimestamp(d * DAY, UTC) for d in xs], [days[d] for d in xs], label=name)
    ax.set_title("Pushes per day")
    ax.set_ylabel("pushes")
    ax.legend()
    return _save(fig, out / "pushes_per_day.png")


def hit_rate_over_time(runs: dict[str, RunResult], log: RatingLog, out: Path) -> str:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for name, run in runs.items():
        weeks: dict[int, list[bool]] = defaultdict(list)
        for push in run.pushes:
            weeks[push.at // (7 * DAY)].append(log.is_hit(push))
        xs = sorted(weeks)
        if xs:
            ax.plot(
                [datetime.fromtimestamp(w * 7 * DAY, UTC) for w in xs],
                [sum(weeks[w]) / len(weeks[w]) for w in xs],
                marker="o",
                label=name,
            )
    ax.set_title("7-day hit rate of the pushes sent each week")
    ax.set_ylabel("hit rate")
    ax.legend()
    return _save(fig, out / "hit_rate_over_time.png")


def suppression_reasons(runs: dict[str, RunResult], out: Path) -> str:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(9, 3.2))
    names = list(runs)
    counts = {
        name: Counter(r for row in run.ledger if row.get("action") != "push" for r in row.get("reasons", []))
        for name, run in runs.items()
    }
    reasons = sorted({r for c in counts.values() for r in c})
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        ax.bar([x + i * width for x in range(len(reasons))], [counts[name][r] for r in reasons], width, label=name)
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(reasons))], reasons, rotation=20)
    ax.set_title("Decisions without a push, by reason (defer = quiet hours, re-decided later)")
    ax.legend()
    return _save(fig, out / "suppression_reasons.png")


def latency_histograms(run: RunResult, out: Path) -> str:
    plt = _figure()
    functions = run.stats.get("functions", {})
    fig, axes = plt.subplots(1, max(len(functions), 1), figsize=(12, 3))
    for ax, (fid, stats) in zip(list(getattr(axes, "flat", [axes])), functions.items(), strict=False):
        per_record = [w * 1000 / n for w, n in zip(stats["handler_wall_s"], stats["batch_sizes"], strict=True) if n]
        ax.hist(per_record, bins=40)
        ax.set_title(fid.removesuffix("Function"))
        ax.set_xlabel("ms per record")
    fig.suptitle(f"Handler time per record ({run.policy} policy, in-process against moto)")
    return _save(fig, out / "latency_histograms.png")


def write_report(summary: dict[str, Any], runs: dict[str, RunResult], log: RatingLog, out_dir: Path) -> Path:
    charts = out_dir / "charts"
    charts.mkdir(parents=True, exist_ok=True)
    main = next(iter(runs.values()))
    images = [
        ("Pushes per day", pushes_per_day(runs, charts)),
        ("Hit rate over time", hit_rate_over_time(runs, log, charts)),
        ("Why no push", suppression_reasons(runs, charts)),
        ("Latency", latency_histograms(main, charts)),
    ]
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{r['pushes']}</td><td>{r['hits_7d']}</td>"
        f"<td>{r['push_hit_rate_7d']:.4f}</td><td>{r['cap_violations']}</td><td>{r['quiet_hour_violations']}</td></tr>"
        for name, r in summary["policies"].items()
    )
    figures = "".join(
        f'<h2>{html.escape(t)}</h2><img alt="{html.escape(t)}" src="data:image/png;base64,{b64}">' for t, b64 in images
    )
    problems = "".join(f"<li class=bad>{html.escape(p)}</li>" for p in summary.get("problems", []))
    body = f"""<!doctype html><html><head><meta charset=utf-8><title>Nudge demo report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}.bad{{color:#b00}}img{{max-width:100%}}</style></head><body>
<h1>Nudge demo report</h1>
<p>{summary["users"]} users, {summary["events_in"]} events in: {summary["events_processed"]} processed,
{summary["events_quarantined"]} quarantined, {summary["events_dead_lettered"]} dead-lettered
(all accounted for: {summary["accounted_for"]}). Policy "{html.escape(str(summary.get("policy")))}":
{summary["pushes_sent"]} pushes, {summary["pushes_deferred"]} deferred out of quiet hours first.</p>
<ul>{problems}</ul>
<table><tr><th>policy</th><th>pushes</th><th>hits in 7 days</th><th>7-day hit rate</th>
<th>cap violations</th><th>quiet-hour violations</th></tr>{rows}</table>
<p>Violations are counted over each run's ledger by an independent check, not by the policy.</p>
{figures}
</body></html>"""
    path = out_dir / "report.html"
    path.write_text(body)
    return path
