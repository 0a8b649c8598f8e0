"""Alerts beyond stdout: each ``--alert-url`` (a webhook: the alert POSTed as JSON) and each ``--alert-command`` (the
alert as JSON on a command's stdin) has a courier thread of its own that drains the state database's outbox, so a
webhook that hangs or a command that never ends holds up nothing but itself: polls keep their schedule.

Each place keeps its own mark in the outbox (``WatchLedger.delivered``), moved on only once an alert was taken
(a 2xx answer, exit 0) or refused for good; an alert leaves the outbox when every place has taken it. So alerts
are delivered at least once, in order, to each place: a ``kill -9`` before a mark moved sends that alert again
after the restart, with the same ``id`` (the outbox row's number), on which a receiver de-duplicates.

Failures: the project's one retry policy (``http.RetryPolicy``) retries a webhook's connection errors, timeouts,
429 and 5xx (honouring ``Retry-After``), and a command that timed out, was killed by a signal, could not start
or exited 75 (``EX_TEMPFAIL``). When its attempts are spent the courier says so once on stderr, keeps the alert
and every later one, and tries again every ``RETRY_LATER_SECONDS`` until it is taken, then says it delivers again.
Any other answer (a 4xx but 429, a redirect, any other exit status) is refused for good: said once, for that
alert, which is then passed over. Nothing said names more of a webhook than its scheme, host and port (a
webhook's credentials are in its user info, query or path), nor more of a command than its program's name.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import random
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from firehose.codec import encode
from firehose.config import API_KEY_ENV, environment_without
from firehose.errors import UsageError
from firehose.http import USER_AGENT, RetryPolicy, Sender
from firehose.secret import REDACTED, redact_text

log = logging.getLogger(__name__)

ALERT_RETRY = RetryPolicy()
"""The project's one policy, as the API's requests have it: 6 attempts over about 8 to 16 s."""
RETRY_LATER_SECONDS = 30.0
"""A place whose attempts are spent is tried again this often, its alerts kept, until it takes them."""
IDLE_SECONDS = 5.0
"""A courier looks at the outbox at least this often (each poll also wakes it)."""
PRIVATE_PART = 8
"""A part of a webhook's path this long or longer is taken for (part of) its credential, and never shown."""
STDERR_TAIL = 4096
"""The end of a failed command's stderr read for its last line (the rest may be any length)."""
_PRINTABLE_ASCII = "".join(chr(code) for code in range(33, 127))
"""What a request line carries as it is (``%`` included: what is percent-encoded already stays so)."""
TEMPFAIL = 75
"""``EX_TEMPFAIL`` (sysexits.h): a command that exits with it is asked again later, as a 503 is."""


class Stopped(Exception):
    """The watch has ended and the grace for delivering is over: the alert stays in the outbox."""


@dataclass(frozen=True)
class Outcome:
    """What became of one alert at one place, its retries done."""

    taken: bool
    lasting: bool = False
    """Refused for good: another try would be refused too."""
    reason: str = ""


class AlertSink(Protocol):
    key: str
    """The place's name in the state database: a digest, never the URL or command line itself."""
    label: str
    """For metrics and messages: ``webhook-1``, ``command-2``."""
    name: str
    """For messages: the label and what may be shown of the place."""

    def send(self, body: bytes, sleep: Callable[[float], None]) -> Outcome: ...

    def close(self) -> None: ...


def _digest(kind: str, text: str) -> str:
    return f"{kind}:{hashlib.sha256(text.encode()).hexdigest()[:24]}"


