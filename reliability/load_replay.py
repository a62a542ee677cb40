"""Load: every MovieLens-100k rating (plus one profile event per user) through the whole pipeline.

Events are made as the demo makes them (demo/movielens_events.py) and put on the stream in
chunks that span at most six days of event time (the contract refuses events more than seven
days older than their arrival); the simulated clock moves to each chunk's last event and every
mapping is drained before the next chunk. Within a chunk, events are put user by user (each
user's in time order): Kinesis orders per partition key only, so this changes nothing a user
sees, but it keeps a batch to a few users, as a real stream keyed by user mostly is per shard.

The same replay runs once clean and once with faults; both final user states are compared with
each other and with the reference fold of the input (reliability/audit.py).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3

from demo.movielens_events import catalog_items, profile_event, rating_events
from reliability.audit import (
    audit_pushes,
    audit_user_state,
    folded_fields,
    ledger,
    read_dead_letters,
    same_fold,
    user_states,
)
from runner.clock import SimulatedClock
from runner.faults import FaultInjector
from runner.pipeline import LocalPipeline
from runner.server import create_outbox
from shared.adapters.catalog import Catalog
from shared.domain.contract import BehaviourEvent, ProfileEvent
from shared.domain.user_state import UserState
from training.movielens import MovieLens

ROOT = Path(__file__).resolve().parents[1]
CHUNK_SPAN = timedelta(days=6)
CHUNK_EVENTS = 5000

Event = BehaviourEvent | ProfileEvent


def movielens_events(data: MovieLens, limit: int | None = None) -> list[Event]:
    """Ratings in time order (the first ``limit``), each user's profile a second before their first."""
    ratings = list(rating_events(data.interactions))[:limit]
    users = {u.user_id: u for u in data.users}
    first: dict[str, BehaviourEvent] = {}
    for event in ratings:
        first.setdefault(event.user_id, event)
    out: list[tuple[int, int, Event]] = []
    for n, event in enumerate(ratings):
        if first[event.user_id] is event:
            out.append((event.epoch_seconds - 1, 2 * n, profile_event(users[event.user_id], _minus_1s(event))))
        out.append((event.epoch_seconds, 2 * n + 1, event))
    return [e for _, _, e in sorted(out, key=lambda t: (t[0], t[1]))]


def _minus_1s(event: BehaviourEvent) -> Any:
    return event.timestamp - timedelta(seconds=1)


def chunks(events: Sequence[Event]) -> list[list[Event]]:
    """Consecutive slices spanning at most CHUNK_SPAN and CHUNK_EVENTS; each slice grouped by user."""
    out: list[list[Event]] = []
    current: list[Event] = []
    for event in events:
        if current and (len(current) >= CHUNK_EVENTS or event.timestamp - current[0].timestamp > CHUNK_SPAN):
            out.append(current)
            current = []
        current.append(event)
    if current:
        out.append(current)
    # Stable sort: each user's events stay in time order.
    return [sorted(chunk, key=lambda e: int(e.user_id)) for chunk in out]


@dataclass
class LoadRun:
    label: str
    events_in: int = 0
    wall_s: float = 0.0
    events_per_s: float = 0.0
    pushes: int = 0
    faults: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    push_audit: dict[str, Any] = field(default_factory=dict)
    dead_letters: dict[str, Any] = field(default_factory=dict)
    decide_triggers_dead_lettered: int = 0
    functions: dict[str, Any] = field(default_factory=dict)
    final_state: dict[str, UserState] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "final_state"}


def replay(
    data: MovieLens,
    events: Sequence[Event],
    *,
    label: str,
    model_dir: Path,
    injector: FaultInjector | None = None,
    with_decide: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
    log_dir: Path | None = None,
) -> LoadRun:
    run = LoadRun(label=label, events_in=len(events))
    genres = {i.item_id: list(i.genres) for i in data.items}
    parts = chunks(events)
    functions = ["IngestFunction", "FeaturesFunction", *(["DecideFunction"] if with_decide else [])]
    logging.getLogger("runner").setLevel(logging.ERROR)
    clock = SimulatedClock(parts[0][0].timestamp if parts else 0)
    with LocalPipeline(
        ROOT / "template.yaml",
        stack_name=f"nudge-load-{label}",
        clock=clock,
        functions=functions,
        env_overrides={"DecideFunction": {"MODEL_DIR": str(model_dir), "POWERTOOLS_LOG_LEVEL": "ERROR"}},
        fault_injector=injector,
        # Handler logs and metrics go to files (stdout would cost more than some handlers).
        log_dir=(log_dir / label) if log_dir else None,
    ) as pipe:
        Catalog(boto3.resource("dynamodb", region_name=pipe.region), pipe.outputs["CatalogTableName"]).put_many(
            catalog_items(data.items)
        )
        outbox = str(create_outbox(pipe, f"load-outbox-{label}", [pipe.outputs["PushTopicArn"]])["queue_url"])
        received: list[dict[str, Any]] = []
        started = time.perf_counter()
        done = 0
        for part in parts:
            clock.set(max(e.epoch_seconds for e in part) + 1)
            pipe.put_events([json.loads(e.model_dump_json(exclude_none=True)) for e in part], partition_key="user_id")
            pipe.pump(max_rounds=1_000_000)
            received += pipe.receive_json(outbox, max_messages=1_000_000)
            done += len(part)
            if progress:
                progress(label, done, len(events))
        run.wall_s = time.perf_counter() - started
        run.events_per_s = run.events_in / run.wall_s if run.wall_s else 0.0
        dead = read_dead_letters(pipe)
        states = user_states(pipe)
        run.final_state = states
        run.audit = audit_user_state(events, states, genres, dead.event_ids("Features")).as_dict()
        consented = {e.user_id for e in events if isinstance(e, ProfileEvent) and e.consent}
        run.push_audit = audit_pushes(received, ledger(pipe) if with_decide else [], consented).as_dict()
        run.pushes = len(received)
        run.dead_letters = dead.as_dict()
        run.decide_triggers_dead_lettered = len(dead.stream_users.get("Decide", []))
        run.faults = injector.summary() if injector else {}
        stats = pipe.stats()
        run.functions = {
            fid: {
                k: v
                for k, v in fs.summary().items()
                if k in ("invocations", "errors", "timeouts", "records", "cold_starts", "handler_ms_total")
            }
            for fid, fs in stats.functions.items()
        }
    return run


def compare_states(a: Mapping[str, UserState], b: Mapping[str, UserState]) -> dict[str, Any]:
    """Users whose folded state differs between two runs (fold fields only; bookkeeping aside)."""
    differing = sorted(u for u in set(a) | set(b) if u not in a or u not in b or not same_fold(a[u], b[u]))
    return {
        "users_compared": len(set(a) | set(b)),
        "users_differing": len(differing),
        "examples": {u: _diff(a.get(u), b.get(u)) for u in differing[:3]},
    }


def _diff(a: UserState | None, b: UserState | None) -> dict[str, Any]:
    if a is None or b is None:
        return {"missing_in": "first" if a is None else "second"}
    fa, fb = folded_fields(a), folded_fields(b)
    return {k: [str(fa[k])[:80], str(fb[k])[:80]] for k in fa if fa[k] != fb.get(k)}
