"""One bad record never costs another: each poison class inside 100 valid events of 10 users of its own,
run through every function of the template and audited from storage (reliability/poison.py).

All classes share one stack and one drain here (a minute instead of ten); `make reliability` runs
each class in a drain of its own, so its batch holds exactly its 100 neighbours.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.poison import ITEMS, POISON, IsolationResult, run_isolation
from testkit.tiny_model import build_tiny_model

# Whole scenarios under moto: run without the coverage tracer (they would double make test's time);
# the lines they reach are covered by the unit and service tests, and `make test` prints the total.
pytestmark = [pytest.mark.no_cover, pytest.mark.slow(seconds=20)]


# One drain serves every class: make test sends a file's tests to one worker (`--dist loadfile`).
@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, IsolationResult]:
    model_dir: Path = build_tiny_model(tmp_path_factory.mktemp("model"), vocab=ITEMS)
    return {r.kind: r for r in run_isolation(sorted(POISON), model_dir, together=True)}


@pytest.mark.parametrize("kind", sorted(POISON))
def test_a_poison_record_is_quarantined_once_and_its_neighbours_applied_once(
    kind: str, results: dict[str, IsolationResult]
) -> None:
    result = results[kind]
    assert result.quiescent
    assert (result.valid_applied_once, result.valid_lost, result.valid_applied_twice) == (100, 0, 0)
    assert result.users_differing_from_reference == 0
    assert result.poison_reasons == [POISON[kind].reason.value]
    assert (result.archived, result.archived_more_than_once) == (100, 0)
    assert result.dead_letter_messages == 0 and result.later_stage_quarantined == 0
    assert result.isolated
