"""Destination outages the sandbox's firehose plays at runtime (``PUT /_sandbox/faults``, ``destinations``).

A destination can be *stopped*: its writes are held, as LeadConduit's delivery queue holds them while a bucket
refuses them, and written when it is resumed (so a watch sees events go late, then arrive). It can also be
*delayed*: each write lands a set time after its event's end (``end_timestamp``), so the delivery lag a watch
measures is the one the sandbox was told to apply.

A setting is keyed by a store URL and applies to every destination at or below it: ``s3://lc-archive`` is every
S3 destination in that bucket, ``s3://lc-archive/events/auto`` one flow's.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from firehose.errors import DataError
from firehose.event import Destination


@dataclass(frozen=True)
class Outage:
    """What happens to one destination's writes."""

    stopped: bool = False
    delay_seconds: float = 0.0


NONE = Outage()


def parse_outages(value: Any) -> dict[str, Outage | None]:
    """``{"<store URL>": {"stopped": bool, "delay_seconds": number} | null}`` from a faults request; null (or
    ``{}``) clears a URL's setting. A bad shape is a ``DataError`` naming what is wrong."""
    if not isinstance(value, dict):
        raise DataError("destinations must be a JSON object of store URL to {stopped, delay_seconds}")
    parsed: dict[str, Outage | None] = {}
    for url, setting in value.items():
        if "://" not in url:
            raise DataError(f"destinations: {url!r} is not a store URL (s3://bucket/prefix, az://container/prefix)")
        if setting is None or setting == {}:
            parsed[url] = None
            continue
        if not isinstance(setting, dict) or set(setting) - {"stopped", "delay_seconds"}:
            raise DataError(f"destinations[{url!r}] takes stopped (true/false) and delay_seconds (a number)")
        stopped, delay = setting.get("stopped", False), setting.get("delay_seconds", 0)
        if not isinstance(stopped, bool):
            raise DataError(f"destinations[{url!r}].stopped must be true or false")
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 86_400:
            raise DataError(f"destinations[{url!r}].delay_seconds must be a number of seconds from 0 to 86400")
        parsed[url] = Outage(stopped, float(delay))
    return parsed


def _covers(url: str, destination: Destination) -> bool:
    own, named = destination.url(), url.rstrip("/")
    return own == named or own.startswith(named + "/")


Write = tuple[Destination, str, bytes, float]
"""One firehose write: where, the key, the bytes, and the event's end (Unix seconds)."""


class Outages:
    """The settings in force, the writes held for stopped destinations, and the writes waiting for their delay.

    ``submit`` hands a write to the stream's writers; the scheduler thread submits delayed writes when due.
    """

    def __init__(self, submit: Callable[[Write], None], *, clock: Callable[[], float] = time.time) -> None:
        self._submit = submit
        self._clock = clock
        self._settings: dict[str, Outage] = {}
        self._held: list[Write] = []
        self._timers: list[tuple[float, int, Write]] = []
        self._order = itertools.count()  # ties in a heap of tuples must never compare Destinations
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def for_destination(self, destination: Destination) -> Outage:
        """Stopped when any setting covering it says so; the longest delay of those that cover it."""
        covering = [outage for url, outage in self._settings.items() if _covers(url, destination)]
        if not covering:
            return NONE
        return Outage(any(o.stopped for o in covering), max(o.delay_seconds for o in covering))

    def route(self, write: Write) -> bool:
        """Hold or delay ``write`` as its destination's setting says; False when it should be written now."""
        with self._wake:
            outage = self.for_destination(write[0])
            if outage.stopped:
                self._held.append(write)
                return True
            # Never before the event's end (LeadConduit's firehose writes an event once it has ended): a live
            # event ends its `ms` after it began, and an object written at once had a last-modified before its
            # event's end, a delivery lag the watch and reconcile cannot tell ("unknown").
            due = write[3] + outage.delay_seconds
            if outage.delay_seconds > 0 or due > self._clock():
                self._schedule(due, write)
                return True
        return False

    def change(self, changes: Mapping[str, Outage | None]) -> int:
        """Apply settings; writes held for a destination no longer stopped go out (after its delay, if any).
        Returns how many held writes were released."""
        with self._wake:
            for url, outage in changes.items():
                if outage is None or outage == NONE:
                    self._settings.pop(url, None)
                else:
                    self._settings[url] = outage
            still: list[Write] = []
            released: list[Write] = []
            for write in self._held:
                (still if self.for_destination(write[0]).stopped else released).append(write)
            self._held = still
            now = self._clock()
            for write in released:
                # Released writes land now, or when their delay is up if that is later: what a queue that kept
                # retrying would do.
                self._schedule(max(now, write[3] + self.for_destination(write[0]).delay_seconds), write)
            return len(released)

    def _schedule(self, due: float, write: Write) -> None:
        heapq.heappush(self._timers, (due, next(self._order), write))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="firehose-delay", daemon=True)
            self._thread.start()
        self._wake.notify()

    def _run(self) -> None:
        with self._wake:
            while not self._closed:
                now = self._clock()
                while self._timers and self._timers[0][0] <= now:
                    write = heapq.heappop(self._timers)[2]
                    # A delay is time in LeadConduit's queue: a write that comes due after its destination
                    # stopped fails there too, and is held, not written.
                    if self.for_destination(write[0]).stopped:
                        self._held.append(write)
                    else:
                        self._submit(write)
                wait = self._timers[0][0] - now if self._timers else None
                self._wake.wait(timeout=wait)

    def held(self) -> int:
        with self._wake:
            return len(self._held)

    def status(self) -> dict[str, Any]:
        with self._wake:
            return {
                "destinations": {url: asdict(outage) for url, outage in self._settings.items()},
                "held": len(self._held),
                "delayed": len(self._timers),
            }

    def close(self) -> None:
        """Stop the scheduler; writes still held or delayed are dropped (the sandbox is going away)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
