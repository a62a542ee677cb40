"""`make reliability`'s summary for a person at a terminal (summary.json and details.json have every figure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testkit.text import counts, duration, table


def report_console(summary: dict[str, Any], out: Path) -> str:
    lost, twice, sent_twice = summary["events_lost"], summary["events_applied_twice"], summary["pushes_sent_twice"]
    unexplained, unsent = summary.get("pushes_sent_twice_unexplained", 0), summary.get("pushes_recorded_not_sent", 0)
    verdict = (
        "FAILURES"
        if lost or twice or unexplained or unsent
        else "nothing lost or applied twice; every recorded push sent, none twice outside an interrupted send"
    )
    lines = [
        "",
        f"Reliability, in {duration(summary['wall_time_s'])}: {verdict}",
        "",
        table(
            ["check", "result"],
            [
                ["bad inputs tried (contract and through ingest)", summary["bad_inputs_tried"]],
                ["fault scenarios run", summary["fault_scenarios"]],
                ["faults injected", summary["faults_injected"]],
                ["events lost", lost],
                ["events applied twice", twice],
                ["pushes sent twice", sent_twice],
                [
                    "  of which after a send interrupted between SNS and its record",
                    sent_twice - unexplained,
                ],
                ["invocations interrupted right after SNS took a push", summary.get("sends_interrupted", 0)],
                ["pushes recorded but never sent", summary.get("pushes_recorded_not_sent", 0)],
                ["events dead-lettered (kept with their reason)", summary["events_dead_lettered"]],
                ["decision triggers dead-lettered", summary["decision_triggers_dead_lettered"]],
                ["archive lines written twice", summary["archive_lines_written_twice"]],
                *_poison_rows(summary),
            ],
        ),
        "",
        f"Faults by kind: {counts(summary['faults_injected_by_kind'])}",
        *_delivery_lines(summary.get("delivery", {})),
        *_hostile_lines(summary.get("hostile_producer")),
        *_load_lines(summary.get("load")),
        "",
        f"Written: {out / 'summary.json'}, {out / 'details.json'}, handler logs in {out / 'logs'}",
    ]
    return "\n".join(lines)


def _poison_rows(summary: dict[str, Any]) -> list[list[Any]]:
    if "poison_classes" not in summary:
        return []
    isolated = f"{summary['poison_classes_isolated']} of {summary['poison_classes']}"
    return [
        ["poison classes isolated", isolated],
        ["valid neighbours of poison not applied exactly once", summary["poison_valid_events_not_applied_once"]],
    ]


def _delivery_lines(delivery: dict[str, dict[str, int]]) -> list[str]:
    return [
        f"Delivery, {mode} mode ({m['scenarios']} scenarios): {m['pushes_decided']} pushes decided, "
        f"{m['pushes_received']} reached a device, {m['pushes_sent_twice']} twice ({m['sends_interrupted']} "
        "sends interrupted), "
        f"{m['pushes_recorded_not_sent']} recorded but never sent, {m['pushes_undeliverable']} undeliverable; "
        f"{m['ledger_not_marked_sent']} delivered but not yet marked sent (a crash right after the send)"
        for mode, m in delivery.items()
    ]


def _hostile_lines(hostile: dict[str, Any] | None) -> list[str]:
    if hostile is None:
        return []
    return [
        f"Hostile producer (another process, against `python -m runner serve`): {hostile['records_put']} records "
        f"put, {hostile['archived']} archived, {hostile['quarantined']} quarantined, {hostile['unaccounted']} "
        f"unaccounted, {hostile['dead_letter_messages']} dead letters: {'clean' if hostile['clean'] else 'NOT CLEAN'}"
    ]


def _load_lines(load: dict[str, Any] | None) -> list[str]:
    if load is None:
        return []
    same = "equals" if load["final_state_equals_clean_run"] else "DIFFERS FROM"
    return [
        f"Load: {load['events']:,} events through {', '.join(load['stages'])}; clean "
        f"{load['clean_events_per_s']} events/s ({duration(load['clean_wall_s'])}), with {load['fault_rate']:.0%} "
        f"faults {load['faults_events_per_s']} events/s ({duration(load['faults_wall_s'])}, "
        f"{load['faults_injected']:,} faults); final state with faults {same} the clean run's "
        f"({load['users_compared']} users), {load['users_differing_from_reference_fold']} users differ from the "
        "reference fold",
    ]
