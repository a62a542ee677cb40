"""Composition root: builds each function's service from its settings, once per container.

Nothing here runs at import time. Every factory is cached, so a warm container reuses
its boto3 clients, its catalog cache and its ONNX session; ``reset()`` exists for tests,
which build several "containers" in one process.

boto3, the services and the model are imported inside the factories, so each function pays
only for what its own factory builds at cold start: ingest, features and feedback never load
numpy or onnxruntime (bench/cold_start.py measures it), and only the catalog function loads the
sentence encoder (``text_encoder``; decide never does, tests/unit/test_catalog.py checks it).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.plumbing.config import (
    CatalogSettings,
    ContractSettings,
    DecideSettings,
    EraseSettings,
    FeaturesSettings,
    FeedbackSettings,
    IngestSettings,
    PseudonymSettings,
)

if TYPE_CHECKING:
    from shared.domain.admission import EventIdRegistry
    from shared.domain.model_registry import ModelSource
    from shared.domain.policy import Policy
    from shared.domain.ports import Deliverer, SendOnce
    from shared.domain.pseudonym import Pseudonymizer
    from shared.domain.recommendation import ServedModel
    from shared.model import Recommender
    from shared.plumbing.stream_batch import Quarantine
    from shared.services.catalog import CatalogService, TextEncoder
    from shared.services.decide import DecideService
    from shared.services.erasure import EraseService
    from shared.services.features import FeaturesService
    from shared.services.feedback import FeedbackService
    from shared.services.ingest import IngestService


@cache
def _boto_config() -> Any:
    from botocore.config import Config

    # Fail fast inside a Lambda timeout; the event source mapping retries the batch.
    return Config(
        retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=5, tcp_keepalive=True
    )


@cache
def _session() -> Any:
    # One session per container; its data loader skips botocore's walk over every service directory.
    from shared.plumbing.aws_session import session

    return session(_loaded_models[-1] if _loaded_models else None)


# The data loader of a session forgotten by forget_connections: its parsed service models (no
# credentials, no sockets) serve the next session, so rebuilding the clients after a restore is cheap.
_loaded_models: list[Any] = []


@cache
def client(service: str) -> Any:
    return _session().client(service, config=_boto_config())


@cache
def dynamodb() -> Any:
    return _session().resource("dynamodb", config=_boto_config())


@cache
def pseudonymizer() -> Pseudonymizer | None:
    """The HMAC pseudonymizer when PSEUDONYM_KEY_PARAMETER names a key; None (raw ids) otherwise.

    Nothing is imported or fetched when it is off; when on, the key is read once per container.
    """
    name = PseudonymSettings().pseudonym_key_parameter
    if not name:
        return None
    from shared.adapters.pseudonym_key import read_pseudonym_key
    from shared.domain.pseudonym import Pseudonymizer

    return Pseudonymizer(read_pseudonym_key(client("ssm"), name))


@cache
def image_embedding_dim() -> int:
    """The deployment's catalog image-embedding length (template parameter ImageEmbeddingDim), which every
    stream consumer passes to the contract so that all of them judge a catalog event alike."""
    return ContractSettings().image_embedding_dim


def _registry(table_name: str) -> EventIdRegistry:
    from shared.adapters.event_ids import DynamoEventIdRegistry
    from shared.domain.admission import CLAIM_TTL_SECONDS

    return DynamoEventIdRegistry(dynamodb(), table_name, CLAIM_TTL_SECONDS)


def _quarantine(bucket: str, prefix: str, stage: str) -> Quarantine:
    from shared.adapters.object_archive import ObjectArchive
    from shared.plumbing.stream_batch import Quarantine

    return Quarantine(ObjectArchive(client("s3"), bucket), prefix, stage, pseudonymizer())


@cache
def ingest_quarantine() -> Quarantine:
    settings = IngestSettings()
    return _quarantine(settings.archive_bucket, settings.quarantine_prefix, "ingest")


@cache
def features_quarantine() -> Quarantine:
    settings = FeaturesSettings()
    return _quarantine(settings.archive_bucket, settings.quarantine_prefix, "features")


@cache
def decide_quarantine() -> Quarantine:
    settings = decide_settings()
    return _quarantine(settings.archive_bucket, settings.quarantine_prefix, "decide")


@cache
def feedback_quarantine() -> Quarantine:
    settings = FeedbackSettings()
    return _quarantine(settings.archive_bucket, settings.quarantine_prefix, "feedback")


@cache
def catalog_quarantine() -> Quarantine:
    settings = catalog_settings()
    # Catalog records name items, not users: nothing to pseudonymize in their quarantine lines.
    from shared.adapters.object_archive import ObjectArchive
    from shared.plumbing.stream_batch import Quarantine

    return Quarantine(ObjectArchive(client("s3"), settings.archive_bucket), settings.quarantine_prefix, "catalog", None)


@cache
def ingest_service() -> IngestService:
    from shared.adapters.object_archive import ObjectArchive
    from shared.services.ingest import IngestService

    settings = IngestSettings()
    return IngestService(
        ObjectArchive(client("s3"), settings.archive_bucket),
        _registry(settings.event_ids_table),
        archive_prefix=settings.archive_prefix,
        quarantine_prefix=settings.quarantine_prefix,
        pseudonymize=pseudonymizer(),
    )


@cache
def features_service() -> FeaturesService:
    from shared.adapters.catalog import Catalog
    from shared.adapters.user_state_store import UserStateStore
    from shared.services.features import FeaturesService

    settings = FeaturesSettings()
    return FeaturesService(
        UserStateStore(dynamodb(), settings.user_state_table),
        Catalog(dynamodb(), settings.catalog_table),
        _registry(settings.event_ids_table),
        max_write_attempts=settings.max_write_attempts,
        decision_interval_seconds=settings.decision_interval_seconds,
    )


@cache
def catalog_settings() -> CatalogSettings:
    return CatalogSettings()


ENCODER_TOKENIZER_FILE = "tokenizer.json"


def encoder_files(settings: CatalogSettings) -> tuple[Path, Path]:
    """The encoder layer's graph and tokenizer; raises TextEncoderError naming what is missing.

    The catalog function calls it at import (cold start), so a deployment built without `make encoder`'s
    output fails its first invocation loudly instead of writing items without vectors.
    """
    folder = Path(settings.encoder_dir)
    files = (folder / settings.encoder_model_file, folder / ENCODER_TOKENIZER_FILE)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        from shared.adapters.text_encoder import TextEncoderError

        raise TextEncoderError(
            f"encoder files missing: {', '.join(missing)} (the EncoderLayer is built from `make encoder`'s output)"
        )
    return files


@cache
def text_encoder() -> TextEncoder:
    """The int8 sentence encoder, loaded once per container (only the catalog function calls this)."""
    from shared.adapters.text_encoder import OnnxTextEncoder

    model, tokenizer = encoder_files(catalog_settings())
    return OnnxTextEncoder.from_files(model, tokenizer)


@cache
def catalog_service() -> CatalogService:
    from shared.adapters.catalog import CatalogItemWriter
    from shared.services.catalog import CatalogService

    settings = catalog_settings()
    return CatalogService(
        CatalogItemWriter(dynamodb(), settings.catalog_table),
        text_encoder(),
        _registry(settings.event_ids_table),
        encoder_name=f"all-MiniLM-L6-v2/{settings.encoder_model_file}",
    )


@cache
def decide_settings() -> DecideSettings:
    return DecideSettings()


def load_default_model(settings: DecideSettings) -> ServedModel:
    """The bootstrap default: the model layer, or a given S3 folder when MODEL_S3_URI is set (no code
    redeploy); either way with the calibration beside it, refused if it was fitted for another graph."""
    from shared.adapters.model_registry import load_served_model
    from shared.model import download_model

    if settings.model_s3_uri:
        cache_dir = Path(tempfile.gettempdir()) / "nudge-model"
        return load_served_model(download_model(settings.model_s3_uri, cache_dir, client("s3")))
    return load_served_model(settings.model_dir)


def load_recommender(settings: DecideSettings) -> Recommender:
    return load_default_model(settings).recommender


@cache
def default_model() -> ServedModel:
    return load_default_model(decide_settings())


@cache
def recommender() -> Recommender:
    return default_model().recommender


@cache
def served_models() -> ModelSource:
    """What decide serves: the registry pointer's champion, re-read at most every MODEL_POINTER_TTL_SECONDS,
    falling back on the bootstrap default while no version was promoted; without a pointer, the default."""
    from shared.domain.model_registry import FixedModel, HotSwap

    settings = decide_settings()
    if not settings.model_pointer_parameter:
        return FixedModel(default_model())
    from shared.adapters.model_registry import S3ModelRegistry, SsmModelPointer

    registry = S3ModelRegistry(client("s3"), settings.archive_bucket, settings.model_registry_prefix)
    downloads = Path(tempfile.gettempdir()) / "nudge-models"

    def load(version: str) -> ServedModel:
        served = registry.load(version, downloads)
        registry.prune(downloads, keep=version)
        return served

    return HotSwap(
        default_model(),
        SsmModelPointer(client("ssm"), settings.model_pointer_parameter).read,
        load,
        ttl_seconds=settings.model_pointer_ttl_seconds,
        on_swap=lambda before, after: _model_metric("ModelSwaps"),
        on_refused=lambda what, exc: _model_metric("ModelsRefused"),
    )


def _model_metric(name: str) -> None:
    # Powertools metrics share one buffer per namespace: the handler's log_metrics flushes it.
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    Metrics().add_metric(name=name, unit=MetricUnit.Count, value=1)


@cache
def idempotency_config() -> Any:
    """Decide's handler registers each invocation's context here, so an in-progress send
    expires with the Lambda timeout instead of blocking retries for the whole record lifetime."""
    # Imported here: the idempotency utility pulls in jmespath and hashing only decide needs.
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

    return IdempotencyConfig(event_key_jmespath="decision_id", expires_after_seconds=7 * 24 * 3600)


def send_once(deliverer: Deliverer, idempotency_table: str, dynamodb_client: Any) -> SendOnce:
    """Wrap delivery in Powertools idempotency keyed by decision id: a decision is handed over once,
    however often a retried or duplicated trigger (or the outbox reconciler) reaches it."""
    import dataclasses

    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, idempotent_function

    from shared.adapters.idempotency_records import SEND_KEY_PREFIX
    from shared.domain.delivery import DeliveryResult, Push

    persistence = DynamoDBPersistenceLayer(table_name=idempotency_table, boto3_client=dynamodb_client)
    # What this container's deliverer returned, by decision id, until the send record says so too.
    delivered: dict[str, dict[str, str]] = {}

    @idempotent_function(  # type: ignore[untyped-decorator]
        data_keyword_argument="push",
        persistence_store=persistence,
        config=idempotency_config(),
        # A fixed prefix instead of the function's name, so erasure can find a decision's record.
        key_prefix=SEND_KEY_PREFIX,
    )
    def send(push: dict[str, Any]) -> dict[str, str]:
        record = deliverer.deliver(Push(**push)).as_record()
        delivered[push["decision_id"]] = record
        return record

    def send_translated(push: Push) -> DeliveryResult:
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyInconsistentStateError,
            IdempotencyPersistenceLayerError,
        )

        from shared.domain.errors import TransientStorageError

        try:
            return DeliveryResult.from_record(send(push=dataclasses.asdict(push)))
        except IdempotencyPersistenceLayerError as exc:
            sent = delivered.pop(push.decision_id, None)
            if sent is not None:
                # The platform took the push and only its send record failed to save: say it was sent,
                # so the ledger records it and neither a retry nor the sweep sends it again.
                return DeliveryResult.from_record(sent)
            raise TransientStorageError(f"send_once: {type(exc).__name__}") from exc
        # Another invocation is sending this decision right now, or the record is inconsistent: the
        # trigger is retried, not quarantined.
        except (IdempotencyAlreadyInProgressError, IdempotencyInconsistentStateError) as exc:
            raise TransientStorageError(f"send_once: {type(exc).__name__}") from exc
        finally:
            delivered.pop(push.decision_id, None)

    return send_translated


def deliverer(settings: DecideSettings) -> Deliverer:
    """Endpoint mode: SNS mobile push endpoints in the configured platform applications; topic mode:
    one topic a team's own bridge subscribes to (template parameter DeliveryMode)."""
    from shared.adapters.push_publisher import EndpointDeliverer, TopicDeliverer

    if settings.delivery_mode == "endpoint":
        return EndpointDeliverer(
            client("sns"),
            {
                "APNS": settings.apns_platform_application_arn,
                "APNS_SANDBOX": settings.apns_sandbox_platform_application_arn,
                "FCM": settings.fcm_platform_application_arn,
            },
        )
    return TopicDeliverer(client("sns"), settings.push_topic_arn)


