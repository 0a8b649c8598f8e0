"""An inbound request body as fields, by content type: read field by field for a replay's diff, and edited for
``--set``/``--unset``/``--mark-test``.

Bodies are read as LeadConduit's standard inbound module reads them (``firehose.inbound``, checked against the
module itself by ``tests/functional/test_inbound_parity.py``): the Content-Type is matched as the module matches
it, JSON that does not parse is read again without its raw CR, LF and tab characters, repeated form keys are
lists, XML attributes are fields beside the child elements. So every body LeadConduit accepts can be read and
edited here, and one it refuses is refused here with its reason. Field names are dotted paths into that parse:
``lead.email`` in JSON, form keys in dot notation, XML paths below the root element (which the inbound drops).

An unedited body is never re-serialized: a replay sends the stored bytes. An edit changes as little as it can:
a JSON body is written again, strictly valid (a string's raw line breaks, which LeadConduit drops, are gone); a
form body or query string keeps every pair it does not edit byte for byte; an XML body is edited in place, the
rest of the document (declaration, comments, formatting, namespaces) kept. ``edit_request`` then parses the
result as LeadConduit would and refuses an edit whose result is not the original's parse plus the edit.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qsl, quote_plus
from xml.sax.saxutils import escape, quoteattr

from firehose import inbound
from firehose.codec import encode
from firehose.errors import DataError

P = ParamSpec("P")
R = TypeVar("R")

JSON, FORM, XML = "json", "form", "xml"
_MIME = {JSON: inbound.JSON, FORM: inbound.FORM, XML: "application/xml"}
_TRUSTEDFORM_ALIASES = ("xxtrustedformcerturl", "xxtrustedformpingurl", "trustedform_ping_url")


def kind_of(content_type: str | None) -> str | None:
    """``json``, ``form``, ``xml`` or None (opaque: LeadConduit refuses the body) for a Content-Type value, matched
    as the inbound module matches it (``application/json; charset=utf-8`` is JSON, ``Application/JSON`` is not)."""
    if not content_type:
        return None
    chosen = inbound.select_mime_type(content_type)
    if chosen == inbound.JSON:
        return JSON
    if chosen == inbound.FORM:
        return FORM
    return XML if chosen in inbound.XML_TYPES else None


def parse(kind: str | None, body: str, *, rename: bool = True) -> Any:
    """The body's parse as LeadConduit reads it (before the query is merged), ``{}`` for a blank body;
    ``rename=False``: before the TrustedForm fields are renamed.

    Raises ``DataError`` with LeadConduit's reason when it would refuse the body."""
    text = inbound.js_trim(body)
    if kind is None or not text:
        return {}
    try:
        parsed = inbound.parse_body(_MIME[kind], text)
    except inbound.InboundError as exc:
        raise DataError(f"LeadConduit cannot read the {kind.upper()} body: {exc.reason}") from None
    if rename:
        inbound.normalize_trustedform(parsed)
    return inbound.plain(parsed)


def _refuses_deep_nesting(function: Callable[P, R]) -> Callable[P, R]:
    """A body nested past what the parsers and walkers reach (XML has no depth limit) is refused as data, never a
    crash: a hostile archive must not stop a replay."""

    @functools.wraps(function)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except RecursionError:
            raise DataError("the body is nested too deeply to read or edit") from None

    return guarded


@_refuses_deep_nesting
def fields(kind: str | None, body: str) -> dict[str, str]:
    """The body's fields as ``{dotted path: value as text}``, in body order; ``{}`` for an empty body. Lists are
    numbered (``state[1]``), an XML element's text beside its attributes is ``_``.

    Raises ``DataError`` when LeadConduit would refuse the body."""
    return dict(_flatten(parse(kind, body), ""))


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


def body_bytes(body: str, content_type: str | None, *, strict: bool = False) -> bytes:
    """The bytes to send for a body: in its Content-Type's charset, which LeadConduit decoded it by
    (``inbound.decode_body``), so a Latin-1 body goes back as the bytes it came as. A body that charset cannot
    carry goes as UTF-8 (LeadConduit did not read it as we assume: sent as before), or with ``strict`` (an
    edited body) raises ``DataError``."""
    charset = inbound.charset_of(content_type)
    try:
        return body.encode(charset)
    except UnicodeEncodeError as exc:
        if strict:
            found = exc.object[exc.start]
            raise DataError(f"the body holds {found!r}, which its charset ({charset}) cannot carry") from None
        return body.encode("utf-8", "surrogatepass")


