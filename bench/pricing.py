"""Both DynamoDB capacity modes priced from one replay, at the traffic levels of issue 16.

The replay (bench/cost_model.py) measures what each table consumes per event (bench/cost_meter.py
counts write and read units per request). On-demand bills those units per request. Provisioned
bills capacity per hour, which target-tracking auto scaling (template.yaml, CapacityMode=provisioned)
keeps at ``consumed / target utilisation``, never below the minimum. So at an average rate of
``r`` events/s, a table using ``u`` units per event is provisioned, hour by hour over a day,

    provisioned(h) = max(minimum, max(consumed(h), consumed(h - 1)) / target)
    consumed(h)    = u x r x profile(h)

where ``profile`` is the assumed daily traffic shape (``DAILY_PROFILE``: a cosine with a
peak-to-average of 1.5, trough 0.5) and ``max(.., h - 1)`` stands for scaling down an hour late
(target tracking scales down only after 15 minutes below target, and a few times an hour at
most; scaling up within minutes, the table's burst credit - 300 s of unused capacity - covering
the ramp). Within an hour the 1/target headroom (43 % at 70 %) absorbs the minute-to-minute
spikes. The minimum and target are the template's defaults; the indexes get capacity of their own.

Everything else in the bill (Lambda, S3, SNS, Kinesis payload units, logs) is the same in both modes
and is taken from the on-demand line items at the same rate (``cost_meter.at_rate``). The fixed
monthly costs (Kinesis shard-hours, alarms, the key) stay under idle, as before; provisioned
capacity, minimum included, is part of the per-event figure because it is what carries the traffic.
Amazon Personalize for the same traffic: bench/personalize_pricing.py.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from bench.cost_meter import HOURS_PER_MONTH, RATES, Call, Replay

# us-east-1 list prices (aws.amazon.com/dynamodb/pricing/provisioned/, .../personalize/pricing/),
# as last known to the author: 2025-01; the build machine cannot browse them. Check before relying on them.
PRICES_DATE = "2025-01 (us-east-1 list prices, aws.amazon.com/dynamodb/pricing and /personalize/pricing; unverified)"
PRICES = {
    "dynamodb_wcu_hour": 0.00065,  # provisioned, standard table class
    "dynamodb_rcu_hour": 0.00013,
    # Personalize real-time campaign, TPS-hours a month by tier (the first tier is cost_meter.RATES').
    "personalize_tps_hour_next_180k": 0.0278,
    "personalize_tps_hour_over_200k": 0.0139,
}
# The traffic levels of issue 16 (events per second, averaged over the day).
LEVELS = {"86K": 1.0, "1M": 11.574, "8.6M": 100.0}
# docs/scale.md's rates (events per second), beyond the replay's: batches are full there.
SCALE_RATES = (100.0, 10_000.0, 100_000.0)
PEAK_TO_AVERAGE = 1.5
PEAK_HOUR = 19  # UTC; only the shape matters here
DAILY_PROFILE = tuple(1.0 + (PEAK_TO_AVERAGE - 1.0) * math.cos(2 * math.pi * (h - PEAK_HOUR) / 24) for h in range(24))
# Tables (outputs without "TableName") with a global secondary index, and the attribute that puts an
# item on it: a write that sets or removes it writes the index too (KEYS_ONLY: 1 unit each).
INDEXES = {"UserState": ("due-index", "due_shard"), "Ledger": ("outbox-index", "outbox_shard")}


def scaling_defaults(template: Mapping[str, Any]) -> dict[str, float]:
    """The auto-scaling assumptions, from template.yaml's parameter defaults."""
    params = template["Parameters"]
    return {
        "target_utilisation": float(params["ScalingTargetUtilization"]["Default"]) / 100,
        "min_read": float(params["ReadCapacityMin"]["Default"]),
        "min_write": float(params["WriteCapacityMin"]["Default"]),
    }


