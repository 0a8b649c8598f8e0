"""Generated events validate against the Event schemas of LeadConduit's OpenAPI file (2025).

``tests/data/openapi-2025.yaml`` is a copy of ``../shared/leadconduit/openapi-2025.yaml``. Two parts of that
file contradict LeadConduit's own examples, so they are read with the errata below; a test shows each erratum
is needed (the raw schema rejects the documented shape) and that nothing else is relaxed.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from firehose.ids import time_of
from firehose.sandbox.generator import generate, make_flows

SPEC = Path(__file__).parent.parent / "data" / "openapi-2025.yaml"
EVENT_TYPES = ("source", "recipient", "filter", "feedback-received", "feedback-sent", "retry")
UNTIL = datetime(2026, 11, 20, tzinfo=UTC)
NAMESPACE = re.compile(r"^\^([a-z]+)\\\.$")


@cache
def _spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC.read_text())


def apply_errata(spec: dict[str, Any]) -> dict[str, Any]:
    """The two readings we apply to the OpenAPI file, each against LeadConduit's own documents.

    1. Variables schemas key their namespaces as ``patternProperties: {"^lead\\.": ...}`` with
       ``additionalProperties: false``. That matches only keys such as ``"lead.email"`` whose values are
       objects, which no document shows; the documents use nested namespaces (``vars.lead.id``, facts.md §2.4).
       Read ``^lead\\.`` as the namespace key ``lead``, and the catch-all ``^.+\\.`` (appended data) as "any
       other namespace, an object".
    2. ``HttpResponse.required`` lists ``method`` and ``uri``, copied from ``HttpRequest``; a response has
       neither (the list-all-events example's ``response`` has no such fields).
    """
    fixed = copy.deepcopy(spec)
    schemas = fixed["components"]["schemas"]
    for schema in schemas.values():
        patterns = schema.get("patternProperties") if isinstance(schema, dict) else None
        if not patterns or schema.get("additionalProperties") is not False:
            continue
        renamed: dict[str, Any] = {}
        for key, value in patterns.items():
            match = NAMESPACE.match(key)
            if match:
                renamed[f"^{match.group(1)}$"] = value
            elif key == "^.+\\.":
                schema["additionalProperties"] = {"type": "object"}
            else:
                renamed[key] = value
        schema["patternProperties"] = renamed
    response = schemas["HttpResponse"]
    response["required"] = [name for name in response["required"] if name not in ("method", "uri")]
    return fixed


def validator(spec: dict[str, Any], schema_name: str = "Event") -> Draft202012Validator:
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    return Draft202012Validator(root)


@cache
def _sample() -> dict[str, list[dict[str, Any]]]:
    by_type: dict[str, list[dict[str, Any]]] = {t: [] for t in EVENT_TYPES}
    for event in generate(11, leads=400, days=30, until=UNTIL):
        if len(by_type[event["type"]]) < 25:
            by_type[event["type"]].append(event)
    return by_type


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_a_sample_of_every_type_validates(event_type: str) -> None:
    events = _sample()[event_type]
    assert events, f"the generator made no {event_type} events"
    check = validator(apply_errata(_spec()))
    for event in events:
        errors = sorted(check.iter_errors(event), key=lambda e: list(e.path))
        assert not errors, f"{event_type} event {event['id']}: {errors[0].message} at {list(errors[0].path)}"


def test_each_erratum_is_needed() -> None:
    source = _sample()["source"][0]
    raw = validator(_spec(), "source-event")
    messages = " ".join(error.message for error in raw.iter_errors(source))
    assert "'method' is a required property" in messages  # erratum 2
    nested_only = {**source, "response": {**source["response"], "method": "POST", "uri": "x"}}
    errors = list(raw.iter_errors(nested_only))
    assert errors and all(
        list(e.path) == ["vars"] and "do not match any of the regexes" in e.message for e in errors
    ), "erratum 1: the raw schema rejects nested vars, and only them"
    assert not list(validator(apply_errata(_spec()), "source-event").iter_errors(source))


def test_errata_relax_nothing_else() -> None:
    check = validator(apply_errata(_spec()))
    event = copy.deepcopy(_sample()["filter"][0])
    event["outcome"] = "success"  # filter events continue or stop
    assert list(check.iter_errors(event))
    event = copy.deepcopy(_sample()["source"][0])
    event["request"]["surprise"] = True  # HttpRequest allows no other fields
    assert list(check.iter_errors(event))
    missing_id = {k: v for k, v in _sample()["recipient"][0].items() if k != "id"}
    assert list(check.iter_errors(missing_id))


def test_both_firehose_shapes_and_every_type_and_expiry() -> None:
    flows = make_flows(11)
    shapes = {("services" in flow.firehose) for flow in flows}
    assert shapes == {True, False}
    assert any(f.firehose.get("enabled") is False for f in flows)
    services = [f.firehose["services"] for f in flows if "services" in f.firehose]
    assert any(s["aws"]["enabled"] and s["azure"]["enabled"] for s in services)
    assert any(not s["aws"]["enabled"] for s in services) and any(not s["azure"]["enabled"] for s in services)
    for events in _sample().values():
        for event in events:
            expires = datetime.fromisoformat(event["expires_at"].replace("Z", "+00:00"))
            assert expires - time_of(event["id"]) == timedelta(days=90, milliseconds=expires.microsecond // 1000)


def test_same_seed_same_data_other_seed_other_data() -> None:
    first = list(generate(3, leads=40, days=5, until=UNTIL))
    again = list(generate(3, leads=40, days=5, until=UNTIL))
    other = list(generate(4, leads=40, days=5, until=UNTIL))
    assert first == again
    assert [e["id"] for e in first] != [e["id"] for e in other]


def test_leads_spread_over_the_days_asked_for() -> None:
    events = list(generate(5, leads=300, days=10, until=UNTIL))
    times = [time_of(e["vars"]["lead"]["id"]) for e in events]
    assert min(times) >= UNTIL - timedelta(days=10) and max(times) <= UNTIL
    assert max(times) - min(times) > timedelta(days=9)
    emails = {e["vars"]["lead"]["email"] for e in events if e["vars"]["lead"]["email"]}
    assert len(emails) > 250 and all(email.split("@")[1].startswith(("example.", "mail.example.")) for email in emails)
