"""The HTTP edge: the only module that uses httpx and tenacity, and the plain ``http.client`` transport that replay
(``Sender``) and the archive backends' lean reads (``ObjectGetter``) share (``KeepAlivePool``).

``HttpClient`` sends requests to one base URL with Basic auth, retries what is safe to retry, and turns every
httpx error and unusable status into a ``FirehoseError``. The retry policy is data (``RetryPolicy``): one set of
retry statuses, and of those the ones that prove a request was not taken; it builds the one retry loop
(``RetryPolicy.retrying``) that ``HttpClient``, ``Sender`` and ``ObjectGetter`` all run. The sleep and the random
source are injected so tests run without waiting.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import math
import random
import select
import socket
import ssl
import sys
import threading
import time
import types
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

import httpcore

# httpx's package imports its own command-line tool (httpx._main), which imports rich and pygments whenever they
# are installed (rich is firehose's): 6 MiB and a fifth of a second at every start, for a tool firehose never
# runs. A stand-in for that one module keeps them out; a program that imported httpx first keeps its own.
if "httpx" not in sys.modules:
    _tool = types.ModuleType("httpx._main")
    _tool.main = lambda: None  # type: ignore[attr-defined]
    sys.modules.setdefault("httpx._main", _tool)
import httpx  # after the stand-in above
import tenacity

from firehose import __version__
from firehose.errors import (
    ApiError,
    ApiStatusError,
    ApiUnreachable,
    ArchiveError,
    AuthError,
    DataError,
    FirehoseError,
    RetriesExhausted,
    UsageError,
)
from firehose.secret import redact_text, redact_url

log = logging.getLogger(__name__)

QueryParams = Sequence[tuple[str, str]]
"""Query parameters as ordered pairs, so a name may repeat (``include=a&include=b``)."""

USER_AGENT = f"firehose/{__version__}"


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying a request again.

    The wait before retry ``n`` (1-based) is exponential, ``backoff_base_seconds * 2**(n-1)``, capped at
    ``backoff_max_seconds``, with "equal jitter" (a random point in its upper half) so many clients do not
    retry in step. When the server sent ``Retry-After``, the wait is at least that long, up to
    ``retry_after_max_seconds``: a server asking for an hour does not stall a nightly job for an hour.
    """

    max_attempts: int = 6
    """Attempts in all, the first one included."""
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    retry_after_max_seconds: float = 120.0
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 500, 502, 503, 504}))
    """The one set of statuses that mean "try again later", for every request firehose sends: the API's GETs,
    object reads, replay's POSTs. 501 and 505 are not here: they will not change."""
    not_taken_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 503}))
    """Of any answer, the statuses that prove the server did not act on the request (too many requests, service
    unavailable). A GET is safe to repeat whatever the answer; a request that is not (replay's POST of a lead) is
    retried only on a retry status that is also here. On the other retry statuses (500, 502, 504: a gateway after
    forwarding, a server after processing) the target may have taken it: replay calls the lead ``unknown`` and
    retries it only when told to (``retry_unknown``)."""

    def wait_seconds(self, retry_number: int, retry_after: float | None, rng: random.Random) -> float:
        backoff = min(self.backoff_max_seconds, self.backoff_base_seconds * 2.0 ** (retry_number - 1))
        jittered = backoff / 2 + rng.random() * backoff / 2
        if retry_after is None:
            return jittered
        return max(jittered, min(retry_after, self.retry_after_max_seconds))

    def retries(self, status: int, *, safe: bool = True) -> bool:
        """Whether an answer with ``status`` is tried again. ``safe``: the request may be repeated whatever became
        of it (a GET, or a POST whose caller accepts that a repeat may act twice). Otherwise only a retry status
        that proves the request was not taken is."""
        return status in self.retry_statuses and (safe or status in self.not_taken_statuses)

    def may_have_taken(self, status: int) -> bool:
        """Whether a server error leaves in doubt what became of a request: any 5xx that does not prove it was not
        taken."""
        return status >= 500 and status not in self.not_taken_statuses

    def retrying(
        self,
        *,
        retry: tenacity.retry_base,
        announce: Callable[[tenacity.RetryCallState], None],
        sleep: Callable[[float], None],
        rng: random.Random,
        retry_after: Callable[[tenacity.RetryCallState], float | None] = lambda state: None,
        **extra: Any,
    ) -> tenacity.Retrying:
        """The one retry loop (tenacity) for every HTTP stack: at most ``max_attempts`` attempts, waiting
        ``wait_seconds`` (at least ``retry_after(state)``) between them, ``announce`` called before each wait.
        ``retry`` says which outcomes are tried again; ``extra`` goes to tenacity (``reraise``,
        ``retry_error_callback``)."""

        def wait(state: tenacity.RetryCallState) -> float:
            return self.wait_seconds(state.attempt_number, retry_after(state), rng)

        # announce runs in before_sleep, not in wait(): tenacity asks for the wait before it decides to stop, and a
        # message from there promised a retry that never came ("retry 6 of 5").
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=wait,
            before_sleep=announce,
            retry=retry,
            sleep=sleep,
            **extra,
        )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


