"""Through the template's own filter: a burst of events asks decide for one decision per interval.

Features marks the user-state writes that ask for a decision; decide's event source mapping passes
only those (template.yaml FilterCriteria), so the events in between cost no decide invocation,
model run, ledger read or ledger write.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from runner.clock import SimulatedClock
from testkit import traffic
from tests.integration.stacks import tiny_model_pipeline
from tests.integration.test_pipeline import ITEMS, T0, scan

# One user's session: events 0, 1, 2, 6, 7 and 13 minutes in, each on the stream as it happens.
MINUTES = (0, 1, 2, 6, 7, 13)


def metric_total(log: Path, name: str) -> float:
    """Sum of one metric over the EMF lines Powertools wrote to a function's log."""
    total = 0.0
    for line in log.read_text().splitlines():
        if '"_aws"' not in line or name not in line:
            continue
        value = json.loads(line[line.index("{") :])[name]
        total += sum(value) if isinstance(value, list) else value
    return total


def decisions_for_a_session(tmp_path: Path, interval: str) -> list[dict[str, object]]:
    with tiny_model_pipeline(tmp_path, "nudge-interval", T0, ITEMS, {"DecisionIntervalSeconds": interval}) as pipe:
        clock = pipe.clock
        assert isinstance(clock, SimulatedClock)
        pipe.start()
        pipe.put_events([json.loads(traffic.profile("u1", T0 - timedelta(minutes=30)).model_dump_json())])
        assert pipe.pump().quiescent
        events = traffic.behaviour("u1", max(MINUTES) + 1, T0, ITEMS)
        for minute in MINUTES:
            clock.set(T0 + timedelta(minutes=minute, seconds=5))
            pipe.put_events([json.loads(events[minute].model_dump_json(exclude_none=True))])
            assert pipe.pump().quiescent
        return [row for row in scan(pipe, "LedgerTableName") if str(row.get("trigger", "")).startswith("state:")]


@pytest.mark.parametrize(("interval", "expected"), [("300", 4), ("0", 7)])
def test_one_decision_per_interval_through_the_stream_filter(tmp_path: Path, interval: str, expected: int) -> None:
    # 300 s: the profile (always asks), then minutes 0, 6 and 13 (1, 2 and 7 fall inside an interval).
    # 0: the profile and every event.
    assert len(decisions_for_a_session(tmp_path, interval)) == expected
    # Operators see the same count in the features function's metrics.
    assert metric_total(tmp_path / "logs" / "FeaturesFunction.log", "DecisionsAsked") == expected
