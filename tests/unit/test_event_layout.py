from __future__ import annotations

import pytest

from firehose.event import Destination, EventView, destinations, object_key

LEAD, EVENT = "63cc6f0e55254d7d1c4c3037", "63cc6f0e55254d7d1c4c3038"


@pytest.mark.parametrize(
    ("prefix", "key"),
    [
        ("", f"{LEAD}/{EVENT}.json"),
        ("events", f"events/{LEAD}/{EVENT}.json"),
        ("events/", f"events/{LEAD}/{EVENT}.json"),
        ("a/b", f"a/b/{LEAD}/{EVENT}.json"),
    ],
)
def test_object_key(prefix: str, key: str) -> None:
    assert object_key(prefix, LEAD, EVENT) == key


def test_legacy_shape_is_s3() -> None:
    found = destinations({"enabled": True, "credential_id": "c1", "bucket": "b", "prefix": "p"})
    assert found == [Destination("aws", "b", "p", "c1")]


def test_services_shape_each_enabled_on_its_own() -> None:
    firehose = {
        "enabled": True,
        "bucket": "legacy-ignored",
        "services": {
            "aws": {"enabled": False, "credential_id": "c1", "bucket": "b1", "prefix": ""},
            "azure": {"enabled": True, "credential_id": "c2", "bucket": "c", "prefix": "x/"},
        },
    }
    assert destinations(firehose) == [Destination("azure", "c", "x/", "c2")]
    assert [d.service for d in destinations(firehose, include_disabled=True)] == ["aws", "azure"]


def test_disabled_or_missing_firehose_has_no_destinations() -> None:
    assert destinations({"enabled": False, "bucket": "b"}) == []
    assert destinations(None) == [] and destinations({}) == []
    assert destinations({"enabled": False, "bucket": "b"}, include_disabled=True)[0].enabled is False


def test_lead_id_from_vars_then_from_the_source_response() -> None:
    assert EventView({"id": EVENT, "vars": {"lead": {"id": LEAD}}}).lead_id == LEAD
    from_response = {"id": EVENT, "vars": {}, "response": {"body": f'{{"outcome":"success","lead":{{"id":"{LEAD}"}}}}'}}
    assert EventView(from_response).lead_id == LEAD
    assert EventView({"id": EVENT, "response": {"body": "<xml/>"}}).lead_id is None
