"""Replay's pure parts: bodies by content type, rebuilding a request, the diff and its redaction, the rate
limiter, and reading a submit's answer."""

from __future__ import annotations

import base64
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from firehose import payload
from firehose.errors import DataError, UsageError
from firehose.replaying.diff import request_diff
from firehose.replaying.request import Edits, Target, prepare
from firehose.replaying.send import RateLimiter, read_answer
from firehose.report.diffs import diff_lines
from firehose.secret import Secret

FLOW, SOURCE = "65a51e40f610ae996f24fceb", "65a51e40f610ae996f24fce6"
ORIGINAL = f"https://app.leadconduit.com/flows/{FLOW}/sources/{SOURCE}/submit"


def source_event(body: str, content_type: str, *, uri: str = ORIGINAL, method: str = "POST") -> dict[str, Any]:
    return {
        "id": "6b06dbfea55055783f30ae96",
        "type": "source",
        "outcome": "error",
        "vars": {"lead": {"id": "6b06dbfda55055783f30ae93"}, "flow": {"id": FLOW}, "source": {"id": SOURCE}},
        "request": {
            "method": method,
            "uri": uri,
            "headers": {
                "Content-Type": content_type,
                "Authorization": "Basic c2VjcmV0OnNlY3JldA==",
                "X-Api-Key": "vendor-secret",
                "Cookie": "session=abc",
                "X-Forwarded-For": "203.0.113.9",
                "Connection": "keep-alive",
                "Content-Length": str(len(body)),
                "User-Agent": "LeadVendor/2.1",
            },
            "body": body,
        },
    }


JSON_BODY = '{"email": "ann@example.com",  "state": "TX", "lead": {"phone": "5125550100"}}'
FORM_BODY = "email=ann%40example.com&state=TX&state=NM&zip=78701"
XML_BODY = '<?xml version="1.0"?><lead><email>ann@example.com</email><state>TX</state></lead>'


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (JSON_BODY, "application/json", {"email": "ann@example.com", "state": "TX", "lead.phone": "5125550100"}),
        (
            FORM_BODY,
            "application/x-www-form-urlencoded",
            {"email": "ann@example.com", "state[0]": "TX", "state[1]": "NM", "zip": "78701"},  # a list, as LC reads it
        ),
        (XML_BODY, "text/xml; charset=utf-8", {"email": "ann@example.com", "state": "TX"}),
    ],
)
def test_fields_read_each_content_type(body: str, content_type: str, expected: dict[str, str]) -> None:
    assert payload.fields(payload.kind_of(content_type), body) == expected


def test_an_unedited_request_keeps_the_stored_body_byte_for_byte_and_drops_credentials_and_hop_headers() -> None:
    prepared = prepare(source_event(JSON_BODY, "application/json"), Target(url="http://127.0.0.1:9/"), Edits())
    assert prepared.body == JSON_BODY  # two spaces and all: not re-serialized
    names = {name.lower() for name, _ in prepared.headers}
    assert names == {"content-type", "user-agent", "accept"}
    assert dict(prepared.headers)["Accept"] == "application/json"
    assert prepared.url == f"http://127.0.0.1:9/flows/{FLOW}/sources/{SOURCE}/submit"  # bare host keeps the path


def test_targets_full_url_other_flow_and_path_only_original() -> None:
    event = source_event("a=1", "application/x-www-form-urlencoded", uri=f"/flows/{FLOW}/sources/{SOURCE}/submit?x=1")
    base = Target(base_url="http://lc.test")
    assert prepare(event, base, Edits()).url == f"http://lc.test/flows/{FLOW}/sources/{SOURCE}/submit?x=1"
    other = Target(flow_id="f2", source_id="s2", base_url="http://lc.test")
    assert prepare(event, other, Edits()).url == "http://lc.test/flows/f2/sources/s2/submit?x=1"
    fixed = Target(url="http://sink.test/in")
    assert prepare(event, fixed, Edits()).url == "http://sink.test/in?x=1"
    with pytest.raises(UsageError, match="--target and --to-flow"):
        Target(url="http://a", flow_id="f")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(JSON_BODY, "application/json"), (FORM_BODY, "application/x-www-form-urlencoded"), (XML_BODY, "application/xml")],
)
def test_set_unset_and_mark_test_in_each_content_type(body: str, content_type: str) -> None:
    edits = Edits(sets=(("state", "CA"),), unsets=("email",), mark_test=True)
    prepared = prepare(source_event(body, content_type), Target(), edits)
    fields = payload.fields(payload.kind_of(content_type), prepared.body)
    assert fields["state"] == "CA" and "email" not in fields and fields["is_test"] == "true"
    assert "state[1]" not in fields  # a repeated form key is set once, not left with its old second value


