"""Decide: score candidates for a user, apply the policy, record the decision, push at most once."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from shared.domain.caps import CapReached, CapsConfig, counters_for
from shared.domain.catalog import CatalogItem
from shared.domain.decision import Action, Decision, Reason, decision_id_for
from shared.domain.delivery import Push, Undeliverable
from shared.domain.engagement import Calibration
from shared.domain.errors import NudgeError, PoisonRecord, VersionConflict, as_poison
from shared.domain.model_registry import FixedModel, ModelSource
from shared.domain.policy import PastPush, Policy, Situation
from shared.domain.ports import CapCounters, CatalogReader, DecidingStates, DecisionLedger, SendOnce
from shared.domain.recommendation import Recommender, ServedModel, recommend_in_context
from shared.domain.user_state import StateChange, UserState

WRITER = "decide"
# How far back "already pushed" looks; pushes older than this may be repeated.
REPEAT_WINDOW_SECONDS = 90 * 24 * 3600
DAY_SECONDS = 24 * 3600
# Only this writer's user-state changes pass decide's stream filter (template.yaml).
TRIGGERING_WRITER = "features"
DEFER_ATTEMPTS = 3

Ref = TypeVar("Ref")


@dataclass(frozen=True)
class DecideConfig:
    caps: CapsConfig = field(default_factory=CapsConfig)
    candidates: int = 50
    push_ttl_days: int = 90
    silence_ttl_days: int = 7
    due_shards: int = 4
    outbox_shards: int = 4
    # How old an unsent push must be before the sweep sends it: longer than decide's timeout, so the
    # invocation that recorded it has finished (or died) and its send record is no longer in progress.
    outbox_grace_seconds: int = 180


def draws_for(decision_id: str) -> tuple[float, float]:
    """Two uniform numbers fixed by the decision id: exploration is random across decisions
    but repeatable for one, so a retry explores (or not) exactly as the first attempt did."""
    digest = hashlib.sha256(f"explore\x1f{decision_id}".encode()).digest()
    return int.from_bytes(digest[:8]) / 2**64, int.from_bytes(digest[8:16]) / 2**64


def due_shard_for(user_id: str, shards: int) -> str:
    # Spreads deferred users over a few index partitions so one sweep query stays small.
    return f"due-{sum(user_id.encode()) % shards}"


def outbox_shard_for(user_id: str, shards: int) -> str:
    return f"outbox-{sum(user_id.encode()) % shards}"


def explanation_for(supporting: list[str], catalog: Mapping[str, CatalogItem]) -> str | None:
    titles = [catalog[i].title for i in supporting if i in catalog and catalog[i].title]
    if not titles:
        return None
    return "Because you watched " + (titles[0] if len(titles) == 1 else f"{titles[0]} and {titles[1]}")


@dataclass
class Handover:
    """What came of handing one push to delivery: the decision as it now stands (a push the caps turned
    into silence is that silence), whether it was sent, and why its platform would not take it."""

    decision: Decision | None = None
    sent: bool = False
    undeliverable: Undeliverable | None = None


@dataclass
class Handovers:
    """Pushes handed over in a batch or sweep, and those their platform would not take, by reason."""

    sent: int = 0
    undeliverable: dict[str, int] = field(default_factory=dict)

    def count(self, handover: Handover) -> None:
        self.sent += handover.sent
        if handover.undeliverable is not None:
            reason = handover.undeliverable.value
            self.undeliverable[reason] = self.undeliverable.get(reason, 0) + 1


@dataclass
class DecideBatchResult(Handovers, Generic[Ref]):
    decisions: list[Decision] = field(default_factory=list)
    superseded: int = 0
    failed: list[tuple[Ref, NudgeError]] = field(default_factory=list)
    # Changes no retry can decide on (a stored value the policy or a store refuses): quarantined.
    poisoned: list[tuple[Ref, PoisonRecord]] = field(default_factory=list)


@dataclass
class SweepResult(Handovers):
    decisions: list[Decision] = field(default_factory=list)
    # Users whose due decision can never be made: taken off the due index, so the sweep goes on.
    poisoned: list[PoisonRecord] = field(default_factory=list)
    # Pushes found on the outbox (recorded, never handed over) and sent or settled now.
    reconciled: int = 0
    # Outbox pushes that could not be handed over this time (their send record is still in progress,
    # a store was throttled): the next sweep tries again, and they do not hold up the others.
    reconcile_deferred: int = 0


class DecideService:
    def __init__(
        self,
        states: DecidingStates,
        catalog: CatalogReader,
        ledger: DecisionLedger,
        recommender: Recommender | ModelSource,
        send_once: SendOnce,
        policy: Policy,
        config: DecideConfig,
        counters: CapCounters | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        """``recommender`` is one model with its ``calibration``, or a ModelSource (the registry's hot swap)
        that supplies both, with the version, per decision; ``calibration`` is ignored then."""
        self._states = states
        self._catalog = catalog
        self._ledger = ledger
        self._models = (
            recommender
            if isinstance(recommender, ModelSource)
            else FixedModel(ServedModel(recommender, calibration, recommender.manifest.version))
        )
        self._send_once = send_once
        self._policy = policy
        self._config = config
        self._counters = counters

    def decide_for(self, state: UserState, now: int, trigger: str) -> Decision:
        return self.decide_and_hand_over(state, now, trigger)[0]

    def decide_and_hand_over(self, state: UserState, now: int, trigger: str) -> tuple[Decision, Handover]:
        # One snapshot for the whole decision (the champion, or the challenger for its share of users):
        # a swap during it cannot mix two versions' scores, calibration and ledger label.
        served = self._models.for_user(state.user_id)
        history = state.history()
        stamps = [item.ts for item in state.recent_items]
        candidates = recommend_in_context(served.recommender, [history], self._config.candidates, [stamps], now)[0]
        pushed = self._ledger.pushes_since(state.user_id, now - REPEAT_WINDOW_SECONDS)
        pushed_ids = [str(p.get("item_id", "")) for p in pushed]
        catalog = self._catalog.get_many([c.item_id for c in candidates] + history + pushed_ids)
        past = [
            PastPush(
                item_id=i, decided_at=int(p["decided_at"]), genres=tuple(catalog[i].genres) if i in catalog else ()
            )
            for i, p in zip(pushed_ids, pushed, strict=True)
        ]
        decision_id = decision_id_for(state.user_id, now, trigger)
        verdict = self._policy(
            Situation(state, candidates, catalog, past, now, draws_for(decision_id), served.calibration)
        )
        item = catalog.get(verdict.item_id) if verdict.item_id else None
        decision = Decision(
            decision_id=decision_id,
            user_id=state.user_id,
            action=verdict.action,
            reasons=verdict.reasons,
            decided_at=now,
            model_version=served.version,
            policy=self._policy.name,
            item_id=verdict.item_id,
            score=verdict.score,
            title=item.title if item else None,
            explanation=explanation_for(verdict.supporting_items, catalog),
            supporting_items=verdict.supporting_items,
            due_at=verdict.due_at,
            trigger=trigger,
            propensity=verdict.propensity,
            candidates=list(verdict.candidates),
            engagement=verdict.engagement,
            fatigue=verdict.fatigue,
        )
        is_push = decision.action is Action.PUSH
        ttl_days = self._config.push_ttl_days if is_push else self._config.silence_ttl_days
        # The ledger decides which computation of this decision counts (create-once); only that
        # one takes cap slots, so a duplicate that computed something else cannot leak a slot. A push
        # is recorded on the outbox first: if anything below dies, the sweep finds and sends it.
        stored, created = self._ledger.record(
            decision,
            expires_at=now + ttl_days * DAY_SECONDS,
            outbox_shard=outbox_shard_for(state.user_id, self._config.outbox_shards) if is_push else None,
        )
        handover = Handover()
        if stored.action is Action.PUSH and (created or not self._handed_over(stored)):
            handover = self.hand_over(stored, state, now)
        elif stored.action is Action.DEFER and stored.due_at is not None:
            self._defer(state, stored.due_at)
        return handover.decision or stored, handover

    def hand_over(self, decision: Decision, state: UserState, now: int) -> Handover:
        """Caps, then delivery once per decision id, then the ledger and the user's device records."""
        stored = self._within_caps(decision, state)
        if stored.action is not Action.PUSH:
            return Handover(stored)
        result = self._send_once(self.push_of(stored, state))
        token = state.push_token or ""
        if result.undeliverable is not None:
            self._ledger.mark_undeliverable(stored.user_id, stored.decision_id, result.undeliverable.value, now)
            if result.undeliverable is Undeliverable.ENDPOINT_DISABLED:
                self._states.disable_token(stored.user_id, token, WRITER)
            return Handover(stored, undeliverable=result.undeliverable)
        if result.endpoint_arn is not None:
            self._states.record_endpoint(stored.user_id, token, result.endpoint_arn, WRITER)
        self._ledger.mark_sent(stored.user_id, stored.decision_id, str(result.message_id), now)
        return Handover(stored, sent=True)

    def decide_changes(self, changes: Sequence[StateChange[Ref]]) -> DecideBatchResult[Ref]:
        """One decision per user per batch, on the newest state; older changes are superseded."""
        result: DecideBatchResult[Ref] = DecideBatchResult()
        by_user: dict[str, list[StateChange[Ref]]] = defaultdict(list)
        for change in changes:
            by_user[change.state.user_id].append(change)
        for user_changes in by_user.values():
            newest = max(user_changes, key=lambda c: c.state.version)
            try:
                # The change carries the hot part of the state; consent, token and the rest are read.
                state = self._states.with_profile(newest.state)
                decision, handover = self.decide_and_hand_over(state, newest.changed_at, f"state:{state.version}")
            except Exception as error:  # poison is quarantined, the rest retried
                poison = as_poison(error)
                if poison is not None:
                    result.poisoned.extend((c.ref, poison) for c in user_changes)
                elif isinstance(error, NudgeError):
                    result.failed.extend((c.ref, error) for c in user_changes)
                continue
            result.decisions.append(decision)
            result.superseded += len(user_changes) - 1
            result.count(handover)
        return result

    def _handed_over(self, decision: Decision) -> bool:
        """A repeated trigger of a push the ledger already settled sends nothing, whatever the send
        record says (it may have expired, or never been saved)."""
        row = self._ledger.get(decision.user_id, decision.decision_id)
        return row is not None and row.get("status") in ("sent", "undeliverable")

    def _within_caps(self, decision: Decision, state: UserState) -> Decision:
        """Take the push's slots in the atomic counters; a full counter turns it into silence."""
        if decision.action is not Action.PUSH or self._counters is None or decision.item_id is None:
            return decision
        plan = counters_for(state.user_id, state.timezone, decision.decided_at, self._config.caps, decision.item_id)
        try:
            self._counters.reserve(decision.decision_id, plan)
        except CapReached as cap:
            return self._ledger.downgrade(decision, Reason(cap.cap))
        return decision

    def sweep(self, now: int) -> SweepResult:
        """Re-decide, with fresh state, every user whose deferred push is due."""
        result = SweepResult()
        for shard in range(self._config.due_shards):
            for user_id, due_at in self._states.due_users(f"due-{shard}", now):
                state = self._states.get(user_id)
                if state is None or state.due_at != due_at:
                    continue
                try:
                    # Decided "at" due_at so a re-run sweep reproduces the same decision id.
                    decision, handover = self.decide_and_hand_over(state, due_at, trigger=f"due:{due_at}")
                except Exception as error:
                    poison = as_poison(error)
                    if poison is None:
                        raise  # transient: the whole sweep is retried (decisions are idempotent)
                    result.poisoned.append(poison)
                    self._states.clear_due(user_id, due_at, WRITER)
                    continue
                if decision.action is not Action.DEFER:
                    self._states.clear_due(user_id, due_at, WRITER)
                result.decisions.append(decision)
                result.count(handover)
        self.reconcile(now, result)
        return result

    def reconcile(self, now: int, result: SweepResult) -> None:
        """Send every push the ledger recorded but nobody handed over (the invocation died, its trigger
        ran out of retries). Idempotent by decision id: a push whose send did happen is not sent again."""
        for shard in range(self._config.outbox_shards):
            unsent = self._ledger.unsent_pushes(f"outbox-{shard}", now - self._config.outbox_grace_seconds)
            for user_id, decision_id in unsent:
                try:
                    handover = self._reconcile_one(user_id, decision_id, now)
                except Exception as error:
                    if as_poison(error) is None and not isinstance(error, NudgeError):
                        raise  # the invocation itself is failing: let it
                    # It stays on the outbox for the next sweep (a poison one too, counted for the operator).
                    result.reconcile_deferred += 1
                    continue
                if handover is not None:
                    result.reconciled += 1
                    result.count(handover)

    def _reconcile_one(self, user_id: str, decision_id: str, now: int) -> Handover | None:
        row = self._ledger.get(user_id, decision_id)
        state = self._states.get(user_id)
        if row is None or state is None:
            return None
        return self.hand_over(Decision.model_validate(row), state, now)

    def _defer(self, state: UserState, due_at: int) -> None:
        expected = state.version
        for _ in range(DEFER_ATTEMPTS):
            try:
                self._states.schedule(
                    state.user_id,
                    expected_version=expected,
                    due_at=due_at,
                    due_shard=due_shard_for(state.user_id, self._config.due_shards),
                    writer=WRITER,
                )
                return
            except VersionConflict:
                current = self._states.get(state.user_id)
                # Newer events arrived and asked for a decision of their own: that one decides. Any
                # other change (feedback, the sweep, events inside the decision interval) triggers
                # none, so the deferral must still be kept.
                if current is None or (current.last_writer == TRIGGERING_WRITER and current.asks_decision):
                    return
                expected = current.version
        # Still racing: fail the trigger (retried, then dead-lettered) rather than drop the push.
        raise VersionConflict(f"user state kept changing while deferring, {DEFER_ATTEMPTS} attempts")

    @staticmethod
    def push_of(decision: Decision, state: UserState) -> Push:
        """What delivery needs; the decision id doubles as the APNs/FCM collapse id."""
        return Push(
            decision_id=decision.decision_id,
            user_id=decision.user_id,
            item_id=str(decision.item_id),
            title=decision.title or "Something new for you",
            body=decision.explanation or decision.title or "",
            push_token=state.push_token,
            platform=state.push_platform,
            model_version=decision.model_version,
            decided_at=decision.decided_at,
            score=decision.score,
            endpoint=state.push_endpoint,
            endpoint_token=state.push_endpoint_token,
        )