class WebhookSink:
    """POSTs each alert to ``url`` (http or https), one JSON object, ``Content-Type: application/json`` and
    firehose's ``User-Agent``; user info in the URL (``https://user:password@host/...``) is sent as Basic auth,
    never in the request line. A 2xx answer is taken."""

    def __init__(self, url: str, number: int, timeout_seconds: float) -> None:
        if any(char.isspace() or not char.isprintable() for char in url):  # the parser drops some, HTTP takes none
            raise UsageError(
                f"--alert-url {number}: holds a space or a control character; percent-encode it (a space is %20)"
            )
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:  # its words quote the authority: with a password holding "/", part of the password
            raise UsageError(
                f"--alert-url {number}: not a URL: its host or port cannot be read (a password holding / ? # or @ "
                "must be percent-encoded: %2F %3F %23 %40)"
            ) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = f"{parts.scheme}://" if parts.scheme else "no scheme"
            raise UsageError(f"--alert-url {number}: an http:// or https:// URL with a host is needed, got {shown}")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = host + (f":{port}" if port is not None else "")
        # A path or query in another script than ASCII goes percent-encoded (UTF-8), as a browser sends it.
        path, query = quote(parts.path or "/", safe=_PRINTABLE_ASCII), quote(parts.query, safe=_PRINTABLE_ASCII)
        self._target = urlunsplit((parts.scheme, netloc, path, query, ""))
        self._headers: list[tuple[str, str]] = [("Content-Type", "application/json"), ("User-Agent", USER_AGENT)]
        if parts.username is not None or parts.password is not None:
            pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            self._headers.append(("Authorization", "Basic " + base64.b64encode(pair.encode()).decode()))
        self.key = _digest("webhook", url)
        self.label = f"webhook-{number}"
        self._origin = f"{parts.scheme}://{netloc}"
        self.name = f"--alert-url {number} ({self._origin})"
        # A webhook's path and query are its credential (Slack's /services/T/B/SECRET): a server that quotes
        # them back, or a retry line naming the URL, must show neither.
        spellings = {path, unquote(path), parts.path}
        self._private = sorted(
            {self._target, query, unquote(query), parts.query, *spellings}
            | {part for spelling in spellings for part in spelling.split("/") if len(part) >= PRIVATE_PART},
            key=len, reverse=True,
        )  # fmt: skip
        self._timeout = timeout_seconds
        self._sender: Sender | None = None

    def _shown(self, text: str) -> str:
        """``text`` with the webhook's URL as its origin, its path and query (whole or by part) as ``***``."""
        text = text.replace(self._target, self._origin)
        for private in self._private:
            if len(private) > 1:  # a bare "/" is no secret, and is in every message
                text = text.replace(private, REDACTED)
        return redact_text(text)

    def send(self, body: bytes, sleep: Callable[[float], None]) -> Outcome:
        if self._sender is None:  # made in the courier's thread: its connection lives there
            self._sender = Sender(
                concurrency=1,
                timeout_seconds=self._timeout,
                retry=ALERT_RETRY,
                retry_unknown=True,
                sleep=sleep,
                shown=self._shown,
            )
        delivery = self._sender.deliver("POST", self._target, self._headers, body)
        if delivery.accepted:
            return Outcome(True)
        status = delivery.status
        if status is not None:
            said = self._shown(delivery.body[:400].decode("utf-8", "replace").strip().replace("\n", " "))[:200]
            reason = f"HTTP {status}" + (f": {said}" if said else "")
        else:
            reason = self._shown(delivery.reason or delivery.state).replace("--timeout", "--alert-timeout")
        again = delivery.state == "unreachable" or (
            delivery.state == "unknown" and (status is None or ALERT_RETRY.retries(status))
        )
        return Outcome(False, lasting=not again, reason=reason)

    def close(self) -> None:
        if self._sender is not None:
            self._sender.close()


