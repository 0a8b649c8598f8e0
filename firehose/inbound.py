"""What LeadConduit reads from a submit request: a port of its standard inbound module's parse.

The module is ``lib/inbound.js`` of the npm package ``leadconduit-default`` (2.9.14), with the libraries it calls
and the options it passes; line numbers below are that file's. ``tests/functional/test_inbound_parity.py`` runs
the package itself under Node on a corpus of requests and compares, field by field.

- Methods other than GET and POST: 405 (l. 30-33). An ``Accept`` that ``mimeparse.bestMatch`` cannot match to one
  of the four supported types: 406 (l. 36-39, 330-334; ``*/*`` and no header mean JSON).
- The query string (WHATWG ``URLSearchParams``, ``helpers.js`` ``parseQuery``): a repeated key becomes a list,
  except that a first value ``""`` is replaced rather than listed (it is falsy). Query keys are never unflattened:
  ``?a.b=1`` is the field ``"a.b"``. A ``redir_url`` that is not an absolute http(s) URL: 400 (l. 44-57).
- ``xxTrustedFormCertUrl`` (any case) is renamed ``trustedform_cert_url``; ``xxTrustedFormPingUrl`` and
  ``trustedform_ping_url`` are dropped, or used as the cert URL on ``/ping`` (l. 336-355). It runs on the query
  first and on the merged fields after, so a body's cert URL beats the query's (l. 60, 124).
- GET: the query only (l. 62-63). POST without ``Content-Length`` or chunked encoding: the query only (l. 127-130).
- POST with a body: no Content-Type 415, a Content-Type ``mimeparse`` does not match (case-sensitively, so
  ``Application/JSON`` too) 406 (l. 69-78). The body is trimmed (JavaScript's ``trim``); empty: the query only
  (l. 81-82). Then, by the matched type (``mime-content``):

  - JSON (``JSON.parse``): on failure, again with every CR, LF and tab removed (l. 86-93); still failing: 400.
    Numbers are JavaScript doubles.
  - Form (Node's ``querystring.parse``: ``+`` is a space, at most 1000 pairs, repeated keys become lists), then
    ``flat.unflatten`` (l. 100-108): ``a.b=1`` nests, ``a.0=x`` makes a list, a key whose parent is already a
    string is dropped. ``a[]=1`` stays the key ``"a[]"`` (no bracket syntax).
  - XML (``xml2js`` on the ``sax`` parser in strict mode, options ``explicitArray: false, explicitRoot: false,
    mergeAttrs: true``, l. 113): the root element is dropped; attributes become fields beside the child
    elements; repeated elements (or an attribute and a child of one name) become lists; an element with text and
    attributes or children keeps its text as ``_``; an empty element is ``""``, a blank one keeps its blanks; HTML
    entity names are known (``&eacute;``); anything after the root element is ignored. ``xmldom`` parses first
    and refuses repeated attributes.

- The query fields are then merged over the body's with lodash ``_.merge`` (l. 122): a query value replaces the
  body's, and a repeated query key over a body list replaces it index by index.

Not replicated, on purpose (the tests keep clear of them): keys named after JavaScript's built-in object
properties (``__proto__``, ``constructor``, ``toString``, an array's ``length``...) where the JavaScript result is
an accident of prototypes; the ``xmldom`` checks of what follows the root element; list indexes above
``MAX_INDEX`` (JavaScript would build a list of that many nulls): refused with 400. How the body's bytes become
text happens before the module runs and is not public: see ``decode_body``.
"""

from __future__ import annotations

import html.entities
import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
XML_TYPES = ("application/xml", "text/xml")
SUPPORTED = (FORM, JSON, "application/xml", "text/xml")
"""In the module's order, which its sort of equally good matches depends on (l. 11-16)."""

MAX_PAIRS = 1000
"""Node's ``querystring.parse`` reads at most this many pairs (its ``maxKeys`` default)."""
MAX_INDEX = 10_000
"""The largest list index honoured; JavaScript would allocate up to 2**32 - 2."""

JS_SPACE = (
    "\t\n\x0b\x0c\r \xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + ("\u2028\u2029\u202f\u205f\u3000\ufeff")
)
"""What JavaScript's ``trim()`` and ``\\s`` take for white space (Python's ``strip()`` differs)."""
_JS_BLANK = re.compile(f"[{JS_SPACE}]*")

OBJECT_BUILTINS = frozenset(
    {
        *("constructor", "__defineGetter__", "__defineSetter__", "hasOwnProperty", "__lookupGetter__"),
        *("__lookupSetter__", "isPrototypeOf", "propertyIsEnumerable", "toString", "valueOf", "__proto__"),
        "toLocaleString",
    }
)
"""The names every JavaScript object answers to without having them: where the module's result depends on
them, it is not replicated (see the module docstring)."""


class InboundError(Exception):
    """A request the inbound module refuses: the HTTP status, a plain-text reason and extra headers."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})


class _Undefined:
    """JavaScript's ``undefined`` where a list can hold it (a hole, or a copied missing value): JSON null."""

    def __repr__(self) -> str:
        return "undefined"


