"""Atomic push caps: one counter item per user (local day, ISO week, item cooldowns) and a
global per-minute counter.

A push costs two conditional writes, not one per cap:

- The user's item (``user#<id>``) holds their current local day and ISO week with the pushes
  admitted in each, the decision ids admitted this week and last (as short fingerprints), and the
  items pushed with the time each one's cooldown ends. A reservation reads it (strongly
  consistent), checks every cap in Python and writes it back with a condition on the version it
  read: optimistic concurrency, so parallel deciders for one user are serialized by DynamoDB and
  no cap can be passed. A refusal writes nothing. A retried decision finds its fingerprint and is
  let through without counting twice. Old days, weeks and expired cooldowns are dropped on the
  next write, so the item stays small (well under 1 KB at the default caps).
- The global minute is a conditional ``ADD`` on its own item (it is shared by every user, so a
  read-modify-write would contend). It keeps no ids, so its item stays a few bytes however many
  pushes a minute admits; the price is that a retried decision takes a global slot again, which
  errs on the side of fewer pushes.

If the global counter refuses, the user's slot is given back. A crash between the two leaves a
slot taken, which errs on the side of fewer pushes, never more. A decision for a day or week older
than the one the user's item has moved on to (a late retry) is refused: its bucket's count is gone.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.adapters.aws_errors import translated
from shared.domain.caps import DAY_CAP, ITEM_COOLDOWN, WEEK_CAP, CapReached, Counter
from shared.domain.errors import VersionConflict

# Optimistic attempts on one user's item before giving up (the batch is then retried).
MAX_ATTEMPTS = 25


def fingerprint(decision_id: str) -> str:
    """12 characters (72 bits) standing for a decision id inside a user's counter item."""
    return base64.b64encode(hashlib.sha256(decision_id.encode()).digest()[:9]).decode()


@dataclass
class _UserCounts:
    version: int = 0
    day: str = ""
    day_n: int = 0
    week: str = ""
    week_n: int = 0
    ids: set[str] = field(default_factory=set)
    last_week_ids: set[str] = field(default_factory=set)
    cooldowns: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, item: dict[str, Any] | None) -> _UserCounts:
        if not item:
            return cls()
        return cls(
            version=int(item.get("v", 0)),
            day=str(item.get("day", "")),
            day_n=int(item.get("dn", 0)),
            week=str(item.get("week", "")),
            week_n=int(item.get("wn", 0)),
            ids=set(item.get("ids") or ()),
            last_week_ids=set(item.get("pids") or ()),
            cooldowns={str(k): int(v) for k, v in (item.get("cool") or {}).items()},
        )

    def holds(self, print_: str) -> bool:
        return print_ in self.ids or print_ in self.last_week_ids

    def refusal(self, counter: Counter) -> str | None:
        """The cap this counter would pass, or None when it has room."""
        if counter.limit <= 0:
            return counter.cap_name
        if counter.kind == DAY_CAP:
            stale = bool(self.day) and counter.bucket < self.day
            full = counter.bucket == self.day and self.day_n >= counter.limit
            return counter.cap_name if stale or full else None
        if counter.kind == WEEK_CAP:
            stale = bool(self.week) and counter.bucket < self.week
            full = counter.bucket == self.week and self.week_n >= counter.limit
            return counter.cap_name if stale or full else None
        if counter.kind == ITEM_COOLDOWN:
            return counter.cap_name if self.cooldowns.get(counter.bucket, 0) > counter.at else None
        raise ValueError(f"unknown counter kind {counter.kind!r}")

    def take(self, print_: str, counters: Iterable[Counter]) -> None:
        at = 0
        for counter in counters:
            at = max(at, counter.at)
            if counter.kind == DAY_CAP:
                self.day_n = self.day_n + 1 if counter.bucket == self.day else 1
                self.day = counter.bucket
            elif counter.kind == WEEK_CAP:
                if counter.bucket != self.week:
                    self.last_week_ids, self.ids = self.ids, set()
                    self.week_n = 0
                self.week_n += 1
                self.week = counter.bucket
            elif counter.kind == ITEM_COOLDOWN:
                self.cooldowns[counter.bucket] = counter.expires_at
        self.cooldowns = {k: v for k, v in self.cooldowns.items() if v > at}
        self.ids.add(print_)

    def give_back(self, print_: str, counters: Iterable[Counter]) -> None:
        for counter in counters:
            if counter.kind == DAY_CAP and counter.bucket == self.day:
                self.day_n = max(0, self.day_n - 1)
            elif counter.kind == WEEK_CAP and counter.bucket == self.week:
                self.week_n = max(0, self.week_n - 1)
            elif counter.kind == ITEM_COOLDOWN:
                self.cooldowns.pop(counter.bucket, None)
        self.ids.discard(print_)
        self.last_week_ids.discard(print_)

    def item(self, key: str, expires_at: int) -> dict[str, Any]:
        item: dict[str, Any] = {"counter_key": key, "v": self.version + 1, "expires_at": expires_at}
        if self.day:
            item.update(day=self.day, dn=self.day_n)
        if self.week:
            item.update(week=self.week, wn=self.week_n)
        if self.ids:
            item["ids"] = set(self.ids)
        if self.last_week_ids:
            item["pids"] = set(self.last_week_ids)
        if self.cooldowns:
            item["cool"] = dict(self.cooldowns)
        return item


