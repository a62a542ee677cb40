"""Load: every MovieLens-100k rating (plus one profile event per user) through the whole pipeline.

Events come from the traffic kit (testkit/traffic.py, as the demo makes them) and go through the
scenario driver (testkit/scenario.py) in steps of six days of event time (the contract refuses
events more than seven days older than their arrival): the simulated clock moves to each step's
end and every mapping is drained, at most 5,000 records a put. Within a step, records are put
user by user (each user's in time order): Kinesis orders per partition key only, so this changes
nothing a user sees, but it keeps a batch to a few users, as a real stream keyed by user mostly is
per shard.

The same replay runs once clean and once with faults; both final user states are compared with
each other and with the reference fold of the input (testkit/audit.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.pipeline import LocalPipeline
from shared.domain.contract import AnyEvent, ProfileEvent, UserEvent
from shared.domain.user_state import UserState
from testkit import traffic
from testkit.audit import Snapshot, audit_pushes, audit_user_state, folded_fields, same_fold
from testkit.faults import FaultInjector
from testkit.scenario import Progress, Scenario, ScenarioRun, StackSpec, Timeline, run
from training.movielens import MovieLens

STEP_S = 6 * 24 * 3600
MAX_PER_PUT = 5000


def movielens_events(data: MovieLens, limit: int | None = None) -> list[UserEvent]:
    """Ratings in time order (the first ``limit``), each user's profile a second before their first."""
    return traffic.with_profiles(list(traffic.rating_events(data.interactions))[:limit], data.users)


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
    events: Sequence[AnyEvent],
    *,
    label: str,
    model_dir: Path,
    injector: FaultInjector | None = None,
    with_decide: bool = True,
    progress: Progress | None = None,
    log_dir: Path | None = None,
) -> LoadRun:
    stack = StackSpec(
        name=f"nudge-load-{label}",
        model_dir=model_dir,
        functions=["IngestFunction", "FeaturesFunction", *(["DecideFunction"] if with_decide else [])],
        catalog=traffic.catalog_items(data.items),
        injector=injector,
        # Handler logs and metrics go to files (stdout would cost more than some handlers).
        log_dir=(log_dir / label) if log_dir else None,
        log_level="ERROR",
    )
    timeline = Timeline(step_s=STEP_S, waves="by_user", max_per_put=MAX_PER_PUT)
    result = run(Scenario(stack, traffic.records_of(events), timeline, progress=progress, read_back=_read_back))
    return _audit(label, events, result, data, injector, with_decide)


def _read_back(pipe: LocalPipeline) -> Snapshot:
    return Snapshot.read(pipe, archive=False)


def _audit(
    label: str,
    events: Sequence[AnyEvent],
    result: ScenarioRun,
    data: MovieLens,
    injector: FaultInjector | None,
    with_decide: bool,
) -> LoadRun:
    genres = {i.item_id: list(i.genres) for i in data.items}
    storage, dead = result.storage, result.storage.dead_letters
    consented = {e.user_id for e in events if isinstance(e, ProfileEvent) and e.consent}
    # Wall time of the steps (stack start and read-back aside), as the load's rate.
    wall_s = sum(step.wall_s for step in result.steps)
    stats = result.stats
    assert stats is not None
    keep = ("invocations", "errors", "timeouts", "records", "cold_starts", "handler_ms_total")
    return LoadRun(
        label=label,
        events_in=len(events),
        wall_s=wall_s,
        events_per_s=len(events) / wall_s if wall_s else 0.0,
        pushes=len(result.pushes),
        faults=injector.summary() if injector else {},
        audit=audit_user_state(events, storage.user_states, genres, dead.event_ids("Features")).as_dict(),
        push_audit=audit_pushes(result.pushes, storage.ledger if with_decide else [], consented).as_dict(),
        dead_letters=dead.as_dict(),
        decide_triggers_dead_lettered=len(dead.stream_users.get("Decide", [])),
        functions={fid: {k: v for k, v in fs.summary().items() if k in keep} for fid, fs in stats.functions.items()},
        final_state=storage.user_states,
    )


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