class _Function:
    """A JavaScript function that lands in a list (``?constructor=x`` gives ``[Object, "x"]``): JSON null."""

    def __repr__(self) -> str:
        return "function"


UNDEFINED = _Undefined()
FUNCTION = _Function()


# -- JavaScript's small semantics -------------------------------------------------------------------------


def js_trim(text: str) -> str:
    return text.strip(JS_SPACE)


def js_truthy(value: Any) -> bool:
    if value is None or value is UNDEFINED or value is False or value == "":
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0 and not math.isnan(value)
    return True


_NUMBER = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
"""A decimal literal as ``Number()`` and ``parseFloat`` read it (ASCII digits only, unlike Python's ``\\d``)."""


def js_parse_float(text: str) -> float | None:
    """``parseFloat``; None for NaN."""
    found = _NUMBER.match(text.lstrip(JS_SPACE))
    return float(found.group().replace("Infinity", "inf")) if found else None


def js_number(text: str) -> float | None:
    """``Number(string)``; None for NaN."""
    text = js_trim(text)
    if not text:
        return 0.0
    if _NUMBER.fullmatch(text):
        return float(text.replace("Infinity", "inf"))
    for prefix, base, digits in (("0x", 16, "0-9a-fA-F"), ("0o", 8, "0-7"), ("0b", 2, "01")):
        if text[:2].lower() == prefix and re.fullmatch(f"[{digits}]+", text[2:]):
            return float(int(text[2:], base))
    return None


def js_number_text(number: float) -> str:
    """``String(number)``: the shortest round-trip digits, laid out as ECMAScript's Number::toString does."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "0"
    if number < 0:
        return "-" + js_number_text(-number)
    _, digit_tuple, exponent = Decimal(repr(number)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k, n = len(digits), len(digits) + int(exponent)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    sign = "+" if n - 1 >= 0 else "-"
    mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{mantissa}e{sign}{abs(n - 1)}"


def _is_index(key: str) -> bool:
    """An array index as JavaScript orders object keys: canonical digits below 2**32 - 1."""
    return key.isascii() and key.isdigit() and (key == "0" or key[0] != "0") and int(key) < 2**32 - 1


def js_keys(obj: Mapping[str, Any]) -> list[str]:
    """``Object.keys`` order: array-index keys ascending, then the rest as inserted."""
    keys = list(obj)
    indexes = sorted((k for k in keys if _is_index(k)), key=int)
    return indexes + [k for k in keys if not _is_index(k)]


def plain(value: Any) -> Any:
    """What ``JSON.stringify`` keeps: holes, ``undefined`` and functions in lists as None, dropped in objects."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if v is not UNDEFINED and v is not FUNCTION}
    if isinstance(value, list):
        return [None if v is UNDEFINED or v is FUNCTION else plain(v) for v in value]
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return None
    return value


def _set_index(array: list[Any], index: int, value: Any) -> None:
    if index > MAX_INDEX:
        raise InboundError(400, f"Unable to parse body -- list index {index} is above {MAX_INDEX}")
    if index >= len(array):
        array.extend([UNDEFINED] * (index + 1 - len(array)))
    array[index] = value


def _array_index(key: str | float) -> int | None:
    number = js_number(key) if isinstance(key, str) else key
    if isinstance(key, str) and key != js_number_text(number if number is not None else math.nan):
        return None
    if number is None or not number.is_integer() or not 0 <= number < 2**32 - 1:
        return None
    return int(number)


# -- Content types (mimeparse 0.1.4) ----------------------------------------------------------------------


def _js_trim_edges(text: str) -> str:
    return re.sub(f"[{JS_SPACE}]+$", "", re.sub(f"^[{JS_SPACE}]+", "", text))


def _media_range(text: str) -> tuple[str, str | None, dict[str, str]]:
    parts = text.split(";")
    params: dict[str, str] = {}
    for part in parts:
        pair = part.split("=")
        if len(pair) == 2:
            params[js_trim(pair[0])] = js_trim(pair[1])
    full = _js_trim_edges(parts[0])
    if full == "*":
        full = "*/*"
    kind = full.split("/")
    quality = params.get("q")
    if not quality:
        params["q"] = "1"
    else:
        number = js_parse_float(quality)
        if number is None or number > 1 or number < 0:
            params["q"] = "1"
    return kind[0], kind[1] if len(kind) > 1 else None, params


def best_match(supported: tuple[str, ...], header: str) -> str:
    """``mimeparse.bestMatch``: including its sort, which compares ``"fitness,q,type"`` as text."""
    ranges = [_media_range(item) for item in header.split(",")]
    weighted = []
    for mime in supported:
        kind, sub = mime.split("/")
        best_fitness, best_q = -1, "0"
        for range_kind, range_sub, params in ranges:
            if (range_kind == kind or range_kind == "*") and (range_sub == sub or range_sub == "*"):
                fitness = (100 if range_kind == kind else 0) + (10 if range_sub == sub else 0)
                if fitness > best_fitness:
                    best_fitness, best_q = fitness, params["q"]
        quality = js_parse_float(best_q) or 0.0
        weighted.append((f"{best_fitness},{js_number_text(quality)},{mime}", quality, mime))
    weighted.sort(key=lambda item: item[0].encode("utf-16-be"))
    _, quality, mime = weighted[-1]
    return mime if quality else ""


