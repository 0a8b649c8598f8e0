"""How the sandbox parses a submit request, after LeadConduit's standard inbound module (facts.md §3.1).

- POST bodies in ``application/x-www-form-urlencoded``, ``application/json``, ``application/xml`` or
  ``text/xml``; a body with no Content-Type is 415, another Content-Type is 406, a body that does not parse
  is 400 (text/plain).
- Query-string fields are merged over the body fields (the query wins).
- Form keys in dot notation become nested objects; the XML root element (``<lead>``) is dropped.
- ``xxTrustedFormCertUrl`` (any case) is renamed ``trustedform_cert_url``.
- The answer follows ``Accept``: JSON for none, ``*/*`` or JSON, XML for XML, else 406.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from firehose.codec import decode, encode
from firehose.errors import DataError

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
XML_TYPES = ("application/xml", "text/xml")


class InboundError(Exception):
    """A request the inbound module refuses; carries the HTTP status and a plain-text reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def response_type(accept: str | None) -> str:
    """The media type to answer in, or InboundError(406)."""
    if not accept or not accept.strip():
        return JSON
    for item in accept.split(","):
        wanted = media_type(item)
        if wanted in ("*/*", "application/*", JSON):
            return JSON
        if wanted in XML_TYPES:
            return wanted
        if wanted == "text/*":
            return "text/xml"
    raise InboundError(406, f"Not Acceptable: cannot answer in {accept}")


def _unflatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return result


def _xml_value(element: ElementTree.Element) -> Any:
    children = list(element)
    if not children:
        return element.text or ""
    return {child.tag: _xml_value(child) for child in children}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_fields(*, content_type: str | None, body: bytes, query: str) -> dict[str, Any]:
    """The lead fields of a submit request (body merged with query), or InboundError."""
    fields: dict[str, Any] = {}
    if body:
        kind = media_type(content_type)
        if not kind:
            raise InboundError(415, "Unsupported Media Type: a body was sent without a Content-Type")
        if kind == JSON:
            try:
                parsed = decode(body, where="request body")
            except DataError as exc:
                raise InboundError(400, f"Bad Request: {exc}") from exc
            if not isinstance(parsed, dict):
                raise InboundError(400, "Bad Request: the JSON body must be an object")
            fields = parsed
        elif kind == FORM:
            try:
                fields = _unflatten(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
            except (UnicodeDecodeError, ValueError) as exc:
                raise InboundError(400, f"Bad Request: cannot parse form body ({exc})") from exc
        elif kind in XML_TYPES:
            try:
                root = ElementTree.fromstring(body)
            except ElementTree.ParseError as exc:
                raise InboundError(400, f"Bad Request: cannot parse XML body ({exc})") from exc
            value = _xml_value(root)
            fields = value if isinstance(value, dict) else {}
        else:
            raise InboundError(406, f"Not Acceptable: unsupported Content-Type {kind}")
    if query:
        fields = _merge(fields, _unflatten(parse_qsl(query, keep_blank_values=True)))
    for key in list(fields):
        if key.lower() == "xxtrustedformcerturl":
            fields["trustedform_cert_url"] = fields.pop(key)
    return fields


def render_response(body: dict[str, Any], kind: str) -> bytes:
    """The submit answer in JSON or as LeadConduit's ``<result>`` XML."""
    if kind not in XML_TYPES:
        return encode(body)
    lead_id = escape(str(body.get("lead", {}).get("id", "")))
    reason = "" if body.get("reason") is None else escape(str(body["reason"]))
    return (
        f'<?xml version="1.0"?><result><outcome>{escape(str(body["outcome"]))}</outcome>'
        f"<reason>{reason}</reason><lead><id>{lead_id}</id></lead>"
        f"<price>{body.get('price', 0)}</price></result>"
    ).encode()
