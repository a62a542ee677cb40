"""The scenario driver: one way to run traffic through the local stack, for every scenario.

A scenario is a stack (template.yaml through the runner: catalog, model, optional starting user
states, fault injector, a baseline policy installed into decide), the records to put (the traffic
kit, testkit/traffic.py) and how simulated time runs. Time runs in steps of ``step_s`` seconds from
``start``: at the end of each step the clock is set there, the records due before it are put
(in the order they were planned; in waves, each drained before the next) and every event source
mapping is drained; the schedules fire if ``sweep`` (then the mappings are drained again); pushes
that reached a queue subscribed to the push topic (or, with an ``inbox``, the devices' endpoints)
are collected, and the simulated users (testkit/feedback.py) answer them with feedback records due
at their own times. Steps with nothing due are skipped, unless ``until`` asks for every step up to
a time. With ``settle_s`` the clock then moves on past the last step, firing the schedules every
``settle_every`` seconds for that long (the due sweep sends what the outbox still holds, as it would
every five minutes in the cloud); answers to what it sends are run through like the rest. Storage
is read back at the end (testkit/audit.py's Snapshot), before the stack goes away.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3

from runner.clock import SimulatedClock
from runner.pipeline import LocalPipeline, PipelineHook, PipelineStats
from runner.server import create_outbox
from shared.adapters.catalog import Catalog
from shared.adapters.user_state_codec import encode_items
from shared.domain.catalog import CatalogItem
from shared.domain.contract import FeedbackEvent
from shared.domain.user_state import UserState
from testkit.audit import Snapshot
from testkit.feedback import Push, SimulatedUsers
from testkit.harness_speed import faster_harness
from testkit.queues import receive_json
from testkit.simulated_time import following
from testkit.traffic import Record, wire

ROOT = Path(__file__).resolve().parents[1]
# Starting user states are a snapshot load: decide's stream filter ignores this writer.
BACKFILL_WRITER = "backfill"
Waves = Literal["all", "by_user", "user_rounds"]
# (done, total, counters such as pushes and feedback so far): done and total count the input records
# put, or the steps run when the timeline runs ``until`` a time (both known up front).
Progress = Callable[[int, int, Mapping[str, int]], None]
Hook = Callable[[LocalPipeline], None]
# New pushes since the last call, each with decision_id, user_id, item_id and decided_at.
Inbox = Callable[[LocalPipeline], list[dict[str, Any]]]


@dataclass
class StackSpec:
    """The local stack a scenario runs on."""

    name: str
    model_dir: Path | None = None
    functions: Sequence[str] | None = None
    env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    catalog: Sequence[CatalogItem] = ()
    initial_states: Sequence[UserState] = ()
    injector: PipelineHook | None = None
    # Called inside the decide function's container once the stack is up (a baseline policy's install).
    policy: Callable[[], object] | None = None
    log_dir: Path | None = None
    # POWERTOOLS_LOG_LEVEL for every function (None: the template's).
    log_level: str | None = None
    template: Path = ROOT / "template.yaml"

    def env_overrides(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {"*": {"POWERTOOLS_LOG_LEVEL": self.log_level}} if self.log_level else {}
        if self.model_dir is not None:
            out.setdefault("DecideFunction", {})["MODEL_DIR"] = str(self.model_dir)
        for function, values in self.env.items():
            out.setdefault(function, {}).update(values)
        return out


@dataclass
class Timeline:
    """How simulated time runs (see the module docstring)."""

    step_s: int
    start: int | None = None  # default: the first record's time
    until: int | None = None  # run every step up to this time, even empty ones
    sweep: bool = False
    catch_up: int | None = None  # schedule occurrences fired per jump (None: the runner's)
    waves: Waves = "all"
    max_per_put: int = 0  # split a wave into puts of at most this many records (0: no limit)
    settle_s: int = 0  # after the last step: run the schedules for this long (0: don't)
    settle_every: int = 300  # ... firing them this often (the due sweep's rate)


@dataclass
class Scenario:
    stack: StackSpec
    records: Sequence[Record]
    timeline: Timeline
    users: SimulatedUsers | None = None  # None: pushes are collected, not answered
    progress: Progress | None = None
    read_back: Callable[[LocalPipeline], Snapshot] | None = Snapshot.read
    on_start: Hook | None = None  # after the stack is set up, before the first record
    on_finish: Hook | None = None  # after the last step, before storage is read back
    inbox: Inbox | None = None  # where pushes arrive (None: a queue subscribed to the push topic)
    # (simulated epoch seconds, name, hook): each runs once, at the end of the first step reaching its time;
    # the progress line shows ``name=1`` while it runs.
    checkpoints: Sequence[tuple[int, str, Hook]] = ()


@dataclass
class Step:
    end: int
    records: int
    quiescent: bool
    wall_s: float


@dataclass
class ScenarioRun:
    put: list[Record] = field(default_factory=list)  # every record put, feedback included, in order
    positions: list[tuple[str, str]] = field(default_factory=list)  # (shard, sequence number) of each
    pushes: list[dict[str, Any]] = field(default_factory=list)  # as received from the push topic
    feedback: list[FeedbackEvent] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    sweeps: int = 0
    storage: Snapshot = field(default_factory=Snapshot)
    stats: PipelineStats | None = None
    wall_s: float = 0.0

    @property
    def quiescent(self) -> bool:
        return all(step.quiescent for step in self.steps)

    def count(self, kind: str) -> int:
        return sum(1 for r in self.put if r.kind == kind)

    def kinds(self) -> Counter[str]:
        return Counter(r.kind for r in self.put)

    def position_of(self) -> dict[int, tuple[str, str]]:
        """Record identity (id) -> position, for records planned by the caller."""
        return {id(r): p for r, p in zip(self.put, self.positions, strict=True)}


def progress_total(scenario: Scenario) -> int:
    """What ``Progress`` will count to: steps up to ``until`` if given, else the input records."""
    timeline = scenario.timeline
    if timeline.until is None:
        return len(scenario.records)
    start = timeline.start if timeline.start is not None else min((r.at for r in scenario.records), default=0)
    return max(0, (timeline.until - start) // timeline.step_s)


def run(scenario: Scenario) -> ScenarioRun:
    """Run a scenario end to end; see the module docstring."""
    started = time.perf_counter()
    logging.getLogger("runner").setLevel(logging.ERROR)
    timeline = scenario.timeline
    start = timeline.start if timeline.start is not None else min((r.at for r in scenario.records), default=0)
    clock = SimulatedClock(start)
    spec = scenario.stack
    pipe = LocalPipeline(
        spec.template,
        stack_name=spec.name,
        clock=clock,
        functions=spec.functions,
        env_overrides=spec.env_overrides(),
        parameter_overrides=spec.parameters,
        log_dir=spec.log_dir,
        fault_injector=spec.injector,
    )
    result = ScenarioRun()
    with faster_harness(), pipe, following(clock):
        outbox = _set_up(pipe, scenario)
        if scenario.on_start:
            scenario.on_start(pipe)
        _Steps(pipe, clock, scenario, start, outbox, result).run()
        if scenario.on_finish:
            scenario.on_finish(pipe)
        if scenario.read_back:
            result.storage = scenario.read_back(pipe)
        result.stats = pipe.stats()
    result.wall_s = time.perf_counter() - started
    return result


def _set_up(pipe: LocalPipeline, scenario: Scenario) -> str | None:
    """Catalog, starting user states, the baseline policy and the push outbox; returns its URL."""
    spec, outputs = scenario.stack, pipe.outputs
    dynamodb = boto3.resource("dynamodb", region_name=pipe.region)
    if spec.catalog:
        Catalog(dynamodb, outputs["CatalogTableName"]).put_many(spec.catalog)
    if spec.initial_states:
        with dynamodb.Table(outputs["UserStateTableName"]).batch_writer() as batch:
            for state in spec.initial_states:
                for item in encode_items(state.model_copy(update={"last_writer": BACKFILL_WRITER}), BACKFILL_WRITER):
                    batch.put_item(Item=item)
    if spec.policy is not None:
        pipe.run_inside("DecideFunction", spec.policy)
    if scenario.timeline.catch_up is not None:
        for schedule in pipe.schedules.values():
            schedule.max_catch_up = scenario.timeline.catch_up
    if "PushTopicArn" not in outputs or "DecideFunction" not in pipe.functions:
        return None
    return str(create_outbox(pipe, f"{spec.name}-outbox", [outputs["PushTopicArn"]])["queue_url"])


class _Steps:
    """The step loop: a heap of pending records by (due time, plan order)."""

    def __init__(
        self,
        pipe: LocalPipeline,
        clock: SimulatedClock,
        scenario: Scenario,
        start: int,
        outbox: str | None,
        result: ScenarioRun,
    ) -> None:
        self.pipe, self.clock, self.scenario, self.outbox, self.result = pipe, clock, scenario, outbox, result
        self.timeline = scenario.timeline
        self.start = start
        self.pending: list[tuple[int, int, Record]] = [(r.at, n, r) for n, r in enumerate(scenario.records)]
        heapq.heapify(self.pending)
        self.order = len(self.pending)
        self.total = len(self.pending)
        self.done = 0
        self.total_steps = progress_total(scenario) if self.timeline.until is not None else 0
        self.checkpoints = sorted(scenario.checkpoints, key=lambda checkpoint: checkpoint[0])

    def run(self) -> None:
        end = self.steps_from(self.start + self.timeline.step_s)
        every, until = self.timeline.settle_every, end - self.timeline.step_s + self.timeline.settle_s
        at = end - self.timeline.step_s + every
        while self.timeline.settle_s and at <= until:
            self.settle(at)
            end = self.steps_from(end)  # the answers to what the sweep sent
            at = max(at, int(self.clock.now())) + every

    def steps_from(self, end: int) -> int:
        """Run steps while records are pending (or up to ``until``); returns the next step's end."""
        step_s = self.timeline.step_s
        until = self.timeline.until
        while self.pending or (until is not None and end <= until):
            if until is None and self.pending and self.pending[0][0] >= end:
                # Nothing due in this step: go to the step the next record falls in.
                end = self.start + ((self.pending[0][0] - self.start) // step_s + 1) * step_s
            self.step(end)
            end += step_s
        return end

    def settle(self, at: int) -> None:
        """Fire the schedules at ``at`` (the sweep hands over what the outbox still holds) and drain."""
        self.clock.set(at)
        self.result.sweeps += self.pipe.tick(at)
        quiescent = self.pipe.pump().quiescent
        self.collect_pushes()
        self.result.steps.append(Step(at, 0, quiescent, 0.0))
        self.start = at  # answers to what the sweep sent fall in steps from here

    def step(self, end: int) -> None:
        began = time.perf_counter()
        due: list[tuple[int, Record]] = []
        while self.pending and self.pending[0][0] < end:
            _, n, record = heapq.heappop(self.pending)
            due.append((n, record))
        records = [r for _, r in sorted(due, key=lambda pair: pair[0])]
        self.clock.set(end)
        quiescent = True
        for wave in self.waves(records):
            quiescent = self.put(wave) and quiescent
        if self.timeline.sweep:
            self.result.sweeps += self.pipe.tick(end)
            quiescent = self.pipe.pump().quiescent and quiescent
        self.collect_pushes()
        self.result.steps.append(Step(end, len(records), quiescent, time.perf_counter() - began))
        while self.checkpoints and self.checkpoints[0][0] <= end:
            _, name, hook = self.checkpoints.pop(0)
            self.report(running=name)  # a hook can take a while (the demo's retrain): the bar says why it waits
            hook(self.pipe)
        self.report()

    def waves(self, records: list[Record]) -> Iterator[list[Record]]:
        mode = self.timeline.waves
        if mode == "by_user":
            records = sorted(records, key=lambda r: r.key)  # stable: each key's records keep their order
        rounds = _user_rounds(records) if mode == "user_rounds" else [records]
        limit = self.timeline.max_per_put
        for wave in rounds:
            for first in range(0, len(wave), limit or max(1, len(wave))):
                yield wave[first : first + limit] if limit else wave

    def put(self, wave: list[Record]) -> bool:
        if not wave:
            return True
        # Fresh objects: ``partition_key`` finds each record's key by the identity of what is put.
        data = [dict(r.data) if isinstance(r.data, dict) else bytes(bytearray(r.data)) for r in wave]
        key_of = {id(d): r.key for d, r in zip(data, wave, strict=True)}
        first = len(self.pipe.positions)
        self.pipe.put_events(data, partition_key=lambda d: key_of[id(d)])
        self.result.put.extend(wave)
        self.result.positions.extend(self.pipe.positions[first:])
        self.done += sum(1 for r in wave if r.kind != "feedback")
        quiescent = self.pipe.pump(max_rounds=1_000_000).quiescent
        self.report()
        return quiescent

    def collect_pushes(self) -> None:
        if self.scenario.inbox is not None:
            arrived = self.scenario.inbox(self.pipe)
        elif self.outbox is not None:
            arrived = receive_json(self.pipe, self.outbox)
        else:
            return
        users = self.scenario.users
        for body in arrived:
            self.result.pushes.append(body)
            if users is None:
                continue
            for event in users.answer(Push.of(body)):
                self.result.feedback.append(event)
                record = Record(event.epoch_seconds, wire(event), event.user_id, event, "feedback")
                heapq.heappush(self.pending, (record.at, self.order, record))
                self.order += 1

    def report(self, running: str | None = None) -> None:
        if self.scenario.progress:
            counters = {"pushes": len(self.result.pushes), "feedback": len(self.result.feedback)}
            if running:
                counters[running] = 1
            done, total = (len(self.result.steps), self.total_steps) if self.total_steps else (self.done, self.total)
            self.scenario.progress(min(done, total), total, counters)


def _user_rounds(records: list[Record]) -> list[list[Record]]:
    """The n-th round holds each key's n-th record: every record is its own change for its user."""
    out: list[list[Record]] = []
    seen: Counter[str] = Counter()
    for record in records:
        n = seen[record.key]
        seen[record.key] += 1
        if n == len(out):
            out.append([])
        out[n].append(record)
    return out
