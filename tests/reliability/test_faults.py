"""Faults injected into the real handlers under the runner; outcomes audited against the input.

Each scenario (reliability/fault_scenario.py) puts profile, behaviour and malformed records on the
stream, answers the pushes with feedback, and then compares storage with what was put: every event
applied to user state exactly once (a reference fold of the input), every feedback outcome counted
once, each decision id on the push topic at most once, and whatever was not applied in a
dead-letter queue with its reason. Counters of the code under test are not used.
"""

from __future__ import annotations

import pytest

from reliability.fault_scenario import DeliveryMode, ScenarioResult, run_scenario
from testkit.faults import FaultKind, uniform_rates

# Whole scenarios under moto: run without the coverage tracer (they would double make test's time);
# the lines they reach are covered by the unit and service tests, and `make test` prints the total.
pytestmark = pytest.mark.no_cover


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


@pytest.mark.parametrize("kind", [k.value for k in FaultKind])
def test_each_fault_kind_alone(kind: str) -> None:
    result = run_scenario({kind: 0.5}, seed=11, users=3, events_per_user=6, rounds=2)
    assert result.faults["injected"][kind] > 0
    assert_nothing_lost_or_doubled(result)
    if kind in ("crash_mid_batch", "timeout"):
        # The environment died: the mapping retried, and the next invocation was a cold start.
        assert sum(result.function_errors.values()) >= result.faults["injected"][kind]
        assert sum(result.cold_starts.values()) > len([n for n in result.invocations.values() if n])


@pytest.mark.parametrize("delivery", ["topic", "endpoint"])
def test_every_fault_kind_together(delivery: DeliveryMode) -> None:
    result = run_scenario(uniform_rates(0.25), seed=5, users=4, events_per_user=9, delivery=delivery)
    assert all(result.faults["injected"][k.value] > 0 for k in FaultKind), result.faults["injected"]
    assert_nothing_lost_or_doubled(result)
    # The audit saw everything: archive + quarantine + dead letters cover every record put.
    ingest = result.ingest
    assert ingest["archived"] + ingest["quarantined"] + ingest["dead_lettered"] == ingest["records_in"]
    assert result.feedback["feedback_in"] > 0
    assert result.feedback["counted"] + result.feedback["dead_lettered"] == result.feedback["feedback_in"]
