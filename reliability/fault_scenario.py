"""One fault-injection scenario: a small stack run end to end with faults, then audited against its input.

On the scenario driver (testkit/scenario.py), in steps a few minutes apart: profile and behaviour
events (with producer duplicates and malformed records) go on the stream and every mapping is
drained; the pushes that reach the devices (a queue subscribed to the push topic in topic mode, the
devices' SNS endpoints in endpoint mode) are answered by simulated users (delivered, then opened
and converted for every other push, dismissed for the rest, with a device retry now and then).
After the last step the clock runs on for half an hour with the due sweep every five minutes, as
in the cloud, so a push recorded but never handed over is sent once its grace period is over (a
sweep that a fault stopped is followed by the next one). The audit
(testkit/audit.py) then compares what storage holds with what was put.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from shared.domain.catalog import CatalogItem
from shared.domain.contract import Platform, UserEvent
from testkit import traffic
from testkit.audit import audit_feedback, audit_ingest, audit_pushes, audit_user_state
from testkit.devices import EndpointInbox, create_applications, endpoint_parameters
from testkit.faults import ConcurrentWrite, FaultInjector
from testkit.feedback import SimulatedUsers, every_other
from testkit.scenario import Scenario, ScenarioRun, StackSpec, Timeline, run
from testkit.tiny_model import build_tiny_model

T0 = datetime(2026, 11, 27, 10, tzinfo=UTC)  # 10:00 UTC: outside quiet hours for UTC users
ITEMS = [f"i{n}" for n in range(1, 41)]
GENRES = {item: ["Drama"] if n % 2 else ["Comedy", "Romance"] for n, item in enumerate(ITEMS)}
# The conditional_race fault in Nudge: feedback counting an outcome bumps a user-state item's
# version just before features or decide replace it on a version condition.
FEEDBACK_RACE = ConcurrentWrite(
    condition_marker="version = :expected",
    update_expression="ADD version :one SET last_writer = :w",
    values={":one": {"N": "1"}, ":w": {"S": "feedback"}},
    guard="attribute_exists(version)",
)
DUPLICATE_EVERY = 7
MALFORMED_EVERY = 17
DeliveryMode = Literal["topic", "endpoint"]
# Well past the outbox's grace period (OutboxGraceSeconds, 180 s): six 5-minute sweeps.
SETTLE_S = 1800
ACCOUNT, REGION = "123456789012", "us-east-1"


@dataclass
class ScenarioResult:
    faults: dict[str, Any]
    ingest: dict[str, Any]
    features: dict[str, Any]
    feedback: dict[str, Any]
    pushes: dict[str, Any]
    dead_letters: dict[str, Any]
    decide_triggers_dead_lettered: int
    invocations: dict[str, int]
    function_errors: dict[str, int]
    cold_starts: dict[str, int]
    wall_s: float
    quiescent: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def events_lost(self) -> int:
        return int(self.ingest["lost"]) + int(self.features["events_lost"]) + int(self.feedback["lost"])

    @property
    def events_applied_twice(self) -> int:
        return int(self.features["events_applied_twice"]) + int(self.feedback["counted_twice"])

    @property
    def pushes_sent_twice(self) -> int:
        return int(self.pushes["pushes_sent_twice"])

    @property
    def pushes_sent_twice_unexplained(self) -> int:
        """Second sends beyond the crashes right after SNS took a push (the window no sender can close)."""
        return max(0, self.pushes_sent_twice - int(self.faults["sends_interrupted"]))

    @property
    def pushes_recorded_not_sent(self) -> int:
        return int(self.pushes["pushes_recorded_not_sent"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "events_lost": self.events_lost,
            "events_applied_twice": self.events_applied_twice,
            "pushes_sent_twice": self.pushes_sent_twice,
            "pushes_sent_twice_unexplained": self.pushes_sent_twice_unexplained,
            "pushes_recorded_not_sent": self.pushes_recorded_not_sent,
            **{k: v for k, v in self.__dict__.items() if k != "extra"},
            **self.extra,
        }


def scenario_events(users: int, events_per_user: int) -> list[UserEvent]:
    """Each user's profile (the last user never consents; iPhones and Android phones in turn), then
    their behaviour a minute apart, in time order."""
    names = [f"u{n}" for n in range(1, users + 1)]
    platforms: list[Platform] = ["APNS", "FCM"]
    events: list[UserEvent] = [
        traffic.profile(u, T0 - timedelta(seconds=1), consent=u != names[-1], platform=platforms[n % 2])
        for n, u in enumerate(names)
    ]
    behaviour = [
        e
        for n, user in enumerate(names)
        for e in traffic.behaviour(
            user, events_per_user, T0 + timedelta(seconds=n), ITEMS, kinds=("rate", "view", "click"), item_offset=n
        )
    ]
    return events + sorted(behaviour, key=lambda e: e.timestamp)


def run_scenario(
    rates: Mapping[str, float],
    *,
    seed: int = 0,
    users: int = 6,
    events_per_user: int = 12,
    rounds: int = 3,
    model_dir: Path | None = None,
    log_dir: Path | None = None,
    functions: frozenset[str] | None = None,
    decision_interval_seconds: int = 0,
    delivery: DeliveryMode = "topic",
) -> ScenarioResult:
    """Run the scenario under ``rates`` (fault kind -> probability) and audit the outcome.

    Every change asks for a decision by default (the template's DecisionIntervalSeconds throttles
    that), so decide, its ledger writes and its sends carry the most traffic to inject faults into.
    """
    with tempfile.TemporaryDirectory(prefix="nudge-faults-") as tmp:
        model = model_dir or build_tiny_model(Path(tmp) / "model", vocab=ITEMS)
        injector = FaultInjector(dict(rates), seed=seed, functions=functions, race=FEEDBACK_RACE)
        events = scenario_events(users, events_per_user)
        records = traffic.with_noise(
            traffic.records_of(events), malformed_every=MALFORMED_EVERY, duplicate_every=DUPLICATE_EVERY
        )
        stack = StackSpec(
            name=f"nudge-faults-{seed}",
            model_dir=model,
            env={"FeaturesFunction": {"DECISION_INTERVAL_SECONDS": str(decision_interval_seconds)}},
            catalog=[CatalogItem(item_id=i, title=f"Film {i}", genres=GENRES[i]) for i in ITEMS],
            injector=injector,
            log_dir=log_dir or Path(tmp) / "logs",
            log_level="ERROR",
            parameters=endpoint_parameters(ACCOUNT, REGION) if delivery == "endpoint" else {},
        )
        # ``rounds`` steps cover the behaviour; the answers to the last step's pushes come after.
        step_s = 60 * -(-events_per_user // rounds)
        devices = SimulatedUsers(every_other(), retry_every=3)
        scenario = Scenario(stack, records, Timeline(step_s=step_s, settle_s=SETTLE_S), users=devices)
        if delivery == "endpoint":
            # Harness calls run outside any invocation, so the injector leaves them alone.
            scenario.on_start, scenario.inbox = create_applications, EndpointInbox()
        result = run(scenario)
        return audit(result, injector, {e.user_id for e in events if getattr(e, "consent", False)})


def audit(result: ScenarioRun, injector: FaultInjector, consented: set[str]) -> ScenarioResult:
    """Storage against input: nothing here reads a handler's own counters."""
    storage, dead = result.storage, result.storage.dead_letters
    valid = [r.event for r in result.put if r.event is not None and r.kind != "feedback"]
    stats = result.stats
    assert stats is not None
    return ScenarioResult(
        faults=injector.summary(),
        ingest=audit_ingest(storage, result.positions, dead.kinesis_positions.get("Ingest", [])).as_dict(),
        features=audit_user_state(valid, storage.user_states, GENRES, dead.event_ids("Features")).as_dict(),
        feedback=audit_feedback(result.feedback, storage.user_states, dead.event_ids("Feedback")).as_dict(),
        pushes=audit_pushes(result.pushes, storage.ledger, consented).as_dict(),
        dead_letters=dead.as_dict(),
        decide_triggers_dead_lettered=len(dead.stream_users.get("Decide", [])),
        invocations={fid: fs.invocations for fid, fs in stats.functions.items()},
        function_errors={fid: fs.errors for fid, fs in stats.functions.items()},
        cold_starts={fid: fs.cold_starts for fid, fs in stats.functions.items()},
        wall_s=round(result.wall_s, 3),
        quiescent=result.quiescent,
    )