def test_json_edits_nest_and_is_test_is_a_boolean() -> None:
    edits = Edits(sets=(("lead.phone", "5125550199"),), mark_test=True)
    body = json.loads(prepare(source_event(JSON_BODY, "application/json"), Target(), edits).body)
    assert body["lead"] == {"phone": "5125550199"} and body["is_test"] is True


def test_a_field_in_the_query_string_is_edited_there_since_the_query_wins() -> None:
    event = source_event("state=TX", "application/x-www-form-urlencoded", uri=f"{ORIGINAL}?state=TX&src=ad")
    prepared = prepare(event, Target(), Edits(sets=(("state", "CA"),)))
    assert prepared.url.endswith("?state=CA&src=ad") and prepared.body == "state=TX"


def test_a_source_api_key_is_sent_as_basic_auth_and_never_shown() -> None:
    prepared = prepare(source_event("a=1", "application/x-www-form-urlencoded"), Target(), Edits(), Secret("k3y"))
    assert dict(prepared.headers)["Authorization"] == "Basic " + base64.b64encode(b"API:k3y").decode()
    diff = request_diff(prepared, include_pii=True)
    assert (
        "k3y" not in json.dumps(diff) and "c2VjcmV0" not in json.dumps(diff) and "vendor-secret" not in json.dumps(diff)
    )


def test_the_diff_redacts_lead_data_unless_asked_and_shows_what_the_operator_set() -> None:
    edits = Edits(sets=(("state", "CA"),), mark_test=True)
    prepared = prepare(source_event(JSON_BODY, "application/json"), Target(url="http://sink.test"), edits)
    hidden = "\n".join(diff_lines(request_diff(prepared, edits=edits)))
    assert "TX" not in hidden and "203.0.113.9" not in hidden
    assert "body ~ state: *** -> CA" in hidden and "body + is_test: true" in hidden
    assert "header - Authorization: ***" in hidden and "header - X-Forwarded-For: ***" in hidden
    shown = "\n".join(diff_lines(request_diff(prepared, include_pii=True, edits=edits)))
    assert "body ~ state: TX -> CA" in shown and "X-Forwarded-For: 203.0.113.9" in shown
    assert "c2VjcmV0" not in shown and "session=abc" not in shown  # credentials never, even with PII


def test_query_values_in_urls_are_redacted() -> None:
    event = source_event(
        "", "application/x-www-form-urlencoded", uri=f"{ORIGINAL}?email=ann%40example.com", method="GET"
    )
    diff = request_diff(prepare(event, Target(url="http://sink.test"), Edits()))
    assert diff["url"]["to"].endswith("?email=***") and "ann" not in json.dumps(diff)


def test_other_event_types_and_missing_requests_are_refused_by_id() -> None:
    recipient = {**source_event("a=1", "application/json"), "type": "recipient"}
    with pytest.raises(DataError, match="event 6b06dbfea55055783f30ae96 is a recipient event"):
        prepare(recipient, Target(), Edits())
    bare = {**source_event("a=1", "application/json"), "request": None}
    with pytest.raises(DataError, match="6b06dbfea55055783f30ae96 has no stored request"):
        prepare(bare, Target(), Edits())


def test_an_opaque_body_is_never_edited() -> None:
    with pytest.raises(DataError, match="cannot apply the edits"):
        prepare(source_event("raw", "text/plain"), Target(), Edits(mark_test=True))


def test_the_rate_limiter_spaces_starts_evenly() -> None:
    now = [100.0]
    starts: list[float] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(50, clock=lambda: now[0], sleep=sleep)
    for _ in range(200):
        limiter()
        starts.append(now[0])
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    spacing = 1.02 / 50  # 2% wider than 1/R, against jitter
    assert min(gaps) == pytest.approx(spacing) and starts[-1] - starts[0] == pytest.approx(199 * spacing)
    with pytest.raises(UsageError):
        RateLimiter(0)


def test_read_answer_takes_json_the_documented_list_and_xml() -> None:
    plain = b'{"outcome":"success","lead":{"id":"abc"},"price":0}'
    assert read_answer(plain, "application/json") == ("success", "abc", None)
    listed = json.dumps([{"request": {}, "response": {"status": 201, "body": plain.decode()}}]).encode()
    assert read_answer(listed, "application/json") == ("success", "abc", None)
    xml = b"<result><outcome>failure</outcome><reason>bad</reason><lead><id>x1</id></lead></result>"
    assert read_answer(xml, "application/xml") == ("failure", "x1", "bad")
    assert read_answer(b"not json", "text/plain") == (None, None, None)


