"""One fault-injection scenario: a small stack run end to end with faults, then audited against its input.

Phase 1 puts profile and behaviour events (with producer duplicates and malformed records) on the
stream and drains every mapping; the pushes that reach a queue subscribed to the push topic are
answered in phase 2 with feedback events (delivered, opened, and a producer duplicate), drained
again. The audit (reliability/audit.py) then compares what storage holds with what was put.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reliability.audit import (
    audit_feedback,
    audit_ingest,
    audit_pushes,
    audit_user_state,
    ledger,
    read_dead_letters,
    user_states,
)
from runner.clock import SimulatedClock
from runner.faults import ConcurrentWrite, FaultInjector
from runner.pipeline import LocalPipeline
from runner.server import create_outbox
from shared.adapters.catalog import Catalog
from shared.domain.catalog import CatalogItem
from shared.domain.contract import AnyEvent, BehaviourEvent, FeedbackEvent, ProfileEvent

ROOT = Path(__file__).resolve().parents[1]
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
BAD_RECORDS: list[bytes] = [
    b"not json",
    b"\xc3\x28 invalid utf-8",
    json.dumps({"schema_version": 2, "event_id": "bad-v2", "user_id": "u1", "type": "view"}).encode(),
    json.dumps({"schema_version": 1, "event_id": "bad-type", "user_id": "u1", "type": "like"}).encode(),
]


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "events_lost": self.events_lost,
            "events_applied_twice": self.events_applied_twice,
            "pushes_sent_twice": self.pushes_sent_twice,
            **{k: v for k, v in self.__dict__.items() if k != "extra"},
            **self.extra,
        }


def behaviour_events(users: Sequence[str], per_user: int) -> list[BehaviourEvent]:
    events = []
    for u_index, user in enumerate(users):
        for k in range(per_user):
            events.append(
                BehaviourEvent(
                    schema_version=1,
                    event_id=f"{user}-b{k}",
                    user_id=user,
                    timestamp=T0 + timedelta(minutes=k, seconds=u_index),
                    type="rate" if k % 3 == 0 else ("view" if k % 3 == 1 else "click"),
                    item_id=ITEMS[(k * 5 + u_index) % len(ITEMS)],
                    value=float(1 + (k + u_index) % 5) if k % 3 == 0 else None,
                )
            )
    return events


def profile_events(users: Sequence[str], no_consent: set[str]) -> list[ProfileEvent]:
    return [
        ProfileEvent(
            schema_version=1,
            event_id=f"p-{user}",
            user_id=user,
            timestamp=T0 - timedelta(seconds=1),
            type="profile",
            consent=user not in no_consent,
            timezone="UTC",
            push_token=f"tok-{user}",
        )
        for user in users
    ]


def _wire(event: AnyEvent) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(event.model_dump_json(exclude_none=True))
    return out


def _put(pipe: LocalPipeline, records: Sequence[tuple[str, dict[str, Any] | bytes]]) -> None:
    key_of = {id(r): k for k, r in records}
    pipe.put_events([r for _, r in records], partition_key=lambda r: key_of[id(r)])


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
) -> ScenarioResult:
    """Run the two phases under ``rates`` (fault kind -> probability) and audit the outcome.

    Every change asks for a decision by default (the template's DecisionIntervalSeconds throttles
    that), so decide, its ledger writes and its sends carry the most traffic to inject faults into.
    """
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nudge-faults-") as tmp:
        if model_dir is None:
            from tests.support.tiny_model import build_tiny_model

            model_dir = build_tiny_model(Path(tmp) / "model", vocab=ITEMS)
        injector = FaultInjector(dict(rates), seed=seed, functions=functions, race=FEEDBACK_RACE)
        names = [f"u{n}" for n in range(1, users + 1)]
        no_consent = {names[-1]}
        profiles = profile_events(names, no_consent)
        behaviours = behaviour_events(names, events_per_user)
        clock = SimulatedClock(T0)
        logging.getLogger("runner").setLevel(logging.ERROR)
        with LocalPipeline(
            ROOT / "template.yaml",
            stack_name=f"nudge-faults-{seed}",
            clock=clock,
            env_overrides={
                "DecideFunction": {"MODEL_DIR": str(model_dir), "POWERTOOLS_LOG_LEVEL": "ERROR"},
                "FeaturesFunction": {"DECISION_INTERVAL_SECONDS": str(decision_interval_seconds)},
            },
            log_dir=log_dir or Path(tmp) / "logs",
            fault_injector=injector,
        ) as pipe:
            Catalog(_resource(pipe), pipe.outputs["CatalogTableName"]).put_many(
                CatalogItem(item_id=i, title=f"Film {i}", genres=GENRES[i]) for i in ITEMS
            )
            outbox = str(create_outbox(pipe, "faults-outbox", [pipe.outputs["PushTopicArn"]])["queue_url"])

            # Phase 1, in rounds a few minutes apart: profiles first, then behaviour; every 7th event
            # is sent twice (a producer retry) and a few malformed records ride along.
            records: list[tuple[str, dict[str, Any] | bytes]] = [(e.user_id, _wire(e)) for e in profiles]
            records += [(names[n % len(names)], bad) for n, bad in enumerate(BAD_RECORDS)]
            quiescent = True
            per_round = -(-events_per_user // rounds)
            for r in range(rounds):
                in_round = [
                    e for e in behaviours if r * per_round <= int(e.event_id.rsplit("-b", 1)[1]) < (r + 1) * per_round
                ]
                for n, event in enumerate(in_round):
                    records.append((event.user_id, _wire(event)))
                    if n % 7 == 3:
                        records.append((event.user_id, _wire(event)))
                clock.set(T0 + timedelta(minutes=(r + 1) * per_round, seconds=30))
                _put(pipe, records)
                records = []
                quiescent = pipe.pump().quiescent and quiescent
            pushes = pipe.receive_json(outbox, max_messages=100_000)

            # Phase 2: the devices answer every push received (once per decision id).
            feedback: list[FeedbackEvent] = []
            answered: set[str] = set()
            for push in pushes:
                decision_id = str(push["decision_id"])
                if decision_id in answered:
                    continue
                answered.add(decision_id)
                decided = datetime.fromtimestamp(int(push["decided_at"]), UTC)
                for offset, outcome in ((1, "delivered"), (60, "opened")):
                    if outcome == "opened" and len(answered) % 2:
                        continue
                    feedback.append(
                        FeedbackEvent(
                            schema_version=1,
                            event_id=f"fb-{decision_id}-{outcome}",
                            user_id=str(push["user_id"]),
                            timestamp=decided + timedelta(seconds=offset),
                            type=outcome,
                            decision_id=decision_id,
                            item_id=str(push["item_id"]),
                        )
                    )
            if feedback:
                clock.set(max(e.epoch_seconds for e in feedback) + 60)
                fb_records: list[tuple[str, dict[str, Any] | bytes]] = [(e.user_id, _wire(e)) for e in feedback]
                fb_records.append((feedback[0].user_id, _wire(feedback[0])))  # a device retry
                _put(pipe, fb_records)
                quiescent = pipe.pump().quiescent and quiescent
            late_pushes = pipe.receive_json(outbox, max_messages=100_000)

            # The audit: storage against input.
            dead = read_dead_letters(pipe)
            states = user_states(pipe)
            ingest = audit_ingest(pipe, pipe.positions, dead.kinesis_positions.get("Ingest", []))
            features = audit_user_state([*profiles, *behaviours], states, GENRES, dead.event_ids("Features"))
            fb = audit_feedback(feedback, states, dead.event_ids("Feedback"))
            consented = {e.user_id for e in profiles if e.consent}
            push_audit = audit_pushes([*pushes, *late_pushes], ledger(pipe), consented)
            stats = pipe.stats()
            return ScenarioResult(
                faults=injector.summary(),
                ingest=ingest.as_dict(),
                features=features.as_dict(),
                feedback=fb.as_dict(),
                pushes=push_audit.as_dict(),
                dead_letters=dead.as_dict(),
                decide_triggers_dead_lettered=len(dead.stream_users.get("Decide", [])),
                invocations={fid: fs.invocations for fid, fs in stats.functions.items()},
                function_errors={fid: fs.errors for fid, fs in stats.functions.items()},
                cold_starts={fid: fs.cold_starts for fid, fs in stats.functions.items()},
                wall_s=round(time.perf_counter() - started, 3),
                quiescent=quiescent,
            )


def _resource(pipe: LocalPipeline) -> Any:
    import boto3

    return boto3.resource("dynamodb", region_name=pipe.region)