class _RetryableStatus(Exception):
    """Raised inside the retry loop for a status worth another try; never leaves this module."""

    def __init__(self, error: ApiStatusError, retry_after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class _RetryableTransport(Exception):
    """Raised inside the retry loop for a connection failure; never leaves this module."""

    def __init__(self, error: ApiUnreachable) -> None:
        super().__init__(str(error))
        self.error = error


def _describe_transport_error(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out waiting for an answer"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc).lower()
        if "refused" in text:
            return "connection refused"
        if "name or service not known" in text or "nodename" in text or "getaddrinfo" in text:
            return "host name not found"
        return "could not connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server closed the connection"
    return type(exc).__name__


_deadline = threading.local()
"""The monotonic time by which this thread's current request must be over (``due``), or none."""


def _bounded(timeout: float | None) -> float | None:
    """A socket operation's timeout, cut to what is left of the request's deadline: each read still has its own
    timeout, but no number of slow reads outlasts the deadline. Never 0 (a non-blocking socket), so running out
    is a timeout like any other."""
    due: float | None = getattr(_deadline, "due", None)
    if due is None:
        return timeout
    left = max(due - time.monotonic(), 0.001)
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """httpcore's socket stream, every read and write bounded by ``_bounded``."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, _bounded(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own sockets, wrapped in ``_DeadlineStream``."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._backend.connect_tcp(host, port, _bounded(timeout), local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:  # pragma: no cover  # firehose never asks for one
        return _DeadlineStream(self._backend.connect_unix_socket(path, _bounded(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


_TLS: dict[str, ssl.SSLContext] = {}
_TLS_LOCK = threading.Lock()


def shared_tls(trust: str = "certifi") -> ssl.SSLContext:
    """This process's one TLS context per trust store (``certifi``: httpx's, for the API; ``system``: the system's
    CA certificates, for object reads), shared by every client firehose makes. Making one loads the certificates,
    about 50 ms here: a sliced run made two for each slice's API client, a tenth of a second a slice. A context is
    safe to share between connections and threads once made."""
    with _TLS_LOCK:
        if trust not in _TLS:
            _TLS[trust] = httpx.create_ssl_context() if trust == "certifi" else ssl.create_default_context()
        return _TLS[trust]


class _DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport over ``_DeadlineBackend``: the one deadline of an answer covers its status line and
    headers too, which httpx's timeouts (each bounding one read) do not. A server sending its headers a byte at
    a time held a request for ever. httpx takes no network backend, so its pool is made again with one (the
    same settings as httpx's defaults)."""

    def __init__(self) -> None:
        super().__init__(verify=shared_tls())
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
        self._pool = httpcore.ConnectionPool(
            ssl_context=shared_tls(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_DeadlineBackend(),
        )


class RetryInterrupted(Exception):
    """A wait between attempts ended because the caller was told to stop (``HttpClient.interrupt_on``): not an
    error of the server's, so outside the error tree; the caller stops as it would between requests."""


class HttpClient:
    """Requests to one base URL, with Basic auth and retries.

    ``auth`` is ``(username, password)``; it is sent as a header and never appears in a message, a log line
    or a repr. ``transport`` lets tests plug in an ``httpx.MockTransport``; the default is a real connection
    pool with keep-alive.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: tuple[str, str] | None = None,
        timeout_seconds: float = 60.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._timeout = timeout_seconds
        self._client = httpx.Client(
            auth=httpx.BasicAuth(*auth) if auth else None,
            timeout=httpx.Timeout(timeout_seconds, connect=min(10.0, timeout_seconds)),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            transport=transport or _DeadlineTransport(),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"HttpClient(base_url={redact_url(self.base_url)!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def release(self) -> None:
        """Close it (the same as ``close``, but for a ``KeptHttpClient``)."""
        HttpClient.close(self)

    def get_json(self, path: str, params: QueryParams = ()) -> Any:
        """GET ``path`` and return the parsed JSON body, retrying per the policy; GET is safe to repeat."""
        from firehose.codec import decode

        url = f"{self.base_url}{path}"
        body = self._retrying(lambda: self._get_once(url, params))
        return decode(body, where=f"GET {redact_url(url)}")

    def _get_once(self, url: str, params: QueryParams) -> bytes:
        shown = f"GET {redact_url(url)}"
        # httpx's timeouts bound each read; a server that trickles a byte at a time would hold the request for
        # ever. One deadline covers the whole answer: every socket read and write is cut to what is left of it
        # (``_DeadlineTransport``: status line and headers), and the body is read in chunks against it.
        deadline = time.monotonic() + self._timeout
        too_slow = f"LeadConduit is too slow: {shown}: no whole answer within {self._timeout:g} s (timeout_seconds)"
        _deadline.due = deadline
        try:
            with self._client.stream("GET", url, params=list(params)) as response:
                chunks = []
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise _RetryableTransport(ApiUnreachable(too_slow, url=redact_url(url)))
                content = b"".join(chunks)
        except httpx.TimeoutException as exc:
            if time.monotonic() >= deadline - 0.01:  # the deadline, not one read's timeout, ran out
                raise _RetryableTransport(ApiUnreachable(too_slow, url=redact_url(url))) from exc
            reason = _describe_transport_error(exc)
            raise _RetryableTransport(
                ApiUnreachable(f"cannot reach LeadConduit: {shown}: {reason}", url=redact_url(url))
            ) from exc
        except httpx.UnsupportedProtocol as exc:  # never changes on a retry
            raise ApiUnreachable(f"cannot reach LeadConduit: {shown}: not an http(s) URL", url=redact_url(url)) from exc
        except httpx.TransportError as exc:
            reason = _describe_transport_error(exc)
            raise _RetryableTransport(
                ApiUnreachable(f"cannot reach LeadConduit: {shown}: {reason}", url=redact_url(url))
            ) from exc
        except httpx.DecodingError as exc:
            # Content-Encoding: gzip (or deflate, br) over bytes that are not: an answer that cannot be parsed.
            raise DataError(f"{shown}: the answer does not decode as its Content-Encoding says ({exc})") from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # what is left of httpx's errors: none is retried
            raise ApiError(f"{shown}: {type(exc).__name__}: {redact_text(str(exc))[:200]}") from exc
        finally:
            _deadline.due = None
        status = response.status_code
        if 200 <= status < 300:
            return content
        if status in (401, 403):
            raise AuthError(
                f"LeadConduit refused the API key (HTTP {status}) for {shown}; "
                "check LEADCONDUIT_API_KEY and the account's access to the Leads API",
                status=status,
                url=redact_url(url),
            )
        error = ApiStatusError(
            f"{shown} answered HTTP {status}{_server_says(content)}", status=status, url=redact_url(url)
        )
        if self.retry.retries(status):
            raise _RetryableStatus(error, parse_retry_after(response.headers.get("Retry-After")))
        raise error

    def interrupt_on(self, stop: threading.Event) -> None:
        """Waits between attempts end as soon as ``stop`` is set, raising ``RetryInterrupted``: a service told to
        stop (SIGTERM) does not first spend its retries, up to minutes with ``Retry-After``, past its stop
        timeout."""

        def sleep(seconds: float) -> None:
            if stop.wait(seconds):
                raise RetryInterrupted

        self._sleep = sleep

    def _retrying(self, attempt: Callable[[], bytes]) -> bytes:
        policy = self.retry

        def retry_after(state: tenacity.RetryCallState) -> float | None:
            exc = state.outcome.exception() if state.outcome else None
            return exc.retry_after if isinstance(exc, _RetryableStatus) else None

        def announce(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            seconds = state.next_action.sleep if state.next_action else 0.0
            log.warning("%s; retry %d of %d in %.1f s", exc, state.attempt_number, policy.max_attempts - 1, seconds)

        retrying = policy.retrying(
            retry=tenacity.retry_if_exception_type((_RetryableStatus, _RetryableTransport)),
            retry_after=retry_after,
            announce=announce,
            sleep=self._sleep,
            rng=self._rng,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except (_RetryableStatus, _RetryableTransport) as exc:
            last: FirehoseError = exc.error
            if policy.max_attempts <= 1:
                raise last from None
            raise RetriesExhausted(
                f"{last} (gave up after {policy.max_attempts} attempts)",
                attempts=policy.max_attempts,
                last_error=last,
            ) from None


class KeptHttpClient(HttpClient):
    """An ``HttpClient`` a worker process keeps for the next slice it runs (``firehose.connections``): a job's
    ``close`` hands it back (``given_back``), with its connections, to be lent again; ``release`` closes it."""

    given_back: Callable[[KeptHttpClient], None] | None = None

    def close(self) -> None:
        if self.given_back is not None:
            self.given_back(self)
        else:
            self.release()


def _server_says(content: bytes) -> str:
    """The server's own error text, shortened and without credentials, for the message (``: {"error": ...}``)."""
    text = redact_text(content[:400].decode("utf-8", "replace").strip().replace("\n", " "))
    if not text:
        return ""
    return f": {text[:200]}"


@dataclass(frozen=True)
class Delivery:
    """What became of one request sent (with retries) by ``Sender``.

    ``state`` is one of:

    - ``answered``: the last attempt got a status that says what the target did: 2xx took it, 4xx refused it,
      a 3xx sent it elsewhere (``location``);
    - ``unknown``: the request went out and no usable answer came back (a read timeout, a connection closed
      mid-answer, or a 5xx other than 503: a gateway's 502/504 after forwarding, a 500 after processing): the
      target may have taken the lead;
    - ``unreachable``: no connection could be made on any attempt: nothing was sent;
    - ``unsent``: the request could not be written at all (a header or method HTTP cannot carry): nothing sent.
    """

    state: str
    attempts: int
    status: int | None = None
    body: bytes = b""
    content_type: str = ""
    reason: str | None = None
    location: str | None = None
    """The ``Location`` of a 3xx answer, redacted (no user info, no credential values)."""

    @property
    def accepted(self) -> bool:
        """A 2xx answer: the target took the request. (A 3xx is not: see ``replay`` for LeadConduit's 303.)"""
        return self.state == "answered" and self.status is not None and 200 <= self.status < 300

    @property
    def sent(self) -> bool:
        """Whether any byte of the request may have reached the target."""
        return self.state not in ("unreachable", "unsent")


class _Deadlines:
    """Shuts down a socket whose exchange outlives its deadline. ``http.client``'s timeout bounds each read
    only, so a server that trickles a byte every half second would hold a request for ever; here every
    attempt has one deadline for sending and reading its whole answer. One daemon thread, checking every
    50 ms, for all requests: arming and disarming is a dict operation."""

    TICK_SECONDS = 0.05

    def __init__(self) -> None:
        self._armed: dict[int, tuple[float, socket.socket]] = {}
        self._fired: set[int] = set()
        self._lock = threading.Lock()
        self._next = 0
        self._thread: threading.Thread | None = None

    def arm(self, sock: socket.socket, seconds: float) -> int:
        with self._lock:
            self._next += 1
            self._armed[self._next] = (time.monotonic() + seconds, sock)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="replay-deadlines", daemon=True)
                self._thread.start()
            return self._next

    def disarm(self, token: int) -> bool:
        """Disarm; True when the deadline had fired (the socket was shut down for it)."""
        with self._lock:
            self._armed.pop(token, None)
            if token in self._fired:
                self._fired.discard(token)
                return True
            return False

    def _watch(self) -> None:
        while True:
            time.sleep(self.TICK_SECONDS)
            now = time.monotonic()
            with self._lock:
                late = [(token, sock) for token, (due, sock) in self._armed.items() if due <= now]
                for token, _ in late:
                    del self._armed[token]
                    self._fired.add(token)
            for _, sock in late:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _Connection(Protocol):
    sock: Any

    def close(self) -> None: ...


ConnectionT = TypeVar("ConnectionT", bound=_Connection)


def _http_client_connection(
    scheme: str, host: str, port: int | None, timeout: float, tls: ssl.SSLContext | None
) -> http.client.HTTPConnection:
    if scheme == "https":
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=tls)
    return http.client.HTTPConnection(host, port, timeout=timeout)