@cache
def decide_policy() -> Policy:
    """The production policy from decide's settings, unless a local composition installed another."""
    if _installed_policy:
        return _installed_policy[-1]
    from shared.domain.engagement import FatigueConfig
    from shared.domain.policy import PolicyConfig, RulesPolicy

    settings = decide_settings()
    return RulesPolicy(
        PolicyConfig(
            daily_push_cap=settings.daily_push_cap,
            score_threshold=settings.score_threshold,
            quiet_hours_start=settings.quiet_hours_start,
            quiet_hours_end=settings.quiet_hours_end,
            exploration_share=settings.exploration_share,
            fatigue=FatigueConfig(
                base=settings.fatigue_base,
                per_recent_push=settings.fatigue_per_recent_push,
                dismissal_weight=settings.fatigue_dismissal_weight,
                per_push_today=settings.fatigue_per_push_today,
            ),
        )
    )


# A policy installed by a local composition (the demo's baselines run in the local runner); never set
# in a deployed function, whose only policy is RulesPolicy.
_installed_policy: list[Policy] = []


def install_policy(policy: Policy) -> None:
    """Make decide use ``policy`` from its next service on (this container only)."""
    _installed_policy[:] = [policy]
    decide_policy.cache_clear()
    decide_service.cache_clear()


