"""bench/pricing.py and bench/personalize_pricing.py on a small hand-made replay with known answers."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench.cost_meter import RATES, Call, Replay
from bench.personalize_pricing import personalize_levels, personalize_summary, tps_hours_cost
from bench.pricing import DAILY_PROFILE, LEVELS, PRICES, capacity_modes, provisioned_day, units_by_table
from runner.deploy import load_yaml
from tests.runner.runner_testlib import REAL_TEMPLATE

TABLES = {
    "state-t": "UserState",
    "ledger-t": "Ledger",
    "catalog-t": "Catalog",
    "counters-t": "PushCounters",
    "idem-t": "Idempotency",
    "ids-t": "EventIds",
}


def _replay() -> Replay:
    """100 events, each a 2-unit user-state write and a half-unit catalog read; 10 decisions, each a
    ledger push put on the outbox index and taken off it; 200-byte records on the stream."""
    calls: list[Call] = []
    for _ in range(100):
        calls.append(Call("DynamoDB", "PutItem", {"TableName": "state-t", "Item": {}}, wru=2.0, function="F"))
        calls.append(Call("DynamoDB", "GetItem", {"TableName": "catalog-t"}, rru=0.5, function="F"))
    for _ in range(10):
        put = {"TableName": "ledger-t", "Item": {"outbox_shard": {"S": "o-1"}}}
        calls.append(Call("DynamoDB", "PutItem", put, wru=1.0, function="D"))
        update = {"TableName": "ledger-t", "UpdateExpression": "SET #s = :sent REMOVE outbox_shard, outbox_at"}
        calls.append(Call("DynamoDB", "UpdateItem", update, wru=1.0, function="D"))
    calls.append(Call("Kinesis", "PutRecords", {"Records": [{"Data": b"x" * 200}] * 100}))
    return Replay(events=90, feedback=10, decide_records=10, calls=calls, tables=TABLES)


def _by_traffic(dynamo_per_million: float) -> list[dict[str, Any]]:
    return [
        {
            "events_per_s": rate,
            "total": 1.0 + dynamo_per_million,
            "dollars_per_million_events": {"lambda_request": 1.0, "dynamodb_wru": dynamo_per_million},
        }
        for rate in LEVELS.values()
    ]


def test_units_per_event_by_table_and_index() -> None:
    units = units_by_table(_replay())
    assert units["UserState"] == {"write": 2.0, "read": 0.0}
    assert units["Catalog"] == {"write": 0.0, "read": 0.5}
    assert units["Ledger"]["write"] == pytest.approx(0.2)
    # Each push goes on the outbox index and comes off it: two index writes per push.
    assert units["Ledger/outbox-index"]["write"] == pytest.approx(0.2)
    assert units["UserState/due-index"] == {"write": 0.0, "read": 0.0}
    assert len(units) == 8


def test_the_profile_averages_one_and_peaks_at_the_stated_factor() -> None:
    assert sum(DAILY_PROFILE) / 24 == pytest.approx(1.0)
    assert max(DAILY_PROFILE) == pytest.approx(1.5) and min(DAILY_PROFILE) == pytest.approx(0.5)


def test_provisioned_capacity_is_consumed_over_target_never_below_the_minimum() -> None:
    scaling = {"target_utilisation": 0.7, "min_read": 1.0, "min_write": 1.0}
    idle = provisioned_day({"T": {"write": 0.0, "read": 0.0}}, 1.0, scaling)
    assert idle["T"] == pytest.approx(24 * (PRICES["dynamodb_wcu_hour"] + PRICES["dynamodb_rcu_hour"]))
    # 2 units per event at 1,000 events/s: 2,000 consumed on average, about 2,000 / 0.7 provisioned.
    busy = provisioned_day({"T": {"write": 2.0, "read": 0.0}}, 1000.0, scaling)["T"]
    writes = busy - 24 * PRICES["dynamodb_rcu_hour"]
    average_wcu = writes / 24 / PRICES["dynamodb_wcu_hour"]
    assert 2000 / 0.7 < average_wcu < 1.2 * 2000 / 0.7  # the hour-late scale-down holds a little more


def test_both_modes_and_personalize_at_every_level() -> None:
    replay = _replay()
    template = load_yaml(REAL_TEMPLATE)
    dynamo = 2.0 * 1e6 * RATES["dynamodb_wru"]
    modes = capacity_modes(replay, _by_traffic(dynamo), template)
    assert set(modes["dollars"]) == {"provisioned", "on_demand"}
    for label, rate in LEVELS.items():
        # On-demand adds the index writes (0.2 per event) to what the meter priced.
        index = 0.2 * 1e6 * RATES["dynamodb_wru"]
        assert modes["dollars"]["on_demand"][label] == pytest.approx(1.0 + dynamo + index, abs=1e-3)
        level = modes["by_level"][label]
        assert level["same_in_both_modes"] == pytest.approx(1.0)
        assert modes["dollars"]["provisioned"][label] == pytest.approx(1.0 + level["provisioned_dynamodb"], abs=1e-3)
        assert level["events_per_day"] == round(rate * 86400)
    # The minimums weigh most at low traffic: per event, provisioned DynamoDB falls with the rate.
    per_level = [modes["by_level"][k]["provisioned_dynamodb"] for k in LEVELS]
    assert per_level == sorted(per_level, reverse=True)
    assert modes["assumptions"]["target_utilisation"] == 0.7
    assert modes["provisioned_idle_per_month"]["throttle_alarms"] == pytest.approx(1.6)


def test_personalize_lines() -> None:
    replay = _replay()
    levels = personalize_levels(replay)
    at_86k = levels["86K"]
    # 0.1 requests per event at 1 event/s: 0.1 TPS, below the minimum of 1 TPS every hour.
    assert at_86k["billed_tps_hours_per_day"] == 24.0
    assert at_86k["lines"]["campaign_tps_hours"] == pytest.approx(24 * 0.0556 / 0.0864, rel=1e-3)
    assert at_86k["lines"]["training"] == pytest.approx(0.24 / 0.0864, rel=1e-3)
    assert at_86k["lines"]["putevents_ingestion"] == pytest.approx(1e6 * 200 / 1e9 * 0.05, rel=1e-3)
    assert levels["8.6M"]["recommendation_requests_per_s"] == 10.0
    assert levels["8.6M"]["billed_tps_hours_per_day"] == pytest.approx(240.0, rel=1e-6)
    summary = personalize_summary(replay)
    assert summary["per_million_events"] == levels["1M"]["total"] and summary["idle_per_month"] == 40.59


def test_tps_hours_are_tiered() -> None:
    assert tps_hours_cost(10_000) == pytest.approx(10_000 * 0.0556)
    assert tps_hours_cost(200_000) == pytest.approx(20_000 * 0.0556 + 180_000 * 0.0278)
    assert tps_hours_cost(300_000) == pytest.approx(20_000 * 0.0556 + 180_000 * 0.0278 + 100_000 * 0.0139)
    assert math.isclose(tps_hours_cost(0), 0.0)
