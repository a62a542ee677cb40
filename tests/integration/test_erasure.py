"""Erasure through the local runner: after EraseFunction, nothing of the user remains anywhere.

"Anywhere" is checked from the outside, not through the code under test: every item of every
table of the stack is scanned, every version of every S3 object is read (quarantined records
decoded too) and every queue is drained, looking for the user's id, their decision ids and the
keys of their send-once records. Other users' data must be exactly what it was.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from runner.pipeline import LocalPipeline
from runner.server import create_outbox
from shared.adapters.catalog import Catalog
from shared.adapters.idempotency_records import send_record_key
from shared.adapters.object_archive import ObjectArchive
from shared.domain.catalog import CatalogItem
from shared.domain.contract import FeedbackEvent
from shared.domain.pseudonym import Pseudonymizer, is_pseudonym
from testkit import traffic
from testkit.queues import receive_json, receive_messages
from tests.integration.stacks import tiny_model_pipeline

pytestmark = pytest.mark.slow(seconds=9)

ITEMS = [str(i) for i in range(1, 9)]
T0 = datetime(2026, 11, 27, 10, tzinfo=UTC)
TARGET = "u-erase-7f3a"
OTHERS = ["u-keep-b21c", "u-keep-c904"]
KEY_PARAMETER = "/nudge/test/pseudonym-key"
KEY = "k" * 48


def make_pipeline(tmp_path: Path, parameters: dict[str, str] | None = None) -> LocalPipeline:
    return tiny_model_pipeline(tmp_path, "nudge-erase", T0, ITEMS, parameters)


def load_catalog(pipe: LocalPipeline) -> None:
    Catalog(boto3.resource("dynamodb", region_name=pipe.region), pipe.outputs["CatalogTableName"]).put_many(
        CatalogItem(item_id=i, title=f"Film {i}", genres=["Drama"]) for i in ITEMS
    )


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[LocalPipeline]:
    with make_pipeline(tmp_path) as pipe:
        load_catalog(pipe)
        yield pipe


def events_for(user: str, tag: str) -> list[dict[str, Any]]:
    """``tag`` goes into event ids and the push token (the user id itself, or something opaque)."""
    profile = traffic.profile(user, T0, tag=tag)
    behaviour = traffic.behaviour(user, 5, T0, ITEMS, tag=tag)
    return [json.loads(e.model_dump_json(exclude_none=True)) for e in (profile, *behaviour)]


def run_traffic(pipe: LocalPipeline, users: list[str], opaque: bool = False) -> list[dict[str, Any]]:
    """Events, one invalid record per user (quarantined), then an "opened" for every push."""
    outbox = str(create_outbox(pipe, "erase-outbox", [pipe.outputs["PushTopicArn"]])["queue_url"])
    records: list[Any] = [e for n, u in enumerate(users) for e in events_for(u, f"n{n}" if opaque else u)]
    pipe.put_events(records, partition_key="user_id")
    for user in users:
        broken = json.dumps({"schema_version": 1, "event_id": f"bad-{user}", "user_id": user, "type": "view"})
        pipe.put_events([broken.encode()], partition_key=lambda _, user=user: user)  # type: ignore[misc]
    assert pipe.pump().quiescent
    pushes = receive_json(pipe, outbox)
    feedback = [
        FeedbackEvent(
            schema_version=1,
            event_id=f"fb-{p['decision_id']}",
            user_id=p["user_id"] if not is_pseudonym(p["user_id"]) else original(p["user_id"], users),
            timestamp=T0 + timedelta(minutes=30),
            type="opened",
            decision_id=p["decision_id"],
            item_id=p["item_id"],
        )
        for p in pushes
    ]
    pipe.clock.set(T0 + timedelta(minutes=31))  # type: ignore[attr-defined]
    pipe.put_events([json.loads(f.model_dump_json(exclude_none=True)) for f in feedback], partition_key="user_id")
    assert pipe.pump().quiescent
    return pushes


def original(pseudonym: str, users: list[str]) -> str:
    """The app knows its own users: feedback carries the raw id, as the app sends it."""
    by_pseudonym = {Pseudonymizer(KEY.encode())(u): u for u in users}
    return by_pseudonym[pseudonym]


# ------------------------------------------------------------ looking everywhere, from outside


def table_items(pipe: LocalPipeline) -> dict[str, list[str]]:
    """Every item of every table of the stack, as canonical JSON text."""
    client = pipe.client("dynamodb")
    out: dict[str, list[str]] = {}
    for lid, resource in pipe.resources.items():
        if resource.type != "AWS::DynamoDB::Table":
            continue
        items: list[str] = []
        for page in client.get_paginator("scan").paginate(TableName=resource.ref):
            items.extend(json.dumps(item, sort_keys=True, default=str) for item in page["Items"])
        out[lid] = sorted(items)
    return out


def object_texts(pipe: LocalPipeline) -> dict[tuple[str, str], list[str]]:
    """Every version of every object in the bucket: its lines, quarantined payloads decoded."""
    s3, bucket = pipe.client("s3"), pipe.outputs["ArchiveBucketName"]
    out: dict[tuple[str, str], list[str]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            body = s3.get_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])["Body"].read()
            text = gzip.decompress(body).decode() if body[:2] == b"\x1f\x8b" else body.decode("utf-8", "replace")
            lines = []
            for line in text.splitlines():
                decoded = ""
                data = json.loads(line).get("data") if line.startswith("{") else None
                if isinstance(data, str):
                    try:
                        decoded = base64.b64decode(data, validate=True).decode("utf-8", "replace")
                    except (binascii.Error, ValueError):
                        decoded = data
                lines.append(line + decoded)
            out[(version["Key"], version["VersionId"])] = lines
    return out


def current_lines(pipe: LocalPipeline) -> Counter[str]:
    archive = object_texts(pipe)
    s3, bucket = pipe.client("s3"), pipe.outputs["ArchiveBucketName"]
    latest = {
        (v["Key"], v["VersionId"])
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
        for v in page.get("Versions", [])
        if v["IsLatest"]
    }
    return Counter(line for key, lines in archive.items() if key in latest for line in lines)


def queue_messages(pipe: LocalPipeline) -> list[str]:
    sqs = pipe.client("sqs")
    bodies: list[str] = []
    for url in sqs.list_queues().get("QueueUrls", []):
        bodies.extend(receive_messages(pipe, url))
    return bodies


def mentions(text: str, needles: set[str]) -> bool:
    return any(needle in text for needle in needles)


def decision_ids_of(pipe: LocalPipeline, user: str) -> set[str]:
    return {
        json.loads(item)["decision_id"]["S"]
        for item in table_items(pipe)["LedgerTable"]
        if json.loads(item)["user_id"]["S"] == user
    }


def assert_erased(pipe: LocalPipeline, needles: set[str]) -> None:
    for lid, items in table_items(pipe).items():
        assert not [i for i in items if mentions(i, needles)], lid
    for key, lines in object_texts(pipe).items():
        assert not [line for line in lines if mentions(line, needles)], key
    assert not [m for m in queue_messages(pipe) if mentions(m, needles)]


# ------------------------------------------------------------ tests


def test_erase_leaves_nothing_of_the_user_and_everything_of_the_others(pipeline: LocalPipeline) -> None:
    pushes = run_traffic(pipeline, [TARGET, *OTHERS])
    assert {p["user_id"] for p in pushes} >= {TARGET}, "the target needs a push for every store to hold them"
    decisions = decision_ids_of(pipeline, TARGET)
    sent = {p["decision_id"] for p in pushes if p["user_id"] == TARGET}
    # The send-once records are where erasure looks for them (keys derived from the decision id).
    idempotency_keys = {send_record_key(d) for d in sent}
    stored_keys = {json.loads(i)["id"]["S"] for i in table_items(pipeline)["IdempotencyTable"]}
    assert idempotency_keys <= stored_keys
    needles = {TARGET, *decisions, *idempotency_keys}

    # Before: the user is in every store erasure must clean.
    tables = table_items(pipeline)
    for lid in ("UserStateTable", "LedgerTable", "PushCountersTable"):
        assert any(mentions(i, {TARGET}) for i in tables[lid]), lid
    lines = current_lines(pipeline)
    for prefix in ("archive/", "quarantine/", "feedback/"):
        keys = [k for k, v in object_texts(pipeline).items() if k[0].startswith(prefix)]
        assert any(mentions(line, {TARGET}) for k in keys for line in object_texts(pipeline)[k]), prefix
    others_tables = {lid: [i for i in items if not mentions(i, needles)] for lid, items in tables.items()}
    others_lines = Counter({line: n for line, n in lines.items() if not mentions(line, needles)})

    # A retried batch leaves a noncurrent version behind: erasure must find those too.
    s3, bucket = pipeline.client("s3"), pipeline.outputs["ArchiveBucketName"]
    versions = object_texts(pipeline)
    key = next(k for (k, _), v in versions.items() if k.startswith("archive/") and mentions(str(v), {TARGET}))
    s3.put_object(Bucket=bucket, Key=key, Body=s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    result = pipeline.invoke("EraseFunction", {"user_ids": [TARGET]})
    assert result.ok, result.error_payload()
    report = result.response
    assert report["users"] == 1 and report["user_states"] == 1 and report["counters"] == 1
    assert report["decisions"] == len(decisions) and report["lines_removed"] > 0

    assert_erased(pipeline, needles)
    after = table_items(pipeline)
    assert {lid: [i for i in items if not mentions(i, needles)] for lid, items in after.items()} == others_tables
    assert current_lines(pipeline) == others_lines
    assert all(s.errors == 0 for s in pipeline.stats().functions.values())

    # Erasing again (a retried request) finds nothing and changes nothing.
    again = pipeline.invoke("EraseFunction", {"user_id": TARGET})
    assert again.ok and again.response["lines_removed"] == 0 and again.response["user_states"] == 0
    assert table_items(pipeline) == after


def test_pseudonymous_ids_never_store_the_raw_id_and_erase_by_raw_id(tmp_path: Path) -> None:
    with make_pipeline(tmp_path, {"PseudonymKeyParameter": KEY_PARAMETER}) as pipe:
        # CloudFormation cannot create SecureStrings: the operator (here the test) puts it.
        pipe.client("ssm").put_parameter(Name=KEY_PARAMETER, Value=KEY, Type="SecureString")
        load_catalog(pipe)
        users = [TARGET, *OTHERS]
        pushes = run_traffic(pipe, users, opaque=True)
        assert pushes and all(is_pseudonym(p["user_id"]) for p in pushes)
        raw = set(users)
        pseudonyms = {Pseudonymizer(KEY.encode())(u) for u in users}
        # Tables, the archive and the feedback log hold pseudonyms only.
        for lid, items in table_items(pipe).items():
            assert not [i for i in items if mentions(i, raw)], lid
        archive = ObjectArchive(pipe.client("s3"), pipe.outputs["ArchiveBucketName"])
        for key in archive.keys(""):
            for line in archive.read_lines(key):
                line.pop("data", None)  # quarantine keeps the record as the producer sent it
                assert not mentions(json.dumps(line), raw), key
        assert any(mentions(i, pseudonyms) for i in table_items(pipe)["UserStateTable"])

        target_pseudonym = Pseudonymizer(KEY.encode())(TARGET)
        decisions = decision_ids_of(pipe, target_pseudonym)
        result = pipe.invoke("EraseFunction", {"user_ids": [TARGET]})
        assert result.ok, result.error_payload()
        assert_erased(pipe, {TARGET, target_pseudonym, *decisions})
        others = {Pseudonymizer(KEY.encode())(u) for u in OTHERS}
        keys = {json.loads(i)["user_id"]["S"] for i in table_items(pipe)["UserStateTable"]}
        assert keys == {k for u in others for k in (u, f"{u}#profile")}  # hot and profile items
