from __future__ import annotations

import random

import httpx
import pytest

from firehose.errors import ApiStatusError, AuthError, RetriesExhausted
from firehose.http import HttpClient, RetryPolicy, parse_retry_after
from firehose.secret import redact_url


def test_backoff_grows_is_jittered_and_capped() -> None:
    policy = RetryPolicy(backoff_base_seconds=1, backoff_max_seconds=8)
    rng = random.Random(1)
    waits = [policy.wait_seconds(n, None, rng) for n in range(1, 8)]
    assert 0.5 <= waits[0] <= 1 and 1 <= waits[1] <= 2 and 2 <= waits[2] <= 4
    assert all(4 <= w <= 8 for w in waits[3:])


def test_retry_after_is_a_floor_up_to_its_cap() -> None:
    policy = RetryPolicy(backoff_base_seconds=0.1, retry_after_max_seconds=60)
    rng = random.Random(2)
    assert policy.wait_seconds(1, 5, rng) == 5
    assert policy.wait_seconds(1, 3600, rng) == 60


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


def test_redact_url_removes_user_info() -> None:
    assert redact_url("https://API:secret@app.leadconduit.com/events") == "https://app.leadconduit.com/events"


def _client(statuses: list[int], slept: list[float], attempts: int = 3) -> HttpClient:
    def handler(request: httpx.Request) -> httpx.Response:
        status = statuses.pop(0) if statuses else 200
        return httpx.Response(status, json=[] if status == 200 else {"error": "x"})

    return HttpClient(
        "http://lc.test",
        auth=("API", "k"),
        retry=RetryPolicy(max_attempts=attempts),
        sleep=slept.append,
        transport=httpx.MockTransport(handler),
    )


@pytest.mark.parametrize("status", [400, 404, 501])
def test_statuses_that_will_not_change_are_not_retried(status: int) -> None:
    slept: list[float] = []
    with pytest.raises(ApiStatusError) as caught, _client([status], slept) as client:
        client.get_json("/events")
    assert caught.value.status == status and slept == []


def test_401_is_an_auth_error_at_once() -> None:
    slept: list[float] = []
    with pytest.raises(AuthError), _client([401], slept) as client:
        client.get_json("/events")
    assert slept == []


def test_gives_up_after_max_attempts_keeping_the_last_error() -> None:
    slept: list[float] = []
    with pytest.raises(RetriesExhausted) as caught, _client([503, 502, 500], slept) as client:
        client.get_json("/events")
    assert caught.value.attempts == 3 and len(slept) == 2
    assert isinstance(caught.value.last_error, ApiStatusError) and caught.value.last_error.status == 500
