"""Composition root: builds each function's service from its settings, once per container.

Nothing here runs at import time. Every factory is cached, so a warm container reuses
its boto3 clients, its catalog cache and its ONNX session; ``reset()`` exists for tests,
which build several "containers" in one process.
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from shared.adapters.catalog import Catalog
from shared.adapters.ledger import Ledger
from shared.adapters.object_archive import ObjectArchive
from shared.adapters.push_publisher import PushPublisher
from shared.adapters.user_state_store import UserStateStore
from shared.config import DecideSettings, FeaturesSettings, FeedbackSettings, IngestSettings
from shared.decide_service import DecideConfig, DecideService
from shared.feature_service import FeaturesService
from shared.feedback_service import FeedbackService
from shared.ingest import IngestService
from shared.model import OnnxRecommender, Recommender, download_model
from shared.policy import PolicyConfig

# Fail fast inside a Lambda timeout; the event source mapping retries the batch.
_BOTO_CONFIG = Config(
    retries={"max_attempts": 3, "mode": "standard"},
    connect_timeout=2,
    read_timeout=5,
    tcp_keepalive=True,
)


@cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()


@cache
def client(service: str) -> Any:
    return _session().client(service, config=_BOTO_CONFIG)


@cache
def dynamodb() -> Any:
    return _session().resource("dynamodb", config=_BOTO_CONFIG)


@cache
def ingest_service() -> IngestService:
    settings = IngestSettings()
    return IngestService(
        ObjectArchive(client("s3"), settings.archive_bucket),
        archive_prefix=settings.archive_prefix,
        quarantine_prefix=settings.quarantine_prefix,
    )


@cache
def features_service() -> FeaturesService:
    settings = FeaturesSettings()
    return FeaturesService(
        UserStateStore(dynamodb(), settings.user_state_table),
        Catalog(dynamodb(), settings.catalog_table),
        max_write_attempts=settings.max_write_attempts,
    )


@cache
def decide_settings() -> DecideSettings:
    return DecideSettings()


def load_recommender(settings: DecideSettings) -> Recommender:
    """The model layer by default; a given S3 version when MODEL_S3_URI is set (no code redeploy)."""
    if settings.model_s3_uri:
        cache_dir = Path(tempfile.gettempdir()) / "nudge-model"
        return OnnxRecommender.from_dir(download_model(settings.model_s3_uri, cache_dir, client("s3")))
    return OnnxRecommender.from_dir(settings.model_dir)


@cache
def recommender() -> Recommender:
    return load_recommender(decide_settings())


@cache
def idempotency_config() -> Any:
    """Decide's handler registers each invocation's context here, so an in-progress send
    expires with the Lambda timeout instead of blocking retries for the whole record lifetime."""
    # Imported here: the idempotency utility pulls in jmespath and hashing only decide needs.
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

    return IdempotencyConfig(event_key_jmespath="decision_id", expires_after_seconds=7 * 24 * 3600)


def _send_once(settings: DecideSettings) -> Any:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, idempotent_function

    publisher = PushPublisher(client("sns"), settings.push_topic_arn)
    persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table, boto3_client=client("dynamodb"))
    config = idempotency_config()

    @idempotent_function(  # type: ignore[untyped-decorator]
        data_keyword_argument="push", persistence_store=persistence, config=config
    )
    def send(push: dict[str, Any]) -> str:
        return publisher.publish(push, decision_id=str(push["decision_id"]))

    return lambda push: send(push=push)


@cache
def decide_service() -> DecideService:
    settings = decide_settings()
    policy = PolicyConfig(
        daily_push_cap=settings.daily_push_cap,
        score_threshold=settings.score_threshold,
        quiet_hours_start=settings.quiet_hours_start,
        quiet_hours_end=settings.quiet_hours_end,
    )
    return DecideService(
        UserStateStore(dynamodb(), settings.user_state_table),
        Catalog(dynamodb(), settings.catalog_table),
        Ledger(dynamodb(), settings.ledger_table),
        recommender(),
        _send_once(settings),
        DecideConfig(
            policy=policy,
            candidates=settings.candidates,
            push_ttl_days=settings.push_ttl_days,
            silence_ttl_days=settings.silence_ttl_days,
            due_shards=settings.due_shards,
        ),
    )


@cache
def feedback_service() -> FeedbackService:
    settings = FeedbackSettings()
    return FeedbackService(
        Ledger(dynamodb(), settings.ledger_table),
        UserStateStore(dynamodb(), settings.user_state_table),
        ObjectArchive(client("s3"), settings.archive_bucket),
        prefix=settings.feedback_prefix,
    )


def reset() -> None:
    """Forget every cached client and service (a fresh container, for tests)."""
    for factory in (
        _session,
        client,
        dynamodb,
        ingest_service,
        features_service,
        decide_settings,
        idempotency_config,
        recommender,
        decide_service,
        feedback_service,
    ):
        factory.cache_clear()
