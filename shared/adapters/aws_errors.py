"""Turning botocore exceptions into domain errors, in one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import PermanentStorageError, TransientStorageError, VersionConflict

_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "TransactionConflictException",
        "LimitExceededException",
        "KMSThrottlingException",
        "RequestTimeout",
    }
)


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Run an AWS call; conditional failures become VersionConflict, the rest transient or permanent."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code == "ConditionalCheckFailedException":
            raise VersionConflict(operation) from exc
        if code in _TRANSIENT_CODES or status >= 500:
            raise TransientStorageError(f"{operation}: {code}") from exc
        raise PermanentStorageError(f"{operation}: {code}") from exc
    except BotoCoreError as exc:
        # Connection resets, read timeouts, endpoint errors: worth a retry.
        raise TransientStorageError(f"{operation}: {type(exc).__name__}") from exc