class CommandSink:
    """Runs ``command`` (split as a shell would, run without one) once per alert, the alert's JSON on its stdin
    and nothing else: exit 0 is taken; 75, a signal, no exit within the timeout (its process group is killed)
    or no start at all is asked again later; any other status is refused for good. Its stdout is thrown away
    (stdout is the watch's own NDJSON); the last line of its stderr goes into a failure's message."""

    def __init__(self, command: str, number: int, timeout_seconds: float, withheld: Sequence[str] = ()) -> None:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise UsageError(f"--alert-command {number}: cannot be split into words ({exc})") from exc
        if not argv:
            raise UsageError(f"--alert-command {number}: names no program")
        if shutil.which(argv[0]) is None:
            raise UsageError(f"--alert-command {number}: program {Path(argv[0]).name!r} not found or not executable")
        self._argv = argv
        self._timeout = timeout_seconds
        self._withheld = {*WITHHELD, *withheld}
        self.key = _digest("command", command)
        self.label = f"command-{number}"
        self.name = f"--alert-command {number} ({Path(argv[0]).name})"
        self._running: subprocess.Popen[bytes] | None = None
        self._closed = False

    def send(self, body: bytes, sleep: Callable[[float], None]) -> Outcome:
        rng = random.Random()
        attempt = 1
        while True:
            outcome = self._once(body)
            if outcome.taken or outcome.lasting or attempt >= ALERT_RETRY.max_attempts:
                return outcome
            sleep(ALERT_RETRY.wait_seconds(attempt, None, rng))
            attempt += 1

    def _once(self, body: bytes) -> Outcome:
        if self._closed:
            raise Stopped
        # Its stderr goes to a file, not a pipe: a command is done when it exits, not when everything it started
        # in the background (and which holds its stderr) has closed it too.
        with tempfile.TemporaryFile() as errors:
            try:
                process = subprocess.Popen(
                    self._argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    start_new_session=True,  # its own process group: a timeout kills what it started too
                    env=environment_without(self._withheld),
                )
            except OSError as exc:
                return Outcome(False, reason=f"cannot start: {exc.strerror or type(exc).__name__}")
            self._running = process
            try:
                process.communicate(body, timeout=self._timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                process.communicate()
                return Outcome(False, reason=f"no exit within --alert-timeout {self._timeout:g} s (killed)")
            finally:
                self._running = None
            code = process.returncode
            if code == 0:
                return Outcome(True)
            errors.seek(max(0, errors.seek(0, os.SEEK_END) - STDERR_TAIL))
            err = errors.read(STDERR_TAIL)
        lines = err.decode("utf-8", "replace").strip().splitlines()
        said = f": {redact_text(lines[-1].strip())[:200]}" if lines else ""
        if code < 0:
            return Outcome(False, reason=f"killed by signal {-code}{said}")
        return Outcome(False, lasting=code != TEMPFAIL, reason=f"exit {code}{said}")

    def close(self) -> None:
        self._closed = True
        process = self._running
        if process is not None:
            _kill_group(process)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(process.pid, signal.SIGKILL)


WITHHELD = (API_KEY_ENV, "FIREHOSE_ALERT_URL")
"""Variables an alert command does not get: LeadConduit's API key (an alert needs none of it to be passed on) and
the webhooks' URLs (credentials). The rest of the watch's environment is its own (a cloud CLI's credentials, a
PATH), as a command run by hand would have."""


def make_sinks(
    urls: Sequence[str], commands: Sequence[str], timeout_seconds: float, withheld: Sequence[str] = ()
) -> list[AlertSink]:
    """The places ``--alert-url`` and ``--alert-command`` name, checked now (a URL that is none, a program not
    found: a usage error before the watch starts). The same place named twice is one place. ``withheld``: more
    variables no command gets (``WITHHELD``), as the variable a config file names for the API key."""
    sinks: list[AlertSink] = []
    for number, url in enumerate(dict.fromkeys(urls), 1):
        sinks.append(WebhookSink(url, number, timeout_seconds))
    for number, command in enumerate(dict.fromkeys(commands), 1):
        sinks.append(CommandSink(command, number, timeout_seconds, withheld))
    return sinks


class Courier(threading.Thread):
    """Drains the outbox to one place, in order, with its own connection to the state database."""

    def __init__(self, sink: AlertSink, open_ledger: Callable[[], Any], metrics: Any = None) -> None:
        super().__init__(name=f"firehose-alerts-{sink.label}", daemon=True)
        self.sink = sink
        self._open_ledger = open_ledger
        self._metrics = metrics
        self._wake = threading.Event()
        self._closing = threading.Event()
        """The watch has ended: deliver what waits, wait for nothing new, give up on a failing place."""
        self._abort = threading.Event()
        """The grace is over: stop at once (mid-retry included), the alert kept."""
        self._hurry = threading.Event()
        """Either of the two: a failing place's pause between rounds ends."""
        self._failing = False

    def wake(self) -> None:
        self._wake.set()

    def finish(self) -> None:
        self._closing.set()
        self._hurry.set()
        self._wake.set()

    def abort(self) -> None:
        self._abort.set()
        self.finish()
        self.sink.close()

    def _sleep(self, seconds: float) -> None:
        if self._abort.wait(seconds):
            raise Stopped

    def run(self) -> None:
        try:
            with self._open_ledger() as ledger:
                self._drain(ledger)
        except Stopped:
            pass
        except Exception as exc:  # the state database failed under it: say so once; the alerts stay
            log.error("%s: stopped delivering alerts: %s", self.sink.name, redact_text(str(exc)),
                      extra={"fields": {"sink": self.sink.label}})  # fmt: skip
        finally:
            self.sink.close()

    def _drain(self, ledger: Any) -> None:
        while not self._abort.is_set():
            self._wake.clear()  # before reading: a wake from now on is for alerts this read may not see
            batch = ledger.undelivered(self.sink.key, limit=100)
            self._gauge(ledger)
            if not batch:
                if self._closing.is_set():
                    return
                self._wake.wait(IDLE_SECONDS)
                continue
            for number, alert in batch:
                outcome = self.sink.send(encode(alert), self._sleep)
                if not outcome.taken and not outcome.lasting:
                    self._failed(outcome, ledger)
                    self._hurry.wait(RETRY_LATER_SECONDS)
                    if self._closing.is_set():
                        return  # what waits is delivered by the next run
                    break
                if outcome.taken:
                    if self._failing:
                        self._failing = False
                        log.info("%s: delivering alerts again", self.sink.name,
                                 extra={"fields": {"sink": self.sink.label, "event": "delivering"}})  # fmt: skip
                else:
                    self._count_failure()
                    log.warning(
                        "%s: alert %d (%s) refused, not sent again: %s", self.sink.name, number, alert.get("alert"),
                        outcome.reason, extra={"fields": {"sink": self.sink.label, "event": "alert_refused",
                                                          "id": number, "reason": outcome.reason}},
                    )  # fmt: skip
                ledger.delivered(number, self.sink.key)
                if self._abort.is_set():
                    return

    def _failed(self, outcome: Outcome, ledger: Any) -> None:
        self._count_failure()
        if self._failing:
            return  # said once per outage, not once per try
        self._failing = True
        waiting = ledger.waiting(self.sink.key)
        log.warning(
            "%s: failing (%s); %d alert%s kept in the state database, tried again every %g s",
            self.sink.name, outcome.reason, waiting, "" if waiting == 1 else "s", RETRY_LATER_SECONDS,
            extra={"fields": {"sink": self.sink.label, "event": "delivery_failing", "reason": outcome.reason,
                              "waiting": waiting}},
        )  # fmt: skip

    def _count_failure(self) -> None:
        if self._metrics is not None:
            self._metrics.alert_failed(self.sink.label)

    def _gauge(self, ledger: Any) -> None:
        if self._metrics is not None:
            self._metrics.alerts_waiting_now(self.sink.label, ledger.waiting(self.sink.key))


class AlertDelivery:
    """The couriers of one watch: started once the outbox knows every place, woken after each poll, given a
    grace at the end to deliver what waits."""

    def __init__(self, sinks: Sequence[AlertSink], open_ledger: Callable[[], Any], metrics: Any = None) -> None:
        self.couriers = [Courier(sink, open_ledger, metrics) for sink in sinks]

    @property
    def keys(self) -> list[str]:
        return [courier.sink.key for courier in self.couriers]

    def start(self) -> None:
        for courier in self.couriers:
            courier.start()

    def wake(self) -> None:
        for courier in self.couriers:
            courier.wake()

    def close(self, grace_seconds: float) -> None:
        """Deliver what waits for up to ``grace_seconds`` in all, then stop: what is left stays in the outbox
        for the next run."""
        for courier in self.couriers:
            courier.finish()
        deadline = time.monotonic() + grace_seconds
        for courier in self.couriers:
            courier.join(max(0.0, deadline - time.monotonic()))
        for courier in self.couriers:
            if courier.is_alive():
                courier.abort()
                courier.join(1.0)
                left = " (an alert was in flight)" if courier.is_alive() else ""
                log.warning("%s: alerts not yet delivered are kept for the next run%s", courier.sink.name, left,
                            extra={"fields": {"sink": courier.sink.label, "event": "delivery_deferred"}})  # fmt: skip