def select_mime_type(header: str | None) -> str:
    """The supported type a Content-Type or Accept header selects (l. 330-334), or ``""``."""
    header = header or JSON
    if header == "*/*":
        header = JSON
    return best_match(SUPPORTED, header)


# -- The query string (helpers.js parseQuery) -------------------------------------------------------------


def parse_query(uri: str) -> dict[str, Any]:
    """The query fields of a request URI, as ``parseQuery`` builds them from ``URLSearchParams``."""
    query = uri.partition("?")[2].partition("#")[0]
    fields: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, errors="replace"):
        if key == "__proto__":
            continue  # it would replace the object's prototype: not replicated
        current = fields.get(key, FUNCTION if key in OBJECT_BUILTINS else None)
        if not js_truthy(current):  # a first value "" is falsy: replaced, not listed (l. 23)
            fields[key] = value
        elif isinstance(current, list):
            current.append(value)
        else:
            fields[key] = [current, value]
    return fields


def valid_redirect(url: str) -> bool:
    """Whether ``new URL(url)`` gives an http(s) URL with a host (an approximation of the WHATWG parser)."""
    url = re.sub(r"[\t\n\r]", "", url.strip("".join(map(chr, range(33)))))
    found = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):(.*)", url, re.S)
    if not found or found.group(1).lower() not in ("http", "https"):
        return False
    rest = found.group(2).lstrip("/\\")
    authority = re.split(r"[/\\?#]", rest, maxsplit=1)[0].rpartition("@")[2]
    if authority.startswith("["):
        return bool(re.fullmatch(r"\[[0-9A-Fa-f:.]+\](:\d*)?", authority))
    host, _, port = authority.partition(":")
    if port and (not port.isdigit() or int(port) > 65535):
        return False
    return bool(host) and not re.search(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]", host)


def normalize_trustedform(fields: Any, ping: bool = False) -> None:
    """``normalizeTrustedFormCertUrl`` (l. 336-355)."""
    if not isinstance(fields, dict):
        return
    cert_url: Any = None
    ping_url: Any = None
    for key in js_keys(fields):
        lowered = key.lower()
        if lowered in ("xxtrustedformpingurl", "trustedform_ping_url"):
            ping_url = fields.pop(key)
        elif lowered == "xxtrustedformcerturl":
            cert_url = fields.pop(key)
    if ping and js_truthy(ping_url):
        fields["trustedform_cert_url"] = ping_url
    elif js_truthy(cert_url):
        fields["trustedform_cert_url"] = cert_url


# -- lodash _.merge, for a query (strings and lists of strings) over the body ------------------------------


def _is_array_like_object(value: Any) -> bool:
    length = value.get("length") if isinstance(value, dict) else None
    return (
        isinstance(length, int | float)
        and not isinstance(length, bool)
        and float(length).is_integer()
        and (0 <= length <= 2**53 - 1)
    )


def _assign(target: Any, key: str | int, value: Any) -> None:
    if isinstance(target, list):
        index = key if isinstance(key, int) else _array_index(key)
        if index is not None:
            _set_index(target, index, value)
    else:
        target[str(key)] = value


def merge_query(fields: Any, query: Mapping[str, Any]) -> None:
    """``_.merge(fields, query)`` (l. 122): the query's values over the body's, lists index by index."""
    if not isinstance(fields, dict | list):
        return  # a primitive is returned unchanged
    for key in js_keys(query):
        source = query[key]
        if not isinstance(source, list):
            _assign(fields, key, source)
            continue
        current = _get(fields, key)
        if key == "constructor" and (isinstance(fields, list) or key not in fields):
            current = None
        if isinstance(current, list):
            merged = current
        elif _is_array_like_object(current):
            length = int(current["length"])
            if length > MAX_INDEX:
                raise InboundError(400, f"Unable to parse body -- list length {length} is above {MAX_INDEX}")
            merged = [current.get(str(i), UNDEFINED) for i in range(length)]
        else:
            merged = []
        for index, item in enumerate(source):
            _set_index(merged, index, item)
        _assign(fields, key, merged)


# -- Bodies -----------------------------------------------------------------------------------------------

_LATIN1 = frozenset(
    {
        *("iso-8859-1", "iso8859-1", "iso_8859-1", "iso_8859-1:1987", "latin1", "latin-1", "l1", "cp819"),
        *("ibm819", "iso-ir-100", "csisolatin1", "8859", "iso8859_1", "latin"),
    }
)
"""The charset names ``decode_body`` reads as Latin-1 (tests/node/parse.js has the same list)."""
_CHARSET = re.compile(r';\s*charset\s*=\s*"?([^";\s]+)"?', re.I)


def decode_body(body: bytes, content_type: str | None) -> str:
    """The text of a body's bytes. LeadConduit decodes before its module runs, in code that is not public;
    firehose reads ``charset=iso-8859-1`` (and its aliases) as Latin-1 and everything else as UTF-8, invalid
    bytes as U+FFFD, as Node's ``Buffer.toString`` does (``tests/node/parse.js`` does the same)."""
    found = _CHARSET.search(content_type or "")
    if found and found.group(1).lower() in _LATIN1:
        return body.decode("latin-1")
    return body.decode("utf-8", "replace")


