"""Typed errors. Each message says what went wrong and what to do about it."""


class RetrieverError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(RetrieverError, ValueError):
    """A config file, task spec or option is invalid (typo, wrong type, missing key)."""


class InputError(RetrieverError, ValueError):
    """An input path or dataset cannot be read at all (missing, unknown format, no text field)."""


class ModelMismatchError(RetrieverError):
    """An artifact (index, store, cache) was built with another model, dimension or settings."""


class MissingDependencyError(RetrieverError, ImportError):
    """An optional dependency is not installed; the message gives the pip command."""


class ResumeError(RetrieverError):
    """An output folder holds a run with other settings; resuming into it would mix results."""


class ShardError(InputError):
    """One corpus shard cannot be read (truncated, corrupt, no text column); other shards can.

    Stages record it for that shard (``failed/<shard>.json``) and go on with the others.
    """


class TruncatedInputError(ShardError):
    """A compressed file ends before its end-of-stream marker, or its data is corrupt."""


class OutputError(RetrieverError, OSError):
    """An output cannot be written (read-only folder, full disk, permissions); nothing is lost."""


class LockedError(RetrieverError):
    """Another process is writing into the same output folder; the message names it."""


class UnsafeNameError(ConfigError):
    """A task or shard name would become an unsafe path (``..``, ``/``, control characters)."""


class RequestError(InputError):
    """A query-service request is invalid; ``status`` is the HTTP status it answers with (4xx)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


class EndpointError(RetrieverError):
    """An LLM endpoint cannot be used at all (unreachable, refuses the key, unknown route/model)."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (at most 300 characters; its type's name when the
    message is empty), for a one-line error that wraps it."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
