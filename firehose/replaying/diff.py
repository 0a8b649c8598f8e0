"""A dry run's diff: what changes between the request LeadConduit stored and the one a replay would send (URL,
headers, body field by field), with lead data hidden unless asked for and credentials always hidden.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from firehose import payload
from firehose.errors import DataError
from firehose.replaying.request import Edits, Prepared, body_bytes
from firehose.secret import REDACTED, is_credential, redact_url


def request_diff(prepared: Prepared, *, include_pii: bool = False, edits: Edits | None = None) -> dict[str, Any]:
    """What changes between the stored request and the one a replay sends: URL, headers, body field by field.

    Lead data (field values, header values, query values) shows as ``***`` unless ``include_pii``, except
    values the operator set; credentials always show as ``***``."""
    chosen = edits.operator_fields if edits else set()
    original = prepared.original

    def shown(value: str, field_name: str | None = None) -> str:
        return value if include_pii or (field_name is not None and field_name in chosen) else REDACTED

    before_url, after_url = _absolute(original.uri, prepared.url), prepared.url
    url = {
        "from": _url_shown(before_url, include_pii),
        "to": _url_shown(after_url, include_pii),
        "changed": before_url != after_url,
    }
    headers = _header_changes(original.headers, prepared.headers, shown)
    kind = payload.kind_of(original.header("Content-Type"))
    body: dict[str, Any] = {
        "content_type": original.header("Content-Type"),
        "identical": original.body == prepared.body,
        "bytes": len(body_bytes(prepared)),
        "fields": [],
    }
    if not body["identical"]:
        body["fields"] = _field_changes(kind, original.body, prepared.body, shown)
    return {
        "event_id": prepared.event_id,
        "lead_id": prepared.lead_id,
        "flow_id": prepared.flow_id,
        "original_outcome": prepared.original_outcome,
        "method": prepared.method,
        "url": url,
        "headers": headers,
        "body": body,
        "differs": url["changed"] or bool(headers) or not body["identical"],
    }


Shown = Callable[..., str]
"""How a diff shows a value: itself, or ``***`` (lead data without ``include_pii``)."""


def _header_changes(
    before: Sequence[tuple[str, str]], after: Sequence[tuple[str, str]], shown: Shown
) -> list[dict[str, Any]]:
    """Headers removed, changed and added; a credential's value always ``***``."""
    before_headers = {name.lower(): (name, value) for name, value in before}
    after_headers = {name.lower(): (name, value) for name, value in after}
    changes: list[dict[str, Any]] = []
    for key, (name, value) in before_headers.items():
        if key not in after_headers:
            hidden = REDACTED if is_credential(key) else shown(value)
            changes.append({"change": "removed", "header": name, "from": hidden})
        elif after_headers[key][1] != value:
            changes.append(
                {
                    "change": "changed",
                    "header": name,
                    "from": REDACTED if is_credential(key) else shown(value),
                    "to": REDACTED if is_credential(key) else after_headers[key][1],
                }
            )
    for key, (name, value) in after_headers.items():
        if key not in before_headers:
            changes.append({"change": "added", "header": name, "to": REDACTED if is_credential(key) else value})
    return changes


def _field_changes(kind: str | None, before: str, after: str, shown: Shown) -> list[dict[str, Any]]:
    """Body fields removed, added and changed, in the stored body's order."""
    try:
        old, new = payload.fields(kind, before), payload.fields(kind, after)
    except DataError as exc:
        return [{"change": "unreadable", "reason": str(exc)}]
    changes: list[dict[str, Any]] = []
    for name in [*old, *(n for n in new if n not in old)]:
        if name not in new:
            changes.append({"change": "removed", "field": name, "from": shown(old[name])})
        elif name not in old:
            changes.append({"change": "added", "field": name, "to": shown(new[name], name)})
        elif old[name] != new[name]:
            changes.append({"change": "changed", "field": name, "from": shown(old[name]), "to": shown(new[name], name)})
    return changes


def _absolute(uri: str, like: str) -> str:
    split = urlsplit(uri)
    if split.netloc:
        return uri
    base = urlsplit(like)
    return urlunsplit((base.scheme, base.netloc, split.path, split.query, ""))


def _url_shown(url: str, include_pii: bool) -> str:
    """A URL with its query values hidden (a GET submit carries the lead in them); credentials are hidden even
    with ``include_pii``, and user info is never shown."""
    return redact_url(url, query_values=not include_pii)
