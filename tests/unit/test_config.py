"""Each function's pydantic-settings model reads the environment template.yaml sets, and validates it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.plumbing.config import DecideSettings, EraseSettings, IngestSettings

TABLES = {
    "USER_STATE_TABLE": "users",
    "LEDGER_TABLE": "ledger",
    "IDEMPOTENCY_TABLE": "idem",
    "PUSH_COUNTERS_TABLE": "counters",
    "ARCHIVE_BUCKET": "archive",
}


def test_fields_are_read_from_the_environment_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHIVE_BUCKET", "my-archive")
    monkeypatch.setenv("EVENT_IDS_TABLE", "event-ids")
    monkeypatch.setenv("archive_prefix", "raw/")  # any case
    settings = IngestSettings()
    assert (settings.archive_bucket, settings.archive_prefix) == ("my-archive", "raw/")
    assert IngestSettings(archive_bucket="given").archive_bucket == "given"  # keyword arguments win
    monkeypatch.setenv("ARCHIVE_BUCKET", "x")  # shorter than min_length
    with pytest.raises(ValidationError):
        IngestSettings()


def test_numbers_literals_and_json_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TABLES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CATALOG_TABLE", "catalog")
    monkeypatch.setenv("PUSH_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:push")
    monkeypatch.setenv("DAILY_PUSH_CAP", "5")
    monkeypatch.setenv("EXPLORATION_SHARE", "0.1")
    decide = DecideSettings()
    assert (decide.daily_push_cap, decide.exploration_share) == (5, 0.1)
    monkeypatch.setenv("EXPLORATION_SHARE", "1.5")
    with pytest.raises(ValidationError):
        DecideSettings()
    monkeypatch.setenv("LINE_PREFIXES", '["archive/", "feedback/"]')
    assert EraseSettings().line_prefixes == ("archive/", "feedback/")