class KeepAlivePool(Generic[ConnectionT]):
    """Connections kept open between requests, lent out one request at a time (``with pool.connection(...)``):
    a thread takes an idle one to the same origin, or a new one, and gives it back after its answer, so any number
    of short-lived thread pools share the same few sockets. A connection the server closed while it sat idle is
    dropped before use; more than ``max_idle`` idle ones per origin are closed. ``deadlines`` shuts down the socket
    of an exchange that outlives its deadline. ``make`` opens a connection (``http.client``'s, or ``Wire`` for
    object reads).

    (Connections were once kept per thread: every read through a new thread pool left its threads' sockets open
    until the store was closed, and a long content run piled up thousands, past what ``select`` can watch.)"""

    def __init__(
        self,
        timeout_seconds: float,
        make: Callable[[str, str, int | None, float, ssl.SSLContext | None], ConnectionT],
        *,
        tls: ssl.SSLContext | None = None,
        max_idle: int = 256,
    ) -> None:
        self.timeout = timeout_seconds
        self.deadlines = _Deadlines()
        self._make = make
        self._idle: dict[tuple[str, str, int | None], list[ConnectionT]] = {}
        self._open: list[ConnectionT] = []
        self._lock = threading.Lock()
        self._tls = tls
        self._max_idle = max_idle
        # A pool dropped without close() (a store nobody closed) still closes its sockets.
        weakref.finalize(self, _close_all, self._open)

    @contextlib.contextmanager
    def connection(self, scheme: str, host: str, port: int | None) -> Iterator[ConnectionT]:
        """A connection to the origin for one exchange, given back (or closed, if the exchange closed it) after."""
        origin = (scheme, host, port)
        connection = self._take(origin)
        try:
            yield connection
        finally:
            self._give_back(origin, connection)

    def _take(self, origin: tuple[str, str, int | None]) -> ConnectionT:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            while idle:
                connection = idle.pop()  # the most recently used: the likeliest to be still open
                if connection.sock is not None and not _closed_by_peer(connection.sock):
                    return connection
                connection.close()  # the server closed it while idle: never send into it
                self._open.remove(connection)
            scheme, host, port = origin
            if scheme == "https" and self._tls is None:
                self._tls = shared_tls("system")
            connection = self._make(scheme, host, port, self.timeout, self._tls)
            self._open.append(connection)
            return connection

    def _give_back(self, origin: tuple[str, str, int | None], connection: ConnectionT) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if connection.sock is None or len(idle) >= self._max_idle:
                connection.close()
                if connection in self._open:
                    self._open.remove(connection)
            else:
                idle.append(connection)

    def open_connections(self) -> int:
        """Connections open now, lent out or idle (for tests and reports)."""
        with self._lock:
            return sum(1 for connection in self._open if connection.sock is not None)

    def close(self) -> None:
        with self._lock:
            _close_all(self._open)
            self._idle.clear()