# -- The whole request -------------------------------------------------------------------------------------


def read_request(method: str, query: str, content_type: str | None, body: str) -> Any:
    """What LeadConduit reads from a request a replay sends (it always sends a Content-Length with a POST)."""
    headers = {"Content-Length": "0"}
    if content_type:
        headers["Content-Type"] = content_type
    return inbound.plain(inbound.parse_request(method, f"?{query}", headers, body))


@dataclass(frozen=True)
class EditedRequest:
    body: str
    query: str


@_refuses_deep_nesting
def edit_request(
    method: str, query: str, content_type: str | None, body: str, sets: Sequence[tuple[str, Any]], unsets: Sequence[str]
) -> EditedRequest:
    """The body and query string that make LeadConduit read the original request's fields plus the edits.

    A field that is a key of the query string is edited there (the inbound merges the query over the body, the
    query winning, and never nests a query key); so is every field of a GET submit or of a blank body, which
    LeadConduit reads from the query only. Everything else is edited in the body. ``--unset`` removes the field
    from both. The result is parsed as LeadConduit would parse it; an edit whose result is not the original's
    parse plus the edit raises ``DataError``, as does a request LeadConduit refuses. An edit that changes no
    field returns the stored body and query as they were."""
    _refuse_aliases([*(n for n, _ in sets), *unsets])
    kind = kind_of(content_type)
    before = _stored_fields(method, query, content_type, body)
    in_query_only = method.upper() != "POST" or not inbound.js_trim(body)
    query_names = set(inbound.parse_query(f"?{query}"))
    body_keys = set(parse(kind, body, rename=False)) if not in_query_only else set()
    unsets = list(unsets)
    for name in [n for n, _ in sets] + unsets:
        if name == "trustedform_cert_url":  # a cert URL under its other name would win over the edit
            unsets.extend(k for k in query_names | body_keys if k.lower() == "xxtrustedformcerturl")
    expected = copy.deepcopy(before)
    shape = JSON if kind == JSON and not in_query_only else (XML if kind == XML and not in_query_only else FORM)
    for name in unsets:
        expected.pop(name, None)
        if "." in name:
            _unset_path(expected, name.split("."), shape)
    query_sets, body_sets = [], []
    for name, value in sets:
        if in_query_only or name in query_names:
            query_sets.append((name, _text(value)))
            expected[name] = _text(value)
        else:
            body_sets.append((name, value))
            _set_path(expected, name.split("."), value if kind == JSON else _text(value))
    new_query = query
    query_unsets = [name for name in unsets if name in query_names]
    if query_sets or query_unsets:
        new_query = edit_form(query, query_sets, query_unsets, names=_query_name)
    new_body = body
    if not in_query_only and (body_sets or unsets):
        new_body = edit(kind, body, body_sets, unsets)
        if parse(kind, new_body) == parse(kind, body):
            new_body = body  # nothing in the body changed: keep its bytes
    after = _edited_fields(method, new_query, content_type, new_body, expected, kind)
    if after == before:
        return EditedRequest(body, query)
    return EditedRequest(new_body, new_query)


def _refuse_aliases(names: Sequence[str]) -> None:
    for name in names:
        if name.lower() in _TRUSTEDFORM_ALIASES:
            raise DataError(f"LeadConduit renames or drops {name!r} as it reads it: edit trustedform_cert_url instead")


def _stored_fields(method: str, query: str, content_type: str | None, body: str) -> dict[str, Any]:
    """The fields LeadConduit reads from the stored request; a ``DataError`` when it would refuse it or read no
    fields from it."""
    try:
        before = read_request(method, query, content_type, body)
    except inbound.InboundError as exc:
        raise DataError(f"LeadConduit refuses the stored request ({exc.status}: {exc.reason})") from None
    if not isinstance(before, dict):
        raise DataError("LeadConduit does not read the stored request as fields (its body is not an object)")
    return before