def test_selection_filters_by_time_flow_source_outcome_reason_and_rules() -> None:
    from datetime import UTC, datetime

    from firehose.replaying.selection import Selection

    event = {**source_event("a=1", "application/json"), "reason": "Lead is from a blocked state"}
    event["vars"]["lead"]["state"] = "TX"
    made = datetime.fromtimestamp(int(event["id"][:8], 16), tz=UTC)
    assert Selection().matches(event)
    assert Selection(start=made, end=made, flows=(FLOW,), sources=(SOURCE,), outcomes=("error",)).matches(event)
    assert not Selection(flows=("other",)).matches(event)
    assert not Selection(sources=("other",)).matches(event)
    assert not Selection(outcomes=("success",)).matches(event)
    assert Selection(reason="blocked").matches(event) and not Selection(reason="^Lead is fine").matches(event)
    assert Selection(rules=({"lhv": "lead.state", "op": "is equal to", "rhv": "TX"},)).matches(event)
    assert not Selection(rules=({"lhv": "lead.state", "op": "is equal to", "rhv": "CA"},)).matches(event)
    assert not Selection().matches({**event, "type": "recipient"})
    with pytest.raises(UsageError, match="--reason"):
        Selection(reason="(")
    query = Selection(flows=(FLOW,), outcomes=("error", "failure")).api_query()
    assert {"lhv": "type", "op": "is equal to", "rhv": "source"} in query.all_rules()
    assert {"lhv": "flow.id", "op": "is included in", "rhv": [FLOW]} in query.all_rules()


# -- the safety rules, one by one ----------------------------------------------------------------------------
def test_without_target_only_leadconduit_is_sent_to_and_other_hosts_are_refused_by_name() -> None:
    configured = Target(base_url="http://127.0.0.1:9000")
    assert configured.resolve(ORIGINAL) == f"http://127.0.0.1:9000/flows/{FLOW}/sources/{SOURCE}/submit"
    assert configured.resolve("/flows/a/sources/b/submit?x=1") == "http://127.0.0.1:9000/flows/a/sources/b/submit?x=1"
    for foreign in ("https://evil.example/flows/a/sources/b/submit", "http://127.0.0.2:9000/x", "//evil.example/x"):
        with pytest.raises(DataError, match="not LeadConduit's"):
            configured.resolve(foreign)
    other_flow = Target(flow_id="f" * 24, source_id="s" * 24, base_url="http://127.0.0.1:9000")
    with pytest.raises(DataError, match=r"evil\.example"):
        other_flow.resolve("https://evil.example/flows/a/sources/b/submit")
    with pytest.raises(UsageError, match="go together"):
        Target(flow_id="f" * 24)
    with pytest.raises(UsageError, match="--target"):
        Target(url="ftp://somewhere")


def test_the_source_key_goes_only_to_the_named_host_and_stored_credentials_never_leave() -> None:
    event = source_event(JSON_BODY, "application/json", uri=ORIGINAL + "?api_key=stored-secret&state=TX")
    prepared = prepare(event, Target(base_url="http://127.0.0.1:9000"), Edits(), Secret("partner"))
    assert "stored-secret" not in prepared.url and "state=TX" in prepared.url
    assert dict(prepared.headers)["Authorization"] == "Basic " + base64.b64encode(b"API:partner").decode()
    assert prepared.shown_url() == f"http://127.0.0.1:9000/flows/{FLOW}/sources/{SOURCE}/submit?state=***"
    kept = prepare(event, Target(base_url="http://127.0.0.1:9000"), Edits(), keep_query_credentials=True)
    assert "api_key=stored-secret" in kept.url and "stored-secret" not in kept.shown_url(include_pii=True)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"method": "POST\r\nX-Injected: 1"}, "is not an HTTP method"),
        ({"headers": {"Content-Type": "application/json", "X-Note": "a\r\nX-Injected: 1"}}, "line break"),
        ({"headers": {"Content-Type": "application/json", "X-Name": "Łukasz"}}, "cannot carry"),
        ({"headers": {"Content-Type": "application/json", "Bad Name": "x"}}, "not an HTTP header name"),
        ({"uri": ORIGINAL + "?a=b c"}, "spaces, control"),
    ],
)
def test_requests_http_cannot_carry_are_refused_before_sending(change: dict[str, Any], reason: str) -> None:
    event = source_event(JSON_BODY, "application/json")
    event["request"].update(change)
    with pytest.raises(DataError, match=f"event {event['id']}: .*{reason}"):
        prepare(event, Target(url="http://127.0.0.1:9000"), Edits())


