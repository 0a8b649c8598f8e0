"""What a watch is told: how often to poll, how long an object may take, where to look."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from firehose.archive.base import IN_FLIGHT
from firehose.errors import UsageError
from firehose.event import Destination


@dataclass(frozen=True)
class WatchOptions:
    interval: timedelta = timedelta(seconds=30)
    """Time from the start of one poll to the start of the next."""
    deadline: timedelta = timedelta(minutes=10)
    """How long after its end an event's object may take to arrive before it is ``late``."""
    down_after: timedelta = timedelta(minutes=5)
    """A destination (or the API) failing every request, or a destination receiving nothing while events wait,
    for this long is down."""
    repair_after: timedelta | None = None
    """``--repair-after``: an event still missing from a destination this long after its end (the moment the
    deadline counts from too) is written there, as ``reconcile --repair`` writes it. Never shorter than
    ``deadline``: an event is late before it is repaired. None: never."""
    overlap: timedelta = timedelta(seconds=30)
    """Read again behind the cursor each poll: events that became visible after later ones."""
    start: datetime | None = None
    """Where a watch with no cursor yet begins (default: now minus ``deadline``)."""
    archive: Destination | None = None
    """``--archive URL``: look here instead of each event's own destinations."""
    once: bool = False
    """One poll, then stop (tests, cron); an API failure is then an error, not an outage."""
    workers: int = IN_FLIGHT
    metrics_port: int | None = None
    """Serve Prometheus/OpenMetrics text on this port."""
    metrics_file: Path | None = None
    """Write the same after each poll, for node_exporter's textfile collector."""
    alert_urls: tuple[str, ...] = field(default=(), repr=False)  # credentials live in webhook URLs
    """``--alert-url``: each alert also POSTed here as JSON (``watching.delivery``)."""
    alert_commands: tuple[str, ...] = field(default=(), repr=False)
    """``--alert-command``: each alert also handed to this command, as JSON on its stdin."""
    alert_timeout: timedelta = timedelta(seconds=10)
    """How long one webhook request or command may take; twice this is the grace for delivering what waits when
    the watch ends (``--once``, SIGTERM): what is left then stays in the outbox for the next run."""

    def __post_init__(self) -> None:
        archive: Any = self.archive  # typed Destination; a Python caller may give the URL
        if isinstance(archive, str):
            object.__setattr__(self, "archive", Destination.from_url(archive, name="archive"))
        if self.start is not None and self.start.tzinfo is None:
            object.__setattr__(self, "start", self.start.replace(tzinfo=UTC))
        for name in ("interval", "deadline"):
            if getattr(self, name) <= timedelta(0):
                raise UsageError(f"--{name} must be longer than nothing")
        if self.repair_after is not None and self.repair_after < self.deadline:
            raise UsageError(
                f"--repair-after {_said(self.repair_after)} is shorter than --deadline {_said(self.deadline)}: "
                "an event is repaired only once it is late"
            )
        if self.alert_timeout <= timedelta(0) or self.alert_timeout > timedelta(hours=1):
            raise UsageError("--alert-timeout must be longer than nothing and at most 1h")
        from firehose.watching.delivery import make_sinks

        make_sinks(self.alert_urls, self.alert_commands, self.alert_timeout.total_seconds())  # refused now, not later
        if self.overlap < timedelta(0):
            raise UsageError("--overlap cannot be negative")
        if self.down_after <= timedelta(0):  # 0: every destination with an event in flight would be down at once
            raise UsageError("--down-after must be longer than nothing")


def _said(duration: timedelta) -> str:
    seconds = duration.total_seconds()
    return f"{seconds:g}s" if seconds < 60 or seconds % 60 else f"{seconds / 60:g}min"
