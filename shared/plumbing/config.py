"""One settings model per function, read from the environment template.yaml sets.

Each model is validated once per container on first use (see shared/plumbing/bootstrap.py), so a
misconfigured deployment fails its first invocation with a clear message instead of
misbehaving later.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.domain.contract import DEFAULT_IMAGE_EMBEDDING_DIM, MAX_IMAGE_EMBEDDING_DIM


class _Settings(BaseSettings):
    # defer_build: a function validates only its own model (and PseudonymSettings), so the others'
    # validators are never built in its container: ~8 ms less import at every cold start.
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True, defer_build=True)


class PseudonymSettings(_Settings):
    """Read by every function that decodes events or erases users (ingest, features, feedback, erase)."""

    # Name of an SSM SecureString holding the HMAC key; empty keeps raw user ids.
    pseudonym_key_parameter: str = Field(default="", pattern=r"^(|/[A-Za-z0-9_./-]+)$")


class ContractSettings(_Settings):
    """Read by every function that decodes events: the deployment's choices inside the contract (issue 12).

    IMAGE_EMBEDDING_DIM comes from the template parameter ImageEmbeddingDim through Globals, so ingest,
    features, feedback and catalog all judge a catalog event's image_embedding by the same length.
    """

    image_embedding_dim: int = Field(default=DEFAULT_IMAGE_EMBEDDING_DIM, ge=1, le=MAX_IMAGE_EMBEDDING_DIM)


class _StreamConsumerSettings(_Settings):
    """What every consumer of the events stream needs: the event-id registry every one of them claims
    in (shared/domain/admission.py) and the bucket where records it can never process are quarantined."""

    event_ids_table: str = Field(min_length=3)
    archive_bucket: str = Field(min_length=3)
    quarantine_prefix: str = "quarantine/"


class IngestSettings(_StreamConsumerSettings):
    archive_prefix: str = "archive/"


class FeaturesSettings(_StreamConsumerSettings):
    user_state_table: str = Field(min_length=3)
    catalog_table: str = Field(min_length=3)
    # Conditional-write attempts per user before the user's records are reported failed.
    max_write_attempts: int = Field(default=5, ge=1, le=20)
    # A user's behaviour asks decide for a decision at most once per this many seconds of event time
    # (high-intent events and profile changes always ask); 0 asks on every change.
    decision_interval_seconds: int = Field(default=300, ge=0, le=86400)


class CatalogSettings(_StreamConsumerSettings):
    """The catalog function (issue 12): catalog events -> catalog items with their content vectors."""

    catalog_table: str = Field(min_length=3)
    # The encoder layer's folder (layers/encoder, from `make encoder`): the int8 graph and tokenizer.json.
    encoder_dir: str = "/opt/encoder"
    encoder_model_file: str = Field(default="model.int8.onnx", pattern=r"^[A-Za-z0-9_.-]+\.onnx$")
    # Conditional-write attempts per item before its record is reported failed (throttling aside).
    max_write_attempts: int = Field(default=3, ge=1, le=20)


class DecideSettings(_Settings):
    user_state_table: str = Field(min_length=3)
    catalog_table: str = Field(min_length=3)
    ledger_table: str = Field(min_length=3)
    idempotency_table: str = Field(min_length=3)
    push_counters_table: str = Field(min_length=3)
    push_topic_arn: str = Field(min_length=20)
    # "endpoint": SNS mobile push endpoints per device (the platform applications below); "topic": the
    # push as JSON on PUSH_TOPIC_ARN for a team's own APNs/FCM bridge. See shared/domain/delivery.py.
    delivery_mode: Literal["endpoint", "topic"] = "topic"
    apns_platform_application_arn: str = ""
    apns_sandbox_platform_application_arn: str = ""
    fcm_platform_application_arn: str = ""
    # Unsent pushes older than this are sent by the sweep (longer than decide's 60 s timeout).
    outbox_grace_seconds: int = Field(default=180, ge=61, le=86400)
    # Where a user-state change decide can never decide on is quarantined (quarantine/decide/).
    archive_bucket: str = Field(min_length=3)
    quarantine_prefix: str = "quarantine/"
    model_dir: str = "/opt/model"
    model_s3_uri: str = ""
    # The registry's serving pointer (an SSM String parameter); empty serves the model above for good.
    model_pointer_parameter: str = Field(default="", pattern=r"^(|/[A-Za-z0-9_./-]+)$")
    # Registry versions live under s3://ARCHIVE_BUCKET/<this><version id>/.
    model_registry_prefix: str = Field(default="models/registry/", pattern=r"^models/([A-Za-z0-9_.-]+/)*$")
    # A promotion or rollback reaches every warm container within this many seconds.
    model_pointer_ttl_seconds: int = Field(default=60, ge=1, le=3600)
    daily_push_cap: int = Field(default=3, ge=0, le=100)
    weekly_push_cap: int = Field(default=10, ge=0, le=500)
    global_pushes_per_minute: int = Field(default=1000, ge=1)
    score_threshold: float = 0.0
    quiet_hours_start: int = Field(default=21, ge=0, le=23)
    quiet_hours_end: int = Field(default=8, ge=0, le=23)
    # Share of decisions given to exploration (read by the policy); 0 turns exploration off.
    exploration_share: float = Field(default=0.05, ge=0.0, le=1.0)
    candidates: int = Field(default=50, ge=1, le=2000)
    fatigue_base: float = Field(default=0.30, ge=0.0, le=1.0)
    fatigue_per_recent_push: float = Field(default=0.01, ge=0.0, le=1.0)
    fatigue_dismissal_weight: float = Field(default=0.05, ge=0.0, le=1.0)
    fatigue_per_push_today: float = Field(default=0.0, ge=0.0, le=1.0)
    push_ttl_days: int = Field(default=90, ge=1)
    silence_ttl_days: int = Field(default=7, ge=1)
    due_shards: int = Field(default=4, ge=1, le=64)

    @model_validator(mode="after")
    def _model_source(self) -> DecideSettings:
        if self.model_s3_uri and not self.model_s3_uri.startswith("s3://"):
            raise ValueError("MODEL_S3_URI must look like s3://bucket/prefix/")
        return self

    @model_validator(mode="after")
    def _platforms_for_endpoint_mode(self) -> DecideSettings:
        apps = (self.apns_platform_application_arn, self.apns_sandbox_platform_application_arn)
        if self.delivery_mode == "endpoint" and not any((*apps, self.fcm_platform_application_arn)):
            raise ValueError("DELIVERY_MODE=endpoint needs at least one platform application ARN")
        return self


class EraseSettings(_Settings):
    user_state_table: str = Field(min_length=3)
    ledger_table: str = Field(min_length=3)
    idempotency_table: str = Field(min_length=3)
    push_counters_table: str = Field(min_length=3)
    archive_bucket: str = Field(min_length=3)
    # Where ingest and feedback write JSON Lines holding user ids (models/ holds none).
    line_prefixes: tuple[str, ...] = ("archive/", "quarantine/", "feedback/")


class FeedbackSettings(_StreamConsumerSettings):
    user_state_table: str = Field(min_length=3)
    ledger_table: str = Field(min_length=3)
    feedback_prefix: str = "feedback/"
