"""The watch's metrics in the ecosystem's format (the ``prometheus-client`` library): an HTTP endpoint for
Prometheus to scrape (``--metrics-port``) and a file for node_exporter's textfile collector (``--metrics-file``,
written after each poll, whole, by rename).

Counters are this process's (they start at 0 on a restart, which Prometheus's ``rate()`` expects); the state
database keeps the totals since the watch began.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server, write_to_textfile

from firehose.errors import ConfigError
from firehose.watching.ledger import Pair

LAG_BUCKETS = (0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
"""Seconds: a firehose normally delivers within a minute; a deadline is minutes; an outage, hours."""


class WatchMetrics:
    """One registry of the watch's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "firehose_watch_events", "(event, destination) pairs by outcome: seen, archived, late, recovered, "
            "repaired, forgotten", ["destination", "outcome"], registry=r,
        )  # fmt: skip
        self.lag = Histogram(
            "firehose_watch_delivery_lag_seconds", "Object last-modified minus the event's end_timestamp",
            ["destination"], buckets=LAG_BUCKETS, registry=r,
        )  # fmt: skip
        self.cursor_age = Gauge("firehose_watch_cursor_age_seconds", "Now minus the cursor event id's time", registry=r)
        self.store_requests = Counter(
            "firehose_watch_store_requests", "Store requests by kind", ["destination", "kind"], registry=r
        )
        self.store_errors = Counter(
            "firehose_watch_store_errors", "Polls a destination failed", ["destination"], registry=r
        )
        self.api_polls = Counter("firehose_watch_api_polls", "Polls of GET /events", registry=r)
        self.api_errors = Counter("firehose_watch_api_errors", "Polls whose GET /events failed", registry=r)
        self.alerts = Counter("firehose_watch_alerts", "Alerts raised, by kind", ["alert"], registry=r)
        self.down = Gauge(
            "firehose_watch_down", "1 while a destination (or the API) is down: between its *_down and *_up alerts",
            ["destination"], registry=r,
        )  # fmt: skip
        self.alert_failures = Counter(
            "firehose_watch_alert_delivery_failures", "Alerts a webhook or command refused, or rounds of retries "
            "spent on one", ["sink"], registry=r,
        )  # fmt: skip
        self.alerts_waiting = Gauge(
            "firehose_watch_alerts_waiting", "Alerts in the outbox not yet taken by a webhook or command", ["sink"],
            registry=r,
        )  # fmt: skip
        self._server: Any = None

    def settled(self, pair: Pair, outcome: str, lag: float | None) -> None:
        self.events.labels(pair.destination, outcome).inc()
        if lag is not None:
            self.lag.labels(pair.destination).observe(lag)

    def alerted(self, alert: dict[str, Any]) -> None:
        """An alert raised (as it goes to stdout): counted by kind; a ``*_down`` / ``*_up`` sets the down gauge of
        what it names (its ``destination``, or its ``api`` URL)."""
        kind = str(alert.get("alert", ""))
        self.alerts.labels(kind).inc()
        where = alert.get("destination") or alert.get("api")
        if where and kind.endswith(("_down", "_up")):
            self.down.labels(str(where)).set(1 if kind.endswith("_down") else 0)

    def alert_failed(self, sink: str) -> None:
        self.alert_failures.labels(sink).inc()

    def alerts_waiting_now(self, sink: str, number: int) -> None:
        self.alerts_waiting.labels(sink).set(number)

    def polled(self, poll: Any, cursor_age: float | None, path: Path | None = None) -> None:
        """After a poll (``watcher.Poll``), or a look at destinations alone (no API read); written to ``path`` too,
        if given."""
        if poll.read:
            self.api_polls.inc()
        if poll.api_failed:
            self.api_errors.inc()
        for destination, number in poll.seen.items():
            self.events.labels(destination, "seen").inc(number)
        for destination, kinds in poll.requests.items():
            for kind, number in kinds.items():
                if number:
                    self.store_requests.labels(destination, kind).inc(number)
        for destination in poll.failed:
            self.store_errors.labels(destination).inc()
        if cursor_age is not None:
            self.cursor_age.set(cursor_age)
        if path is not None:
            self.write(path)

    def serve(self, port: int, host: str = "0.0.0.0") -> None:  # scraped from outside the host
        try:
            self._server = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"--metrics-port {port}: cannot listen ({exc.strerror})") from exc

    def write(self, path: Path) -> None:
        try:
            write_to_textfile(str(path), self.registry)
        except OSError as exc:
            raise ConfigError(f"--metrics-file {path}: cannot write ({exc.strerror})") from exc

    def close(self) -> None:
        server = self._server[0] if isinstance(self._server, tuple) else self._server
        if server is not None:
            server.shutdown()
            server.server_close()
