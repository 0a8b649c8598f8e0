"""The dead-letter file: each lead a replay could not deliver, as one NDJSON line with its event (credentials
taken out), owner-only, appended as failures happen; given back to ``--ids`` it is replayed as is. Leads sent
since they failed are taken out of it at the end of a run.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from firehose.codec import decode, encode_line
from firehose.errors import ConfigError, DataError
from firehose.replaying.plan import LeadResult
from firehose.replaying.request import origin
from firehose.secret import REDACTED, is_credential, redact_url
from firehose.state import ReplayLedger


def redacted_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event as a dead-letter file keeps it: its stored request's credential headers and query values as
    ``***`` and its URI without user info. The sender drops those anyway, so nothing needed is lost."""
    copy = dict(event)
    request = event.get("request")
    if isinstance(request, Mapping):
        request = dict(request)
        if isinstance(request.get("uri"), str):
            request["uri"] = redact_url(request["uri"])
        headers = request.get("headers")
        if isinstance(headers, Mapping):
            request["headers"] = {k: REDACTED if is_credential(str(k)) else v for k, v in headers.items()}
        elif isinstance(headers, list):
            request["headers"] = [
                [p[0], REDACTED] if isinstance(p, list | tuple) and len(p) == 2 and is_credential(str(p[0])) else p
                for p in headers
            ]
        copy["request"] = request
    return copy


class DeadLetters:
    """Appends each lead a run could not deliver to the dead-letter file, opened (owner-only) at the first one:
    a run with no failure leaves no file behind."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        self._file: BinaryIO | None = None

    def add(self, result: LeadResult, event: Mapping[str, Any]) -> None:
        if self._file is None:
            self._file = _private_append(self.path)
        line = {
            "event_id": result.event_id,
            "status": result.status,
            "http_status": result.http_status,
            "attempts": result.attempts,
            "reason": result.reason,
            "event": redacted_event(event),
        }
        self._file.write(encode_line(line))
        self._file.flush()  # each failure is on disk as it happens: a killed run loses none
        self.written += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def writable(path: Path) -> None:
    """A ``ConfigError`` now when the dead-letter file could not be written later (its folder missing or read-only,
    or the file itself read-only or a folder); nothing is created."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"--dead-letter {path}: cannot write it (it is a folder)")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"--dead-letter {path}: cannot write it (permission denied)")
    if not path.exists() and not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        reason = "permission denied" if folder.is_dir() else "no such folder"
        raise ConfigError(f"--dead-letter {path}: cannot write it ({reason})")


def _private_append(path: Path) -> BinaryIO:
    """A file opened for appending that only its owner may read (0600, also when it existed): dead letters hold
    lead data."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(descriptor, 0o600)
    except OSError as exc:
        raise ConfigError(f"--dead-letter {path}: cannot write it ({exc.strerror})") from exc
    return os.fdopen(descriptor, "ab")


def prune_dead_letters(path: Path, ledger: ReplayLedger, leadconduit: str) -> int:
    """Take out of a dead-letter file the leads this ledger records as sent to ``leadconduit`` (the LeadConduit
    the settings name: where they were meant to go), and return how many. A lead sent elsewhere (a rehearsal on
    a sandbox) stays. Every other line stays byte for byte (one that is not an entry too). The file is rewritten
    beside itself (a new owner-only file, never through a link) and renamed over it: an interrupted prune leaves
    the old file whole. A link, a device (``/dev/null``), an absent file, or nothing to take out: left alone."""
    if path.is_symlink() or not path.is_file():
        return 0
    home = origin(leadconduit)
    kept: list[bytes] = []
    dropped = 0
    with path.open("rb") as source:
        for line in source:
            try:
                entry = decode(line, where=str(path))
            except DataError:
                entry = None
            found = ledger.get(str(entry.get("event_id"))) if isinstance(entry, dict) else None
            if found is not None and found.status == "sent" and origin(found.target) == home:
                dropped += 1
            else:
                kept.append(line)
    if not dropped:
        return 0
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # O_EXCL, 0600
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.writelines(kept)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return dropped
