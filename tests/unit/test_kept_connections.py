"""A worker running slice after slice keeps its API client and stores (``keep_connections``): lent to one user at
a time, again to the next that opens the same, never across settings or credentials, closed by ``close_kept``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from firehose.config import ApiSettings, Settings
from firehose.connections import api_client, close_kept, keep_connections, open_store
from firehose.secret import Secret


def test_a_worker_lends_what_a_slice_closed_to_the_next_and_never_one_to_two_users(tmp_path: Path) -> None:
    settings = Settings(api=ApiSettings(url="http://127.0.0.1:9", api_key=Secret("key-1")))
    folder = tmp_path.as_uri()
    keep_connections()
    try:
        first = api_client(settings)
        first.close()  # a slice done
        again = api_client(settings)
        assert again is first, "the next slice gets the same client, its connections open"
        at_once = api_client(settings)
        assert at_once is not again, "a client lent is not lent twice"
        rotated = api_client(replace(settings, api=replace(settings.api, api_key=Secret("key-2"))))
        assert rotated is not first and rotated is not at_once, "another key, another client"
        for client in (again, at_once, rotated):
            client.close()

        store = open_store(folder, settings)
        store.write("a.json", b"{}")
        before = store.requests.snapshot()
        store.close()
        same = open_store(folder, settings)
        assert same is store and same.read("a.json") == b"{}"
        assert same.requests.snapshot() != before, "one counter: a slice counts its requests as a difference"
        assert open_store(folder, settings) is not same, "a store lent is not lent twice"
    finally:
        close_kept()
    assert first._client.is_closed, "closed when the worker ends"
    fresh = api_client(settings)
    assert fresh is not first, "nothing kept after close_kept"
    fresh.close()
    assert fresh._client.is_closed, "not kept: closed as ever"
