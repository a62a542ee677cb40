"""Leave-last-out with times, and the fixed-length training windows the transformer learns from.

Plain numpy (no torch), shared by the trainer, the ONNX evaluation and the tests. The split is the
one ``training.evaluate.leave_last_out`` makes (same stable sort, same users); here every item also
carries its timestamp, because the transformer takes the time context of each event and of the
request.

The request time of a held-out target is what decide would know (``REQUEST_OFFSETS``): by default
the newest input event's own time (decide runs seconds after the event that triggered it), also
that + 1 hour (a deferred push), and the target's own timestamp only as an upper bound (decide can
never know when the user will next act).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from shared.model import PAD_INDEX, PAD_TOKEN
from training.context import event_context, request_context
from training.movielens import Interactions

# Request time of a held-out case = newest input event + offset; None = the target's own time (upper bound).
DECISION: Final = "decision"
PLUS_1H: Final = "plus_1h"
TARGET_TIME: Final = "target_time"
REQUEST_OFFSETS: Final[dict[str, int | None]] = {DECISION: 0, PLUS_1H: 3600, TARGET_TIME: None}


def request_time(history_times: NDArray[np.int64], target_time: int, mode: str = DECISION) -> int:
    """When decide would rank this case: the newest history event (+ offset), or the target's time."""
    if mode not in REQUEST_OFFSETS:
        raise ValueError(f"request mode must be one of {sorted(REQUEST_OFFSETS)}, not {mode!r}")
    offset = REQUEST_OFFSETS[mode]
    if offset is None or history_times.size == 0:
        return int(target_time)
    return int(history_times[-1]) + offset


@dataclass(frozen=True)
class UserSeq:
    items: NDArray[np.int64]  # vocabulary indices, oldest first
    times: NDArray[np.int64]  # epoch seconds, aligned with items


@dataclass(frozen=True)
class TimedSplit:
    """Per evaluated user: input history (train part), validation and test targets with their times."""

    users: list[int]
    train: dict[int, UserSeq]  # every user's training part (also users too short to evaluate)
    valid: dict[int, tuple[int, int]]  # user -> (item index, ts)
    test: dict[int, tuple[int, int]]


def vocab_for(item_ids: Sequence[str], codes: NDArray[np.int64]) -> tuple[list[str], NDArray[np.int64]]:
    """``<pad>`` + the given item codes in code order, and a code -> vocabulary index lookup (0 = unknown)."""
    codes = np.unique(codes)
    lookup = np.zeros(len(item_ids), dtype=np.int64)
    lookup[codes] = np.arange(1, codes.size + 1)
    return [PAD_TOKEN, *(item_ids[c] for c in codes)], lookup


def user_sequences(interactions: Interactions, lookup: NDArray[np.int64]) -> dict[int, UserSeq]:
    ordered = interactions.sorted_by_time()
    by_user = np.argsort(ordered.user, kind="stable")
    users, items, times = ordered.user[by_user], lookup[ordered.item[by_user]], ordered.timestamp[by_user]
    bounds = np.flatnonzero(np.diff(users)) + 1
    out: dict[int, UserSeq] = {}
    for u, i, t in zip(np.split(users, bounds), np.split(items, bounds), np.split(times, bounds), strict=True):
        if u.size:
            keep = i != PAD_INDEX
            out[int(u[0])] = UserSeq(i[keep], t[keep])
    return out


def timed_leave_last_out(sequences: dict[int, UserSeq]) -> TimedSplit:
    """Users with fewer than three interactions stay in train and are not evaluated (as ``leave_last_out``)."""
    train: dict[int, UserSeq] = {}
    valid: dict[int, tuple[int, int]] = {}
    test: dict[int, tuple[int, int]] = {}
    for user, seq in sequences.items():
        if seq.items.size < 3:
            train[user] = seq
            continue
        train[user] = UserSeq(seq.items[:-2], seq.times[:-2])
        valid[user] = (int(seq.items[-2]), int(seq.times[-2]))
        test[user] = (int(seq.items[-1]), int(seq.times[-1]))
    return TimedSplit(sorted(test), train, valid, test)


