"""How the sandbox reads a submit request and answers it, as LeadConduit's standard inbound module does.

The parse itself is ``firehose.inbound``, a port of the module (npm ``leadconduit-default``, ``lib/inbound.js``)
that ``tests/functional/test_inbound_parity.py`` checks against the package run under Node. In short:

- GET and POST only (405 with ``Allow: GET, POST``); ``Accept`` negotiated by ``mimeparse`` (406 when nothing
  matches; none or ``*/*`` is JSON).
- Query fields are read as ``URLSearchParams`` gives them (a repeated key is a list; dotted keys stay flat) and
  merged over the body's with lodash ``_.merge`` (the query wins). A ``redir_url`` that is not an http(s) URL is
  400. GET submits, and POSTs without a body, carry the query fields only.
- POST bodies in ``application/x-www-form-urlencoded``, ``application/json``, ``application/xml`` or
  ``text/xml`` (matched by ``mimeparse``, so ``application/json; charset=utf-8`` is JSON); no Content-Type is 415,
  another one 406; a body that does not parse is 400 (text/plain). The body's bytes are read by the Content-Type's
  charset (ISO-8859-1 or UTF-8).
- JSON that does not parse is parsed again without its raw CR, LF and tab characters (vendors send line breaks
  inside strings). Form keys in dot notation nest (``a.b=1``), ``a.0=x`` makes a list, a repeated key is a list.
  XML drops its root element and merges attributes into the fields; repeated elements are lists.
- ``xxTrustedFormCertUrl`` (any case) is renamed ``trustedform_cert_url``; ``xxTrustedFormPingUrl`` and
  ``trustedform_ping_url`` are dropped.
- The answer follows ``Accept``: XML for the XML types, JSON otherwise.

Where the sandbox must differ: the module can return something other than an object (a JSON array, ``null``, the
text of an XML root with no children). What LeadConduit then does with it is not public; the sandbox, which must
make a lead of fields, answers 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

from firehose import inbound
from firehose.codec import encode
from firehose.inbound import XML_TYPES, InboundError

__all__ = ["InboundError", "read_submit", "render_response", "response_type"]


def response_type(accept: str | None) -> str:
    """The media type to answer in (one of the four the module supports), or InboundError(406)."""
    chosen = inbound.select_mime_type(accept)
    if not chosen:
        raise InboundError(406, "Not capable of generating content according to the Accept header")
    return chosen


def read_submit(method: str, uri: str, headers: Mapping[str, str], body: bytes | None) -> dict[str, Any]:
    """The lead fields of a submit request as LeadConduit reads them, or InboundError with its status.

    ``uri``: the request target (path and query); ``body``: the bytes sent, None when no body was sent."""
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    text = None if body is None else inbound.decode_body(body, content_type)
    fields = inbound.plain(inbound.parse_request(method, uri, headers, text))
    if not isinstance(fields, dict):
        kind = "null" if fields is None else type(fields).__name__
        raise InboundError(400, f"Bad Request: the request's fields are not an object (the body parses as {kind})")
    return fields


def render_response(body: dict[str, Any], kind: str) -> bytes:
    """The submit answer in JSON or as LeadConduit's ``<result>`` XML (a form ``Accept`` gets JSON, as in
    the module's ``buildBody``)."""
    if kind not in XML_TYPES:
        return encode(body)
    lead_id = escape(str(body.get("lead", {}).get("id", "")))
    reason = "" if body.get("reason") is None else escape(str(body["reason"]))
    return (
        f'<?xml version="1.0"?><result><outcome>{escape(str(body["outcome"]))}</outcome>'
        f"<reason>{reason}</reason><lead><id>{lead_id}</id></lead>"
        f"<price>{body.get('price', 0)}</price></result>"
    ).encode()