def _close_all(connections: list[Any]) -> None:
    for connection in connections:
        connection.close()
    connections.clear()


class Wire:
    """One keep-alive HTTP/1.1 connection for GETs of stored objects, spoken by hand. ``http.client`` parses
    every answer's head with the ``email`` package, about 100 µs of CPU per object, as much as the rest of a read;
    here a head is a few ``readline`` calls. It reads what object stores send: a ``Content-Length`` body, a
    chunked one, or one that runs to the connection's close."""

    MAX_HEAD_LINES = 200
    MAX_LINE = 65536

    def __init__(self, scheme: str, host: str, port: int | None, timeout: float, tls: ssl.SSLContext | None) -> None:
        self._address = (host, port or (443 if scheme == "https" else 80))
        self._timeout = timeout
        self._tls = tls if scheme == "https" else None
        self._host = host
        self.sock: socket.socket | None = None
        self._reader: Any = None

    def connect(self) -> None:
        sock = socket.create_connection(self._address, timeout=self._timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is not None:
            sock = self._tls.wrap_socket(sock, server_hostname=self._host)
        self.sock, self._reader = sock, sock.makefile("rb")

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self.sock is not None:
            self.sock.close()
        self.sock = self._reader = None

    def send(self, head: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(head)

    def head(self) -> tuple[int, dict[str, str]]:
        """The answer's status and headers (lower-case names)."""
        reader = self._reader
        status_line = reader.readline(self.MAX_LINE)
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise http.client.BadStatusLine(status_line[:80].decode("latin-1") or "the connection closed")
        headers: dict[str, str] = {}
        for _ in range(self.MAX_HEAD_LINES):
            line = reader.readline(self.MAX_LINE)
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise http.client.IncompleteRead(b"")
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            raise http.client.LineTooLong("answer head")
        if parts[0] == b"HTTP/1.0":
            headers.setdefault("connection", "close")
        return int(parts[1]), headers

    def body(self, status: int, headers: dict[str, str]) -> tuple[bytes, bool]:
        """The answer's body, and whether the server closes the connection after it."""
        closing = headers.get("connection", "").lower() == "close"
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return self._chunked(), closing
        if "content-length" in headers:
            length = int(headers["content-length"])
            body = self._reader.read(length)
            if len(body) < length:
                raise http.client.IncompleteRead(body, length - len(body))
            return body, closing
        if status in (204, 304) or 100 <= status < 200:
            return b"", closing
        return self._reader.read(), True  # delimited by the close

    def _chunked(self) -> bytes:
        reader, chunks = self._reader, list[bytes]()
        while True:
            size_line = reader.readline(self.MAX_LINE)
            size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
            if size == 0:
                while reader.readline(self.MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunk = reader.read(size)
            if len(chunk) < size:
                raise http.client.IncompleteRead(chunk, size - len(chunk))
            chunks.append(chunk)
            reader.readline(self.MAX_LINE)


class Sender:
    """Sends prepared requests to any URL, for replay: no auth of its own, one keep-alive connection per sending
    thread and host; redirects are followed only when asked, to the same origin, for 307/308 (which keep the
    method and body).

    It speaks HTTP/1.1 through the standard library's ``http.client``, not httpx: measured here with 16
    threads against nginx, httpx spent 0.8 to 1 ms of CPU per POST (its shared pool's locking), http.client
    0.19 ms, and replay's budget is 1 ms per lead in all. It uses no proxy.

    Retries follow ``retry``, the same policy (and statuses) as the API's GETs, for a request that is not safe
    to repeat (``RetryPolicy.retries(safe=False)``). Retried, since they cannot have reached the flow: a
    connection that could not be made, and the retry statuses that prove the target did not take the request
    (429, 503), waiting per ``retry`` and at least ``Retry-After``. Not retried: a request that went out with no
    usable answer (``unknown``: a read timeout, a connection closed mid-answer, a 5xx such as 500/502/504), since
    the target may have acted on it; ``retry_unknown`` retries it anyway (a status among the retry statuses, or
    none at all). ``before_attempt`` runs right before every attempt (the rate limiter).
    """

    MAX_REDIRECTS = 5

    def __init__(
        self,
        *,
        concurrency: int = 4,
        timeout_seconds: float = 30.0,
        retry: RetryPolicy | None = None,
        retry_unknown: bool = False,
        follow_redirects: bool = False,
        before_attempt: Callable[[], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        shown: Callable[[str], str] | None = None,
    ) -> None:
        """``shown``: what the retry lines may show of a URL and of the target's answer (default: credentials
        taken out; a webhook, whose path is its credential, shows its origin only)."""
        if not (math.isfinite(timeout_seconds) and 0 < timeout_seconds <= 3600):
            raise UsageError(f"--timeout must be above 0 and at most 3600 seconds, got {timeout_seconds}")
        if concurrency < 1:
            raise UsageError(f"--concurrency must be at least 1, got {concurrency}")
        self.retry = retry or RetryPolicy()
        if self.retry.max_attempts < 1:
            raise UsageError(f"--max-attempts must be at least 1, got {self.retry.max_attempts}")
        self.retry_unknown = retry_unknown
        self.follow_redirects = follow_redirects
        self._before_attempt = before_attempt or (lambda: None)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._shown = shown or redact_url
        self._timeout = timeout_seconds
        self._pool = KeepAlivePool(timeout_seconds, _http_client_connection)
        self._deadlines = self._pool.deadlines

    def pace(self) -> None:
        """Wait for the next start the rate limit allows (for a caller that must act right before sending:
        ``deliver(..., paced=True)`` then does not wait again for its first attempt)."""
        self._before_attempt()

    def longest_seconds(self) -> float:
        """The longest one ``deliver`` can take: every attempt timing out, with the longest waits between. A
        request claimed longer ago than this is no longer in flight, whatever became of it."""
        policy = self.retry
        # Each wait is at most the longer of the backoff cap and the Retry-After cap.
        waits = max(policy.backoff_max_seconds, policy.retry_after_max_seconds) * (policy.max_attempts - 1)
        hops = self.MAX_REDIRECTS + 1 if self.follow_redirects else 1
        return (self._timeout * 2 + 2 * _Deadlines.TICK_SECONDS + 1) * policy.max_attempts * hops + waits

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def deliver(
        self, method: str, url: str, headers: Sequence[tuple[str, str]], body: bytes, *, paced: bool = False
    ) -> Delivery:
        """Send one request, with retries per the policy. ``paced``: the caller already waited for the first
        attempt's slot (``pace``)."""
        policy = self.retry
        attempts = 0
        last_retry_after: list[float | None] = [None]

        def once() -> Delivery:
            nonlocal attempts
            attempts += 1
            where = url
            for hop in range(self.MAX_REDIRECTS + 1):
                wait = not (paced and attempts == 1 and hop == 0)
                delivery, location = self._once(method, where, headers, body, attempts, last_retry_after, wait)
                following = self._redirect_to(where, delivery, location)
                if following is None:
                    return delivery
                log.info("%s %s: HTTP %s, following to %s", method, self._shown(where), delivery.status,
                         self._shown(following))  # fmt: skip
                where = following
            return replace(delivery, reason=f"{delivery.reason} (more than {self.MAX_REDIRECTS} redirects)")

        def again(delivery: Delivery) -> bool:
            if delivery.state == "unknown":  # no answer after sending, or a status that leaves it in doubt
                return self.retry_unknown and (delivery.status is None or policy.retries(delivery.status))
            if delivery.state == "answered" and delivery.status is not None:
                return policy.retries(delivery.status, safe=False)
            return delivery.state == "unreachable"  # nothing was sent; unsent never changes

        def announce(state: tenacity.RetryCallState) -> None:
            outcome = state.outcome.result() if state.outcome else None
            seconds = state.next_action.sleep if state.next_action else 0.0
            reason = self._shown(outcome.reason) if outcome and outcome.reason else None
            log.info("%s %s: %s; retry in %.1f s", method, self._shown(url), reason, seconds)

        retrying = policy.retrying(
            retry=tenacity.retry_if_result(again),
            retry_after=lambda state: last_retry_after[0],
            announce=announce,
            sleep=self._sleep,
            rng=self._rng,
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        result: Delivery = retrying(once)
        return result

    def _redirect_to(self, url: str, delivery: Delivery, location: str | None) -> str | None:
        """Where to follow a 307/308 to: only when asked, and only on the same origin (scheme, host, port), where
        the method and body are kept by the status's own definition; None otherwise."""
        if not self.follow_redirects or delivery.status not in (307, 308) or not location:
            return None
        here = urlsplit(url)
        there = urlsplit(urljoin(url, location))
        if (there.scheme, there.hostname, there.port) != (here.scheme, here.hostname, here.port):
            return None
        return urlunsplit(there._replace(netloc=here.netloc, fragment=""))

    def _once(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        attempts: int,
        retry_after: list[float | None],
        wait: bool = True,
    ) -> tuple[Delivery, str | None]:
        retry_after[0] = None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return Delivery("unreachable", attempts, reason=f"not an http(s) URL: {redact_url(url)}"), None
        with self._pool.connection(parts.scheme, parts.hostname, parts.port) as connection:
            return self._send_on(connection, method, parts, headers, body, attempts, retry_after, wait, url)

    def _send_on(
        self,
        connection: http.client.HTTPConnection,
        method: str,
        parts: SplitResult,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        attempts: int,
        retry_after: list[float | None],
        wait: bool,
        url: str,
    ) -> tuple[Delivery, str | None]:
        if wait:
            self._before_attempt()  # paced here, next to the socket: nothing slow between the slot and the send
        if connection.sock is None:
            try:
                connection.connect()
            except OSError as exc:  # nothing was sent
                connection.close()
                return Delivery("unreachable", attempts, reason=_describe_socket_error(exc)), None
        refused = _put_head(connection, method, parts, headers, body)
        if refused is not None:
            connection.close()
            return Delivery("unsent", attempts, reason=f"not sent: HTTP cannot carry this request ({refused})"), None
        token = self._deadlines.arm(connection.sock, self._timeout) if connection.sock is not None else 0
        try:
            connection.endheaders(body or None)
            response = connection.getresponse()
            content = response.read()
        except (OSError, http.client.HTTPException) as exc:
            # Sent, or partly sent, and no whole answer: the target may have taken the lead.
            late = self._deadlines.disarm(token)
            connection.close()
            why = f"no whole answer within --timeout {self._timeout:g} s" if late else _describe_socket_error(exc)
            return Delivery("unknown", attempts, reason=f"no answer after sending: {why}"), None
        self._deadlines.disarm(token)
        if response.will_close:
            connection.close()
        status = response.status
        if status in self.retry.retry_statuses:
            retry_after[0] = parse_retry_after(response.getheader("Retry-After"))
        content_type = response.getheader("Content-Type", "")
        if 200 <= status < 300:  # the common case first, with nothing to quote
            return Delivery("answered", attempts, status, content, content_type), None
        # The target's own words, credentials taken out (an echo of our Authorization header, a URL with a key).
        text = redact_text(content[:400].decode("utf-8", "replace").strip().replace("\n", " "))
        said = f"HTTP {status}" + (f": {text[:200]}" if text else "")
        location = response.getheader("Location")
        shown_location = redact_url(urljoin(url, location)) if location else None
        if 300 <= status < 400:
            where = f" to {shown_location}" if shown_location else " with no Location"
            reason = f"HTTP {status}: redirected{where}; the lead was not taken there"
            return Delivery("answered", attempts, status, content, content_type, reason, shown_location), location
        if self.retry.may_have_taken(status):
            reason = f"{said} after the request was sent: the target may have taken the lead"
            return Delivery("unknown", attempts, status, content, content_type, reason), None
        return Delivery("answered", attempts, status, content, content_type, said), None


STORE_RETRY = RetryPolicy(max_attempts=5, backoff_base_seconds=0.25, backoff_max_seconds=10.0)
"""Object reads: a throttled or failing store is asked again 4 times over about 4 to 8 s (S3 asks clients to
back off on SlowDown), after which the read is an ``error`` finding naming the key, never skipped."""
STORE_TIMEOUT_SECONDS = 60.0
"""How long an object read waits for its answer to start (plus time in proportion to its size)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What a store answered to one GET: its status, headers (names in lower case) and whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class ObjectGetter:
    """GETs of stored objects for the archive backends' lean read path: ``http.client`` over keep-alive
    connections, one per thread (``KeepAlivePool``), no SDK pipeline in between.

    The backend signs (``headers`` is called again for every attempt, since signatures hold the time) and reads
    the answer; this class only moves bytes. It retries, per ``retry`` (the project's one policy and its one
    retry loop), a connection that fails or breaks mid-answer and the policy's retry statuses (429, 500, 502,
    503, 504, waiting at least ``Retry-After``); a GET is safe to repeat. Every other status is an answer for the
    backend, 404 included. Each attempt has one deadline: ``timeout_seconds`` for the answer to start, plus a second per
    ``MIN_BYTES_PER_SECOND`` of its declared length, so a trickling server cannot hold a read for ever.
    """

    MIN_BYTES_PER_SECOND = 1_000_000

    def __init__(
        self,
        origin: str,
        *,
        retry: RetryPolicy | None = None,
        timeout_seconds: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"not an http(s) endpoint: {redact_url(origin)}")
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self.retry = retry or STORE_RETRY
        timeout = STORE_TIMEOUT_SECONDS if timeout_seconds is None else timeout_seconds
        self._pool = KeepAlivePool(timeout, Wire, tls=tls)
        self._sleep = sleep
        self._rng = rng or random.Random()

    def close(self) -> None:
        self._pool.close()

    def get(self, target: str, headers: Callable[[], Sequence[tuple[str, str]]], *, where: str) -> Answer:
        """GET ``target`` (path and query, already encoded); the last answer, whatever its status. Raises
        ``ArchiveError`` naming ``where`` when no whole answer came in any attempt."""
        policy = self.retry

        def again(outcome: tuple[Answer | None, str]) -> bool:
            return outcome[0] is None or policy.retries(outcome[0].status)

        first = self._once(target, headers())
        if not again(first):  # the common case, without the retry loop's cost (about 30 µs a read)
            assert first[0] is not None
            return first[0]
        pending = [first]  # the loop's first attempt is the one made already

        def last(state: tenacity.RetryCallState) -> tuple[Answer | None, str]:
            assert state.outcome is not None
            result: tuple[Answer | None, str] = state.outcome.result()
            return result

        def retry_after(state: tenacity.RetryCallState) -> float | None:
            answer = last(state)[0]
            return parse_retry_after(answer.headers.get("retry-after")) if answer is not None else None

        def announce(state: tenacity.RetryCallState) -> None:
            answer, failure = last(state)
            said = f"HTTP {answer.status}" if answer is not None else failure
            seconds = state.next_action.sleep if state.next_action else 0.0
            log.warning("%s: %s; retry %d of %d in %.1f s", where, said, state.attempt_number,
                        policy.max_attempts - 1, seconds)  # fmt: skip

        retrying = policy.retrying(
            retry=tenacity.retry_if_result(again),
            retry_after=retry_after,
            announce=announce,
            sleep=self._sleep,
            rng=self._rng,
            retry_error_callback=last,
        )
        answer, failure = retrying(lambda: pending.pop() if pending else self._once(target, headers()))
        if answer is not None:
            return answer
        tries = f" (gave up after {policy.max_attempts} attempts)" if policy.max_attempts > 1 else ""
        raise ArchiveError(f"{where}: {failure}{tries}")

    def _once(self, target: str, headers: Sequence[tuple[str, str]]) -> tuple[Answer | None, str]:
        try:
            lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
            request = f"GET {target} HTTP/1.1\r\n{lines}User-Agent: {USER_AGENT}\r\n\r\n".encode("latin-1")
            if "\n" in target or "\r" in target:
                raise ValueError("a CR or LF in the request target")
        except (ValueError, UnicodeEncodeError) as exc:  # nothing sent: the request cannot be spoken
            return None, f"not sent: HTTP cannot carry this request ({exc})"
        with self._pool.connection(self._scheme, self._host, self._port) as wire:
            reused = wire.sock is not None
            answer, why, unanswered = self._exchange(wire, request)
            if answer is None and reused and unanswered:
                # A kept-alive connection the server closed as the request went out (servers close idle ones on
                # their own clock): nothing was answered, so the request is sent again on a new connection, at
                # once and without counting it as a failed attempt, as HTTP clients do (RFC 9112 §9.3.1).
                answer, why, _ = self._exchange(wire, request)
            return answer, why

    def _exchange(self, wire: Wire, request: bytes) -> tuple[Answer | None, str, bool]:
        """One request on ``wire``: the answer, or why none came and whether not a byte of one came."""
        pool = self._pool
        try:
            if wire.sock is None:
                wire.connect()
        except OSError as exc:
            wire.close()
            return None, f"cannot reach the store: {_describe_socket_error(exc)}", False
        assert wire.sock is not None
        token = pool.deadlines.arm(wire.sock, pool.timeout)
        started = False
        try:
            wire.send(request)
            status, fields = wire.head()
            started = True
            length = fields.get("content-length", "")
            if length.isdigit() and int(length) > self.MIN_BYTES_PER_SECOND:  # time in proportion to the size
                pool.deadlines.disarm(token)
                token = pool.deadlines.arm(wire.sock, pool.timeout + int(length) / self.MIN_BYTES_PER_SECOND)
            body, closing = wire.body(status, fields)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            late = pool.deadlines.disarm(token)
            wire.close()
            why = f"no whole answer within its deadline ({pool.timeout:g} s)" if late else _describe_socket_error(exc)
            closed = isinstance(exc, (ConnectionResetError, BrokenPipeError)) or (
                isinstance(exc, http.client.BadStatusLine) and why == "the server closed the connection"
            )
            return None, why, not started and not late and closed
        pool.deadlines.disarm(token)
        if closing:
            wire.close()
        return Answer(status, fields, body), "", False


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether an idle keep-alive socket has something to read: the server's close (or stray bytes), either way
    not a connection to send a lead into. ``poll``, not ``select``: select cannot watch a descriptor past 1023."""
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _put_head(
    connection: http.client.HTTPConnection,
    method: str,
    parts: SplitResult,
    headers: Sequence[tuple[str, str]],
    body: bytes,
) -> str | None:
    """Buffer the request line and headers; why http.client refused them, if it did. http.client holds the head
    until ``endheaders()``, so a refusal here (InvalidURL, a CR/LF or non-Latin-1 header) sent nothing."""
    try:
        connection.putrequest(method, (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                              skip_accept_encoding=True)  # fmt: skip
        for name, value in headers:
            connection.putheader(name, value)
        if body or method not in ("GET", "HEAD"):
            connection.putheader("Content-Length", str(len(body)))
    except (ValueError, http.client.HTTPException) as exc:
        return str(exc)
    return None


def _describe_socket_error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, TimeoutError):
        return "timed out waiting for an answer"
    if isinstance(exc, http.client.IncompleteRead):
        return "the server closed the connection mid-answer"
    if isinstance(exc, http.client.BadStatusLine):
        line = str(getattr(exc, "line", ""))
        return "the server closed the connection" if not line or "closed" in line else "the answer is not HTTP"
    if isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
        return "the server closed the connection"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or type(exc).__name__}"
    return type(exc).__name__
