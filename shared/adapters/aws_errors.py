"""Turning botocore exceptions into domain errors, in one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from shared.domain.errors import PermanentStorageError, PoisonRecord, TransientStorageError, VersionConflict

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


# The request's content is what the service refused: the same record will be refused every time.
_POISON_CODES = frozenset({"ValidationException", "SerializationException", "ItemCollectionSizeLimitExceededException"})


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Run an AWS call; conditional failures become VersionConflict, refused content PoisonRecord,
    throttling and 5xx TransientStorageError, the rest (access, missing resources) PermanentStorageError."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code == "ConditionalCheckFailedException":
            raise VersionConflict(operation) from exc
        if code in _TRANSIENT_CODES or status >= 500:
            raise TransientStorageError(f"{operation}: {code}") from exc
        if code in _POISON_CODES:
            raise PoisonRecord("store_refused", f"{operation}: {code}") from exc
        raise PermanentStorageError(f"{operation}: {code}") from exc
    except ParamValidationError as exc:
        raise PoisonRecord("store_refused", f"{operation}: {type(exc).__name__}") from exc
    except BotoCoreError as exc:
        # Connection resets, read timeouts, endpoint errors: worth a retry.
        raise TransientStorageError(f"{operation}: {type(exc).__name__}") from exc
    except (TypeError, ArithmeticError, UnicodeError) as exc:
        # boto3's serialiser refuses a value before any request is made (a float it cannot make a
        # DynamoDB number of, a string it cannot encode): no retry can change that.
        raise PoisonRecord("store_refused", f"{operation}: {type(exc).__name__}") from exc
