"""Endpoint mode end to end (DeliveryMode=endpoint) in moto: a device registers with its first push,
its endpoint follows a new token, a token the platform disabled stops pushes until the app reports a new
one, and each platform gets its own documented payload."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.sns.models import sns_backends

from runner.clock import SimulatedClock
from runner.pipeline import LocalPipeline
from shared.adapters.catalog import Catalog
from shared.domain.catalog import CatalogItem
from shared.domain.contract import BehaviourEvent, ProfileEvent
from testkit.audit import ledger as ledger_rows
from testkit.audit import user_states
from tests.integration.stacks import tiny_model_pipeline

ITEMS = [str(i) for i in range(1, 31)]
T0 = datetime(2026, 11, 27, 10, tzinfo=UTC)


def profile(user: str, token: str, platform: str, at: datetime, n: int) -> dict[str, Any]:
    event = ProfileEvent(
        schema_version=1,
        event_id=f"p-{user}-{n}",
        user_id=user,
        timestamp=at,
        type="profile",
        consent=True,
        timezone="UTC",
        push_token=token,
        platform=platform,
    )
    return json.loads(event.model_dump_json(exclude_none=True))  # type: ignore[no-any-return]


def cart(user: str, n: int, at: datetime) -> dict[str, Any]:
    # Carts always ask for a decision, whatever the decision interval.
    event = BehaviourEvent(
        schema_version=1, event_id=f"{user}-c{n}", user_id=user, timestamp=at, type="add_to_cart", item_id=ITEMS[n]
    )
    return json.loads(event.model_dump_json(exclude_none=True))  # type: ignore[no-any-return]


@pytest.fixture
def pipe(tmp_path: Path) -> Iterator[LocalPipeline]:
    apps = {"APNS": "app/APNS/nudge-ios", "FCM": "app/GCM/nudge-android"}
    arn = "arn:aws:sns:us-east-1:123456789012:"
    parameters = {
        "DeliveryMode": "endpoint",
        "ApnsPlatformApplicationArn": arn + apps["APNS"],
        "FcmPlatformApplicationArn": arn + apps["FCM"],
        "DailyPushCap": 20,
    }
    with tiny_model_pipeline(tmp_path, "nudge-push", T0, ITEMS, parameters) as pipeline:
        assert pipeline.account_id == "123456789012"
        sns = boto3.client("sns", region_name=pipeline.region)
        # The operator's part (docs/operations.md): platform applications holding the APNs/FCM credentials.
        sns.create_platform_application(Name="nudge-ios", Platform="APNS", Attributes={"PlatformCredential": "k"})
        sns.create_platform_application(Name="nudge-android", Platform="GCM", Attributes={"PlatformCredential": "k"})
        Catalog(boto3.resource("dynamodb", region_name=pipeline.region), pipeline.outputs["CatalogTableName"]).put_many(
            CatalogItem(item_id=i, title=f"Film {i}", genres=[f"G{int(i) % 7}"]) for i in ITEMS
        )
        yield pipeline


def send(pipe: LocalPipeline, records: list[dict[str, Any]], at: datetime) -> None:
    clock = pipe.clock
    assert isinstance(clock, SimulatedClock)
    clock.set(at + timedelta(seconds=30))
    pipe.put_events(records, partition_key="user_id")
    assert pipe.pump().quiescent


def endpoints(pipe: LocalPipeline) -> dict[str, Any]:
    return dict(sns_backends[pipe.account_id][pipe.region].platform_endpoints)


def decisions_of(pipe: LocalPipeline, user: str) -> list[dict[str, Any]]:
    return sorted((r for r in ledger_rows(pipe) if r["user_id"] == user), key=lambda r: r["decision_id"])


def test_devices_register_rotate_and_stop_when_disabled(pipe: LocalPipeline) -> None:
    at = T0
    send(pipe, [profile("ios", "apns-1", "APNS", at, 1), profile("droid", "fcm-1", "FCM", at, 1)], at)
    at += timedelta(minutes=1)
    send(pipe, [cart("ios", 1, at), cart("droid", 1, at)], at)

    # Registration: one endpoint per device, in its platform's application, holding the user's id.
    registered = {e.custom_user_data: e for e in endpoints(pipe).values()}
    assert set(registered) == {"ios", "droid"}
    assert registered["ios"].application.platform == "APNS" and registered["droid"].application.platform == "GCM"
    states = user_states(pipe)
    assert states["ios"].push_endpoint == registered["ios"].arn and states["ios"].push_endpoint_token == "apns-1"
    # Each platform got its documented payload, one per push sent, carrying the decision id feedback returns.
    sent = {r["decision_id"]: r for r in decisions_of(pipe, "ios") if r.get("status") == "sent"}
    apns = [json.loads(json.loads(m)["APNS"]) for m in registered["ios"].messages.values()]
    assert sent and sorted(p["decision_id"] for p in apns) == sorted(sent)
    assert all(p["aps"]["alert"]["title"] == sent[p["decision_id"]]["title"] for p in apns)
    fcm = [json.loads(json.loads(m)["GCM"])["fcmV1Message"]["message"] for m in registered["droid"].messages.values()]
    sent_droid = {r["decision_id"] for r in decisions_of(pipe, "droid") if r.get("status") == "sent"}
    assert sent_droid and {m["data"]["decision_id"] for m in fcm} == sent_droid
    ios_before = len(apns)

    # Rotation: the app reports a new token; the same endpoint now points at it.
    at += timedelta(minutes=10)
    send(pipe, [profile("ios", "apns-2", "APNS", at, 2)], at)
    at += timedelta(minutes=1)
    send(pipe, [cart("ios", 2, at)], at)
    assert len(endpoints(pipe)) == 2
    ios = endpoints(pipe)[registered["ios"].arn]
    assert ios.attributes["Token"] == "apns-2" and len(ios.messages) > ios_before
    assert user_states(pipe)["ios"].push_endpoint_token == "apns-2"

    # The platform disables the Android token (the app was uninstalled): that push is settled as
    # undeliverable, and later decisions stay silent without trying.
    sns = boto3.client("sns", region_name=pipe.region)
    sns.set_endpoint_attributes(EndpointArn=registered["droid"].arn, Attributes={"Enabled": "false"})
    for n in (2, 3):
        at += timedelta(minutes=10)
        send(pipe, [cart("droid", n, at)], at)
    rows = decisions_of(pipe, "droid")
    failed = [r for r in rows if r.get("status") == "undeliverable"]
    assert len(failed) == 1 and failed[0]["undeliverable"] == "endpoint_disabled"
    assert "undeliverable" in failed[0]["outcomes"] and "outbox_shard" not in failed[0]
    assert rows[-1]["action"] == "silence" and rows[-1]["reasons"] == ["push_token_disabled"]
    assert user_states(pipe)["droid"].push_token_disabled == "fcm-1"

    # A new token brings the device back: the endpoint is re-pointed and enabled, and pushes resume.
    at += timedelta(minutes=10)
    send(pipe, [profile("droid", "fcm-2", "FCM", at, 2)], at)
    at += timedelta(minutes=1)
    send(pipe, [cart("droid", 4, at)], at)
    droid = endpoints(pipe)[registered["droid"].arn]
    assert droid.enabled and droid.attributes["Token"] == "fcm-2" and len(droid.messages) > len(sent_droid)
    assert decisions_of(pipe, "droid")[-1]["status"] == "sent"
    # Nothing was left on the outbox.
    assert all("outbox_shard" not in r for r in ledger_rows(pipe))

    # Erasure removes the device's endpoint too (its custom data is the user's id).
    erased = pipe.invoke("EraseFunction", {"user_id": "ios"})
    assert erased.ok and erased.response["device_endpoints"] == 1, erased.error_message
    assert {e.custom_user_data for e in endpoints(pipe).values()} == {"droid"}
