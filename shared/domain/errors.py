"""Domain errors: what the logic needs to know about a failure, without botocore in sight."""


class NudgeError(Exception):
    """Base of every error Nudge raises on purpose."""


class TransientStorageError(NudgeError):
    """Throttling, 5xx, timeouts: the batch is retried by the event source mapping."""


class PermanentStorageError(NudgeError):
    """Access or configuration errors a retry will not fix (a missing permission, table or key): not the
    record's fault, so it is not quarantined; it fails loudly, is retried and then dead-lettered."""


class PoisonRecord(NudgeError):
    """A record whose content a store refuses (item too large, a value it cannot hold): it will never
    succeed, so it is quarantined with this reason and the rest of its batch goes on."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class VersionConflict(NudgeError):
    """A conditional write lost to a concurrent writer; re-read and try again."""


class AlreadyExists(NudgeError):
    """A create-if-absent write found the item: the work was done before (a retry)."""


class PublishError(NudgeError):
    """The push could not be handed to the topic."""


def as_poison(error: Exception) -> PoisonRecord | None:
    """The poison a failure makes of its record, or None when it is worth a retry.

    Anything that is not one of Nudge's own errors was not foreseen; it is treated as poison (kept in
    the quarantine with its type, replayable) rather than retried until the records behind it expire.
    """
    if isinstance(error, PoisonRecord):
        return error
    if isinstance(error, NudgeError):
        return None
    return PoisonRecord("unexpected_error", type(error).__name__)
