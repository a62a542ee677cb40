"""Leave-last-out with times, and the fixed-length training windows the transformer learns from.

Plain numpy (no torch), shared by the trainer, the ONNX evaluation and the tests. The split is the
one ``training.evaluate.leave_last_out`` makes (same stable sort, same users); here every item also
carries its timestamp, because the transformer takes the time context of each event and of the
request (for a held-out target, the request time is the target's own timestamp).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from shared.model import PAD_INDEX, PAD_TOKEN
from training.context import event_context, request_context
from training.movielens import Interactions


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
    hour: NDArray[np.int64]
    dow: NDArray[np.int64]
    gap: NDArray[np.int64]
    targets: NDArray[np.int64]
    q_hour: NDArray[np.int64]
    q_dow: NDArray[np.int64]
    q_gap: NDArray[np.int64]
    tgt_time: NDArray[np.int64]  # the request time of each step (its target's timestamp)
    before: NDArray[np.int64]  # [N, P] the user's items before this window, right-aligned (0 = padding)

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def take(self, index: NDArray[np.int64]) -> Windows:
        return Windows(*(getattr(self, name)[index] for name in self.__dataclass_fields__))


def make_windows(sequences: Sequence[UserSeq], length: int) -> Windows:
    """Cut each sequence into windows of ``length`` next-item steps, newest window first.

    Every item after the first of a sequence is a target exactly once. Each window starts fresh
    (the event before it is outside, as at serving time, where decide passes its last items only).
    """
    inputs: list[NDArray[np.int64]] = []
    in_times: list[NDArray[np.int64]] = []
    targets: list[NDArray[np.int64]] = []
    tgt_times: list[NDArray[np.int64]] = []
    before: list[NDArray[np.int64]] = []
    for seq in sequences:
        end = seq.items.size
        while end >= 2:
            start = max(0, end - length - 1)
            inputs.append(seq.items[start : end - 1])
            in_times.append(seq.times[start : end - 1])
            targets.append(seq.items[start + 1 : end])
            tgt_times.append(seq.times[start + 1 : end])
            before.append(seq.items[:start])
            end -= length
    items, times = left_pad(inputs, length), left_pad(in_times, length)
    tgt, tgt_t = left_pad(targets, length), left_pad(tgt_times, length)
    hour, dow, gap = event_context(times)
    q_hour, q_dow, q_gap = request_context(times, tgt_t)
    earlier = left_pad(before, max([b.size for b in before], default=0) or 1)
    return Windows(items, hour, dow, gap, tgt, q_hour, q_dow, q_gap, tgt_t, earlier)


def query_batch(
    histories: Sequence[UserSeq], now: Sequence[int], length: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """(item window, timestamp window, now) for ranking: what the ONNX graph takes as inputs."""
    items = left_pad([h.items for h in histories], length)
    times = left_pad([h.times for h in histories], length)
    return items, times, np.asarray(now, dtype=np.int64)