def charset_of(content_type: str | None) -> str:
    """The codec ``decode_body`` uses for this Content-Type: ``latin-1`` or ``utf-8``."""
    found = _CHARSET.search(content_type or "")
    return "latin-1" if found and found.group(1).lower() in _LATIN1 else "utf-8"


class _BadJson(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _BadJson(f"{name} is not JSON")


def _js_int(text: str) -> int | float:
    value = int(text)
    return value if abs(value) <= 2**53 else float(text)


def json_parse(text: str) -> Any:
    """``JSON.parse``: numbers as doubles (whole ones as ints), no NaN or Infinity, the last of a repeated key."""
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_int=_js_int, parse_float=float)
    except (ValueError, RecursionError) as exc:
        raise _BadJson(str(exc)) from None


def parse_json_body(text: str) -> Any:
    """The JSON parse with the module's retry without CR, LF and tab (l. 84-93); InboundError(400)."""
    try:
        return json_parse(text)
    except _BadJson:
        pass
    try:
        return json_parse(re.sub(r"[\r\n\t]", "", text))
    except _BadJson as exc:
        raise InboundError(400, f"Unable to parse JSON -- SyntaxError: {exc}") from None


# Node's querystring.parse, ported from lib/querystring.js (the decision of when to decode is part of the
# result: a value is decoded only if it holds a valid %XX, and a failed decode falls back to bytes).
_HEX = frozenset("0123456789abcdefABCDEF")


