"""The sandbox's reading of submit requests, after LeadConduit's standard inbound module (the parity test runs the
module itself; these are the cases a reader should see at a glance)."""

from __future__ import annotations

import pytest

from firehose.inbound import select_mime_type
from firehose.sandbox.inbound import InboundError, read_submit, render_response, response_type


def post(content_type: str | None, body: bytes, uri: str = "/flows/f/sources/s/submit") -> dict:
    headers = {"Content-Length": str(len(body))}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return read_submit("POST", uri, headers, body)


def test_json_form_and_xml_bodies() -> None:
    assert post("application/json; charset=utf-8", b'{"a":"1"}') == {"a": "1"}
    assert post("application/x-www-form-urlencoded", b"a=1&b.c=2") == {"a": "1", "b": {"c": "2"}}
    assert post("text/xml", b"<lead><a>1</a><b><c>2</c></b></lead>") == {"a": "1", "b": {"c": "2"}}


def test_json_with_raw_line_breaks_and_tabs_in_strings_is_read_without_them() -> None:
    assert post("application/json", b'{"note":"line one\r\nline\ttwo","n":1}') == {"note": "line onelinetwo", "n": 1}


def test_repeated_form_keys_are_lists_and_brackets_are_part_of_the_name() -> None:
    assert post("application/x-www-form-urlencoded", b"a=1&a=2&b[]=x&b[]=y&c.0=p&c.1=q") == {
        "a": ["1", "2"],
        "b[]": ["x", "y"],
        "c": ["p", "q"],
    }


def test_xml_attributes_are_fields_and_repeated_elements_lists() -> None:
    body = b'<lead source="web"><phone type="home">5125550100</phone><tag>a</tag><tag>b</tag><empty/></lead>'
    assert post("application/xml", body) == {
        "source": "web",
        "phone": {"_": "5125550100", "type": "home"},
        "tag": ["a", "b"],
        "empty": "",
    }


def test_query_wins_stays_flat_and_trustedform_is_renamed() -> None:
    fields = post("application/json", b'{"a":"1","b":"2"}', uri="/s?a=9&c.d=3&XXTRUSTEDFORMCERTURL=u")
    assert fields == {"a": "9", "b": "2", "c.d": "3", "trustedform_cert_url": "u"}


def test_get_reads_the_query_only_and_latin1_bodies_are_read_as_latin1() -> None:
    assert read_submit("GET", "/s?email=a%40example.com&x=1&x=2", {}, None) == {
        "email": "a@example.com",
        "x": ["1", "2"],
    }
    latin1 = {"Content-Type": "application/x-www-form-urlencoded; charset=iso-8859-1", "Content-Length": "9"}
    assert read_submit("POST", "/s", latin1, "name=Jos\xe9".encode("latin-1")) == {"name": "José"}


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        (None, b"a=1", 415),
        ("text/csv", b"a,b", 406),
        ("Application/JSON", b"{}", 406),  # mimeparse compares case-sensitively
        ("application/vnd.api+json", b"{}", 406),
        ("application/json", b"{", 400),
        ("application/json", b"[1,2]", 400),  # not an object: the sandbox cannot make a lead of it
        ("application/xml", b"<a>", 400),
        ("application/xml", b'<a><b x="1" x="2"/></a>', 400),
    ],
)
def test_refusals(content_type: str | None, body: bytes, status: int) -> None:
    with pytest.raises(InboundError) as caught:
        post(content_type, body)
    assert caught.value.status == status


def test_bad_redir_url_is_400() -> None:
    with pytest.raises(InboundError) as caught:
        read_submit("GET", "/s?redir_url=ftp://x.example/", {}, None)
    assert caught.value.status == 400


def test_accept_negotiation() -> None:
    assert response_type(None) == response_type("*/*") == response_type("application/json") == "application/json"
    assert response_type("text/xml") == response_type("text/*") == "text/xml"
    assert select_mime_type("application/*") == "application/xml"  # mimeparse's sort compares text
    with pytest.raises(InboundError):
        response_type("image/png")


def test_xml_answer() -> None:
    body = render_response({"outcome": "failure", "reason": "a<b", "lead": {"id": "1"}, "price": 0}, "text/xml")
    assert body == (
        b'<?xml version="1.0"?><result><outcome>failure</outcome><reason>a&lt;b</reason>'
        b"<lead><id>1</id></lead><price>0</price></result>"
    )
