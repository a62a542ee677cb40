"""What every fault scenario must show, read from storage (reliability/fault_scenario.py audits it)."""

from __future__ import annotations

from reliability.fault_scenario import ScenarioResult


def assert_nothing_lost_or_doubled(result: ScenarioResult) -> None:
    assert result.quiescent
    assert result.events_lost == 0, (result.ingest, result.features, result.feedback)
    assert result.events_applied_twice == 0, (result.features, result.feedback)
    # A second send only where no sender can know: a crash or timeout right after SNS took the push
    # (the sweep sends it again once the Lambda timeout frees its send record; same collapse id).
    assert result.pushes_sent_twice <= result.faults["sends_interrupted"], (result.pushes, result.faults)
    # The outbox: every push the ledger recorded reached a device (or was settled as undeliverable).
    assert result.pushes_recorded_not_sent == 0, result.pushes
    assert result.ingest["lost"] == 0 and result.ingest["records_in"] > 0
    if result.ingest["dead_lettered"] == 0:
        # A batch that crashed after archiving is re-archived by its bisected halves, not doubled.
        assert result.ingest["archived_more_than_once"] == 0
    assert result.features["users_differing_from_reference"] == 0
    assert result.pushes["pushes_without_ledger_push"] == 0
    assert result.pushes["pushes_to_users_without_consent"] == 0
    assert result.pushes["decision_ids"] > 0, "the scenario must push, or sending twice is not tested"
    for stage in result.dead_letters.values():
        # Every dead-letter message says why: the condition and the function error (if any).
        assert sum(stage["reasons"].values()) == stage["messages"]
        assert all(
            reason.split("/")[0] in ("RetryAttemptsExhausted", "RecordAgeExceeded") for reason in stage["reasons"]
        )