def test_xml_edits_refuse_element_names_xml_cannot_take() -> None:
    for name in ("a b", "1x", "a/b", "x[1]", "ns:tag"):
        with pytest.raises(DataError, match="cannot be an XML element path"):
            payload.edit("xml", XML_BODY, [(name, "1")], [])
    assert "<city>Austin</city>" in payload.edit("xml", XML_BODY, [("city", "Austin")], [])


def _delivery(status: int | None, state: str = "answered", **extra: Any) -> Any:
    from firehose.http import Delivery

    return Delivery(state, 1, status, b'{"outcome":"success","lead":{"id":"n1"}}', "application/json", **extra)


def test_only_2xx_or_a_303_to_redir_url_is_sent() -> None:
    from firehose.replaying.plan import ReplayOptions
    from firehose.replaying.send import result_of

    options = ReplayOptions(Target(url="http://127.0.0.1:9000"))
    plain = prepare(source_event(JSON_BODY, "application/json"), options.target, Edits())
    with_redir = prepare(
        source_event(JSON_BODY, "application/json", uri=ORIGINAL + "?redir_url=https%3A%2F%2Fx.example"),
        options.target,
        Edits(),
    )
    assert result_of(plain, _delivery(201), 0, options).status == "sent"
    assert result_of(with_redir, _delivery(303), 0, options).status == "sent"
    for status in (301, 302, 303, 307, 308, 400, 404, 429, 503):
        assert result_of(plain, _delivery(status), 0, options).status == "failed", status
    assert result_of(plain, _delivery(504, "unknown"), 0, options).status == "unknown"
    assert result_of(plain, _delivery(None, "unsent"), 0, options).status == "failed"


def test_redirects_are_followed_only_when_asked_and_only_on_the_same_origin() -> None:
    from firehose.http import Sender

    follow, refuse = Sender(follow_redirects=True), Sender()
    here = "http://127.0.0.1:9000/flows/a/sources/b/submit"
    assert follow._redirect_to(here, _delivery(307), "/moved") == "http://127.0.0.1:9000/moved"
    assert follow._redirect_to(here, _delivery(308), "http://127.0.0.1:9000/m?x=1") == "http://127.0.0.1:9000/m?x=1"
    assert refuse._redirect_to(here, _delivery(307), "/moved") is None
    for elsewhere in ("http://127.0.0.1:9001/m", "https://127.0.0.1:9000/m", "http://127.0.0.2:9000/m", "//evil/m"):
        assert follow._redirect_to(here, _delivery(307), elsewhere) is None, elsewhere
    assert follow._redirect_to(here, _delivery(302), "/moved") is None, "a 302 turns POST into GET: never followed"


@pytest.mark.parametrize("timeout", [-1.0, 0.0, float("nan"), float("inf"), 1e9])
def test_a_sender_refuses_timeouts_that_cannot_work(timeout: float) -> None:
    from firehose.http import Sender

    with pytest.raises(UsageError, match="--timeout"):
        Sender(timeout_seconds=timeout)


def test_a_request_is_its_method_path_query_and_body_not_its_host() -> None:
    from firehose.replaying.request import identity

    a = identity("POST", "http://127.0.0.1:9/flows/f/sources/s/submit?x=1", "json", '{"a": 1}')
    assert a == identity("POST", "https://app.leadconduit.com/flows/f/sources/s/submit?x=1", "json", '{"a": 1}')
    assert a["request"] != identity("POST", "http://h/flows/f/sources/s/submit?x=2", "json", '{"a": 1}')["request"]
    assert a["request"] != identity("GET", "http://h/flows/f/sources/s/submit?x=1", "json", '{"a": 1}')["request"]
    assert a["fields"] == identity("POST", "http://h/flows/f/sources/s/submit?x=1", "json", '{"a":1}')["fields"]
    assert "fields" not in identity("GET", "http://h/flows/f/sources/s/submit", None, ""), "an empty GET has none"


