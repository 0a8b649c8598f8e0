"""Writing a missing event into its destination, the one way both ``reconcile --repair`` and ``watch
--repair-after`` do it: the event as the API returns it, at the key of the firehose's own layout, written only
if absent (never over an object), then read back and compared.

Before the write goes out, its intent (where, and the SHA-256 of the bytes) is committed to the state database;
once the store answers, the intent moves into the append-only record of repairs. A process killed between the
two leaves the intent, and the next run (of either command) reads the key: the very bytes mean the store took
the write (a repair), anything else means it did not (``settle_intents``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from firehose.archive import Store
from firehose.codec import canonical, decode, encode
from firehose.errors import ArchiveError, ArchiveNotFound, ConfigError, DataError
from firehose.event import Destination
from firehose.state import RepairIntent, StateDB

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Written:
    """What a repair found once its write was answered and the key read back."""

    wrote: bool
    """This write put the object there (False: one was there already, and was left alone)."""
    same: bool
    """What the key holds reads as the API's event (byte for byte, or as the same JSON)."""


def write_missing(
    store: Store,
    state: StateDB,
    event: Mapping[str, Any],
    *,
    event_id: str,
    destination: str,
    credential_id: str | None,
    key: str,
    window_start: datetime,
    run_id: int,
) -> Written:
    """Write ``event`` at ``key`` if absent, record it, read it back. An ``ArchiveError`` when the store refuses
    or fails (the intent is kept: the write may have landed all the same, an answer lost on the way back); a
    ``DataError`` when what the key holds does not parse (an object cut short, never taken for the event)."""
    body = encode(dict(event))
    digest = hashlib.sha256(body).hexdigest()
    intent = RepairIntent(event_id, destination, credential_id, key, window_start, run_id, digest, state.repair_owner)
    state.intend_repair(intent)  # before the write: a kill after the store takes it leaves a trace
    wrote = store.write(key, body, if_absent=True)
    state.settle_repair(intent, wrote=wrote)
    stored = store.read(key)
    if stored == body:
        return Written(wrote, True)
    try:
        same = canonical(decode(stored)) == canonical(event)
    except DataError:
        raise DataError(f"the object does not read back as written ({len(stored)} bytes)") from None
    return Written(wrote, same)


def settle_intents(state: StateDB, store_for: Callable[[Destination], Store]) -> None:
    """Repairs an earlier run said it would write and was killed before it heard back: those whose key holds the
    very bytes it meant to write go into the record of repairs (the store took the write); the others (absent,
    or other bytes: the write never landed) are let go. A store that cannot be read now keeps its intents for the
    next run. Intents of another process still running (a watch and a reconcile on one database) are its own to
    settle: its write may land after this look."""
    for intent in state.unsettled_intents():
        settle_intent(state, intent, store_for)
    state.forget_gone_owners()


def settle_intent(
    state: StateDB,
    intent: RepairIntent,
    store_for: Callable[[Destination], Store],
    *,
    why: str = "left unconfirmed by an interrupted run",
) -> None:
    """One intent settled by reading its key (``settle_intents``); also a watch's own, whose write's answer was
    lost (a timeout after the store took it), when the key is found at a later look."""
    try:
        destination = Destination.from_url(intent.destination, intent.credential_id)
        stored = store_for(destination).read(intent.key)
    except ArchiveNotFound:
        state.settle_repair(intent, wrote=False)
        return
    except (ArchiveError, ConfigError, DataError) as exc:
        log.warning("a repair of %s %s: %s", intent.key, why, exc)
        return
    state.settle_repair(intent, wrote=hashlib.sha256(stored).hexdigest() == intent.sha256)