def left_pad(rows: Sequence[NDArray[np.int64]], length: int) -> NDArray[np.int64]:
    """Newest ``length`` values of each row, right-aligned, zero-padded on the left."""
    out = np.zeros((len(rows), length), dtype=np.int64)
    for r, row in enumerate(rows):
        tail = row[-length:] if length else row[:0]
        if tail.size:
            out[r, length - tail.size :] = tail
    return out


@dataclass(frozen=True)
class Windows:
    """Training windows, all [N, L]: inputs with their event context, next-item targets, request context."""

    items: NDArray[np.int64]
    times: NDArray[np.int64]  # epoch seconds of the inputs (0 = padding)
    hour: NDArray[np.int64]
    dow: NDArray[np.int64]
    gap: NDArray[np.int64]
    targets: NDArray[np.int64]
    q_hour: NDArray[np.int64]
    q_dow: NDArray[np.int64]
    q_gap: NDArray[np.int64]
    tgt_time: NDArray[np.int64]  # each step's target timestamp (0 = padding)
    before: NDArray[np.int64]  # [N, P] the user's items before this window, right-aligned (0 = padding)
    future: NDArray[np.int64]  # [N, L, K] the items after each step's target, within the horizon (0 = none)

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def take(self, index: NDArray[np.int64]) -> Windows:
        return Windows(*(getattr(self, name)[index] for name in self.__dataclass_fields__))

    def trimmed(self) -> Windows:
        """Without the leading columns that are padding in every row: positions are right-aligned, so
        the model computes exactly the same for the rest (``SASRec.hidden`` takes any length)."""
        used = int((self.items != 0).sum(axis=1).max(initial=0))
        cut = self.items.shape[1] - max(used, 1)
        if cut <= 0:
            return self
        per_step = {name for name in self.__dataclass_fields__ if name != "before"}
        return Windows(**{k: (v[:, cut:] if k in per_step else v) for k, v in self.__dict__.items()})

    def with_request(self, now: NDArray[np.int64]) -> Windows:
        """The same windows with each step's request time set to ``now`` [N, L] (context recomputed)."""
        q_hour, q_dow, q_gap = request_context(self.times, now)
        return Windows(**{**self.__dict__, "q_hour": q_hour, "q_dow": q_dow, "q_gap": q_gap})


