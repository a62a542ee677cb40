"""`nudge explain USER` and `nudge user USER`: what decide concluded for one user, and what it knows of them.

Read only, through the adapters the functions use: the ledger (shared/adapters/ledger.py: one row per decision,
annotated by feedback with its outcomes), the user-state table (shared/adapters/user_state_store.py: the hot item
and the ``<user>#profile`` item, merged) and the push counters (shared/adapters/push_counters.py: today's and this
week's pushes in the user's own time zone). USER is the raw id: when the stack keeps pseudonymous ids
(PseudonymKeyParameter) it is mapped with the stack's key, as erase maps it (cli/stack.py). The push token and the
delivery endpoint are never shown, only whether there is one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from cli.stack import CliError, StackFacts, open_stack, output, pseudonymizer
from shared.adapters.ledger import Ledger
from shared.adapters.push_counters import PushCounters
from shared.adapters.user_state_store import UserStateStore
from shared.domain.caps import DAY_CAP, WEEK_CAP, CapsConfig, counters_for
from shared.domain.errors import NudgeError
from shared.domain.user_state import UserState

OUTCOMES = ("delivered", "opened", "converted", "dismissed", "undeliverable")


def iso(epoch_seconds: int | None) -> str | None:
    return None if not epoch_seconds else datetime.fromtimestamp(epoch_seconds, UTC).isoformat()


def decision_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """One ledger row as the operator reads it."""
    recorded = row.get("outcomes") or {}
    outcomes = {name: iso(int(recorded[name])) for name in OUTCOMES if name in recorded}
    outcomes.update({str(k): iso(int(v)) for k, v in recorded.items() if k not in outcomes})
    return {
        "decided_at": iso(int(row["decided_at"])),
        "decision_id": row["decision_id"],
        "action": row["action"],
        "item_id": row.get("item_id"),
        "title": row.get("title"),
        "score": row.get("score"),
        "reasons": list(row.get("reasons") or []),
        "model_version": row.get("model_version"),
        "policy": row.get("policy"),
        "status": row.get("status"),
        "outcomes": outcomes,
        "explanation": row.get("explanation"),
    }


def state_view(state: UserState) -> dict[str, Any]:
    """The merged state, minus what identifies the device (token, endpoint) and the fold's bookkeeping."""
    return {
        "consent": state.consent,
        "timezone": state.timezone,
        "push_platform": state.push_platform,
        "has_push_token": bool(state.push_token),
        "has_push_endpoint": bool(state.push_endpoint),
        "push_token_disabled": bool(state.push_token_disabled),
        "attributes": dict(state.attributes),
        "recent_items": [{"item_id": i.item_id, "type": i.type, "at": iso(i.ts)} for i in reversed(state.recent_items)],
        "consumed": len(state.consumed),
        "genre_affinity": dict(sorted(state.genre_affinity.items(), key=lambda kv: -kv[1])),
        "counters": dict(state.counters),
        "pushes": {
            "delivered": state.pushes_delivered,
            "opened": state.pushes_opened,
            "dismissed": state.pushes_dismissed,
            "converted": state.pushes_converted,
        },
        "last_seen": iso(state.last_seen),
        "last_feedback_at": iso(state.last_feedback_at),
        "due_at": iso(state.due_at),
        "version": state.version,
        "profile_version": state.profile_version,
    }


def push_counts(counters: PushCounters, stored_id: str, timezone: str, now: int) -> dict[str, Any]:
    """Pushes admitted today and this week (the caps' buckets, in the user's time zone)."""
    buckets = {c.kind: c for c in counters_for(stored_id, timezone, now, CapsConfig()) if c.kind in (DAY_CAP, WEEK_CAP)}
    day, week = buckets[DAY_CAP], buckets[WEEK_CAP]
    return {
        "day": day.bucket,
        "today": counters.count(day.key),
        "week": week.bucket,
        "this_week": counters.count(week.key),
    }


