"""Time context of an event, as the model sees it: hour of day, day of week, gap since the previous event.

Plain numpy so the trainer, the numpy reference and tests agree on one definition; the ONNX graph
recomputes exactly this from raw epoch seconds (``sasrec_graph``), so callers only ever pass times.
Times are UTC: the archive does not carry a reliable local time zone for every user.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

HOURS = 24
DAYS = 7
# floor(log2(gap_seconds + 1)), clipped. Padding has timestamp 0, so "no previous event" is a gap
# counted from 1970: bucket 29-30, far above any real gap (2**25 s is over a year).
GAP_BUCKETS = 32
# 1970-01-01 was a Thursday; +3 makes Monday day 0.
_EPOCH_WEEKDAY_SHIFT = 3


def hour_of_day(ts: NDArray[np.int64]) -> NDArray[np.int64]:
    return (ts // 3600) % HOURS


def day_of_week(ts: NDArray[np.int64]) -> NDArray[np.int64]:
    return (ts // 86400 + _EPOCH_WEEKDAY_SHIFT) % DAYS


def gap_bucket(gap_seconds: NDArray[np.int64]) -> NDArray[np.int64]:
    gap = np.maximum(gap_seconds, 0).astype(np.float64)
    return np.clip(np.floor(np.log2(gap + 1.0)), 0, GAP_BUCKETS - 1).astype(np.int64)


def previous_gaps(ts: NDArray[np.int64]) -> NDArray[np.int64]:
    """Gap to the previous position in the same row (0 before the first column, i.e. padding)."""
    prev = np.zeros_like(ts)
    prev[..., 1:] = ts[..., :-1]
    return np.asarray(ts - prev, dtype=np.int64)


def event_context(ts: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """(hour, weekday, gap bucket) for every position of a [.., L] timestamp window."""
    return hour_of_day(ts), day_of_week(ts), gap_bucket(previous_gaps(ts))


def request_context(
    last_ts: NDArray[np.int64], now: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """(hour, weekday, gap bucket) of the request time ``now`` relative to the newest event."""
    return hour_of_day(now), day_of_week(now), gap_bucket(now - last_ts)
