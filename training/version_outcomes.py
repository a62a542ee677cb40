"""How each model version has done on live traffic, from the ledger alone: the champion/challenger read-out.

Each ledger row names the model version that decided it (the challenger serves a stable-hash share of
users, the champion the rest), the action, the propensity of the pushed item and the outcomes
feedback recorded. Per version: decisions, pushes, the push rate, and per push the delivered, opened
and hit (converted) rates with Wilson 95 % intervals (they hold at the small counts a fresh
challenger has). The off-policy estimate of each version's value is the IPS / SNIPS estimate of its
greedy policy (its top candidate every time, exploration switched off) from the pushes it logged
itself, so the two versions are judged on what they would serve without exploring. The comparison
gives the challenger's hit rate minus the champion's with a normal-approximation interval: an
interval that straddles 0 says "not yet known", whatever the point estimates say.

Standard library only (it runs in the operator CLI).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from training.ope import HIT_OUTCOMES, Z_95, estimate, greedy, is_hit, logged_from_ledger

RATES = {"delivered": frozenset({"delivered"}), "opened": frozenset({"opened"}), "hit": HIT_OUTCOMES}


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion; (0, 1) when there is nothing to go on."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = Z_95 * Z_95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z_95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def by_version(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model version: counts, rates with intervals and the greedy policy's off-policy value."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[str(row.get("model_version") or "unknown")].append(dict(row))
    return {version: _report(version_rows) for version, version_rows in sorted(grouped.items())}


def _report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    pushes = [row for row in rows if row.get("action") == "push"]
    report: dict[str, Any] = {
        "decisions": len(rows),
        "pushes": len(pushes),
        "push_rate": round(len(pushes) / len(rows), 4) if rows else 0.0,
    }
    for name, outcomes in RATES.items():
        count = sum(is_hit(row, outcomes) for row in pushes)
        low, high = wilson(count, len(pushes))
        report[name] = {
            "count": count,
            "rate": round(count / len(pushes), 4) if pushes else None,
            "ci95": [round(low, 4), round(high, 4)],
        }
    logged = [row for row in logged_from_ledger(pushes) if row.candidates]
    if logged:
        value = estimate(logged, greedy)
        report["greedy_value"] = {
            "n": value.n,
            "ips": round(value.ips, 4),
            "ips_ci95": [round(v, 4) for v in value.ips_ci],
            "snips": round(value.snips, 4),
            "snips_ci95": [round(v, 4) for v in value.snips_ci],
            "effective_sample_size": round(value.effective_sample_size, 1),
        }
    return report


def hit_rate_difference(challenger: Mapping[str, Any], champion: Mapping[str, Any]) -> dict[str, Any] | None:
    """Challenger minus champion hit rate per push, with a 95 % interval (None without pushes on both)."""
    n1, n0 = int(challenger["pushes"]), int(champion["pushes"])
    if n1 == 0 or n0 == 0:
        return None
    p1, p0 = challenger["hit"]["count"] / n1, champion["hit"]["count"] / n0
    se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    low, high = p1 - p0 - Z_95 * se, p1 - p0 + Z_95 * se
    verdict = "challenger better" if low > 0 else "champion better" if high < 0 else "not yet known"
    return {"difference": round(p1 - p0, 4), "ci95": [round(low, 4), round(high, 4)], "verdict": verdict}
