"""Replays the MovieLens replay period through the local pipeline for one push policy.

The training period (earliest 80 % of time) becomes a user-state snapshot and the model; the
replay period goes through the stream in compressed time on the scenario driver
(testkit/scenario.py): 5-minute steps, each step's events put and drained, the due-sweep schedule
fired, pushes collected from a queue subscribed to the push topic and answered by simulated users
drawn from the real log (testkit/feedback.py with ``RatingLog.engaged_at``).
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo.outcomes import RatingLog
from demo.retrain import MidReplay
from shared.domain.fold import apply_event
from shared.domain.user_state import UserState
from testkit import traffic
from testkit.feedback import Push, SimulatedUsers
from testkit.scenario import Progress, Scenario, ScenarioRun, StackSpec, Timeline, run
from training.movielens import Interactions, MovieLens

ROOT = Path(__file__).resolve().parents[1]
# Malformed and duplicate records mixed into the replay so the quarantine and dedup paths run too.
BAD_EVERY = 997
DUPLICATE_EVERY = 1009


@dataclass
class RunResult:
    policy: str
    events_in: int = 0
    bad_injected: int = 0
    duplicates_injected: int = 0
    feedback_in: int = 0
    pushes: list[Push] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    archive_event_ids: list[str] = field(default_factory=list)
    quarantined: Counter[str] = field(default_factory=Counter)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    final_states: dict[str, UserState] = field(default_factory=dict)
    wall_s: float = 0.0
    retrain: dict[str, Any] | None = None  # the mid-replay retrain's report (demo/retrain.py)

    @classmethod
    def of(cls, policy: str, scenario_run: ScenarioRun) -> RunResult:
        storage = scenario_run.storage
        kinds = scenario_run.kinds()
        dead = storage.dead_letters
        return cls(
            policy=policy,
            events_in=len(scenario_run.put),
            bad_injected=kinds["malformed"],
            duplicates_injected=kinds["duplicate"],
            feedback_in=kinds["feedback"],
            pushes=[Push.of(body) for body in scenario_run.pushes],
            ledger=storage.ledger,
            archive_event_ids=storage.archived_event_ids(),
            quarantined=storage.quarantine_reasons(),
            dead_lettered={stage: dead.records(stage) for stage in dead.messages},
            stats=scenario_run.stats.as_dict() if scenario_run.stats else {},
            final_states=storage.user_states,
            wall_s=scenario_run.wall_s,
        )


def backfill(train: Interactions, users: set[str], genres: dict[str, list[str]]) -> list[UserState]:
    """The training period folded into user state: the history the replay starts from."""
    states: dict[str, UserState] = {}
    for event in traffic.rating_events(train):
        if event.user_id in users:
            state = states.setdefault(event.user_id, UserState(user_id=event.user_id))
            apply_event(state, event, lambda item: genres.get(item, []))
    return [state.model_copy(update={"version": 1}) for state in states.values()]


def replay_records(
    data: MovieLens,
    replay: Interactions,
    users: set[str],
    *,
    bad_every: int = BAD_EVERY,
    duplicate_every: int = DUPLICATE_EVERY,
) -> list[traffic.Record]:
    """Each selected user's ratings after the cutoff, their profile a second before the first, with noise."""
    events = traffic.with_profiles((e for e in traffic.rating_events(replay) if e.user_id in users), data.users)
    return traffic.with_noise(traffic.records_of(events), malformed_every=bad_every, duplicate_every=duplicate_every)


def run_policy(
    policy: str,
    model_dir: Path,
    data: MovieLens,
    train: Interactions,
    replay: Interactions,
    users: set[str],
    out_dir: Path,
    tick_seconds: int = 300,
    progress: Progress | None = None,
    decide_env: dict[str, str] | None = None,
    parameters: dict[str, str] | None = None,
    baseline: str | None = None,
    bad_every: int = BAD_EVERY,
    duplicate_every: int = DUPLICATE_EVERY,
    retrain: MidReplay | None = None,
) -> RunResult:
    """One policy's replay: ``baseline`` names a policy of demo/baselines.py installed into decide
    (None keeps Nudge's own). With ``retrain``, the model is retrained mid-replay (demo/retrain.py), the
    pointer re-read every second so a promotion is served at once, and the archive saved at the end."""
    parameters = dict(parameters or {})
    if retrain is not None:
        parameters.setdefault("ModelPointerTtlSeconds", "1")
    genres = {i.item_id: list(i.genres) for i in data.items}
    stack = StackSpec(
        name=f"nudge-demo-{policy}",
        model_dir=model_dir,
        env={"DecideFunction": {"POWERTOOLS_LOG_LEVEL": "WARNING", **(decide_env or {})}},
        parameters=parameters,
        catalog=traffic.catalog_items(data.items),
        initial_states=backfill(train, users, genres),
        policy=functools.partial(_install_baseline, baseline) if baseline else None,
        log_dir=out_dir / "logs" / policy,
    )
    records = replay_records(data, replay, users, bad_every=bad_every, duplicate_every=duplicate_every)
    # A step can jump hours of simulated time; one sweep per step is enough for the demo (the
    # missed 5-minute occurrences would only find the same due users again).
    timeline = Timeline(step_s=tick_seconds, sweep=True, catch_up=1)
    users_sim = SimulatedUsers(RatingLog(replay).engaged_at)
    scenario = Scenario(stack, records, timeline, users=users_sim, progress=progress)
    if retrain is not None:
        scenario.checkpoints = [(retrain.at, "retraining", retrain)]
        scenario.on_finish = retrain.save
    result = RunResult.of(policy, run(scenario))
    if retrain is not None and (retrain.out / "report.json").is_file():
        result.retrain = json.loads((retrain.out / "report.json").read_text())
    return result


def _install_baseline(name: str) -> None:
    from demo.baselines import install

    install(name)