class PushCounters:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._table = dynamodb.Table(table_name)

    def reserve(self, decision_id: str, counters: list[Counter]) -> None:
        """Take one slot in every counter for this decision, or none (CapReached names the cap)."""
        by_owner: dict[str, list[Counter]] = {}
        for counter in counters:
            if counter.owner:
                by_owner.setdefault(counter.owner, []).append(counter)
        taken_owners: list[str] = []
        for owner, owned in by_owner.items():
            refused = self._take_owned(decision_id, owner, owned)
            if refused is not None:
                for earlier in reversed(taken_owners):
                    self._give_back_owned(decision_id, earlier, by_owner[earlier])
                raise CapReached(refused)
            taken_owners.append(owner)
        taken: list[Counter] = []
        for counter in (c for c in counters if not c.owner):
            if not self._take(counter):
                for done in reversed(taken):
                    self._give_back(done)
                for owner in reversed(taken_owners):
                    self._give_back_owned(decision_id, owner, by_owner[owner])
                raise CapReached(counter.cap_name)
            taken.append(counter)

    def count(self, key: str) -> int:
        """Pushes counted in a bucket, by the bucket's key (``user#u1#day#2026-11-27``, ``global#minute#…``)."""
        for kind in (DAY_CAP, WEEK_CAP, ITEM_COOLDOWN):
            marker = f"#{kind}#"
            if key.startswith("user#") and marker in key:
                owner, bucket = key.rsplit(marker, 1)
                counts = _UserCounts.of(self._get(owner))
                if kind == DAY_CAP:
                    return counts.day_n if counts.day == bucket else 0
                if kind == WEEK_CAP:
                    return counts.week_n if counts.week == bucket else 0
                return 1 if bucket in counts.cooldowns else 0
        item = self._get(key)
        return int(item["n"]) if item else 0

    def forget_owner(self, owner: str) -> bool:
        """Delete an owner's counter item (a user's, for erasure); True when there was one."""
        with translated("push_counters.forget"):
            response = self._table.delete_item(Key={"counter_key": owner}, ReturnValues="ALL_OLD")
        return bool(response.get("Attributes"))

    def _get(self, key: str) -> dict[str, Any] | None:
        with translated("push_counters.get"):
            item = self._table.get_item(Key={"counter_key": key}, ConsistentRead=True).get("Item")
        return dict(item) if item else None

    def _put_if_unchanged(self, key: str, counts: _UserCounts, expires_at: int) -> bool:
        """Write the user's counts back unless another decider wrote since we read (False then)."""
        condition = "attribute_not_exists(counter_key)" if counts.version == 0 else "v = :v"
        values = {} if counts.version == 0 else {"ExpressionAttributeValues": {":v": counts.version}}
        try:
            with translated("push_counters.put"):
                self._table.put_item(Item=counts.item(key, expires_at), ConditionExpression=condition, **values)
        except VersionConflict:
            return False
        return True

    def _take_owned(self, decision_id: str, owner: str, owned: list[Counter]) -> str | None:
        """None when the owner's slots are ours (taken now, or by an earlier attempt); else the cap refusing."""
        print_ = fingerprint(decision_id)
        for _ in range(MAX_ATTEMPTS):
            counts = _UserCounts.of(self._get(owner))
            if counts.holds(print_):
                return None
            for counter in owned:
                refused = counts.refusal(counter)
                if refused is not None:
                    return refused
            counts.take(print_, owned)
            expires_at = max([c.expires_at for c in owned] + list(counts.cooldowns.values()))
            if self._put_if_unchanged(owner, counts, expires_at):
                return None
        raise VersionConflict(f"push_counters: {owner} kept changing")

    def _give_back_owned(self, decision_id: str, owner: str, owned: list[Counter]) -> None:
        print_ = fingerprint(decision_id)
        for _ in range(MAX_ATTEMPTS):
            item = self._get(owner)
            counts = _UserCounts.of(item)
            if not counts.holds(print_):
                return
            counts.give_back(print_, owned)
            if self._put_if_unchanged(owner, counts, int(item["expires_at"]) if item else 0):
                return
        raise VersionConflict(f"push_counters: {owner} kept changing")

    def _take(self, counter: Counter) -> bool:
        if counter.limit <= 0:
            return False
        try:
            with translated("push_counters.take"):
                self._table.update_item(
                    Key={"counter_key": counter.key},
                    UpdateExpression="ADD n :one SET expires_at = :exp",
                    ConditionExpression="attribute_not_exists(n) OR n < :cap",
                    ExpressionAttributeValues={":one": 1, ":cap": counter.limit, ":exp": counter.expires_at},
                )
        except VersionConflict:
            return False
        return True

    def _give_back(self, counter: Counter) -> None:
        try:
            with translated("push_counters.give_back"):
                self._table.update_item(
                    Key={"counter_key": counter.key},
                    UpdateExpression="ADD n :minus",
                    ConditionExpression="n > :zero",
                    ExpressionAttributeValues={":minus": -1, ":zero": 0},
                )
        except VersionConflict:
            return
