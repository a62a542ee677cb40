"""Every fault kind at once, in both delivery modes: the scenario test_faults.py runs one kind at a time.

A file of its own so `--dist loadfile` gives it a worker of its own: each run is a third of the fault tests.
"""

from __future__ import annotations

import pytest

from reliability.fault_scenario import DeliveryMode, run_scenario
from testkit.faults import FaultKind, uniform_rates
from tests.reliability.fault_checks import assert_nothing_lost_or_doubled

pytestmark = pytest.mark.slow(seconds=30)


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