@cache
def decide_service() -> DecideService:
    from shared.adapters.catalog import Catalog
    from shared.adapters.ledger import Ledger
    from shared.adapters.push_counters import PushCounters
    from shared.adapters.user_state_store import UserStateStore
    from shared.domain.caps import CapsConfig
    from shared.services.decide import DecideConfig, DecideService

    settings = decide_settings()
    caps = CapsConfig(
        daily=settings.daily_push_cap,
        weekly=settings.weekly_push_cap,
        global_per_minute=settings.global_pushes_per_minute,
    )
    return DecideService(
        UserStateStore(dynamodb(), settings.user_state_table),
        Catalog(dynamodb(), settings.catalog_table),
        Ledger(dynamodb(), settings.ledger_table),
        # Each decision takes its model, calibration and version from here as one value (hot swap).
        served_models(),
        send_once(deliverer(settings), settings.idempotency_table, client("dynamodb")),
        decide_policy(),
        DecideConfig(
            caps=caps,
            candidates=settings.candidates,
            push_ttl_days=settings.push_ttl_days,
            silence_ttl_days=settings.silence_ttl_days,
            due_shards=settings.due_shards,
            outbox_grace_seconds=settings.outbox_grace_seconds,
        ),
        PushCounters(dynamodb(), settings.push_counters_table),
    )


