"""The demo's numbers, computed from what landed in storage and the real log, not from handlers."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from demo.outcomes import RatingLog, SameMomentsPopularity, hit_rate
from demo.replay import RunResult
from shared.domain.policy import PolicyConfig, in_quiet_hours
from testkit.feedback import Push
from testkit.text import counts, duration, table
from training.calibration import fit_from_ledger
from training.ope import epsilon_greedy, estimate, greedy, is_hit, logged_from_ledger


def cap_violations(pushes: list[dict[str, Any]], cap: int, timezones: dict[str, str]) -> int:
    """Pushes beyond the daily cap on some user's calendar day in their own time zone (the cap's one
    definition, shared/domain/caps.py), checked over the ledger independently of the counters."""
    per_day: Counter[tuple[str, str]] = Counter()
    for row in pushes:
        zone = ZoneInfo(timezones.get(row["user_id"], "UTC"))
        day = datetime.fromtimestamp(int(row["decided_at"]), UTC).astimezone(zone).date().isoformat()
        per_day[(row["user_id"], day)] += 1
    return sum(n - cap for n in per_day.values() if n > cap)


def quiet_hour_violations(pushes: list[dict[str, Any]], timezones: dict[str, str], config: PolicyConfig) -> int:
    count = 0
    for row in pushes:
        tz = ZoneInfo(timezones.get(row["user_id"], "UTC"))
        hour = datetime.fromtimestamp(int(row["decided_at"]), UTC).astimezone(tz).hour
        count += in_quiet_hours(hour, config.quiet_hours_start, config.quiet_hours_end)
    return count


def policy_row(run: RunResult, log: RatingLog, config: PolicyConfig) -> dict[str, Any]:
    pushed_rows = [r for r in run.ledger if r.get("action") == "push"]
    timezones = {uid: s.timezone or "UTC" for uid, s in run.final_states.items()}
    pushes, hits, rate = hit_rate(run.pushes, log)
    return {
        "pushes": pushes,
        "hits_7d": hits,
        "push_hit_rate_7d": round(rate, 4),
        "cap_violations": cap_violations(pushed_rows, config.daily_push_cap, timezones),
        "quiet_hour_violations": quiet_hour_violations(pushed_rows, timezones, config),
    }


def handler_times(run: RunResult) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for fid, stats in run.stats.get("functions", {}).items():
        out[fid] = {
            "per_record_ms_p50": stats["handler_ms_per_record_p50"],
            "per_record_ms_p99": stats["handler_ms_per_record_p99"],
            "invocations": stats["invocations"],
            "records": stats["records"],
            "errors": stats["errors"],
        }
    return out


def off_policy(run: RunResult) -> dict[str, Any]:
    """What other exploration settings would have scored, estimated from this run's ledger alone."""
    logged = logged_from_ledger(run.ledger)
    if not logged:
        return {}
    targets = {"logged (on-policy check)": None, "greedy": greedy, "epsilon 0.2, top 5": epsilon_greedy(0.2, 5)}
    out: dict[str, Any] = {}
    for name, target in targets.items():
        result = estimate(logged, target or (lambda row: row.propensity))
        out[name] = {
            "ips": round(result.ips, 4),
            "ips_95ci": [round(v, 4) for v in result.ips_ci],
            "snips": round(result.snips, 4),
            "snips_95ci": [round(v, 4) for v in result.snips_ci],
            "effective_sample_size": round(result.effective_sample_size, 1),
            "n": result.n,
        }
    return out


def same_moments(run: RunResult, log: RatingLog, baseline: SameMomentsPopularity) -> dict[str, Any]:
    """The policy against popularity at exactly its own push moments (same users, times, count)."""
    pushes, _, rate = hit_rate(run.pushes, log)
    shadow_pushes, shadow_hits, shadow_rate = hit_rate(baseline.pushes_at(run.pushes), log)
    return {
        "reference": run.policy,
        "pushes": pushes,
        "push_hit_rate_7d": round(rate, 4),
        "popularity_pushes": shadow_pushes,
        "popularity_hits_7d": shadow_hits,
        "popularity_push_hit_rate_7d": round(shadow_rate, 4),
        "ratio": round(rate / shadow_rate, 3) if shadow_rate else None,
    }