def units_by_table(replay: Replay) -> dict[str, dict[str, float]]:
    """Write and read units per event of each table and index, as measured (index writes estimated)."""
    n_events = replay.events + replay.feedback
    names = list(replay.tables.values()) + [f"{t}/{index}" for t, (index, _) in INDEXES.items()]
    units: defaultdict[str, dict[str, float]] = defaultdict(lambda: {"write": 0.0, "read": 0.0})
    for name in names:
        units[name] = {"write": 0.0, "read": 0.0}
    for call in replay.calls:
        if call.service != "DynamoDB":
            continue
        tables = _tables_of(call, replay.tables)
        for table in tables:
            units[table]["write"] += call.wru / len(tables)
            units[table]["read"] += call.rru / len(tables)
            if table in INDEXES and _touches_index(call, INDEXES[table][1]):
                units[f"{table}/{INDEXES[table][0]}"]["write"] += 1
    return {k: {io: v / n_events for io, v in u.items()} for k, u in sorted(units.items())}


def _tables_of(call: Call, names: Mapping[str, str]) -> list[str]:
    physical = list(call.params.get("RequestItems", {})) or [call.params.get("TableName", "")]
    return [names.get(n, n) for n in physical]


def _touches_index(call: Call, attribute: str) -> bool:
    """A put carrying the index key, or an update setting or removing it (1 index write unit each)."""
    if call.operation == "PutItem":
        return attribute in call.params.get("Item", {})
    if call.operation == "UpdateItem":
        return attribute in str(call.params.get("UpdateExpression", ""))
    return False


def provisioned_day(
    units: Mapping[str, Mapping[str, float]], events_per_s: float, scaling: Mapping[str, float]
) -> dict[str, float]:
    """Dollars a day of provisioned capacity per table at ``events_per_s`` (average), hour by hour."""
    out: dict[str, float] = {}
    for table, per_event in units.items():
        dollars = 0.0
        for io, price, minimum in (
            ("write", PRICES["dynamodb_wcu_hour"], scaling["min_write"]),
            ("read", PRICES["dynamodb_rcu_hour"], scaling["min_read"]),
        ):
            consumed = [per_event[io] * events_per_s * share for share in DAILY_PROFILE]
            for h, now in enumerate(consumed):
                held = max(now, consumed[h - 1]) / scaling["target_utilisation"]
                dollars += max(minimum, math.ceil(held)) * price
        out[table] = dollars
    return out


def _level(
    rate: float, row: Mapping[str, Any], units: Mapping[str, Mapping[str, float]], scaling: Mapping[str, float]
) -> dict[str, Any]:
    """One traffic level in both modes: what does not depend on the mode from ``row`` (cost_meter.at_rate)."""
    items = row["dollars_per_million_events"]
    dynamo = items.get("dynamodb_wru", 0.0) + items.get("dynamodb_rru", 0.0)
    index_wru = sum(u["write"] for table, u in units.items() if "/" in table)
    index_on_demand = index_wru * 1e6 * RATES["dynamodb_wru"]
    per_day = provisioned_day(units, rate, scaling)
    per_million = 1e6 / (rate * 86400)
    capacity = sum(per_day.values()) * per_million
    return {
        "events_per_day": round(rate * 86400),
        "on_demand": round(row["total"] + index_on_demand, 3),
        "provisioned": round(row["total"] - dynamo + capacity, 3),
        "same_in_both_modes": round(row["total"] - dynamo, 4),
        "on_demand_dynamodb": round(dynamo + index_on_demand, 4),
        "on_demand_index_writes": round(index_on_demand, 4),
        "provisioned_dynamodb": round(capacity, 4),
        "provisioned_dynamodb_by_table": {t: round(d * per_million, 4) for t, d in per_day.items()},
    }


