"""One retry policy for every HTTP stack: the API's GETs (``HttpClient``, httpx), replay's POSTs (``Sender``,
http.client) and object reads (``ObjectGetter``) retry the same statuses, from ``RetryPolicy.retry_statuses``;
a POST, which is not safe to repeat, only on those that prove it was not taken (``not_taken_statuses``), the
others only with ``retry_unknown``. Each against a real HTTP server on loopback answering statuses in turn."""

from __future__ import annotations

import pytest

from firehose.errors import ApiStatusError
from firehose.http import HttpClient, ObjectGetter, RetryPolicy, Sender
from tests.functional.servers import in_turn, serving

DEFAULT = RetryPolicy(max_attempts=3, backoff_base_seconds=0.0)
WITHOUT_502 = RetryPolicy(max_attempts=3, backoff_base_seconds=0.0, retry_statuses=frozenset({429, 503}))
WITH_501 = RetryPolicy(max_attempts=3, backoff_base_seconds=0.0, retry_statuses=DEFAULT.retry_statuses | {501})


def api_get(policy: RetryPolicy, *statuses: int) -> tuple[str, int]:
    """What the API's GET made of ``statuses`` in turn: ``ok`` or the status it failed with; and the attempts."""
    handler, seen = in_turn(*statuses)
    with serving(handler) as url, HttpClient(url, auth=("API", "k"), retry=policy, sleep=lambda _: None) as client:
        try:
            client.get_json("/events")
        except ApiStatusError as exc:
            return f"HTTP {exc.status}", len(seen)
        except Exception as exc:  # RetriesExhausted: the last error's status
            return f"HTTP {exc.last_error.status}", len(seen)  # type: ignore[attr-defined]
        return "ok", len(seen)


def replay_send(policy: RetryPolicy, *statuses: int, retry_unknown: bool = False) -> tuple[str, int | None, int]:
    """What replay's POST made of ``statuses`` in turn: the delivery's state and status, and the attempts."""
    handler, seen = in_turn(*statuses)
    with serving(handler) as url, Sender(retry=policy, retry_unknown=retry_unknown, sleep=lambda _: None) as sender:
        delivery = sender.deliver("POST", f"{url}/flows/F/sources/S/submit", [("Content-Type", "text/plain")], b"x")
    return delivery.state, delivery.status, len(seen)


def store_read(policy: RetryPolicy, *statuses: int) -> tuple[int, int]:
    handler, seen = in_turn(*statuses)
    with serving(handler) as url:
        getter = ObjectGetter(url, retry=policy, sleep=lambda _: None)
        try:
            answer = getter.get("/bucket/key", lambda: [("Host", "store")], where="bucket/key")
        finally:
            getter.close()
    return answer.status, len(seen)


def test_502_then_200_the_get_is_retried_the_post_is_unknown() -> None:
    assert api_get(DEFAULT, 502) == ("ok", 2)
    assert store_read(DEFAULT, 502) == (200, 2)
    assert replay_send(DEFAULT, 502) == ("unknown", 502, 1)
    assert replay_send(DEFAULT, 502, retry_unknown=True) == ("answered", 200, 2)


@pytest.mark.parametrize("status", [429, 503])
def test_not_taken_statuses_are_retried_by_every_stack(status: int) -> None:
    assert api_get(DEFAULT, status) == ("ok", 2)
    assert store_read(DEFAULT, status) == (200, 2)
    assert replay_send(DEFAULT, status) == ("answered", 200, 2)


def test_a_policy_without_502_retries_it_nowhere() -> None:
    assert api_get(WITHOUT_502, 502) == ("HTTP 502", 1)
    assert store_read(WITHOUT_502, 502) == (502, 1)
    assert replay_send(WITHOUT_502, 502, retry_unknown=True) == ("unknown", 502, 1)
    assert replay_send(WITHOUT_502, 503) == ("answered", 200, 2)  # the statuses left still are


def test_a_policy_with_501_retries_it_everywhere_but_a_post_only_when_told() -> None:
    assert api_get(DEFAULT, 501) == ("HTTP 501", 1)
    assert api_get(WITH_501, 501) == ("ok", 2)
    assert store_read(WITH_501, 501) == (200, 2)
    assert replay_send(WITH_501, 501) == ("unknown", 501, 1)
    assert replay_send(WITH_501, 501, retry_unknown=True) == ("answered", 200, 2)


def test_every_stack_gives_up_after_max_attempts() -> None:
    assert api_get(DEFAULT, 503, 503, 503) == ("HTTP 503", 3)
    assert store_read(DEFAULT, 503, 503, 503) == (503, 3)
    assert replay_send(DEFAULT, 503, 503, 503) == ("answered", 503, 3)
    assert replay_send(DEFAULT, 500, 502, 504, retry_unknown=True) == ("unknown", 504, 3)
