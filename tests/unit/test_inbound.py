from __future__ import annotations

import pytest

from firehose.sandbox.inbound import InboundError, parse_fields, render_response, response_type


def test_json_form_and_xml_bodies() -> None:
    assert parse_fields(content_type="application/json; charset=utf-8", body=b'{"a":"1"}', query="") == {"a": "1"}
    assert parse_fields(content_type="application/x-www-form-urlencoded", body=b"a=1&b.c=2", query="") == {
        "a": "1",
        "b": {"c": "2"},
    }
    assert parse_fields(content_type="text/xml", body=b"<lead><a>1</a><b><c>2</c></b></lead>", query="") == {
        "a": "1",
        "b": {"c": "2"},
    }


def test_query_wins_and_trustedform_is_renamed() -> None:
    fields = parse_fields(
        content_type="application/json", body=b'{"a":"1","b":"2"}', query="a=9&XXTRUSTEDFORMCERTURL=u"
    )
    assert fields == {"a": "9", "b": "2", "trustedform_cert_url": "u"}


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        (None, b"a=1", 415),
        ("text/csv", b"a,b", 406),
        ("application/json", b"{", 400),
        ("application/xml", b"<a>", 400),
        ("application/x-www-form-urlencoded", b"\xff=1", 400),
    ],
)
def test_refusals(content_type: str | None, body: bytes, status: int) -> None:
    with pytest.raises(InboundError) as caught:
        parse_fields(content_type=content_type, body=body, query="")
    assert caught.value.status == status


def test_accept_negotiation() -> None:
    assert response_type(None) == response_type("*/*") == response_type("application/json") == "application/json"
    assert response_type("text/xml") == "text/xml"
    with pytest.raises(InboundError):
        response_type("image/png")


def test_xml_answer() -> None:
    body = render_response({"outcome": "failure", "reason": "a<b", "lead": {"id": "1"}, "price": 0}, "text/xml")
    assert body == (
        b'<?xml version="1.0"?><result><outcome>failure</outcome><reason>a&lt;b</reason>'
        b"<lead><id>1</id></lead><price>0</price></result>"
    )
