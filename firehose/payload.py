"""An inbound request body as fields, by content type: read field by field for a replay's diff, and edited for
``--set``/``--unset``/``--mark-test``.

The kinds are those LeadConduit's standard inbound parses (facts.md §3.1): JSON, form (URL-encoded) and XML
(``application/xml``, ``text/xml``); anything else is opaque bytes, compared whole and never edited. Field
names are dotted paths as the inbound module sees them: JSON objects nest (``lead.email``), form keys are taken
as written (the inbound unflattens ``a.b`` itself), and XML paths start below the root element (which the
inbound drops).

An unedited body is never re-serialized: a replay sends the stored bytes. An edited body is re-serialized in its
own kind, keeping field order.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from firehose.codec import decode, encode
from firehose.errors import DataError

JSON, FORM, XML = "json", "form", "xml"


def kind_of(content_type: str | None) -> str | None:
    """``json``, ``form``, ``xml`` or None (opaque) for a Content-Type header value."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return JSON
    if media == "application/x-www-form-urlencoded":
        return FORM
    if media in ("application/xml", "text/xml") or media.endswith("+xml"):
        return XML
    return None


def fields(kind: str | None, body: str) -> dict[str, str]:
    """The body's fields as ``{dotted path: value as text}``, in body order; ``{}`` for an empty body.

    Raises ``DataError`` when the body does not parse as its kind."""
    if not body.strip() or kind is None:
        return {}
    if kind == FORM:
        return _form_fields(parse_qsl(body, keep_blank_values=True))
    try:
        if kind == JSON:
            value = decode(body, where="the JSON body")
            return dict(_flatten(value, ""))
        root = _xml_root(body)
        return dict(_xml_flatten(root, ""))
    except RecursionError:  # XML has no depth limit (JSON's is 1,024): a hostile body, not a crash
        raise DataError(f"the {kind.upper()} body is nested too deeply to read") from None


def query_fields(query: str) -> dict[str, str]:
    """The fields of a query string (which the inbound merges into the body, the query winning)."""
    return _form_fields(parse_qsl(query, keep_blank_values=True))


def _form_fields(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in pairs:
        # A repeated key is a list to the inbound: keep each value, numbered after the first.
        label, number = name, 1
        while label in found:
            label, number = f"{name}[{number}]", number + 1
        found[label] = value
    return found


def _flatten(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        if not value and path:
            yield path, "{}"
        for name, inner in value.items():
            yield from _flatten(inner, f"{path}.{name}" if path else str(name))
    elif isinstance(value, list):
        if not value:
            yield path, "[]"
        for index, inner in enumerate(value):
            yield from _flatten(inner, f"{path}[{index}]")
    elif isinstance(value, str):
        yield path, value
    else:
        yield path, encode(value).decode()


def _xml_root(body: str) -> ET.Element:
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise DataError(f"the XML body does not parse: {exc}") from None


def _xml_flatten(element: ET.Element, path: str) -> Iterator[tuple[str, str]]:
    for child in element:
        name = f"{path}.{child.tag}" if path else child.tag
        if len(child):
            yield from _xml_flatten(child, name)
        else:
            yield name, (child.text or "").strip()


def edit(kind: str | None, body: str, sets: Sequence[tuple[str, Any]], unsets: Sequence[str]) -> str:
    """``body`` with each ``(field, value)`` of ``sets`` set and each field of ``unsets`` removed.

    A field that is not there is added (``sets``) or left alone (``unsets``). Raises ``DataError`` for a body
    that does not parse, or one firehose cannot edit (an opaque content type)."""
    if not sets and not unsets:
        return body
    try:
        return _edit(kind, body, sets, unsets)
    except RecursionError:  # ElementTree writes a tree back by recursion
        raise DataError(f"the {(kind or 'opaque').upper()} body is nested too deeply to edit") from None


def _edit(kind: str | None, body: str, sets: Sequence[tuple[str, Any]], unsets: Sequence[str]) -> str:
    if kind is None:
        raise DataError("the body's Content-Type is neither JSON, form nor XML, so it cannot be edited")
    if kind == FORM:
        return edit_form(body, sets, unsets)
    if kind == JSON:
        value = decode(body, where="the JSON body") if body.strip() else {}
        if not isinstance(value, dict):
            raise DataError("the JSON body is not an object, so it has no fields to edit")
        for name in unsets:
            _json_unset(value, name.split("."))
        for name, new in sets:
            _json_set(value, name.split("."), new)
        return encode(value).decode()
    root = _xml_root(body)
    for name in unsets:
        _xml_unset(root, name.split("."))
    for name, new in sets:
        _xml_set(root, name.split("."), new)
    declaration = body.lstrip()[: body.lstrip().find("?>") + 2] if body.lstrip().startswith("<?xml") else ""
    return declaration + ET.tostring(root, encoding="unicode")


def edit_form(body: str, sets: Sequence[tuple[str, Any]], unsets: Sequence[str]) -> str:
    """A URL-encoded body or query string with fields set and removed, other pairs kept in order."""
    pairs = parse_qsl(body, keep_blank_values=True)
    removed = set(unsets)
    pairs = [(name, value) for name, value in pairs if name not in removed]
    for name, new in sets:
        text = _text(new)
        if any(existing == name for existing, _ in pairs):
            first = next(i for i, (existing, _) in enumerate(pairs) if existing == name)
            pairs = [pair for i, pair in enumerate(pairs) if pair[0] != name or i == first]
            pairs[first] = (name, text)
        else:
            pairs.append((name, text))
    return urlencode(pairs)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json_set(document: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        inner = document.get(part)
        if not isinstance(inner, dict):
            inner = document[part] = {}
        document = inner
    document[path[-1]] = value


def _json_unset(document: dict[str, Any], path: list[str]) -> None:
    for part in path[:-1]:
        inner = document.get(part)
        if not isinstance(inner, dict):
            return
        document = inner
    document.pop(path[-1], None)


_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
"""An XML element name firehose will write (ASCII; no ``:`` namespaces): anything else would make a body no
parser reads, or be taken by ElementTree for a path expression."""


def _xml_path(path: list[str]) -> list[str]:
    for part in path:
        if not _XML_NAME.match(part):
            raise DataError(f"{'.'.join(path)!r} cannot be an XML element path ({part!r} is not an element name)")
    return path


def _xml_child(element: ET.Element, name: str) -> ET.Element | None:
    return next((child for child in element if child.tag == name), None)


def _xml_set(root: ET.Element, path: list[str], value: Any) -> None:
    element = root
    for part in _xml_path(path):
        found = _xml_child(element, part)
        element = found if found is not None else ET.SubElement(element, part)
    element.text = _text(value)


def _xml_unset(root: ET.Element, path: list[str]) -> None:
    parent: ET.Element | None = root
    for part in _xml_path(path)[:-1]:
        parent = _xml_child(parent, part) if parent is not None else None
    if parent is None:
        return
    for child in [c for c in parent if c.tag == path[-1]]:
        parent.remove(child)
