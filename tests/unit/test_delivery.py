"""Delivery: the platforms' payloads, and the ledger as outbox (a push recorded but never handed over
is sent by the sweep, once)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from runner.stack import Stack
from shared.adapters.catalog import Catalog
from shared.adapters.ledger import Ledger
from shared.adapters.user_state_store import UserStateStore
from shared.domain.catalog import CatalogItem
from shared.domain.decision import Action
from shared.domain.delivery import DeliveryResult, Push, apns_payload, fcm_payload, platform_message
from shared.domain.policy import PolicyConfig, RulesPolicy
from shared.plumbing.bootstrap import send_once
from shared.services.decide import DecideConfig, DecideService
from tests.support.fakes import FakeRecommender, RecordingSender
from tests.unit.test_services import NOON, REGION, out, stored_user


def push(platform: str | None = "APNS") -> Push:
    return Push(
        decision_id="01795780800-abc",
        user_id="u1",
        item_id="242",
        title="Kolya (1996)",
        body="Because you watched Fargo",
        push_token="tok-1",
        platform=platform,
        model_version="m-1",
        decided_at=1795780800,
    )


def test_apns_payload_is_an_aps_alert_with_the_decision_beside_it() -> None:
    payload = apns_payload(push())
    assert payload["aps"] == {
        "alert": {"title": "Kolya (1996)", "body": "Because you watched Fargo"},
        "thread-id": "nudge-recommendations",
    }
    assert (payload["decision_id"], payload["item_id"]) == ("01795780800-abc", "242")


def test_fcm_payload_is_an_fcm_v1_message_with_string_data() -> None:
    message = fcm_payload(push("FCM"))["fcmV1Message"]["message"]
    assert message["notification"] == {"title": "Kolya (1996)", "body": "Because you watched Fargo"}
    assert message["data"] == {"decision_id": "01795780800-abc", "item_id": "242"}
    assert all(isinstance(v, str) for v in message["data"].values())
    assert message["android"]["collapse_key"] == "01795780800-abc"


@pytest.mark.parametrize(("platform", "key"), [("APNS", "APNS"), ("APNS_SANDBOX", "APNS_SANDBOX"), ("FCM", "GCM")])
def test_the_sns_message_holds_the_platforms_payload_as_a_string(platform: str, key: str) -> None:
    message = json.loads(platform_message(push(platform)))
    assert set(message) == {"default", key} and isinstance(message[key], str)
    inner = json.loads(message[key])
    assert inner == (apns_payload(push(platform)) if key != "GCM" else fcm_payload(push(platform)))


class CrashingSender(RecordingSender):
    """Delivery that dies on its first call, as a Lambda killed between recording and sending would."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def deliver(self, push: Push) -> DeliveryResult:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("the execution environment died")
        return super().deliver(push)


def decider(stack: Stack, dynamodb: Any, send: Any) -> DecideService:
    Catalog(dynamodb, out(stack, "CatalogTableName")).put_many(
        CatalogItem(item_id=i, title=f"Movie {i}", genres=["Drama"]) for i in "12345"
    )
    return DecideService(
        UserStateStore(dynamodb, out(stack, "UserStateTableName")),
        Catalog(dynamodb, out(stack, "CatalogTableName")),
        Ledger(dynamodb, out(stack, "LedgerTableName")),
        FakeRecommender([("1", 0.9), ("2", 0.8), ("3", 0.7)]),
        send,
        RulesPolicy(PolicyConfig(daily_push_cap=5)),
        DecideConfig(outbox_grace_seconds=180),
    )


def test_a_push_recorded_but_never_sent_is_sent_by_the_sweep_once(stack: Stack, dynamodb: Any) -> None:
    sender = CrashingSender()
    idempotent = send_once(sender, out(stack, "IdempotencyTableName"), boto3.client("dynamodb", region_name=REGION))
    service = decider(stack, dynamodb, idempotent)
    state = stored_user(stack, dynamodb)
    now = int(NOON.timestamp())
    with pytest.raises(RuntimeError):
        service.decide_for(state, now, "state:1")
    ledger = Ledger(dynamodb, out(stack, "LedgerTableName"))
    (unsent,) = ledger.unsent_pushes("outbox-" + str(sum(b"u1") % 4), now + 1)
    assert sender.sent == []
    # Within the grace period the sweep leaves it (the invocation that recorded it may still be running).
    assert service.sweep(now + 60).reconciled == 0
    swept = service.sweep(now + 240)
    assert (swept.reconciled, swept.sent) == (1, 1) and len(sender.sent) == 1
    row = ledger.get(*unsent)
    assert row is not None and row["status"] == "sent" and "outbox_shard" not in row
    # Nothing is left on the outbox, and a later sweep sends nothing again.
    assert service.sweep(now + 600).reconciled == 0 and len(sender.sent) == 1


class DiesBeforeMarking(Ledger):
    """The ledger of an invocation that dies right after the send, before recording it as sent."""

    dying = True

    def mark_sent(self, user_id: str, decision_id: str, message_id: str, sent_at: int) -> None:
        if self.dying:
            raise RuntimeError("died after the send")
        super().mark_sent(user_id, decision_id, message_id, sent_at)


def test_a_push_sent_but_not_marked_is_settled_without_a_second_send(stack: Stack, dynamodb: Any) -> None:
    sender = RecordingSender()
    idempotent = send_once(sender, out(stack, "IdempotencyTableName"), boto3.client("dynamodb", region_name=REGION))
    Catalog(dynamodb, out(stack, "CatalogTableName")).put_many(
        CatalogItem(item_id=i, title=f"Movie {i}", genres=["Drama"]) for i in "12345"
    )
    ledger = DiesBeforeMarking(dynamodb, out(stack, "LedgerTableName"))
    service = DecideService(
        UserStateStore(dynamodb, out(stack, "UserStateTableName")),
        Catalog(dynamodb, out(stack, "CatalogTableName")),
        ledger,
        FakeRecommender([("1", 0.9), ("2", 0.8), ("3", 0.7)]),
        idempotent,
        RulesPolicy(PolicyConfig(daily_push_cap=5)),
        DecideConfig(outbox_grace_seconds=180),
    )
    state = stored_user(stack, dynamodb)
    now = int(NOON.timestamp())
    with pytest.raises(RuntimeError):
        service.decide_for(state, now, "state:1")
    assert len(sender.sent) == 1
    ledger.dying = False
    swept = service.sweep(now + 240)
    assert swept.reconciled == 1 and len(sender.sent) == 1  # the send-once record answered for it
    row = ledger.get("u1", sender.sent[0]["decision_id"])
    assert row is not None and row["status"] == "sent" and row["action"] == Action.PUSH
