"""Caps hold under concurrency: parallel deciders, duplicated records and retries."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from runner.stack import Stack
from shared.adapters.push_counters import PushCounters
from shared.domain.caps import CapReached, CapsConfig, Counter, counters_for

NOW = int(datetime(2026, 11, 27, 12, tzinfo=UTC).timestamp())


def counters(stack: Stack, dynamodb: Any) -> PushCounters:
    return PushCounters(dynamodb, stack.outputs["PushCountersTableName"])


def try_reserve(store: PushCounters, decision_id: str, plan: list[Counter]) -> str:
    try:
        store.reserve(decision_id, plan)
    except CapReached as cap:
        return cap.cap
    return "ok"


def test_parallel_deciders_never_exceed_the_daily_cap(stack: Stack, dynamodb: Any, atomic_requests: None) -> None:
    store = counters(stack, dynamodb)
    plan = counters_for("u1", "UTC", NOW, CapsConfig(daily=3, weekly=10, global_per_minute=1000))
    # 40 deciders: 20 distinct decisions, each delivered twice (duplicated stream records).
    ids = [f"d{i % 20}" for i in range(40)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda d: (d, try_reserve(store, d, plan)), ids))
    admitted = {d for d, r in results if r == "ok"}
    assert len(admitted) == 3
    assert store.count(plan[0].key) == 3
    # Every admitted decision keeps getting "ok" on a retry; nobody else does.
    for decision_id, _ in results:
        assert (try_reserve(store, decision_id, plan) == "ok") == (decision_id in admitted)
    assert store.count(plan[0].key) == 3


def test_global_rate_holds_across_users_and_refused_slots_are_given_back(
    stack: Stack, dynamodb: Any, atomic_requests: None
) -> None:
    store = counters(stack, dynamodb)
    caps = CapsConfig(daily=3, weekly=10, global_per_minute=5)
    users = [f"u{i}" for i in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda u: try_reserve(store, f"d-{u}", counters_for(u, "UTC", NOW, caps)), users))
    assert results.count("ok") == 5 and results.count("global_rate") == 7
    assert store.count(f"global#minute#{NOW // 60}") == 5
    # The refused users' daily counters were released: their day is still empty.
    refused = [u for u, r in zip(users, results, strict=True) if r != "ok"]
    assert all(store.count(counters_for(u, "UTC", NOW, caps)[0].key) == 0 for u in refused)


def test_weekly_cap_and_local_calendar_buckets(stack: Stack, dynamodb: Any) -> None:
    store = counters(stack, dynamodb)
    caps = CapsConfig(daily=2, weekly=3, global_per_minute=100)
    day = 24 * 3600
    outcomes = [try_reserve(store, f"d{i}", counters_for("u1", "UTC", NOW + (i // 2) * day, caps)) for i in range(6)]
    # Two a day, until the week's three are used up (Fri 27 Nov: Fri+Sat+Sun are one ISO week).
    assert outcomes == ["ok", "ok", "ok", "weekly_cap", "weekly_cap", "weekly_cap"]
    # One push of an item per cooldown: a second decision about the same item is refused.
    assert try_reserve(store, "d-a", counters_for("u2", "UTC", NOW, caps, item_id="42")) == "ok"
    assert try_reserve(store, "d-b", counters_for("u2", "UTC", NOW + 60, caps, item_id="42")) == "item_cooldown"
    # 23:30 UTC on the 27th is already the 28th in Tokyo: a different local day.
    late = NOW + 11 * 3600 + 1800
    assert counters_for("u1", "Asia/Tokyo", late, caps)[0].key.endswith("2026-11-28")
    assert counters_for("u1", "UTC", late, caps)[0].key.endswith("2026-11-27")


def test_one_small_item_per_user_and_refusals_write_nothing(stack: Stack, dynamodb: Any) -> None:
    """Day, week and cooldowns share one item that old buckets and cooldowns drop out of."""
    store = counters(stack, dynamodb)
    table = dynamodb.Table(stack.outputs["PushCountersTableName"])
    caps = CapsConfig(daily=2, weekly=5, global_per_minute=100, item_cooldown_days=3)
    day = 24 * 3600
    for n in range(60):  # two pushes a day for a month, a new item each time
        at = NOW + (n // 2) * day + (n % 2) * 60
        assert try_reserve(store, f"d{n}", counters_for("u1", "UTC", at, caps, item_id=f"i{n}")) in (
            "ok",
            "weekly_cap",
        )
    item = table.get_item(Key={"counter_key": "user#u1"})["Item"]
    assert len(json.dumps(item, default=str)) < 1024
    assert len(item.get("cool", {})) <= 3 * 2  # only cooldowns still running
    # A refusal leaves the item as it was (no write, so no write units).
    late = NOW + 29 * day + 120
    assert try_reserve(store, "d-extra", counters_for("u1", "UTC", late, caps, item_id="x")) in (
        "daily_cap",
        "weekly_cap",
    )
    assert table.get_item(Key={"counter_key": "user#u1"})["Item"]["v"] == item["v"]


def test_a_retry_is_admitted_after_its_day_moved_on(stack: Stack, dynamodb: Any) -> None:
    store = counters(stack, dynamodb)
    caps = CapsConfig(daily=1, weekly=10, global_per_minute=100)
    before_midnight = NOW + 11 * 3600 + 59 * 60  # 23:59 UTC
    plan = counters_for("u1", "UTC", before_midnight, caps, item_id="7")
    assert try_reserve(store, "d-late", plan) == "ok"
    assert try_reserve(store, "d-next", counters_for("u1", "UTC", before_midnight + 120, caps, item_id="8")) == "ok"
    # The first decision's retry still finds its slot, although the user's day is now the 28th.
    assert try_reserve(store, "d-late", plan) == "ok"
    # A new decision for the old day cannot be counted there any more: refused, never over the cap.
    assert try_reserve(store, "d-other", counters_for("u1", "UTC", before_midnight, caps, item_id="9")) == "daily_cap"
