"""Secrets and their redaction: ``Secret`` (a string that never shows itself), and the rules that keep a
credential out of everything firehose prints, logs or stores.

A credential is recognised by its *name* (a header or query parameter whose name holds ``authorization``,
``api_key``, ``token``, ...) or by its *place* (the ``user:password@`` of a URL). Lead data is another matter:
query values are hidden by ``redact_url(..., query_values=True)`` unless the user asked for PII.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import SplitResult, unquote_plus, urlsplit, urlunsplit

REDACTED = "***"

CREDENTIAL_WORDS = ("authorization", "cookie", "api-key", "apikey", "api_key", "token", "secret", "password", "auth")
"""A header whose name holds one of these is taken for a credential: never shown, never stored, and dropped when
a request is rebuilt. Broad on purpose: a header wrongly taken for a credential is hidden, the safe mistake."""

CREDENTIAL_PARAMS = frozenset(
    {
        "apikey", "key", "token", "accesstoken", "authtoken", "auth", "authorization", "password", "passwd",
        "pwd", "pass", "passphrase", "secret", "clientsecret", "sig", "signature", "session", "sessionid",
        "xapikey", "jwt", "bearer", "credential", "credentials", "awsaccesskeyid", "accesskeyid",
    }
)  # fmt: skip
CREDENTIAL_SUFFIXES = ("key", "keyid", "token", "secret", "password", "passwd", "passphrase", "signature", "credential")
"""Query parameters taken for credentials: these names, compared without case and without ``-``, ``_``, ``.``,
spaces or control characters (``api_key``, ``X-Api-Key``, ``api_key%00``), names ending in one of the
suffixes (``partner_key``, ``X-Amz-Signature``, ``AWSAccessKeyId``), and any name with such a part in brackets
or after a dot (``auth[token]``, ``credentials[api_key]``). Narrower than the header rule, since a GET submit
carries the lead's own fields in the query string (``keyword``, ``author``)."""


class Secret:
    """A secret string: ``repr``, ``str`` and f-strings print ``***``; ``reveal()`` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value, for the one place that must send it (an auth header, an SDK credential)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def is_credential(name: str) -> bool:
    """Whether a header of this name carries a credential."""
    lowered = name.lower()
    return any(word in lowered for word in CREDENTIAL_WORDS)


def is_credential_param(name: str) -> bool:
    """Whether a query parameter of this name carries a credential."""
    parts = [name, *re.split(r"[\[\].]+", name)]
    for part in parts:
        folded = re.sub(r"[-_.\s\x00-\x1f\x7f]", "", part.lower())
        if folded and (folded in CREDENTIAL_PARAMS or folded.endswith(CREDENTIAL_SUFFIXES)):
            return True
    return False


def _split(url: str) -> SplitResult | None:
    try:
        return urlsplit(url)
    except ValueError:  # an invalid IPv6 literal, say: nothing to take apart
        return None


def redact_query(query: str, *, values: bool = False) -> str:
    """A query string with credential values as ``***`` (all values with ``values=True``), names and order kept."""
    if not query:
        return query
    parts = []
    for part in query.split("&"):
        name, sep, _ = part.partition("=")
        hidden = sep and (values or is_credential_param(_unquoted(name)))
        parts.append(f"{name}={REDACTED}" if hidden else part)
    return "&".join(parts)


def _unquoted(name: str) -> str:
    return unquote_plus(name)


def redact_url(url: str, *, query_values: bool = False) -> str:
    """A URL fit for a message, a report or a ledger: user info (``user:password@``) removed, credential query
    values as ``***`` (every query value with ``query_values=True``: a GET submit carries the lead there)."""
    url = _STRAY_USERINFO.sub(lambda m: m.group("scheme"), url)
    parts = _split(url)
    if parts is None:
        return redact_text(url)
    netloc = parts.netloc.rsplit("@", 1)[1] if "@" in parts.netloc else parts.netloc
    query = redact_query(parts.query, values=query_values)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_STRAY_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^\s#]*@")
"""Everything up to the last ``@`` before any fragment: a password holding ``/`` or ``?`` (``bob:s3/cr@host``)
ends the authority early for a URL parser, which then shows the rest of it as the path. Greedy: a path's own
``@`` is dropped with it, which a message can spare."""
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@?#]*@")
_PAIR = re.compile(r"(?P<name>[\w.-]+)=(?P<value>[^&\s\"',;]+)")
_AUTH_HEADER = re.compile(
    r"(?P<name>authorization['\"]?\s*[:=]\s*['\"]?)(?P<value>(?:basic|bearer)?\s*[^\s'\",}]+)", re.I
)


_SCHEME_TOKEN = re.compile(r"\b(?P<scheme>Basic|Bearer|Digest|Token)\s+[A-Za-z0-9+/=._~-]{6,}", re.IGNORECASE)


def redact_text(text: str) -> str:
    """Free text (a log line, an error from a library, a server's answer) with every credential we can
    recognise hidden: URL user info, ``name=value`` pairs with a credential-looking name, ``Authorization:
    ...`` values, and ``Basic``/``Bearer`` tokens wherever they stand (a server echoing our header)."""
    text = _USERINFO.sub(lambda m: m.group("scheme"), text)
    text = _SCHEME_TOKEN.sub(lambda m: f"{m.group('scheme')} {REDACTED}", text)
    text = _AUTH_HEADER.sub(lambda m: m.group("name") + REDACTED, text)
    return _PAIR.sub(
        lambda m: f"{m.group('name')}={REDACTED}" if is_credential_param(m.group("name")) else m.group(0), text
    )


class RedactingFilter(logging.Filter):
    """Passes every record, its message rewritten by ``redact_text``: whatever a library logs (httpx's request
    lines, a retry message quoting a URL), no credential reaches the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