def length_batches(lengths: NDArray[np.int64], batch_size: int, rng: np.random.Generator) -> list[NDArray[np.int64]]:
    """Batches of windows of similar length (shuffled within a length, batches in random order), so a
    batch trimmed of its all-padding columns is short: a catalogue of short sequences trains fast."""
    order = np.lexsort((rng.random(lengths.size), lengths))
    batches = [order[start : start + batch_size] for start in range(0, order.size, batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


# Training request times: the target's own time (the old protocol), the input's own time (decide on the
# stream), or drawn between the two, which is what decide can see: a request at any moment after the
# newest event and before the user's next one (a deferral re-decides later, with the user still away).
TRAIN_REQUESTS = ("target", "decision", "sampled")


def sample_requests(w: Windows, rng: np.random.Generator, stream_share: float = 0.5) -> NDArray[np.int64]:
    """Per step: the input's time with probability ``stream_share``, else log-uniform up to the target's."""
    span = np.maximum(w.tgt_time - w.times, 0).astype(np.float64)
    delay = np.expm1(rng.random(span.shape) * np.log1p(span))
    delay = np.where(rng.random(span.shape) < stream_share, 0.0, np.floor(delay))
    return np.asarray(w.times + delay.astype(np.int64), dtype=np.int64)


def shuffle_ties(sequences: Sequence[UserSeq], rng: np.random.Generator) -> list[UserSeq]:
    """Each sequence with the items of every run of equal timestamps in a random order.

    Ratings saved in the same second have no real order (the file's order breaks the tie), so
    training on one fixed order would teach the model an order that is not there.
    """
    out = []
    for seq in sequences:
        if seq.items.size < 2 or not (np.diff(seq.times) == 0).any():
            out.append(seq)
            continue
        keys = rng.random(seq.items.size)
        order = np.lexsort((keys, seq.times))
        out.append(UserSeq(seq.items[order], seq.times[order]))
    return out


def future_items(seq: UserSeq, count: int, horizon_s: int) -> NDArray[np.int64]:
    """[n, count]: for each position, the items at the next ``count`` positions after it that come at
    most ``horizon_s`` after it (0 = none)."""
    n = seq.items.size
    out = np.zeros((n, count), dtype=np.int64)
    for offset in range(1, count + 1):
        later = np.arange(n) + offset
        ok = later < n
        close = np.zeros(n, dtype=bool)
        close[ok] = seq.times[later[ok]] <= seq.times[ok] + horizon_s
        out[close, offset - 1] = seq.items[later[close]]
    return out


def make_windows(
    sequences: Sequence[UserSeq],
    length: int,
    request: str = "target",
    stride: int | None = None,
    future: int = 0,
    horizon_s: int = 3600,
) -> Windows:
    """Cut each sequence into windows of ``length`` next-item steps, newest window first.

    Every item after the first of a sequence is a target exactly once. With ``stride`` = ``length``
    (the default) windows do not overlap and each starts fresh. A smaller stride overlaps them and
    keeps, in each window, only its newest ``stride`` targets (all of them in a sequence's oldest
    window), so a target sees at least ``length - stride`` earlier items, as decide's window of its
    last ``length`` items always does for a user with that much history.
    ``request`` sets the stored request context ("target" or "decision"; "sampled" is drawn per
    batch by the trainer, stored here as "decision"). ``future`` > 0 also keeps, for every target,
    the ``future`` items after it within ``horizon_s`` seconds of it (``future_items``).
    """
    if request not in TRAIN_REQUESTS:
        raise ValueError(f"request must be one of {TRAIN_REQUESTS}, not {request!r}")
    stride = length if stride is None else stride
    if not 1 <= stride <= length:
        raise ValueError(f"stride must be in 1..{length}, not {stride}")
    inputs: list[NDArray[np.int64]] = []
    in_times: list[NDArray[np.int64]] = []
    targets: list[NDArray[np.int64]] = []
    tgt_times: list[NDArray[np.int64]] = []
    before: list[NDArray[np.int64]] = []
    ahead: list[NDArray[np.int64]] = []
    width = max(future, 1)
    for seq in sequences:
        after = future_items(seq, future, horizon_s) if future else None
        end = seq.items.size
        while end >= 2:
            start = max(0, end - length - 1)
            inputs.append(seq.items[start : end - 1])
            in_times.append(seq.times[start : end - 1])
            kept = seq.items[start + 1 : end].copy()
            if start > 0:
                kept[: max(0, kept.size - stride)] = PAD_INDEX  # taught in an older window, with more context
            targets.append(kept)
            tgt_times.append(np.where(kept != PAD_INDEX, seq.times[start + 1 : end], 0))
            before.append(seq.items[:start])
            rows = np.zeros((end - start - 1, width), dtype=np.int64)
            if after is not None:
                rows = np.where((kept != PAD_INDEX)[:, None], after[start + 1 : end], 0)
            ahead.append(rows)
            if start == 0:
                break
            end -= stride
    items, times = left_pad(inputs, length), left_pad(in_times, length)
    tgt, tgt_t = left_pad(targets, length), left_pad(tgt_times, length)
    hour, dow, gap = event_context(times)
    q_hour, q_dow, q_gap = request_context(times, tgt_t if request == "target" else times)
    earlier = left_pad(before, max([b.size for b in before], default=0) or 1)
    later = np.zeros((len(ahead), length, width), dtype=np.int64)
    for row, block in enumerate(ahead):
        if block.size:
            later[row, length - block.shape[0] :] = block
    return Windows(items, times, hour, dow, gap, tgt, q_hour, q_dow, q_gap, tgt_t, earlier, later)


def query_batch(
    histories: Sequence[UserSeq], now: Sequence[int], length: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """(item window, timestamp window, now) for ranking: what the ONNX graph takes as inputs."""
    items = left_pad([h.items for h in histories], length)
    times = left_pad([h.times for h in histories], length)
    return items, times, np.asarray(now, dtype=np.int64)