def engagement_check(run: RunResult) -> dict[str, Any]:
    """Predicted engagement at push time against what the logged feedback shows.

    The table decide used was fitted on every event of the training window; pushes happen only
    where the policy pushes. The second block refits the table from the first half of this run's
    logged feedback (``training.calibration.fit_from_ledger``) and checks it on the second half.
    """
    pushed = sorted(
        (r for r in run.ledger if r.get("action") == "push" and r.get("engagement") is not None),
        key=lambda r: int(r["decided_at"]),
    )
    if not pushed:
        return {}

    out: dict[str, Any] = {
        "pushes": len(pushed),
        "mean_predicted": round(sum(float(r["engagement"]) for r in pushed) / len(pushed), 4),
        "realized": round(sum(is_hit(r) for r in pushed) / len(pushed), 4),
    }
    half = pushed[len(pushed) // 2 :]
    versions = {str(r.get("model_version")) for r in pushed}
    if len(versions) != 1:
        return out
    try:
        refit = fit_from_ledger(pushed, versions.pop(), before=int(half[0]["decided_at"]))
    except ValueError as exc:
        out["refit_from_logged_feedback"] = str(exc)
        return out
    out["refit_from_logged_feedback"] = {
        "fitted_on_pushes": refit.samples,
        "checked_on_pushes": len(half),
        "mean_predicted_before_refit": round(sum(float(r["engagement"]) for r in half) / len(half), 4),
        "mean_predicted_after_refit": round(sum(refit(float(r["score"])) for r in half) / len(half), 4),
        "realized": round(sum(is_hit(r) for r in half) / len(half), 4),
    }
    return out


def summarize(
    runs: dict[str, RunResult],
    log: RatingLog,
    users: int,
    config: PolicyConfig,
    same_moments_baseline: SameMomentsPopularity | None = None,
) -> dict[str, Any]:
    """Top-level figures come from the first run (the full policy); every run gets a policy row."""
    main = next(iter(runs.values()))
    processed = len(main.archive_event_ids)
    quarantined = sum(main.quarantined.values())
    suppressed: Counter[str] = Counter()
    deferred = 0
    for row in main.ledger:
        if row.get("action") == "silence":
            suppressed.update(row.get("reasons", []))
        elif row.get("action") == "defer":
            deferred += 1
    outcomes: Counter[str] = Counter()
    for row in main.ledger:
        outcomes.update((row.get("outcomes") or {}).keys())
    ingest_dead = main.dead_lettered.get("Ingest", 0)
    rows = {name: policy_row(run, log, config) for name, run in runs.items()}
    summary: dict[str, Any] = {
        "policy": main.policy,
        "events_in": main.events_in,
        "events_processed": processed,
        "events_quarantined": quarantined,
        "events_quarantined_by_reason": dict(sorted(main.quarantined.items())),
        "events_dead_lettered": ingest_dead,
        "dead_lettered_by_stage": main.dead_lettered,
        "accounted_for": all(
            run.events_in
            == len(run.archive_event_ids) + sum(run.quarantined.values()) + run.dead_lettered.get("Ingest", 0)
            for run in runs.values()
        ),
        "injected": {"malformed": main.bad_injected, "duplicates": main.duplicates_injected},
        "users": users,
        "pushes_sent": len(main.pushes),
        "pushes_suppressed": dict(sorted(suppressed.items())),
        "pushes_deferred": deferred,
        "push_hit_rate_7d": rows[main.policy]["push_hit_rate_7d"],
        "policies": rows,
        "feedback_events_in": main.feedback_in,
        "feedback_recorded_on_ledger": dict(sorted(outcomes.items())),
        "handler_time": handler_times(main),
        "wall_seconds": {name: round(run.wall_s, 1) for name, run in runs.items()},
    }
    problems = [
        f"{name}: {count} records of {stage} dead-lettered"
        for name, run in runs.items()
        for stage, count in run.dead_lettered.items()
        if count
    ] + [
        f"{name}: {fid} raised in {stats['errors']} of {stats['invocations']} invocations"
        for name, run in runs.items()
        for fid, stats in run.stats.get("functions", {}).items()
        if stats.get("errors")
    ]
    summary["problems"] = problems
    summary["off_policy_estimates"] = off_policy(main)
    summary["engagement_check"] = engagement_check(main)
    if "popularity" in runs:
        summary["popularity"] = {
            "pushes_sent": len(runs["popularity"].pushes),
            "push_hit_rate_7d": rows["popularity"]["push_hit_rate_7d"],
        }
        popularity_rate = rows["popularity"]["push_hit_rate_7d"]
        summary["hit_rate_vs_popularity"] = (
            round(rows[main.policy]["push_hit_rate_7d"] / popularity_rate, 3) if popularity_rate else None
        )
    if same_moments_baseline is not None:
        summary["same_moments"] = same_moments(main, log, same_moments_baseline)
    if main.retrain is not None:
        summary["learning_loop"] = learning_loop(main, log)
    return summary


def learning_loop(run: RunResult, log: RatingLog) -> dict[str, Any]:
    """The mid-replay retrain (demo/retrain.py): the gate's decision and how each served version's pushes did."""
    assert run.retrain is not None
    report = run.retrain
    version_of = {str(row["decision_id"]): str(row.get("model_version")) for row in run.ledger if "decision_id" in row}
    by_version: dict[str, list[Push]] = {}
    for push in run.pushes:
        by_version.setdefault(version_of.get(push.decision_id, "unknown"), []).append(push)
    versions = {}
    for version, pushes in sorted(by_version.items(), key=lambda pair: min(p.at for p in pair[1])):
        count, hits, rate = hit_rate(pushes, log)
        versions[version] = {"pushes": count, "hits_7d": hits, "push_hit_rate_7d": round(rate, 4)}
    return {
        "retrained_at": report.get("at"),
        "decision": report["decision"],
        "reasons": report["reasons"],
        "champion_before": report["champion_before"]["version"],
        "challenger": report["challenger"]["version"],
        "forward_metrics": report["metrics"],
        "paired_difference": report.get("difference"),
        "events_trained_on": report["events"],
        "window": report["window"],
        "seconds": report["seconds"],
        "by_model_version": versions,
    }


def report_markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# Nudge demo report",
        "",
        f"- events in: {summary['events_in']} (processed {summary['events_processed']}, "
        f"quarantined {summary['events_quarantined']}, dead-lettered {summary['events_dead_lettered']}; "
        f"all accounted for: {summary['accounted_for']})",
        f"- users: {summary['users']}",
        *[f"- PROBLEM: {p}" for p in summary.get("problems", [])],
        f"- pushes sent: {summary['pushes_sent']}, deferred for quiet hours: {summary['pushes_deferred']}",
        f"- suppressed by reason: {summary['pushes_suppressed']}",
        f"- feedback recorded on the ledger: {summary['feedback_recorded_on_ledger']}",
        "",
        "| policy | pushes | hits within 7 days | 7-day hit rate | cap violations | quiet-hour violations |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in summary["policies"].items():
        lines.append(
            f"| {name} | {row['pushes']} | {row['hits_7d']} | {row['push_hit_rate_7d']:.4f} | "
            f"{row['cap_violations']} | {row['quiet_hour_violations']} |"
        )
    matched = summary.get("same_moments")
    if matched:
        lines += [
            "",
            f"At the same push moments ({matched['pushes']} pushes of `{matched['reference']}`), popularity would have "
            f"hit {matched['popularity_push_hit_rate_7d']:.4f} against {matched['push_hit_rate_7d']:.4f} "
            f"(ratio {matched['ratio']}).",
        ]
    by_depth = summary.get("pushes_by_session_depth")
    if by_depth:
        lines += [
            "",
            "| ratings so far in the user's session | pushes | 7-day hit rate | popularity at the same moments |",
            "|---|---|---|---|",
            *(
                f"| {b} | {r['pushes']} | {r['hit_rate_7d']:.4f} | {r['popularity_same_moments']:.4f} |"
                for b, r in by_depth.items()
            ),
        ]
    lines += [
        "",
        "| function | invocations | records | ms/record p50 | ms/record p99 |",
        "|---|---|---|---|---|",
    ]
    for fid, t in summary["handler_time"].items():
        p50, p99 = t["per_record_ms_p50"], t["per_record_ms_p99"]
        lines.append(f"| {fid} | {t['invocations']} | {t['records']} | {p50} | {p99} |")
    return "\n".join(lines) + "\n"


def report_console(summary: dict[str, Any], out_dir: Path) -> str:
    """What the demo did and found, for a person at a terminal (summary.json has every figure)."""
    injected = summary["injected"]
    main = summary["policy"]
    lines = [
        "",
        f"Nudge demo: {summary['users']} users replayed, policies {', '.join(summary['policies'])}, "
        f"in {duration(summary.get('total_wall_seconds', 0.0))}",
        "",
        f"Into the stream ({main} run): {summary['events_in']:,} records, of which {summary['feedback_events_in']:,} "
        f"feedback, {injected['malformed']} malformed and {injected['duplicates']} duplicates mixed in on purpose",
        f"Read back from storage: {summary['events_processed']:,} archived, {summary['events_quarantined']} "
        f"quarantined ({counts(summary['events_quarantined_by_reason'])}), {summary['events_dead_lettered']} "
        f"dead-lettered: {'every record accounted for' if summary['accounted_for'] else 'RECORDS MISSING'}",
        f"Pushes ({main}): {summary['pushes_sent']:,} sent, {summary['pushes_deferred']} deferred out of quiet hours "
        f"first; not sent: {counts(summary['pushes_suppressed'])}",
        f"Feedback on the ledger: {counts(summary['feedback_recorded_on_ledger'])}",
        *(f"PROBLEM: {p}" for p in summary["problems"]),
        "",
        table(
            ["policy", "pushes", "hits in 7 days", "7-day hit rate", "cap violations", "quiet-hour violations"],
            [
                [
                    name,
                    r["pushes"],
                    r["hits_7d"],
                    r["push_hit_rate_7d"],
                    r["cap_violations"],
                    r["quiet_hour_violations"],
                ]
                for name, r in summary["policies"].items()
            ],
        ),
        "",
        *_comparisons(summary),
        *_learning_loop_lines(summary.get("learning_loop")),
        "Handler time per record, ms (p50 / p99): "
        + ", ".join(
            f"{fid.removesuffix('Function').lower()} {t['per_record_ms_p50']:.1f} / {t['per_record_ms_p99']:.1f}"
            for fid, t in summary["handler_time"].items()
            if t["records"]
        ),
        "",
        f"Written: {out_dir / 'summary.json'}, report.md, report.html (charts in {out_dir / 'charts'}), "
        "pushes-<policy>.jsonl, handler logs in logs/",
    ]
    return "\n".join(lines)


def _learning_loop_lines(loop: dict[str, Any] | None) -> list[str]:
    if loop is None:
        return []
    at = datetime.fromtimestamp(loop["retrained_at"], UTC).strftime("%Y-%m-%d %H:%M")
    lines = [
        f"Retrained mid-replay ({at} UTC) on {loop['events_trained_on']:,} events from the archive and history, "
        f"in {duration(sum(loop['seconds'].values()))}: {loop['decision']} {loop['challenger'] or ''}".rstrip(),
        *(f"  {reason}" for reason in loop["reasons"]),
    ]
    lines += [
        f"  pushes served by {version}: {row['pushes']}, 7-day hit rate {row['push_hit_rate_7d']:.4f}"
        for version, row in loop["by_model_version"].items()
    ]
    return lines


def _comparisons(summary: dict[str, Any]) -> list[str]:
    lines = []
    ratio = summary.get("hit_rate_vs_popularity")
    if ratio is not None:
        lines.append(f"{summary['policy']} vs popularity: {ratio}x the 7-day hit rate")
    matched = summary.get("same_moments")
    if matched and matched.get("ratio") is not None:
        lines.append(
            f"At {summary['policy']}'s own {matched['pushes']} push moments popularity hits "
            f"{matched['popularity_push_hit_rate_7d']:.4f}: {matched['ratio']}x"
        )
    check = summary.get("engagement_check") or {}
    if check:
        lines.append(
            f"Engagement predicted at push time {check['mean_predicted']}, realized {check['realized']} "
            f"(over {check['pushes']} pushes)"
        )
    return [*lines, ""] if lines else []
