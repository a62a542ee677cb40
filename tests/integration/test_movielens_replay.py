"""A slice of the real MovieLens replay through the whole pipeline, with the shipped model.

Skipped (with the reason) where the dataset is not beside the checkout; CI has it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest

from demo.movielens_events import profile_event, rating_events
from demo.outcomes import RatingLog
from demo.replay import RunResult, run_policy
from demo.summary import cap_violations, quiet_hour_violations
from reliability.audit import NOT_FOLDED
from shared.adapters.user_state_codec import decode_user_state
from shared.domain.fold import apply_event
from shared.domain.policy import PolicyConfig
from shared.domain.user_state import UserState
from training.movielens import DatasetNotFoundError, MovieLens, load_movielens, resolve_data_dir, time_split

ROOT = Path(__file__).resolve().parents[2]
USERS = {str(u) for u in range(1, 16)}


@pytest.fixture(scope="module")
def movielens() -> MovieLens:
    try:
        return load_movielens(resolve_data_dir(None))
    except DatasetNotFoundError as exc:
        pytest.skip(f"MovieLens-100k not available: {exc}")


@pytest.fixture(scope="module")
def replayed(movielens: MovieLens, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    train, replay = time_split(movielens.interactions, 0.8)
    users = USERS & {str(u) for u in replay.user.tolist()}
    return run_policy(
        "model", ROOT / "layers" / "model", movielens, train, replay, users, tmp_path_factory.mktemp("replay")
    )


def test_every_record_is_accounted_for(replayed: RunResult) -> None:
    assert replayed.events_in > 100
    assert replayed.bad_injected == 0 or sum(replayed.quarantined.values()) >= replayed.bad_injected
    assert replayed.events_in == len(replayed.archive_event_ids) + sum(replayed.quarantined.values()) + sum(
        replayed.dead_lettered.values()
    )


def test_user_state_equals_a_reference_fold_of_the_input(movielens: MovieLens, replayed: RunResult) -> None:
    train, replay = time_split(movielens.interactions, 0.8)
    genres = {i.item_id: list(i.genres) for i in movielens.items}
    users = {u.user_id: u for u in movielens.users}
    reference: dict[str, UserState] = {}
    for event in rating_events(train):
        if event.user_id in replayed.final_states:
            apply_event(
                reference.setdefault(event.user_id, UserState(user_id=event.user_id)),
                event,
                lambda item: genres.get(item, []),
            )
    first = next(e for e in rating_events(replay) if e.user_id in replayed.final_states)
    for user_id in replayed.final_states:
        state = reference.setdefault(user_id, UserState(user_id=user_id))
        apply_event(state, profile_event(users[user_id], first.timestamp), lambda item: genres.get(item, []))
    for event in rating_events(replay):
        if event.user_id in reference:
            apply_event(reference[event.user_id], event, lambda item: genres.get(item, []))
    for user_id, ref in reference.items():
        got = decode_user_state(replayed.final_states[user_id]).model_dump(exclude=set(NOT_FOLDED))
        want = ref.model_dump(exclude=set(NOT_FOLDED))
        assert got.pop("genre_affinity") == pytest.approx(want.pop("genre_affinity"))
        assert got == want, user_id


def test_no_push_breaks_the_policy(replayed: RunResult) -> None:
    pushes = [row for row in replayed.ledger if row.get("action") == "push"]
    assert pushes
    config = PolicyConfig()
    assert cap_violations(pushes, config.daily_push_cap) == 0
    timezones = {u: str(s.get("timezone", "UTC")) for u, s in replayed.final_states.items()}
    assert quiet_hour_violations(pushes, timezones, config) == 0
    items: dict[str, list[str]] = defaultdict(list)
    for row in pushes:
        items[row["user_id"]].append(row["item_id"])
    assert all(len(v) == len(set(v)) for v in items.values()), "an item was pushed twice to a user"
    assert {p.decision_id for p in replayed.pushes} == {row["decision_id"] for row in pushes}
    assert len(replayed.pushes) == len({p.decision_id for p in replayed.pushes}), "a decision was sent twice"


def test_feedback_reaches_the_ledger(movielens: MovieLens, replayed: RunResult) -> None:
    _, replay = time_split(movielens.interactions, 0.8)
    log = RatingLog(replay)
    outcomes = Counter(o for row in replayed.ledger for o in (row.get("outcomes") or {}))
    assert outcomes["delivered"] == len(replayed.pushes)
    hits = sum(log.is_hit(p) for p in replayed.pushes)
    assert outcomes["converted"] == hits
    assert outcomes["dismissed"] == len(replayed.pushes) - hits
