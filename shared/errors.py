"""Domain errors: what the logic needs to know about a failure, without botocore in sight."""


class NudgeError(Exception):
    """Base of every error Nudge raises on purpose."""


class TransientStorageError(NudgeError):
    """Throttling, 5xx, timeouts: the batch is retried by the event source mapping."""


class PermanentStorageError(NudgeError):
    """Validation or access errors a retry will not fix; surfaced loudly, then dead-lettered."""


class VersionConflict(NudgeError):
    """A conditional write lost to a concurrent writer; re-read and try again."""


class AlreadyExists(NudgeError):
    """A create-if-absent write found the item: the work was done before (a retry)."""


class PublishError(NudgeError):
    """The push could not be handed to the topic."""
