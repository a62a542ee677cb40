"""Amazon Personalize for the replay's traffic, line by line, at the levels of bench/pricing.py.

What Personalize would do: one recommendation request (GetRecommendations on a real-time campaign,
the classic ``aws-user-personalization`` recipe) per decision Nudge makes (the replay's decide
records per event), every event sent with PutEvents, and the model retrained every day. It covers
the recommendation only: the policy, caps, quiet hours, ledger and delivery would still run
(on Kinesis, Lambda and DynamoDB) beside it.

- **Campaign**: billed per TPS-hour, the greater of the campaign's minimum provisioned TPS (1, the
  least allowed) and the TPS it served, hour by hour (AWS measures it in 5-minute slices; the
  hourly traffic shape of bench/pricing.py is smooth, so hours are close enough). Tiered by
  TPS-hours a month: $0.0556 for the first 20,000, $0.0278 for the next 180,000, $0.0139 beyond.
- **Data ingestion** (PutEvents and imports): $0.05 per GB; the event size is the replay's average
  record on the stream.
- **Training**: $0.24 per training hour. Not measured: Personalize counts training hours on its
  own instances and they grow with the dataset; ``TRAINING_HOURS_PER_DAY`` is an assumption (one
  full retrain a day of one training hour), and ``per_extra_training_hour_per_day`` says what each
  further hour a day adds per million events. The recipe's automatic two-hourly updates (new items)
  are not priced.
"""

from __future__ import annotations

import math
from typing import Any

from bench.cost_meter import HOURS_PER_MONTH, RATES, Replay
from bench.pricing import DAILY_PROFILE, LEVELS, PRICES

MIN_PROVISIONED_TPS = 1.0
TRAINING_HOURS_PER_DAY = 1.0
DAYS_PER_MONTH = HOURS_PER_MONTH / 24
TPS_HOUR_TIERS = (
    (20_000.0, RATES["personalize_tps_hour"]),
    (180_000.0, PRICES["personalize_tps_hour_next_180k"]),
    (math.inf, PRICES["personalize_tps_hour_over_200k"]),
)


def tps_hours_cost(tps_hours_month: float) -> float:
    """Dollars for a month's TPS-hours, tier by tier."""
    dollars, left = 0.0, tps_hours_month
    for size, price in TPS_HOUR_TIERS:
        used = min(left, size)
        dollars += used * price
        left -= used
        if left <= 0:
            break
    return dollars


def event_bytes(replay: Replay) -> float:
    """Average size of a record the producer put on the stream (what PutEvents would send)."""
    sizes = [
        len(record.get("Data", b""))
        for call in replay.calls
        if call.service == "Kinesis" and call.operation in ("PutRecords", "PutRecord")
        for record in call.params.get("Records", [call.params])
    ]
    return sum(sizes) / max(1, len(sizes))


def personalize_levels(replay: Replay) -> dict[str, dict[str, Any]]:
    """Each level's lines in $ per million events, with the request rate they follow from."""
    n_events = replay.events + replay.feedback
    per_event = replay.decide_records / n_events
    size = event_bytes(replay)
    out: dict[str, dict[str, Any]] = {}
    for label, rate in LEVELS.items():
        millions_a_day = rate * 86400 / 1e6
        tps = [per_event * rate * share for share in DAILY_PROFILE]
        tps_hours_day = sum(max(MIN_PROVISIONED_TPS, t) for t in tps)
        campaign = tps_hours_cost(tps_hours_day * DAYS_PER_MONTH) / DAYS_PER_MONTH
        ingestion = rate * 86400 * size / 1e9 * RATES["personalize_ingest_gb"]
        training = TRAINING_HOURS_PER_DAY * RATES["personalize_training_hour"]
        lines = {
            "campaign_tps_hours": campaign / millions_a_day,
            "putevents_ingestion": ingestion / millions_a_day,
            "training": training / millions_a_day,
        }
        out[label] = {
            "events_per_day": round(rate * 86400),
            "recommendation_requests_per_s": round(per_event * rate, 3),
            "billed_tps_hours_per_day": round(tps_hours_day, 1),
            "lines": {k: round(v, 4) for k, v in lines.items()},
            "total": round(sum(lines.values()), 3),
            "per_extra_training_hour_per_day": round(RATES["personalize_training_hour"] / millions_a_day, 4),
        }
    return out


def personalize_summary(replay: Replay) -> dict[str, Any]:
    """The report's ``personalize`` entry (its earlier keys kept: the figure at 1M events a day)."""
    n_events = replay.events + replay.feedback
    levels = personalize_levels(replay)
    return {
        "assumption": (
            "classic aws-user-personalization recipe on a real-time campaign (minProvisionedTPS=1), one "
            "GetRecommendations per decision, every event through PutEvents, one 1-hour retrain a day; "
            "traffic shaped as bench/pricing.py DAILY_PROFILE"
        ),
        "recommendation_requests_per_million_events": round(replay.decide_records * 1e6 / n_events),
        "event_bytes": round(event_bytes(replay)),
        "per_million_events": levels["1M"]["total"],
        "idle_per_month": round(MIN_PROVISIONED_TPS * HOURS_PER_MONTH * RATES["personalize_tps_hour"], 2),
        "by_level": levels,
    }