def _edited_fields(
    method: str, query: str, content_type: str | None, body: str, expected: dict[str, Any], kind: str | None
) -> Any:
    """The fields LeadConduit reads from the edited request, which must be ``expected``: a ``DataError`` naming
    the fields it would read otherwise, or saying it would refuse the request."""
    try:
        after = read_request(method, query, content_type, body)
    except inbound.InboundError as exc:
        raise DataError(f"the edited request would be refused by LeadConduit ({exc.reason})") from None
    if after != expected:
        differing = sorted({*_differing(after, expected, "")})
        raise DataError(
            f"the edits cannot be written into this {kind or 'opaque'} body so that LeadConduit reads them "
            f"(it would read {', '.join(differing[:5]) or 'other fields'} otherwise)"
        )
    return after


def _differing(a: Any, b: Any, path: str) -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in {*a, *b}:
            yield from _differing(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    elif a != b:
        yield path or "the fields"


def _set_path(document: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        inner = document.get(part)
        if not isinstance(inner, dict):
            inner = document[part] = {}
        document = inner
    document[path[-1]] = value


def _unset_path(document: dict[str, Any], path: list[str], shape: str) -> None:
    """Remove a field; a form or XML body cannot hold an empty object, so one left empty goes too (form) or
    becomes the empty string (XML)."""
    trail = [document]
    for part in path[:-1]:
        inner = trail[-1].get(part)
        if not isinstance(inner, dict):
            return
        trail.append(inner)
    if path[-1] not in trail[-1]:
        return
    del trail[-1][path[-1]]
    if shape == JSON:
        return
    for depth in range(len(trail) - 1, 0, -1):
        if trail[depth]:
            break
        if shape == FORM:
            del trail[depth - 1][path[depth - 1]]
        else:
            trail[depth - 1][path[depth - 1]] = ""
            break


# -- Editing one body --------------------------------------------------------------------------------------


@_refuses_deep_nesting
def edit(kind: str | None, body: str, sets: Sequence[tuple[str, Any]], unsets: Sequence[str]) -> str:
    """``body`` with each ``(field, value)`` of ``sets`` set and each field of ``unsets`` removed.

    A field that is not there is added (``sets``) or left alone (``unsets``). Raises ``DataError`` for a body
    LeadConduit cannot read, or one firehose cannot edit (an opaque content type)."""
    if not sets and not unsets:
        return body
    if kind is None:
        raise DataError("the body's Content-Type is neither JSON, form nor XML, so it cannot be edited")
    if kind == FORM:  # LeadConduit trims the body: what ends the last pair now would end a middle one
        return edit_form(inbound.js_trim(body), [(n, _text(v)) for n, v in sets], unsets, names=_body_name)
    if kind == JSON:
        value = parse(JSON, body)
        if not isinstance(value, dict):
            raise DataError("the JSON body is not an object, so it has no fields to edit")
        for name in unsets:
            value.pop(name, None)
            _unset_path(value, name.split("."), JSON)
        for name, new in sets:
            _set_path(value, name.split("."), new)
        return _json_text(value)
    return _edit_xml(body, sets, unsets)


def _json_text(value: Any) -> str:
    try:
        return encode(value).decode()
    except TypeError:  # a lone surrogate (JSON allows its escape): written escaped, as JSON.parse reads it back
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def _body_name(pair: str) -> str | None:
    """The key Node's ``querystring`` reads from one ``name=value`` pair of a form body."""
    parsed = inbound.querystring_parse(pair)
    return next(iter(parsed), None)


def _query_name(pair: str) -> str | None:
    """The key ``URLSearchParams`` reads from one pair of a query string."""
    parsed = parse_qsl(pair, keep_blank_values=True, errors="replace")
    return parsed[0][0] if parsed else None


def _path_conflicts(key: str, path: str) -> bool:
    """Whether a form key would shadow or be shadowed by the field ``path``: the same key, one below it, or one
    above it (flat never writes below a key that holds a value, and a value replaces what is below it)."""
    return key == path or key.startswith(path + ".") or path.startswith(key + ".")


def edit_form(body: str, sets: Sequence[tuple[str, Any]], unsets: Sequence[str], *, names: Any = None) -> str:
    """A URL-encoded body or query string with fields set and removed; the pairs it does not touch are kept as
    they were written. ``names`` reads a pair's key (default: as a query string). In a form body (``names`` is
    ``_body_name``) keys are paths: setting ``a.b`` also drops a pair ``a`` or ``a.b.c``."""
    read = names or _query_name
    nested = read is _body_name
    pairs = [(pair, read(pair)) for pair in body.split("&")] if body else []

    def hit(key: str | None, field: str) -> bool:
        return key is not None and (_path_conflicts(key, field) if nested else key == field)

    removed = set(unsets)
    pairs = [(raw, key) for raw, key in pairs if not any(hit(key, name) for name in removed)]
    for name, new in sets:
        written = f"{quote_plus(name, safe='.')}={quote_plus(_text(new))}"
        first = next((i for i, (_, key) in enumerate(pairs) if hit(key, name)), None)
        kept = [pair for pair in pairs if not hit(pair[1], name)]
        if first is None:
            kept.append((written, name))
        else:
            kept.insert(sum(1 for _, key in pairs[:first] if not hit(key, name)), (written, name))
        pairs = kept
    return "&".join(raw for raw, _ in pairs)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
"""An XML element name firehose will write (ASCII; no ``:`` namespaces), stricter than what LeadConduit's parser
takes: anything else could make a body some parser does not read."""


def _xml_path(path: list[str]) -> list[str]:
    for part in path:
        if not _XML_NAME.match(part):
            raise DataError(f"{'.'.join(path)!r} cannot be an XML element path ({part!r} is not an element name)")
    return path


@dataclass
class _Element:
    """Where one element of an XML body is: offsets into the text, its attributes' spans, its children."""

    name: str
    start: int
    open_end: int
    close_start: int | None  # None: self-closing (<a/>)
    end: int
    attributes: list[tuple[str, int, int, int, int]]  # name, span of ' name="v"', span of the quoted value
    children: list[_Element]

    def is_object(self) -> bool:
        """Whether LeadConduit reads the element as an object (it has attributes or child elements)."""
        return bool(self.attributes or self.children)


_TAG_NAME = re.compile(r"[^\s/>=\"']+")
_ATTRIBUTE = re.compile(r"(\s+)([^\s/>=\"']+)\s*=\s*(\"[^\"]*\"|'[^']*')")


def _xml_tree(text: str) -> _Element:
    """The root element of an XML body LeadConduit reads (so well formed as far as its parser looks)."""
    pos = 0
    while True:  # the prolog: declaration, comments, processing instructions, a doctype
        pos = len(text) - len(text[pos:].lstrip(" \t\r\n\ufeff"))
        if text.startswith("<?", pos):
            pos = text.index("?>", pos) + 2
        elif text.startswith("<!--", pos):
            pos = text.index("-->", pos) + 3
        elif text.startswith("<!", pos):
            depth, quote, pos = 0, "", pos + 2
            while quote or depth or text[pos] != ">":
                char = text[pos]
                if quote:
                    quote = "" if char == quote else quote
                elif char in "\"'":
                    quote = char
                elif char == "[":
                    depth += 1
                elif char == "]":
                    depth -= 1
                pos += 1
            pos += 1
        else:
            break
    root, _ = _xml_element(text, pos)
    return root


def _xml_element(text: str, pos: int) -> tuple[_Element, int]:
    found = _TAG_NAME.match(text, pos + 1)
    if not found or text[pos] != "<":
        raise DataError("the XML body has no element where LeadConduit reads one")
    name, pos = found.group(), found.end()
    start = found.start() - 1
    attributes = []
    while True:
        attribute = _ATTRIBUTE.match(text, pos)
        if not attribute:
            break
        value = attribute.group(3)
        attributes.append(
            (attribute.group(2), attribute.start(), attribute.end(), attribute.end() - len(value), attribute.end())
        )
        pos = attribute.end()
    pos = len(text) - len(text[pos:].lstrip(" \t\r\n"))
    if text.startswith("/>", pos):
        return _Element(name, start, pos + 2, None, pos + 2, attributes, []), pos + 2
    open_end = pos + 1
    children: list[_Element] = []
    pos = open_end
    while True:
        pos = text.index("<", pos)
        if text.startswith("<!--", pos):
            pos = text.index("-->", pos) + 3
        elif text.startswith("<![CDATA[", pos):
            pos = text.index("]]>", pos) + 3
        elif text.startswith("<?", pos):
            pos = text.index("?>", pos) + 2
        elif text.startswith("</", pos):
            end = text.index(">", pos) + 1
            return _Element(name, start, open_end, pos, end, attributes, children), end
        else:
            child, pos = _xml_element(text, pos)
            children.append(child)


def _xml_resolve(root: _Element, path: list[str]) -> tuple[_Element | None, list[str]]:
    """The deepest element on ``path`` that LeadConduit reads as an object, and the path's rest below it."""
    element = root
    for depth, part in enumerate(path[:-1]):
        named = [c for c in element.children if c.name == part]
        clash = any(a[0] == part for a in element.attributes)
        if len(named) != 1 or clash or not named[0].is_object():
            return element, path[depth:]
        element = named[0]
    return element, path[-1:]


def _edit_xml(body: str, sets: Sequence[tuple[str, Any]], unsets: Sequence[str]) -> str:
    """Each edit is spliced into the text, which is read again before the next: the rest stays as written."""
    for name in unsets:
        for path in [name.split("."), *([[name]] if "." in name else [])]:
            body = _xml_unset(body, _xml_path(path))
    for name, value in sets:
        body = _xml_set(body, _xml_path(name.split(".")), _text(value))
    return body


def _xml_unset(body: str, path: list[str]) -> str:
    parent, rest = _xml_resolve(_xml_tree(inbound.js_trim(body)), path)
    if parent is None or len(rest) != 1:
        return body  # the path goes through something that is not an object: nothing to remove
    return _xml_remove(body, parent, rest[0])


def _xml_remove(body: str, parent: _Element, name: str) -> str:
    return _splices(body, [(start, end, "") for start, end in _xml_spans(parent, name)])


def _xml_spans(parent: _Element, name: str) -> list[tuple[int, int]]:
    """Where the children and attributes named ``name`` of ``parent`` are written."""
    spans = [(c.start, c.end) for c in parent.children if c.name == name]
    return spans + [(a[1], a[2]) for a in parent.attributes if a[0] == name]


def _splices(body: str, splices: list[tuple[int, int, str]]) -> str:
    """``body`` with each ``(start, end, new)`` of the trimmed text (the tree's offsets) replaced, last first."""
    offset = len(body) - len(body.lstrip(inbound.JS_SPACE))
    for start, end, new in sorted(splices, key=lambda splice: (splice[0], splice[1]), reverse=True):
        body = body[: offset + start] + new + body[offset + end :]
    return body


def _xml_set(body: str, path: list[str], value: str) -> str:
    text = inbound.js_trim(body)
    root = _xml_tree(text)
    if not root.is_object() and text[root.open_end : root.close_start or root.open_end].strip(inbound.JS_SPACE):
        raise DataError("the XML body's root element holds text, not fields")
    parent, rest = _xml_resolve(root, path)
    assert parent is not None
    name = rest[0]
    attributes = [a for a in parent.attributes if a[0] == name]
    if len(rest) == 1 and len(attributes) == 1 and not any(c.name == name for c in parent.children):
        _, _, _, start, end = attributes[0]
        return _splices(body, [(start, end, quoteattr(value, {"\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}))])
    new = escape(value)
    for part in reversed(rest):
        new = f"<{part}>{new}</{part}>"
    spans = _xml_spans(parent, name)
    children = [c for c in parent.children if c.name == name]
    splices = [(start, end, "") for start, end in spans if not children or start != children[0].start]
    if children:  # the new element takes the first old one's place
        splices.append((children[0].start, children[0].end, new))
    elif parent.close_start is None:  # <parent/>: opened to hold it
        splices.append((parent.end - 2, parent.end, f">{new}</{parent.name}>"))
    else:
        splices.append((parent.close_start, parent.close_start, new))
    return _splices(body, splices)
