"""Leads made while the sandbox runs, without a client submitting them: a steady rate of events for a watch to
follow (``--events-per-second``, or ``events_per_second`` in ``PUT /_sandbox/faults``), and leads made on demand
(``POST /_sandbox/leads``), optionally with ids from the past: an event that becomes visible after later ones,
as when several LeadConduit servers make ids and one is slow to store its events.

Ids come from an ``IdMaker`` of their own (another server's random part), events go into the store and through
the firehose like a submitted lead's; nothing is added to ``/_sandbox/submissions`` (an hour at 50 events/s
would hold 180,000 of them).
"""

from __future__ import annotations

import math
import random
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from firehose.sandbox.generator import IdMaker, fake_lead, process_lead, seeded_submission

if TYPE_CHECKING:
    from firehose.sandbox.server import Sandbox

TICK_SECONDS = 0.05
"""How often the producer catches up with its rate: small enough that 50 events/s arrive as a stream."""


class LiveLeads:
    """Makes leads now (or in the past) for one sandbox, and runs the steady producer when a rate is set."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._rng = random.Random(f"produce:{sandbox.seed}")
        self._ids = IdMaker(self._rng)
        self._lock = threading.Lock()
        self._rate = 0.0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.leads = self.events = 0

    def make(self, count: int, *, age_seconds: float = 0.0) -> list[dict[str, Any]]:
        """``count`` leads made ``age_seconds`` ago (their ids that old), stored and sent through the firehose
        now; returns their events. Events later than a minute from now (feedback days after) are left out, as a
        submission's are."""
        at = self.sandbox.now() - timedelta(seconds=age_seconds)
        horizon = f"{int(self.sandbox.clock()) + 60:08x}"
        made: list[dict[str, Any]] = []
        with self._lock:
            for _ in range(count):
                flow = self._rng.choice([flow for flow in self.sandbox.flows if flow.sources])
                source = self._rng.choice(flow.sources)
                submission = seeded_submission(flow, source, fake_lead(self._rng), at, self._rng)
                _, _, events = process_lead(submission, self._ids, self._rng)
                made.extend(event for event in events if event["id"][:8] <= horizon)
            self.leads += count
            self.events += len(made)
        for event in made:
            self.sandbox.store.add(event)
        self.sandbox.stream.send(made)
        return made

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, events_per_second: float) -> None:
        """Produce about this many events a second from now on (0 stops); leads are made until the events made
        catch up with the rate, so the rate holds whatever number of events a lead happens to make."""
        if not math.isfinite(events_per_second) or not 0 <= events_per_second <= 100_000:
            raise ValueError(f"events_per_second must be from 0 to 100000, got {events_per_second}")
        self._rate = events_per_second
        if events_per_second > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._produce, name="sandbox-live", daemon=True)
            self._thread.start()

    def _produce(self) -> None:
        started, made, rate = time.monotonic(), 0, self._rate
        while not self._stop.wait(TICK_SECONDS):
            if self._rate != rate:  # a new rate counts from now
                started, made, rate = time.monotonic(), 0, self._rate
            due = rate * (time.monotonic() - started)
            while made < due and not self._stop.is_set():
                made += len(self.make(1))

    def status(self) -> dict[str, Any]:
        return {"events_per_second": self._rate, "leads": self.leads, "events": self.events}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
