"""POST /flows/{flow}/sources/{source}/submit, as LeadConduit's standard inbound module answers it."""

from __future__ import annotations

import httpx
import pytest

from firehose.codec import decode
from tests.conftest import RunningSandbox

LEAD = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "email": "ada@example.com",
    "phone_1": "5125550101",
    "state": "TX",
}


def _source_event(sandbox: RunningSandbox, lead_id: str) -> dict:
    events = [e for e in sandbox.sandbox_events() if e["vars"]["lead"]["id"] == lead_id]
    assert events, f"no events for lead {lead_id}"
    source = [e for e in events if e["type"] == "source"]
    assert len(source) == 1
    return source[0]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"first_name":"Ada","email":"ada@example.com","phone_1":"5125550101","state":"TX"}'),
        ("application/x-www-form-urlencoded", b"first_name=Ada&email=ada%40example.com&phone_1=5125550101&state=TX"),
        (
            "application/xml",
            b"<lead><first_name>Ada</first_name><email>ada@example.com</email>"
            b"<phone_1>5125550101</phone_1><state>TX</state></lead>",
        ),
        (
            "text/xml; charset=utf-8",
            b"<lead><first_name>Ada</first_name><email>ada@example.com</email>"
            b"<phone_1>5125550101</phone_1><state>TX</state></lead>",
        ),
    ],
)
def test_submit_creates_a_lead_and_its_events(sandbox: RunningSandbox, content_type: str, body: bytes) -> None:
    response = httpx.post(
        sandbox.submit_url(), content=body, headers={"Content-Type": content_type, "Accept": "application/json"}
    )
    assert response.status_code == 201
    answer = response.json()
    assert set(answer) == {"outcome", "reason", "lead", "price"}
    assert answer["outcome"] in ("success", "failure", "error")
    lead_id = answer["lead"]["id"]
    source = _source_event(sandbox, lead_id)
    assert source["outcome"] == answer["outcome"]
    assert source["vars"]["lead"]["first_name"] == "Ada" and source["vars"]["lead"]["state"] == "TX"
    request = source["request"]
    assert request["method"] == "POST" and request["body"] == body.decode()
    assert request["headers"]["Content-Type"] == content_type
    assert request["uri"].endswith(sandbox.submit_url().split(sandbox.url)[1])
    assert source["response"]["status"] == 201
    assert decode(source["response"]["body"])["lead"]["id"] == lead_id
    others = [e for e in sandbox.sandbox_events() if e["vars"]["lead"]["id"] == lead_id and e["type"] != "source"]
    assert {e["type"] for e in others} <= {"recipient", "filter", "retry"} and others


def test_query_fields_merge_over_the_body_and_trustedform_is_renamed(sandbox: RunningSandbox) -> None:
    url = sandbox.submit_url() + "?state=CO&xxTrustedFormCertUrl=https://cert.trustedform.com/abc"
    response = httpx.post(url, json=LEAD)
    assert response.status_code == 201
    lead = _source_event(sandbox, response.json()["lead"]["id"])["vars"]["lead"]
    assert lead["state"] == "CO"
    assert lead["trustedform_cert_url"] == "https://cert.trustedform.com/abc"
    assert "xxTrustedFormCertUrl" not in lead


def test_form_dot_keys_become_nested(sandbox: RunningSandbox) -> None:
    body = "email=b%40example.com&phone_1=5125550102&address.city=Austin&address.state=TX"
    response = httpx.post(
        sandbox.submit_url(), content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    lead = _source_event(sandbox, response.json()["lead"]["id"])["vars"]["lead"]
    assert lead["address"] == {"city": "Austin", "state": "TX"}


def test_get_with_query_string_submits_too(sandbox: RunningSandbox) -> None:
    response = httpx.get(sandbox.submit_url(), params={"email": "c@example.com", "phone_1": "5125550103"})
    assert response.status_code == 201


def test_missing_required_fields_fail_acceptance_criteria_with_201(sandbox: RunningSandbox) -> None:
    response = httpx.post(sandbox.submit_url(), json={"first_name": "NoContact"})
    assert response.status_code == 201
    assert response.json()["outcome"] == "failure"
    assert response.json()["reason"] == "Email and phone are required"


def test_xml_answer_when_asked(sandbox: RunningSandbox) -> None:
    response = httpx.post(sandbox.submit_url(), json=LEAD, headers={"Accept": "application/xml"})
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/xml")
    assert response.text.startswith('<?xml version="1.0"?><result><outcome>')


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_with_allow(sandbox: RunningSandbox, method: str) -> None:
    response = httpx.request(method, sandbox.submit_url())
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"


def test_body_without_content_type_is_415(sandbox: RunningSandbox) -> None:
    request = httpx.Request("POST", sandbox.submit_url(), content=b"email=x")
    assert "Content-Type" not in request.headers
    with httpx.Client() as client:
        response = client.send(request)
    assert response.status_code == 415
    assert response.headers["content-type"].startswith("text/plain")


def test_unsupported_content_type_or_accept_is_406(sandbox: RunningSandbox) -> None:
    assert httpx.post(sandbox.submit_url(), content=b"x", headers={"Content-Type": "text/csv"}).status_code == 406
    assert httpx.post(sandbox.submit_url(), json=LEAD, headers={"Accept": "image/png"}).status_code == 406


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/xml", b"<lead><email>"), ("application/json", b"{nope"), ("application/json", b"[1,2]")],
)
def test_unparseable_body_is_400(sandbox: RunningSandbox, content_type: str, body: bytes) -> None:
    response = httpx.post(sandbox.submit_url(), content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")


def test_unknown_flow_or_source_is_404(sandbox: RunningSandbox) -> None:
    response = httpx.post(f"{sandbox.url}/flows/{'0' * 24}/sources/{'1' * 24}/submit", json=LEAD)
    assert response.status_code == 404


def test_submissions_are_recorded_for_replay_checks(sandbox: RunningSandbox) -> None:
    before = len(sandbox.sandbox.submissions)
    httpx.post(sandbox.submit_url(), json=LEAD)
    listing = sandbox.get("/_sandbox/submissions").json()
    assert len(listing) == before + 1
    assert listing[-1]["body"] == httpx.Request("POST", "http://x", json=LEAD).content.decode()