@cache
def feedback_service() -> FeedbackService:
    from shared.adapters.ledger import Ledger
    from shared.adapters.object_archive import ObjectArchive
    from shared.adapters.user_state_store import UserStateStore
    from shared.services.feedback import FeedbackService

    settings = FeedbackSettings()
    return FeedbackService(
        Ledger(dynamodb(), settings.ledger_table),
        UserStateStore(dynamodb(), settings.user_state_table),
        ObjectArchive(client("s3"), settings.archive_bucket),
        _registry(settings.event_ids_table),
        prefix=settings.feedback_prefix,
    )


def build_erase_service(settings: EraseSettings, pseudonymize: Callable[[str], str] | None) -> EraseService:
    """Erase's service from explicit settings (the function's environment, or the erase CLI's stack)."""
    from shared.adapters.idempotency_records import IdempotencyRecords
    from shared.adapters.ledger import Ledger
    from shared.adapters.object_archive import ObjectArchive
    from shared.adapters.push_counters import PushCounters
    from shared.adapters.push_publisher import DeviceEndpointRegistry
    from shared.adapters.user_state_store import UserStateStore
    from shared.services.erasure import EraseService

    return EraseService(
        UserStateStore(dynamodb(), settings.user_state_table),
        Ledger(dynamodb(), settings.ledger_table),
        IdempotencyRecords(dynamodb(), settings.idempotency_table),
        PushCounters(dynamodb(), settings.push_counters_table),
        ObjectArchive(client("s3"), settings.archive_bucket),
        prefixes=settings.line_prefixes,
        pseudonymize=pseudonymize,
        endpoints=DeviceEndpointRegistry(client("sns")),
    )


@cache
def erase_service() -> EraseService:
    return build_erase_service(EraseSettings(), pseudonymizer())


def forget_connections() -> None:
    """Forget the session, its clients and every service or quarantine holding one; they are rebuilt on
    first use. What holds no connection and no credential stays: the settings, the model, the policy,
    the pseudonymizer's key and botocore's parsed service models. For a SnapStart restore
    (shared/plumbing/snapstart.py): the snapshot's sockets and credentials belong to another environment."""
    if _session.cache_info().currsize:
        from shared.plumbing.aws_session import loader_of

        _loaded_models[:] = [loader_of(_session())]
    for factory in _connected():
        factory.cache_clear()


def _connected() -> tuple[Any, ...]:
    """The cached factories whose values hold the session or one of its clients."""
    return (
        _session,
        client,
        dynamodb,
        ingest_service,
        features_service,
        decide_service,
        feedback_service,
        erase_service,
        catalog_service,
        ingest_quarantine,
        catalog_quarantine,
        features_quarantine,
        decide_quarantine,
        feedback_quarantine,
    )


def reset() -> None:
    """Forget every cached client and service (a fresh container, for tests)."""
    _loaded_models.clear()
    for factory in (
        *_connected(),
        decide_settings,
        catalog_settings,
        text_encoder,
        image_embedding_dim,
        idempotency_config,
        default_model,
        recommender,
        served_models,
        decide_policy,
        pseudonymizer,
    ):
        factory.cache_clear()
    _boto_config.cache_clear()
    _installed_policy.clear()