class UserReader:
    """The stores one user's rows live in, and the raw -> stored id mapping."""

    def __init__(self, session: Any, facts: StackFacts, stored_id: Callable[[str], str] | None) -> None:
        dynamodb = session.resource("dynamodb")
        self.ledger = Ledger(dynamodb, output(facts, "LedgerTableName"))
        self.states = UserStateStore(dynamodb, output(facts, "UserStateTableName"))
        self.counters = PushCounters(dynamodb, output(facts, "PushCountersTableName"))
        self._stored_id = stored_id

    def stored_id(self, user: str) -> str:
        return self._stored_id(user) if self._stored_id is not None else user

    def explain(self, user: str, limit: int) -> dict[str, Any]:
        stored = self.stored_id(user)
        rows = self.ledger.recent(stored, limit)
        if not rows and self.states.get(stored) is None:
            raise CliError(f"no such user {user!r}: no decisions and no state")
        return {"user_id": user, **_stored_as(user, stored), "decisions": [decision_view(r) for r in rows]}

    def user(self, user: str, now: int) -> dict[str, Any]:
        stored = self.stored_id(user)
        state = self.states.get(stored)
        decisions = len(self.ledger.recent(stored, 1))
        if state is None and not decisions:
            raise CliError(f"no such user {user!r}: no decisions and no state")
        timezone = state.timezone if state is not None else "UTC"
        return {
            "user_id": user,
            **_stored_as(user, stored),
            "state": state_view(state) if state is not None else None,
            "push_counters": push_counts(self.counters, stored, timezone, now),
        }


def _stored_as(user: str, stored: str) -> dict[str, str]:
    return {"stored_as": stored} if stored != user else {}


def run(args: Any) -> dict[str, Any]:
    """Dispatch one parsed `nudge explain|user ...` command (cli/__main__.py builds the parser)."""
    with open_stack(args) as (session, facts):
        try:
            key = args.pseudonym_key_parameter or facts.parameters.get("PseudonymKeyParameter", "")
            reader = UserReader(session, facts, pseudonymizer(session.client("ssm"), key))
            if args.command == "explain":
                return reader.explain(args.user, args.limit)
            return reader.user(args.user, int(datetime.now(UTC).timestamp()))
        except (NudgeError, ValueError) as exc:
            raise CliError(str(exc)) from exc


def explain_text(result: Mapping[str, Any]) -> str:
    n = len(result["decisions"])
    lines = [f"user {result['user_id']}: {n} decision{'' if n == 1 else 's'}, newest first"]
    header = ("decided_at", "action", "item", "score", "model", "reasons", "outcomes")
    rows = [header]
    for d in result["decisions"]:
        item = f"{d['item_id']} {d['title'] or ''}".strip() if d["item_id"] else "-"
        score = f"{d['score']:.3f}" if isinstance(d["score"], int | float) else "-"
        outcomes = ",".join(d["outcomes"]) or "-"
        rows.append(
            (d["decided_at"], d["action"], item, score, d["model_version"] or "-", ",".join(d["reasons"]), outcomes)
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    for n, row in enumerate(rows):
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if n and result["decisions"][n - 1]["explanation"]:
            lines.append(f"    {result['decisions'][n - 1]['explanation']}")
    return "\n".join(lines)


def user_text(result: Mapping[str, Any]) -> str:
    lines = [f"user {result['user_id']}" + (f" (stored as {result['stored_as']})" if "stored_as" in result else "")]
    state = result["state"]
    if state is None:
        lines.append("  no state (decisions only)")
    else:
        for key, value in state.items():
            if key == "recent_items":
                value = ", ".join(f"{i['item_id']} ({i['type']} {i['at']})" for i in value) or "-"
            elif isinstance(value, dict):
                value = (
                    ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items()) or "-"
                )
            lines.append(f"  {key:<20} {value}")
    counts = result["push_counters"]
    today, week = f"{counts['today']} ({counts['day']})", f"{counts['this_week']} ({counts['week']})"
    lines.append(f"  {'pushes today':<20} {today}, this week {week}")
    return "\n".join(lines)