class _Events:
    """A stand-in for the LeadConduit client: the settler's decision only (the functional tests ask the sandbox)."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def iter_events(self, query: Any) -> Any:
        return iter(self.events)


def test_the_settler_never_takes_an_empty_request_for_a_lead_and_prefers_leads_made_after_the_claim() -> None:
    from datetime import UTC, datetime

    from firehose.replaying.request import identity
    from firehose.replaying.settle import Doubt, Settler

    url = "http://127.0.0.1:9/flows/f/sources/s/submit"
    claimed = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)  # in the past: the grace is over
    at = int(claimed.timestamp())

    def event(seconds: int, lead: str, uri: str, body: str = "") -> dict[str, Any]:
        return {"id": f"{seconds:08x}{lead}", "type": "source", "vars": {"lead": {"id": f"{seconds:08x}{lead}"}},
                "request": {"method": "GET", "uri": uri, "headers": {}, "body": body}}  # fmt: skip

    empty = Doubt("e1", url, claimed, identity("GET", url, None, ""))
    someone_else = Settler(_Events([event(at + 1, "a" * 16, url)]), url, grace_seconds=0)  # type: ignore[arg-type]
    assert someone_else.settle(empty).status == "unknown"
    with_fields = Doubt("e2", url + "?email=x%40y", claimed, identity("GET", url + "?email=x%40y", None, ""))
    before, after = event(at - 30, "b" * 16, url + "?email=x%40y"), event(at + 2, "c" * 16, url + "?email=x%40y")
    settled = Settler(_Events([before, after]), url, grace_seconds=0).settle(with_fields)  # type: ignore[arg-type]
    assert settled.status == "sent" and settled.new_lead_id == after["vars"]["lead"]["id"]
    nothing = Settler(_Events([]), url, grace_seconds=0).settle(with_fields)  # type: ignore[arg-type]
    assert nothing.status == "failed" and "not received" in nothing.reason


def test_a_dead_letter_file_loses_only_the_leads_sent_to_leadconduit(tmp_path: Path) -> None:
    """Pruning once emptied a production dead-letter file after a rehearsal sent its leads to a sandbox; it also
    wrote through links. Only leads this ledger sent to the LeadConduit named are taken out."""
    import json
    import os
    import stat
    from datetime import UTC, datetime

    from firehose.replaying.dead_letters import prune_dead_letters
    from firehose.state import LedgerEntry, ReplayLedger, StateDB

    production, sandbox = "https://app.leadconduit.com", "http://127.0.0.1:8700"
    now = datetime(2026, 11, 30, tzinfo=UTC)

    def entry(event_id: str, target: str, status: str) -> LedgerEntry:
        return LedgerEntry(event_id, None, "f", f"{target}/flows/f/sources/s/submit", status, 1, None, "error",
                           None, None, None, now)  # fmt: skip

    ids = [f"6ae18ae9a55055783f30ae{n:02x}" for n in range(4)]
    lines = [json.dumps({"event_id": i, "status": "failed"}).encode() + b"\n" for i in ids] + [b"not json\n"]
    dead = tmp_path / "dead.ndjson"
    dead.write_bytes(b"".join(lines))
    dead.chmod(0o600)
    with StateDB(tmp_path / "state.sqlite") as state:
        ledger = ReplayLedger(state)
        ledger.write([entry(ids[0], production, "sent"), entry(ids[1], sandbox, "sent"),
                      entry(ids[2], production, "failed")])  # fmt: skip
        link = tmp_path / "link.ndjson"
        link.symlink_to(dead)
        assert prune_dead_letters(link, ledger, production) == 0, "a link is left alone"
        assert prune_dead_letters(dead, ledger, sandbox + "/") == 1  # the rehearsal's lead, for its own target
        dead.write_bytes(b"".join(lines))
        assert prune_dead_letters(dead, ledger, production) == 1
    assert dead.read_bytes() == b"".join(lines[1:]), "the sandbox's, the failed, the unknown and junk stay"
    assert stat.S_IMODE(os.stat(dead).st_mode) == 0o600 and not dead.is_symlink()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".dead")], "no temporary file left"


def test_replay_options_never_show_a_credential_in_their_repr() -> None:
    from firehose import ReplayOptions, Target

    options = ReplayOptions(
        target=Target(url="http://user:hunter2@flows.example/x?api_key=K3Y"),
        archives="az://container/events?sv=2024&sig=S1GNATURE",  # type: ignore[arg-type]  # as an untyped caller writes it
        ledger="az://ledger/claims?sig=L3DGER",
    )
    shown = repr(options) + repr(options.target)
    for secret in ("hunter2", "K3Y", "S1GNATURE", "L3DGER"):
        assert secret not in shown, shown
    assert options.archives == ("az://container/events?sv=2024&sig=S1GNATURE",), "one URL, not its characters"


def test_replay_options_refuse_what_the_command_line_refuses() -> None:
    from firehose import FirehoseError, ReplayOptions

    with pytest.raises(FirehoseError, match="--max must be at least 1"):
        ReplayOptions(max_count=0)
    with pytest.raises(FirehoseError, match="--confirm-over must be at least 0"):
        ReplayOptions(confirm_over=-1)
