"""The one exception tree of firehose, and the exit codes it maps to.

::

    FirehoseError                  anything firehose raises on purpose; message is one line for a user
    ├── UsageError                 a bad value given on the command line or in a call      → exit 2
    ├── ConfigError                settings, config file, missing or rejected credentials  → exit 3
    │   └── AuthError              LeadConduit refused the API key (401/403)               → exit 3
    ├── ApiError                   LeadConduit answered wrongly or not at all              → exit 4
    │   ├── ApiStatusError         an HTTP status firehose cannot use (carries status, url)
    │   ├── ApiUnreachable         no connection could be made (carries url)
    │   └── RetriesExhausted       a retried request kept failing (carries attempts, last_error)
    ├── ArchiveError               S3, Azure Blob or a directory failed                     → exit 5
    │   ├── ArchiveNotFound        a bucket, container or key does not exist
    │   └── ArchiveAccessDenied    the storage credentials were refused
    └── DataError                  an event or object that cannot be parsed (carries where) → exit 5

Vendor exceptions (httpx, botocore, azure.core) are translated into this tree at their one edge module
(``http.py``, ``archive/s3.py``, ``archive/azure.py``) with ``raise ... from exc``; nothing else catches them.
Messages never contain secrets: the edges build them from names (bucket, key, URL without credentials),
never from request headers.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes: one table, shared by the CLI and the README."""

    OK = 0
    """Clean run."""
    DIFFERENCES = 1
    """Differences found, gaps left, or some replays failed."""
    USAGE = 2
    """A bad flag or argument (click uses 2 as well)."""
    CONFIG = 3
    """Configuration or credentials."""
    API = 4
    """LeadConduit API error."""
    ARCHIVE = 5
    """Archive (storage) error, or an archived object that cannot be read."""
    INTERNAL = 70
    """A bug in firehose (an exception it did not expect): one line naming it, never a traceback (sysexits'
    EX_SOFTWARE). Every bad input, output or server answer has its own code above; this one is a bug to report."""
    INTERRUPTED = 130
    """Interrupted (Ctrl-C); state is saved and a rerun resumes."""
    CLOSED_PIPE = 141
    """The reader of standard output went away (``| head``): 128 + SIGPIPE, as the shell reports it."""


class FirehoseError(Exception):
    """Base of every error firehose raises on purpose."""

    exit_code: ExitCode = ExitCode.API


class UsageError(FirehoseError):
    """A value given by the caller is not acceptable."""

    exit_code = ExitCode.USAGE


class ConfigError(FirehoseError):
    """Settings are missing, malformed, or name credentials that do not exist."""

    exit_code = ExitCode.CONFIG


class AuthError(ConfigError):
    """LeadConduit rejected the API key."""

    def __init__(self, message: str, *, status: int, url: str) -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class ApiError(FirehoseError):
    """LeadConduit could not be used."""

    exit_code = ExitCode.API


class ApiStatusError(ApiError):
    """LeadConduit answered with a status firehose cannot use."""

    def __init__(self, message: str, *, status: int, url: str) -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class ApiUnreachable(ApiError):
    """No connection to LeadConduit could be made."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class RetriesExhausted(ApiError):
    """A request was retried as often as allowed and still failed."""

    def __init__(self, message: str, *, attempts: int, last_error: FirehoseError) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.last_error = last_error


class ArchiveError(FirehoseError):
    """A store (S3, Azure Blob, directory) failed."""

    exit_code = ExitCode.ARCHIVE


class ArchiveNotFound(ArchiveError):
    """A bucket, container or key does not exist."""


class ArchiveAccessDenied(ArchiveError):
    """The store refused the credentials."""


class DataError(FirehoseError):
    """An event or archived object cannot be parsed."""

    exit_code = ExitCode.ARCHIVE