def _decode_uri_component(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "%":
            out.append(char)
            i += 1
            continue
        run = bytearray()
        while i < len(text) and text[i] == "%":
            pair = text[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise ValueError("URIError")
            run.append(int(pair, 16))
            i += 3
        out.append(run.decode("utf-8"))  # strict, as decodeURIComponent (UnicodeDecodeError is a ValueError)
    return "".join(out)


def _unescape_buffer(text: str) -> str:
    units = text.encode("utf-16-le", "surrogatepass")
    codes = [units[i] | units[i + 1] << 8 for i in range(0, len(units), 2)]
    out = bytearray()
    i, last = 0, len(codes) - 2
    while i < len(codes):
        code = codes[i]
        if code == 37 and i < last:
            i += 1
            high = chr(codes[i]) if codes[i] < 128 else ""
            if high not in _HEX or not high:
                out.append(37)
                continue
            low = chr(codes[i + 1]) if codes[i + 1] < 128 else ""
            if low not in _HEX or not low:
                out.append(37)
                continue
            i += 1
            code = int(high + low, 16)
        out.append(code & 0xFF)
        i += 1
    return out.decode("utf-8", "replace")


def _qs_unescape(text: str) -> str:
    try:
        return _decode_uri_component(text)
    except ValueError:
        return _unescape_buffer(text)


def querystring_parse(text: str) -> dict[str, Any]:  # noqa: C901  # Node's querystring.js, in its shape
    """Node's ``querystring.parse(text)``: ``&`` and ``=``, ``+`` as a space, at most 1000 pairs."""
    result: dict[str, Any] = {}
    if not text:
        return result
    pairs = MAX_PAIRS

    def add(key: str, value: str, key_encoded: bool, value_encoded: bool) -> None:
        if key and key_encoded:
            key = _qs_unescape(key)
        if value and value_encoded:
            value = _qs_unescape(value)
        if key not in result:
            result[key] = value
        elif isinstance(result[key], list):
            result[key].append(value)
        else:
            result[key] = [result[key], value]

    last = 0
    seen_eq = False
    key = value = ""
    key_encoded = value_encoded = False
    check = 0
    for i, char in enumerate(text):
        if char == "&":
            if not seen_eq:
                if last < i:
                    key += text[last:i]
                elif not key:
                    pairs -= 1
                    if pairs == 0:
                        return result
                    last = i + 1
                    continue
            elif last < i:
                value += text[last:i]
            add(key, value, key_encoded, value_encoded)
            pairs -= 1
            if pairs == 0:
                return result
            key_encoded = value_encoded = False
            key = value = ""
            check = 0
            last = i + 1
            seen_eq = False
            continue
        if not seen_eq:
            if char == "=":
                if last < i:
                    key += text[last:i]
                seen_eq = True
                check = 0
                last = i + 1
                continue
            if not key_encoded:
                if char == "%":
                    check = 1
                    continue
                if check > 0:
                    if char in _HEX:
                        check += 1
                        if check == 3:
                            key_encoded = True
                        continue
                    check = 0
            if char == "+":
                if last < i:
                    key += text[last:i]
                key += " "
                last = i + 1
                continue
        if char == "+":
            if last < i:
                value += text[last:i]
            value += " "
            last = i + 1
        elif not value_encoded:
            if char == "%":
                check = 1
            elif check > 0:
                if char in _HEX:
                    check += 1
                    if check == 3:
                        value_encoded = True
                else:
                    check = 0
    if last < len(text):
        if not seen_eq:
            key += text[last:]
        else:
            value += text[last:]
    elif not seen_eq and not key:
        return result
    add(key, value, key_encoded, value_encoded)
    return result


def _flat_key(part: str) -> str | float:
    """flat's ``getkey``: a segment JavaScript reads as a number is a number (``""`` is 0)."""
    number = js_number(part)
    return part if number is None else number


def _prop(key: str | float) -> str:
    return key if isinstance(key, str) else js_number_text(key)


def _get(container: Any, key: str | float) -> Any:
    if isinstance(container, list):
        index = _array_index(key)
        if index is None or index >= len(container):
            return UNDEFINED
        return container[index]
    name = _prop(key)
    if name in container:
        return container[name]
    return FUNCTION if name in OBJECT_BUILTINS else UNDEFINED


def _put(container: Any, key: str | float, value: Any) -> None:
    if isinstance(container, list):
        index = _array_index(key)
        if index is not None:
            _set_index(container, index, value)
        return  # a named property of an array: JSON drops it
    name = _prop(key)
    if name != "__proto__":  # assigning a string to __proto__ does nothing
        container[name] = value


def unflatten(fields: dict[str, Any]) -> dict[str, Any]:
    """``flat.unflatten`` (5.0.2, default options) of a ``querystring.parse`` result."""
    target: dict[str, Any] = {}
    for key in js_keys(fields):
        value = fields[key]
        if isinstance(value, list) and value:
            for index, item in enumerate(value):
                target[f"{key}.{index}"] = item
        elif key != "__proto__":  # assigning a string to __proto__ does nothing
            target[key] = value
    result: dict[str, Any] = {}
    for key in js_keys(target):
        parts = key.split(".")
        key1 = _flat_key(parts.pop(0))
        key2 = _flat_key(parts[0]) if parts else None
        recipient: Any = result
        dropped = False
        while key2 is not None:
            if key1 == "__proto__":
                dropped = True
                break
            current = _get(recipient, key1)
            is_object = isinstance(current, dict | list)
            if not is_object and current is not UNDEFINED:
                dropped = True  # flat never writes over a value that is there (overwrite: false)
                break
            if current is UNDEFINED or current is None:
                _put(recipient, key1, [] if not isinstance(key2, str) else {})
            recipient = _get(recipient, key1)
            if recipient is UNDEFINED:  # a named property of a list, which JSON drops: follow it nowhere
                recipient = {}
            parts.pop(0)
            key1 = key2
            key2 = _flat_key(parts[0]) if parts else None
        if not dropped:
            _put(recipient, key1, target[key])
    return result


def parse_form_body(text: str) -> dict[str, Any]:
    return unflatten(querystring_parse(text))


# XML: sax (strict) feeding xml2js, ported from sax 1.6 and xml2js 0.6.

_NAME_START = (
    ":_A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c-\u200d\u2070-\u218f"
    "\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd"
)
_NAME_START_RE = re.compile(f"[{_NAME_START}]")
_NAME_BODY_RE = re.compile(f"[{_NAME_START}\u00b7\u0300-\u036f\u203f-\u2040.0-9-]")
_ENTITY_START_RE = re.compile(f"[#{_NAME_START}]")
_ENTITY_BODY_RE = re.compile(f"[#{_NAME_START}\u00b7\u0300-\u036f\u203f-\u2040.0-9-]")
_ENTITIES = {**{name: chr(code) for name, code in html.entities.name2codepoint.items()}, "apos": "'"}
_WS = " \n\r\t"


class XmlError(ValueError):
    pass


def _entity(name: str) -> str:
    if name in _ENTITIES:
        return _ENTITIES[name]
    lowered = name.lower()
    if lowered in _ENTITIES:
        return _ENTITIES[lowered]
    number: float | None = None
    digits = lowered
    shown = ""
    if lowered.startswith("#x"):
        digits = lowered[2:]
        found = re.match(r"[ \t\n\r]*[+-]?[0-9a-f]+", digits)
        number = float(int(found.group().strip(_WS), 16)) if found else None
        shown = format(int(number), "x") if number is not None else ""
    elif lowered.startswith("#"):
        digits = lowered[1:]
        found = re.match(r"[ \t\n\r]*[+-]?[0-9]+", digits)
        number = float(int(found.group().strip(_WS))) if found else None
        shown = str(int(number)) if number is not None else ""
    if number is not None and number < 0:
        shown = "-" + shown.lstrip("-")
    digits = digits.lstrip("0")
    if number is None or shown != digits or not _xml_char(int(number)):
        raise XmlError("Invalid character entity")
    return chr(int(number))


def _xml_char(code: int) -> bool:
    return code in (9, 10, 13) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or 0x10000 <= code <= 0x10FFFF


class _Xml2js:
    """xml2js's handlers (``explicitArray: false, mergeAttrs: true, explicitRoot: false``, the rest default)."""

    def __init__(self) -> None:
        self.stack: list[dict[str, Any]] = []
        self.done = False
        self.result: Any = None

    def open(self, name: str, attributes: list[tuple[str, str]]) -> None:
        obj: dict[str, Any] = {"_": ""}
        for key, value in attributes:
            self._assign_or_push(obj, key, value)
        obj["#name"] = name
        self.stack.append(obj)

    def text(self, text: str, cdata: bool = False) -> None:
        if not self.stack:
            return
        top = self.stack[-1]
        current = top["_"]
        if isinstance(current, list):  # an attribute or child named "_": JavaScript joins the list
            current = ",".join("" if v is None or v is UNDEFINED else _js_string(v) for v in current)
        elif not isinstance(current, str):
            current = _js_string(current)
        top["_"] = current + text
        if cdata:
            top["cdata"] = True

    def close(self) -> None:
        obj: Any = self.stack.pop()
        name = obj.pop("#name")
        cdata = obj.get("cdata") is True
        if cdata:
            del obj["cdata"]
        chars = obj["_"]
        if not isinstance(chars, str):
            raise XmlError("TypeError: obj[charkey].match is not a function")
        empty = ""
        if _JS_BLANK.fullmatch(chars) and not cdata:
            empty = chars
            del obj["_"]
        elif len(obj) == 1:
            obj = chars
        if isinstance(obj, dict) and not obj:
            obj = empty
        if self.stack:
            self._assign_or_push(self.stack[-1], name, obj)
        else:
            self.result, self.done = obj, True

    @staticmethod
    def _assign_or_push(obj: dict[str, Any], key: str, value: Any) -> None:
        if key not in obj:
            obj[key] = value
            return
        if not isinstance(obj[key], list):
            obj[key] = [obj[key]]
        obj[key].append(value)


def _js_string(value: Any) -> str:
    if value is True:
        return "true"
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def parse_xml_body(text: str) -> Any:
    """What ``parsed.toObject(...)`` returns (l. 113) for a trimmed body; XmlError when sax or xmldom refuses."""
    handler = _Xml2js()
    _SaxStrict(text, handler).run()
    return handler.result


class _SaxStrict:
    """sax's parser in strict mode, as far as xml2js sees it: any strict failure before the root element closes
    is an error; after it, nothing matters (xml2js has answered). ``xmldom`` runs first in the module and
    refuses a repeated attribute, which sax would drop: that is checked here too."""

    def __init__(self, text: str, handler: _Xml2js) -> None:
        self.text = text
        self.handler = handler

    def run(self) -> None:  # noqa: C901  # one state machine, kept in the shape sax writes it
        h = self.handler
        s = self.text
        state = "BEGIN"
        text = ""
        saw_root = closed_root = False
        tags: list[str] = []
        tag_name = attrib_name = attrib_value = quote = entity = sgml = comment = cdata = ""
        doctype: str | bool = ""
        attributes: list[tuple[str, str]] = []
        proc_body = ""
        return_state = ""

        def fail(message: str) -> None:
            raise XmlError(message)

        def flush() -> None:
            nonlocal text
            if text:
                h.text(text)
            text = ""

        def open_tag(self_closing: bool = False) -> None:
            nonlocal saw_root, state, tag_name, attrib_name, attrib_value
            flush()
            saw_root = True
            tags.append(tag_name)
            h.open(tag_name, list(attributes))
            if not self_closing:
                state = "TEXT"
                tag_name = ""
            attrib_name = attrib_value = ""

        def close_tag() -> None:
            nonlocal tag_name, state, closed_root
            if not tag_name:
                fail("Weird empty close tag.")
            if not tags or tags[-1] != tag_name:
                fail("Unexpected close tag")
            flush()
            tags.pop()
            h.close()
            if not tags:
                closed_root = True
            tag_name = ""
            state = "TEXT"

        def new_tag() -> None:
            flush()
            attributes.clear()

        def attrib() -> None:
            nonlocal attrib_name, attrib_value
            if any(name == attrib_name for name, _ in attributes):
                fail(f"Attribute {attrib_name} redefined")  # xmldom's fatal error
            attributes.append((attrib_name, attrib_value))
            attrib_name = attrib_value = ""

        i = 0
        while i < len(s):
            if h.done:
                return  # the root element has closed: xml2js has its answer, the rest is never looked at
            c = s[i]
            i += 1
            if state == "BEGIN":
                state = "BEGIN_WHITESPACE"
                if c == "\ufeff":
                    continue
            if state == "BEGIN_WHITESPACE":
                if c == "<":
                    state = "OPEN_WAKA"
                elif c not in _WS:
                    fail("Non-whitespace before first tag.")
                continue
            if state == "TEXT":
                if saw_root and not closed_root:
                    start = i - 1
                    while i - 1 < len(s) and s[i - 1] not in "<&":
                        i += 1
                    text += s[start : i - 1]
                    if i - 1 >= len(s):
                        break
                    c = s[i - 1]
                if c == "<":
                    state = "OPEN_WAKA"
                else:
                    if c not in _WS and (not saw_root or closed_root):
                        fail("Text data outside of root node.")
                    if c == "&":
                        state = "TEXT_ENTITY"
                        return_state = "TEXT"
                    else:
                        text += c
                continue
            if state == "OPEN_WAKA":
                if c == "!":
                    state, sgml = "SGML_DECL", ""
                elif c in _WS:
                    pass
                elif _NAME_START_RE.match(c):
                    state, tag_name = "OPEN_TAG", c
                elif c == "/":
                    state, tag_name = "CLOSE_TAG", ""
                elif c == "?":
                    state, proc_body = "PROC_INST", ""
                else:
                    fail("Unencoded <")
                continue
            if state == "SGML_DECL":
                if sgml + c == "--":
                    state, comment, sgml = "COMMENT", "", ""
                elif doctype and doctype is not True and sgml:
                    state = "DOCTYPE_DTD"
                    sgml = ""
                elif (sgml + c).upper() == "[CDATA[":
                    flush()
                    state, sgml, cdata = "CDATA", "", ""
                elif (sgml + c).upper() == "DOCTYPE":
                    state = "DOCTYPE"
                    if doctype or saw_root:
                        fail("Inappropriately located doctype declaration")
                    doctype, sgml = "", ""
                elif c == ">":
                    flush()
                    sgml, state = "", "TEXT"
                elif c in "\"'":
                    state = "SGML_DECL_QUOTED"  # sax never sets the quote here: it waits for the end
                    sgml += c
                else:
                    sgml += c
                continue
            if state == "SGML_DECL_QUOTED":
                sgml += c
                continue
            if state == "DOCTYPE":
                if c == ">":
                    flush()
                    state, doctype = "TEXT", True
                else:
                    doctype = f"{doctype}{c}"
                    if c == "[":
                        state = "DOCTYPE_DTD"
                    elif c in "\"'":
                        state, quote = "DOCTYPE_QUOTED", c
                continue
            if state == "DOCTYPE_QUOTED":
                doctype = f"{doctype}{c}"
                if c == quote:
                    state, quote = "DOCTYPE", ""
                continue
            if state == "DOCTYPE_DTD":
                if c == "]":
                    doctype, state = f"{doctype}{c}", "DOCTYPE"
                elif c == "<":
                    state = "OPEN_WAKA"
                elif c in "\"'":
                    doctype, state, quote = f"{doctype}{c}", "DOCTYPE_DTD_QUOTED", c
                else:
                    doctype = f"{doctype}{c}"
                continue
            if state == "DOCTYPE_DTD_QUOTED":
                doctype = f"{doctype}{c}"
                if c == quote:
                    state, quote = "DOCTYPE_DTD", ""
                continue
            if state == "COMMENT":
                if c == "-":
                    state = "COMMENT_ENDING"
                else:
                    comment += c
                continue
            if state == "COMMENT_ENDING":
                if c == "-":
                    state = "COMMENT_ENDED"
                    if comment:
                        flush()
                    comment = ""
                else:
                    comment += "-" + c
                    state = "COMMENT"
                continue
            if state == "COMMENT_ENDED":
                if c != ">":
                    fail("Malformed comment")
                state = "DOCTYPE_DTD" if doctype and doctype is not True else "TEXT"
                continue
            if state == "CDATA":
                start = i - 1
                while i - 1 < len(s) and s[i - 1] != "]":
                    i += 1
                cdata += s[start : i - 1]
                if i - 1 < len(s):
                    state = "CDATA_ENDING"
                continue
            if state == "CDATA_ENDING":
                if c == "]":
                    state = "CDATA_ENDING_2"
                else:
                    cdata += "]" + c
                    state = "CDATA"
                continue
            if state == "CDATA_ENDING_2":
                if c == ">":
                    if cdata:
                        h.text(cdata, cdata=True)
                    cdata, state = "", "TEXT"
                elif c == "]":
                    cdata += "]"
                else:
                    cdata += "]]" + c
                    state = "CDATA"
                continue
            if state == "PROC_INST":
                if c == "?":
                    state = "PROC_INST_ENDING"
                elif c in _WS:
                    state = "PROC_INST_BODY"
                continue
            if state == "PROC_INST_BODY":
                if not proc_body and c in _WS:
                    continue
                if c == "?":
                    state = "PROC_INST_ENDING"
                else:
                    proc_body += c
                continue
            if state == "PROC_INST_ENDING":
                if c == ">":
                    flush()
                    proc_body, state = "", "TEXT"
                else:
                    proc_body += "?" + c
                    state = "PROC_INST_BODY"
                continue
            if state == "OPEN_TAG":
                if _NAME_BODY_RE.match(c):
                    tag_name += c
                else:
                    new_tag()
                    if c == ">":
                        open_tag()
                    elif c == "/":
                        state = "OPEN_TAG_SLASH"
                    else:
                        if c not in _WS:
                            fail("Invalid character in tag name")
                        state = "ATTRIB"
                continue
            if state == "OPEN_TAG_SLASH":
                if c != ">":
                    fail("Forward-slash in opening tag not followed by >")
                open_tag(self_closing=True)
                close_tag()
                continue
            if state == "ATTRIB":
                if c in _WS:
                    continue
                if c == ">":
                    open_tag()
                elif c == "/":
                    state = "OPEN_TAG_SLASH"
                elif _NAME_START_RE.match(c):
                    attrib_name, attrib_value, state = c, "", "ATTRIB_NAME"
                else:
                    fail("Invalid attribute name")
                continue
            if state == "ATTRIB_NAME":
                if c == "=":
                    state = "ATTRIB_VALUE"
                elif c == ">":
                    fail("Attribute without value")
                elif c in _WS:
                    state = "ATTRIB_NAME_SAW_WHITE"
                elif _NAME_BODY_RE.match(c):
                    attrib_name += c
                else:
                    fail("Invalid attribute name")
                continue
            if state == "ATTRIB_NAME_SAW_WHITE":
                if c == "=":
                    state = "ATTRIB_VALUE"
                elif c not in _WS:
                    fail("Attribute without value")
                continue
            if state == "ATTRIB_VALUE":
                if c in _WS:
                    continue
                if c in "\"'":
                    quote, state = c, "ATTRIB_VALUE_QUOTED"
                else:
                    fail("Unquoted attribute value")
                continue
            if state == "ATTRIB_VALUE_QUOTED":
                if c != quote:
                    if c == "&":
                        state, return_state = "ATTRIB_VALUE_ENTITY_Q", "ATTRIB_VALUE_QUOTED"
                    else:
                        attrib_value += c
                    continue
                attrib()
                quote, state = "", "ATTRIB_VALUE_CLOSED"
                continue
            if state == "ATTRIB_VALUE_CLOSED":
                if c in _WS:
                    state = "ATTRIB"
                elif c == ">":
                    open_tag()
                elif c == "/":
                    state = "OPEN_TAG_SLASH"
                elif _NAME_START_RE.match(c):
                    fail("No whitespace between attributes")
                else:
                    fail("Invalid attribute name")
                continue
            if state == "CLOSE_TAG":
                if not tag_name:
                    if c in _WS:
                        continue
                    if not _NAME_START_RE.match(c):
                        fail("Invalid tagname in closing tag.")
                    tag_name = c
                elif c == ">":
                    close_tag()
                elif _NAME_BODY_RE.match(c):
                    tag_name += c
                else:
                    if c not in _WS:
                        fail("Invalid tagname in closing tag")
                    state = "CLOSE_TAG_SAW_WHITE"
                continue
            if state == "CLOSE_TAG_SAW_WHITE":
                if c in _WS:
                    continue
                if c != ">":
                    fail("Invalid characters in closing tag")
                close_tag()
                continue
            if state in ("TEXT_ENTITY", "ATTRIB_VALUE_ENTITY_Q"):
                if c == ";":
                    value = _entity(entity)
                    if return_state == "TEXT":
                        text += value
                    else:
                        attrib_value += value
                    entity, state = "", return_state
                elif (_ENTITY_BODY_RE if entity else _ENTITY_START_RE).match(c):
                    entity += c
                else:
                    fail("Invalid character in entity name")
                continue
            raise AssertionError(state)  # pragma: no cover - every state is handled above
        if h.done:
            return
        if saw_root and not closed_root:
            fail("Unclosed root tag")
        if state not in ("BEGIN", "BEGIN_WHITESPACE", "TEXT"):
            fail("Unexpected end")
        # No root element at all: xml2js answers null.


# -- The request ------------------------------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def parse_body(mime_type: str, text: str) -> Any:
    """The parse of a trimmed, non-empty body of a supported type (l. 84-119), before the query is merged."""
    if mime_type == JSON:
        return parse_json_body(text)
    if mime_type == FORM:
        return parse_form_body(text)
    try:
        return parse_xml_body(text)
    except XmlError as exc:
        raise InboundError(400, f"Body does not contain XML or XML is unparseable -- Error: {exc}.") from None


def parse_request(method: str, uri: str, headers: Mapping[str, str], body: str | None, *, ping: bool = False) -> Any:
    """What ``inbound.request(req)`` returns for this request (its fields, usually an object), or InboundError
    with the status and reason the module answers. ``uri`` is the path and query (or a whole URL); ``body`` the
    body's text (``decode_body``), None when there is none; header names in any case."""
    lowered = method.lower()
    if lowered not in ("get", "post"):
        raise InboundError(405, f"The {method.upper()} method is not allowed", {"Allow": "GET, POST"})
    if not select_mime_type(_header(headers, "Accept")):
        raise InboundError(406, "Not capable of generating content according to the Accept header")
    query = parse_query(uri)
    redirect = query.get("redir_url")
    if redirect is not None:
        if isinstance(redirect, list):
            redirect = redirect[0]
        if not isinstance(redirect, str) or not valid_redirect(redirect):
            raise InboundError(400, "Invalid redir_url")
    normalize_trustedform(query, ping)
    if lowered == "get":
        return query
    if _header(headers, "Content-Length") is None and _header(headers, "Transfer-Encoding") != "chunked":
        return query
    content_type = _header(headers, "Content-Type")
    if not content_type:
        raise InboundError(415, "Content-Type header is required")
    mime_type = select_mime_type(content_type)
    if mime_type not in SUPPORTED:
        raise InboundError(406, f"MIME type in Content-Type header is not supported. Use only {', '.join(SUPPORTED)}.")
    text = js_trim(body) if body is not None else ""
    if not text:
        return query
    parsed = parse_body(mime_type, text)
    merge_query(parsed, query)
    normalize_trustedform(parsed, ping)
    return parsed
