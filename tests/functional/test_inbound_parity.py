"""LeadConduit's standard inbound module itself (npm leadconduit-default, run under Node by tests/node/parse.js)
against (a) the sandbox's parse, through its HTTP server, and (b) the parse of each request replay's edits make,
which must be the original lead's parse plus the edit. Field by field, on a corpus and on generated bodies.

Run alone: ``PYTHONPATH=. .venv/bin/pytest -q tests/functional/test_inbound_parity.py`` (installs the npm package
into .cache/node/ on first use; fails, never skips, when Node, npm or the registry is missing)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firehose import payload
from firehose.errors import DataError
from firehose.inbound import decode_body, js_trim, parse_request, plain
from firehose.replaying.request import Edits, Target, prepare
from firehose.sandbox import Targets
from tests.conftest import RunningSandbox, start_sandbox, stop_sandbox
from tests.node import NodeUnavailable, Request, install, parse

JSON, FORM, XML = "application/json", "application/x-www-form-urlencoded", "application/xml"
FLOW, SOURCE = "65a51e40f610ae996f24fceb", "65a51e40f610ae996f24fce6"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """A sandbox of this module's own: the leads it submits must not show in the shared one's /events, which
    other tests read as the seeded data alone."""
    running, server = start_sandbox(Targets(directory=tmp_path_factory.mktemp("parity")), leads=5, days=1)
    yield running
    stop_sandbox(server, running)


@pytest.fixture(scope="module")
def modules() -> Path:
    try:
        return install()
    except NodeUnavailable as exc:
        pytest.fail(str(exc))


def post(content_type: str | None, body: str | bytes, query: str = "", **headers: str) -> tuple[Any, ...]:
    if content_type is not None:
        headers["Content-Type"] = content_type
    return ("POST", query, headers, body.encode() if isinstance(body, str) else body)


def get(query: str, **headers: str) -> tuple[Any, ...]:
    return ("GET", query, headers, None)


CORPUS: list[tuple[Any, ...]] = [
    # JSON, including what vendors get wrong: raw CR, LF and tab inside strings
    post(JSON, '{"first_name":"Ada","email":"ada@example.com","phone_1":"5125550101","state":"TX"}'),
    post(JSON, '{"comments":"line one\nline two","state":"TX"}'),
    post(JSON, '{\r\n  "comments": "dos\r\nline\tbreaks",\r\n  "email": "b@example.com"\r\n}\r\n'),
    post(JSON, '{"note":"tab\there","lead":{"phone":"5125550102","address":{"city":"Austin","zip":"78701"}}}'),
    post(JSON, '{"list":["a","b",{"c":"d"}],"n":12345678901234567890,"f":1.50,"t":true,"z":null,"e":""}'),
    post(JSON, '{"a":"first","a":"second","unicode":"Zoë – ☃ 😀"}'),
    post(JSON, '\ufeff  {"bom":"yes"}  '),
    post(JSON, '{"xxTrustedFormCertUrl":"https://cert.trustedform.com/abc","trustedform_ping_url":"https://p"}'),
    post(JSON + "; charset=utf-8", '{"city":"São Paulo"}'),
    post(JSON + "; charset=iso-8859-1", '{"city":"Bogotá"}'.encode("latin-1")),
    post(JSON, '{"big":1e400,"neg":-0,"exp":1E-7}'),
    post(JSON, "[1,2]"),
    post(JSON, "null"),
    post(JSON, "{nope"),
    post(JSON, '{"a":NaN}'),
    post(JSON, '{"a":"x\x01y"}'),
    post(JSON, "   "),
    # form bodies: repeated keys, dot notation, brackets, escapes
    post(FORM, "first_name=Ada&email=ada%40example.com&phone_1=5125550101&state=TX"),
    post(FORM, "state=TX&state=NM&state=CO&zip=78701"),
    post(FORM, "address.city=Austin&address.state=TX&lead.phone.home=5125550103"),
    post(FORM, "tags[]=a&tags[]=b&c.0=x&c.1=y&d.2=z"),
    post(FORM, "name=Ada+Lovelace&note=50%25+off&plus=%2B&bad=%zz&half=%E9&mixed=caf%C3%A9"),
    post(FORM, "a=1&a.b=2&c.d=3&c=4&=empty&flag&e.=5&..=6"),
    post(FORM, "xxTrustedFormCertUrl=https%3A%2F%2Fcert.trustedform.com%2Fx&xxTrustedFormPingUrl=p"),
    post(FORM + "; charset=iso-8859-1", "name=Jos\xe9&city=S%E3o".encode("latin-1")),
    post(FORM + "; charset=utf-8", "name=José&city=São"),
    post(FORM, "a.b.c=1&a.b=2&x.y=1&x.y.z=2"),
    post(FORM, "k%2Ey=dotted&%41%42=v%zz&sp+ace=1"),
    # XML: attributes, nesting, repetition, text beside children, CDATA, entities, namespaces
    post(XML, '<?xml version="1.0"?><lead><first_name>Ada</first_name><state>TX</state></lead>'),
    post(XML, '<lead source="web" v="2"><phone kind="home">5125550104</phone><email>e@example.com</email></lead>'),
    post(XML, "<lead><address><city>Austin</city><zip>78701</zip></address><tag>a</tag><tag>b</tag></lead>"),
    post(XML, '<lead tag="attr"><tag>child</tag><empty/><blank>  </blank><t>hi<b>x</b> there</t></lead>'),
    post(XML, "<lead><c><![CDATA[<b>bold</b> & more]]></c><e>&eacute;&#233;&#xE9;&amp;&lt;</e></lead>"),
    post(XML, '<x:lead xmlns:x="urn:x"><x:a>1</x:a><b xmlns="urn:b">2</b></x:lead>'),
    post(
        "text/xml; charset=utf-8",
        '<?xml version="1.0" encoding="UTF-8"?>\n<!-- a vendor -->\n<lead>\n  <city>São Paulo</city>\n</lead>\n',
    ),
    post("text/xml; charset=iso-8859-1", "<lead><city>Bogot\xe1</city></lead>".encode("latin-1")),
    post(XML, '<lead><a x="1" x="2">t</a></lead>'),
    post(XML, "<lead><a>1</a>"),
    post(XML, "<lead><a>&nope;</a></lead>"),
    post(XML, "<lead><a>1</a></lead>trailing junk LeadConduit ignores"),
    post(XML, "<lead>just text</lead>"),
    post(XML, "<lead><xxTrustedFormCertUrl>https://cert.trustedform.com/q</xxTrustedFormCertUrl></lead>"),
    # the query string merged over the body
    post(JSON, '{"state":"TX","email":"q@example.com"}', "state=CO&src=ad"),
    post(JSON, '{"list":["1","2","3"],"a":{"b":"c"}}', "list=x&list=y&a=flat&lead.email=dotted%40example.com"),
    post(FORM, "xxTrustedFormCertUrl=body", "xxTrustedFormCertUrl=query&xxtrustedformcerturl=lower"),
    post(XML, "<lead><state>TX</state></lead>", "state=CA&state=NV"),
    post(JSON, '{"a":"1"}', "redir_url=https%3A%2F%2Fexample.org%2Fthanks"),
    post(JSON, '{"a":"1"}', "redir_url=ftp%3A%2F%2Fexample.org%2F"),
    post(JSON, "", "email=only%40example.com&phone_1=5125550105"),
    # GET submits carry their fields in the query string only
    get("email=g%40example.com&phone_1=5125550106&state=TX"),
    get("a=&a=1&b=1&b=&b=2&c.d=3&xxTRUSTEDformCERTurl=u"),
    get(""),
    # what is refused
    post(None, "email=x"),
    post("text/csv", "a,b"),
    post("Application/JSON", "{}"),
    post("application/vnd.api+json", "{}"),
    post("application/*", "<lead><a>1</a></lead>"),
    post(JSON, '{"a":"1"}', Accept="image/png"),
    post(JSON, '{"a":"1"}', Accept="application/*"),
    ("PUT", "", {"Content-Type": JSON}, b'{"a":"1"}'),
]


def _request(entry: tuple[Any, ...]) -> Request:
    method, query, headers, body = entry
    uri = f"/flows/{FLOW}/sources/{SOURCE}/submit" + (f"?{query}" if query else "")
    return Request.built(method, uri, headers, body)


def _ids(entry: tuple[Any, ...]) -> str:
    method, query, headers, body = entry
    return f"{method} {headers.get('Content-Type')} {(body or b'')[:40]!r} ?{query[:30]}"


def _source_lead(sandbox: RunningSandbox, lead_id: str) -> dict[str, Any]:
    rules = [
        {"lhv": "type", "op": "is equal to", "rhv": "source"},
        {"lhv": "lead.id", "op": "is equal to", "rhv": lead_id},
    ]
    [event] = sandbox.events(rules=json.dumps(rules), limit=5)
    lead: dict[str, Any] = event["vars"]["lead"]
    return {k: v for k, v in lead.items() if k != "id"}


def test_the_sandbox_parses_every_request_as_leadconduit_does(modules: Path, sandbox: RunningSandbox) -> None:
    requests = [_request(entry) for entry in CORPUS]
    expected = parse(modules, requests)
    mismatches: list[tuple[Any, ...]] = []
    for request, node in zip(requests, expected, strict=True):
        headers = {k: v for k, v in request.headers.items() if k != "Content-Length"}
        query = urlsplit(request.uri).query
        url = sandbox.submit_url() + (f"?{query}" if query else "")
        answer = httpx.request(request.method, url, headers=headers, content=request.body, timeout=30)
        if node["ok"] and isinstance(node["fields"], dict):
            if answer.status_code != 201:
                mismatches.append((request, node, answer.status_code, answer.text))
                continue
            xml_id = re.search(r"<id>([0-9a-f]{24})</id>", answer.text)  # an Accept that asks for XML
            got = _source_lead(sandbox, xml_id.group(1) if xml_id else answer.json()["lead"]["id"])
            if got != node["fields"]:
                mismatches.append((request, node["fields"], got))
        elif node["ok"]:  # not an object: the sandbox cannot make a lead of it (a documented difference)
            if answer.status_code != 400:
                mismatches.append((request, node, answer.status_code))
        elif answer.status_code != node["status"]:
            mismatches.append((request, node, answer.status_code, answer.text))
    assert not mismatches, "\n".join(map(repr, mismatches))
    assert sum(1 for r in expected if r["ok"] and isinstance(r["fields"], dict)) > 40


# -- replay's edits ----------------------------------------------------------------------------------------

EDITS = [
    Edits(mark_test=True),
    Edits(sets=(("state", "ZZ"),), unsets=("email",)),
    Edits(sets=(("lead.phone", "5125550199"), ("note", "two\nlines & <tags>"))),
    Edits(unsets=("address.city", "comments")),
    Edits(sets=(("trustedform_cert_url", "https://cert.trustedform.com/new"),)),
]


def _stored_event(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("Content-Type")
    return {
        "id": "6b06dbfea55055783f30ae96",
        "type": "source",
        "outcome": "error",
        "vars": {"lead": {"id": "6b06dbfda55055783f30ae93"}, "flow": {"id": FLOW}, "source": {"id": SOURCE}},
        "request": {
            "method": request.method,
            "uri": f"https://app.leadconduit.com{request.uri}",
            "headers": request.headers,
            "body": decode_body(request.body or b"", content_type),
        },
    }


def _text(value: Any) -> str:
    return "true" if value is True else str(value)


def _expected(before: dict[str, Any], request: Request, edits: Edits) -> dict[str, Any]:
    """The original's fields plus the edits, as the README states them: a field in the query string (or any field
    of a GET or blank-bodied submit) is a top-level key with a text value; elsewhere a dotted path, a JSON body
    getting ``is_test`` as a boolean; ``--unset`` removes both, and a form or XML body cannot keep an object
    an unset emptied."""
    query = urlsplit(request.uri).query
    names = {name for name, _ in parse_qsl(query, keep_blank_values=True)}
    kind = payload.kind_of(request.headers.get("Content-Type"))
    query_only = request.method != "POST" or not js_trim(decode_body(request.body or b"", None))
    after = copy.deepcopy(before)
    for name in edits.unsets:
        after.pop(name, None)
        path, trail = name.split("."), [after]
        for part in path[:-1]:
            inner = trail[-1].get(part)
            trail.append(inner if isinstance(inner, dict) else {})
        if trail[-1].pop(path[-1], None) is not None and kind != payload.JSON and not query_only:
            for depth in range(len(trail) - 1, 0, -1):
                if trail[depth]:
                    break
                if kind == payload.FORM:
                    del trail[depth - 1][path[depth - 1]]
                else:
                    trail[depth - 1][path[depth - 1]] = ""
                    break
    for name, value in edits.all_sets():
        if query_only or name in names:
            after[name] = _text(value)
            continue
        node, parts = after, name.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value if kind == payload.JSON else _text(value)
    return after


def _replayed(request: Request, edits: Edits) -> Request:
    prepared = prepare(_stored_event(request), Target(url="http://127.0.0.1:9"), edits)
    split = urlsplit(prepared.url)
    content_type = request.headers.get("Content-Type")
    body = payload.body_bytes(prepared.body, content_type) if request.body is not None else None
    headers = {k: v for k, v in prepared.headers if k.lower() not in ("content-length", "accept")}
    return Request.built(prepared.method, split.path + (f"?{split.query}" if split.query else ""), headers, body)


def _edit_cases(modules: Path, requests: list[Request]) -> Iterator[tuple[Request, Edits, Any, Request]]:
    originals = parse(modules, requests)
    for request, original in zip(requests, originals, strict=True):
        if original["ok"] and isinstance(original["fields"], dict) and request.method in ("GET", "POST"):
            for edits in EDITS:
                yield request, edits, original["fields"], _replayed(request, edits)


def test_each_edited_replay_is_read_by_leadconduit_as_the_original_plus_the_edit(modules: Path) -> None:
    cases = list(_edit_cases(modules, [_request(entry) for entry in CORPUS]))
    results = parse(modules, [replayed for *_, replayed in cases])
    mismatches = []
    for (request, edits, before, replayed), result in zip(cases, results, strict=True):
        wanted = _expected(before, request, edits)
        if not result["ok"] or result["fields"] != wanted:
            mismatches.append((request, edits, replayed, result, wanted))
        kind = payload.kind_of(request.headers.get("Content-Type"))
        if kind == payload.JSON and replayed.body != request.body and replayed.body:
            json.loads(decode_body(replayed.body, request.headers.get("Content-Type")))  # strict: needs no retry
    assert not mismatches, "\n\n".join(map(repr, mismatches))
    assert len(cases) > 150


def test_an_unedited_replay_keeps_the_stored_bytes(modules: Path) -> None:
    for entry in CORPUS:
        request = _request(entry)
        if request.method == "POST" and request.body and entry[2].get("Content-Type") in (JSON, FORM, XML):
            try:
                replayed = _replayed(request, Edits())
            except DataError:
                continue
            assert replayed.body == request.body


# -- generated bodies --------------------------------------------------------------------------------------

_name = st.text(st.sampled_from("abcxyzAB_01.[]%+-é "), min_size=1, max_size=8).filter(
    lambda n: n not in ("__proto__", "constructor") and n != "id"
)
_value = st.text(st.sampled_from("ab 1\n\r\t%+&=<>\"'é☃\\.;"), max_size=10)
_xml_name = st.text(st.sampled_from("abcxyz_"), min_size=1, max_size=4)


@st.composite
def _json_body(draw: st.DrawFn) -> bytes:
    tree = draw(
        st.recursive(
            st.one_of(_value, st.integers(-(2**60), 2**60), st.booleans(), st.none()),
            lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_name, inner, max_size=3)),
            max_leaves=8,
        )
    )
    text = json.dumps({"root": tree, "k": draw(_value)}, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):  # a vendor's raw line breaks and tabs inside strings
        text = text.replace("\\n", "\n").replace("\\r", "\r").replace("\\t", "\t")
    return text.encode()


@st.composite
def _form_body(draw: st.DrawFn) -> bytes:
    pairs = draw(st.lists(st.tuples(_name, _value, st.booleans()), max_size=8))
    raw = [f"{k}={v}" if eq else k for k, v, eq in pairs]
    return "&".join(raw).encode()


@st.composite
def _xml_element(draw: st.DrawFn, depth: int = 0) -> str:
    name = draw(_xml_name)
    attributes = draw(st.dictionaries(_xml_name, _value, max_size=2))
    shown = "".join(f' {k}="{escape(v, {chr(34): "&quot;"})}"' for k, v in attributes.items())
    if depth < 2 and draw(st.booleans()):
        children = draw(st.lists(_xml_element(depth + 1), max_size=3))
        text = escape(draw(_value)) if draw(st.booleans()) else ""
        return f"<{name}{shown}>{text}{''.join(children)}</{name}>"
    if draw(st.booleans()):
        return f"<{name}{shown}/>"
    return f"<{name}{shown}>{escape(draw(_value))}</{name}>"


_bodies = st.one_of(
    st.tuples(st.just(JSON), _json_body()),
    st.tuples(st.just(FORM), _form_body()),
    st.tuples(st.just(XML), _xml_element().map(lambda e: f"<lead>{e}</lead>".encode())),
)
_queries = st.lists(st.tuples(_name, _value), max_size=3).map(
    lambda pairs: "&".join(f"{httpx.QueryParams({k: v})}" for k, v in pairs)
)


# Few examples of large batches: each example starts node twice, which costs more than the bodies themselves.
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(st.tuples(_bodies, _queries), min_size=60, max_size=60))
def test_generated_bodies_parse_and_edit_as_leadconduit_does(modules: Path, batch: list[Any]) -> None:
    requests = [_request(post(content_type, body, query)) for (content_type, body), query in batch]
    results = parse(modules, requests)
    for request, node in zip(requests, results, strict=True):
        text = decode_body(request.body or b"", request.headers.get("Content-Type"))
        try:
            ours: dict[str, Any] = {
                "ok": True,
                "fields": plain(parse_request("POST", request.uri, request.headers, text)),
            }
        except Exception as exc:  # compared below: an InboundError's status; anything else is a bug
            ours = {"ok": False, "status": getattr(exc, "status", repr(exc))}
        theirs = node if node["ok"] else {"ok": False, "status": node["status"]}
        assert ours == theirs, (request, node)
    cases = list(_edit_cases(modules, requests))
    edited = parse(modules, [replayed for *_, replayed in cases])
    for (request, edits, before, replayed), result in zip(cases, edited, strict=True):
        assert result["ok"] and result["fields"] == _expected(before, request, edits), (request, edits, replayed)