def capacity_modes(
    replay: Replay, by_traffic: Sequence[Mapping[str, Any]], template: Mapping[str, Any]
) -> dict[str, Any]:
    """$ per million events on-demand and provisioned at each level (``dollars``), with how they were reached;
    ``at_scale``: the same at the rates of docs/scale.md (beyond ``by_traffic``'s rates every batch is
    full, so its busiest row gives what does not depend on the mode)."""
    scaling = scaling_defaults(template)
    units = units_by_table(replay)
    details = {
        label: _level(rate, next(t for t in by_traffic if math.isclose(t["events_per_s"], rate)), units, scaling)
        for label, rate in LEVELS.items()
    }
    busiest = max(by_traffic, key=lambda t: float(t["events_per_s"]))
    at_scale = {
        f"{rate:g}/s": _level(
            rate, next((t for t in by_traffic if math.isclose(t["events_per_s"], rate)), busiest), units, scaling
        )
        for rate in SCALE_RATES
    }
    minimum_month = (
        len(units)
        * HOURS_PER_MONTH
        * (scaling["min_write"] * PRICES["dynamodb_wcu_hour"] + scaling["min_read"] * PRICES["dynamodb_rcu_hour"])
    )
    return {
        "dollars": {mode: {k: v[mode] for k, v in details.items()} for mode in ("provisioned", "on_demand")},
        "assumptions": {
            "target_utilisation": scaling["target_utilisation"],
            "peak_to_average": PEAK_TO_AVERAGE,
            "daily_profile": "1 + 0.5 cos(2 pi (h - 19) / 24): peak 1.5x the average at 19:00, trough 0.5x",
            "scale_down_lag_hours": 1,
            "minimum_units_per_table_and_index": {"read": scaling["min_read"], "write": scaling["min_write"]},
            "index_writes": "1 unit per put carrying, or update setting or removing, the index key (estimated)",
            "excluded": "fixed monthly costs (Kinesis shard-hours, alarms, KMS key): see idle_per_month",
        },
        "units_per_event": {t: {io: round(v, 4) for io, v in u.items()} for t, u in units.items()},
        "by_level": details,
        "at_scale": at_scale,
        # Billed Lambda seconds (wall, with the calls' assumed in-region latency) = a + b x records, per
        # stream invocation of each function: what docs/scale.md sizes concurrency and shards from.
        "lambda_fit": {
            fid: {
                "per_invocation_s": round(use.wall_per_invocation_s, 4),
                "per_record_s": round(use.wall_per_record_s, 5),
                "records": use.records,
                "invocations": use.invocations,
                "memory_mb": use.memory_mb,
            }
            for fid, use in replay.functions.items()
            if use.records
        },
        "provisioned_idle_per_month": {
            "minimum_capacity": round(minimum_month, 2),
            "throttle_alarms": round(_throttle_alarms(template) * RATES["cloudwatch_alarm_month"], 2),
        },
        "prices_date": PRICES_DATE,
        "prices": PRICES,
    }


def _throttle_alarms(template: Mapping[str, Any]) -> int:
    """Alarm metrics billed in provisioned mode only (a metric-math alarm is billed per metric)."""
    count = 0
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::CloudWatch::Alarm" and resource.get("Condition") == "Provisioned":
            count += max(1, sum(1 for m in resource["Properties"].get("Metrics", []) if "MetricStat" in m))
    return count


def console_lines(report: Mapping[str, Any]) -> list[str]:
    """The three ways to pay, for the console summary of bench/cost_model.py."""
    from testkit.text import table

    dollars = report["dollars_per_million_events"]
    modes = report["capacity_modes"]
    assumptions = modes["assumptions"]
    rows = [
        ["Nudge, DynamoDB provisioned (auto scaling)", *(dollars["provisioned"][k] for k in LEVELS)],
        ["Nudge, DynamoDB on-demand", *(dollars["on_demand"][k] for k in LEVELS)],
        ["Amazon Personalize (recommendations only)", *(dollars["personalize"][k] for k in LEVELS)],
    ]
    idle = modes["provisioned_idle_per_month"]
    return [
        "",
        f"Dollars per million events by capacity mode ({PRICES_DATE}):",
        table(["", *(f"{k} events/day" for k in LEVELS)], rows),
        f"Provisioned: target utilisation {assumptions['target_utilisation']:.0%}, peak-to-average "
        f"{assumptions['peak_to_average']}, minimum 1 unit per table and index (${idle['minimum_capacity']} a month "
        f"idle, throttle alarms ${idle['throttle_alarms']}); index writes included in both modes.",
    ]
