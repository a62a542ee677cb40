"""Progress on the terminal (tqdm): bars with totals known up front, and a ticking line for a phase
whose length nothing can count (a model build in another process), so no phase is silent.

Scenarios running in worker processes report through a queue (``Bars.reporter``) to bars the
parent draws, so two replays side by side keep one readable line each.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

BAR_FORMAT = "{desc:<22} {percentage:3.0f}%|{bar:24}| {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}{postfix}]"


def say(message: str, prefix: str = "") -> None:
    """One line on stderr, above any bar being drawn."""
    tqdm.write(f"{prefix}{message}", file=sys.stderr)


REFRESH_S = 1.0 if sys.stderr.isatty() else 5.0


def bar(label: str, total: int, unit: str = "events", position: int | None = None) -> tqdm[Any]:
    """A bar with its total known up front. Redrawn at most once a second on a terminal, every 5 s
    into a log file; ``live`` keeps it ticking while a long step runs."""
    return tqdm(
        total=total,
        desc=label,
        unit=unit,
        position=position,
        file=sys.stderr,
        bar_format=BAR_FORMAT,
        dynamic_ncols=True,
        mininterval=REFRESH_S,
        leave=True,
    )


@dataclass
class BarReporter:
    """A scenario's Progress callback that updates a bar in this process."""

    line: tqdm[Any]

    def __call__(self, done: int, total: int, counters: Mapping[str, int]) -> None:
        self.line.update(done - self.line.n)
        self.line.set_postfix(counters, refresh=False)


@dataclass
class QueueReporter:
    """A scenario's Progress callback for a worker process: sends (label, done, counters) to the parent."""

    queue: Any
    label: str

    def __call__(self, done: int, total: int, counters: Mapping[str, int]) -> None:
        self.queue.put((self.label, done, dict(counters)))


class Bars:
    """One bar per label, totals given up front; ``reporter(label)`` is picklable for worker processes."""

    def __init__(self, totals: Mapping[str, int], unit: str = "events") -> None:
        self._manager = multiprocessing.Manager()
        self._queue = self._manager.Queue()
        # Positions move the cursor: only on a terminal (a log file gets one line per update instead).
        tty = sys.stderr.isatty()
        self._bars = {
            label: bar(label, total, unit, position=n if tty else None)
            for n, (label, total) in enumerate(totals.items())
        }
        self._started: set[str] = set()
        self._thread = threading.Thread(target=self._drain, daemon=True)

    def reporter(self, label: str) -> QueueReporter:
        return QueueReporter(self._queue, label)

    def _drain(self) -> None:
        while True:
            message = self._queue.get()
            if message is None:
                return
            label, done, counters = message
            line = self._bars[label]
            if label not in self._started:
                # A queued run starts late: its clock (elapsed, rate, time left) starts with it.
                self._started.add(label)
                line.reset(total=line.total)
            line.update(done - line.n)
            line.set_postfix(counters, refresh=False)

    def __enter__(self) -> Bars:
        self._thread.start()
        self._live = live(*self._bars.values())
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.put(None)
        self._thread.join()
        self._live.__exit__(None, None, None)
        self._manager.shutdown()


@contextlib.contextmanager
def live(*lines: tqdm[Any]) -> Iterator[None]:
    """Redraws the lines (their elapsed time) while the block runs, so none stays silent; closes them."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(REFRESH_S):
            for line in lines:
                line.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        for line in lines:
            line.close()


@contextlib.contextmanager
def ticking(label: str) -> Iterator[None]:
    """A line that shows the elapsed time while a phase of unknown length runs."""
    line = tqdm(desc=label, file=sys.stderr, bar_format="{desc:<22} {elapsed} elapsed", mininterval=0)
    started = time.perf_counter()
    with live(line):
        yield
        line.bar_format = "{desc:<22} " + f"done in {time.perf_counter() - started:.1f} s"
