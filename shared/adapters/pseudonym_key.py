"""The pseudonym HMAC key, read once per container from an SSM SecureString (Powertools parameters)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.aws_errors import translated
from shared.domain.errors import PermanentStorageError

# The key must not change under running containers anyway (pseudonyms would stop joining).
_MAX_AGE_SECONDS = 24 * 3600


def read_pseudonym_key(ssm: Any, parameter_name: str) -> bytes:
    from aws_lambda_powertools.utilities.parameters import SSMProvider
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    provider = SSMProvider(boto3_client=ssm)
    with translated("pseudonym_key.get"):
        try:
            value = provider.get(parameter_name, decrypt=True, max_age=_MAX_AGE_SECONDS)
        except GetParameterError as exc:
            # Powertools wraps the boto error; unwrap it so throttling stays transient.
            cause = exc.__context__
            if isinstance(cause, ClientError | BotoCoreError):
                raise cause from exc
            raise PermanentStorageError(f"pseudonym_key.get: {exc}") from exc
    if not isinstance(value, str) or not value:
        raise PermanentStorageError("pseudonym_key.get: empty parameter")
    return value.encode("utf-8")
