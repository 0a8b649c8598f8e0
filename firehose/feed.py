"""The events job as one call: ``events(query, settings)`` streams ``GET /events`` oldest first, as the settings
say to reach it (URL, key, timeout, retries), one page in memory at a time."""

from __future__ import annotations

from collections.abc import Iterator

from firehose.api import PAGE_SIZE_MAX, Event, EventQuery, LeadConduit
from firehose.config import Settings
from firehose.connections import api_client
from firehose.http import HttpClient


def events(
    query: EventQuery, settings: Settings, *, page_size: int = PAGE_SIZE_MAX, max_events: int | None = None
) -> Iterator[Event]:
    """The events ``query`` selects, oldest first, each once. The API key is checked here, before the first
    request (a ``ConfigError`` when none is set); the connection closes when the iterator is exhausted or
    closed. A failure part-way raises a ``FirehoseError`` after the events before it: resume with
    ``EventQuery(after_id=<the last id>)``."""
    client = api_client(settings)
    return _paged(client, query, page_size, max_events)


def _paged(client: HttpClient, query: EventQuery, page_size: int, max_events: int | None) -> Iterator[Event]:
    with client as http:
        yield from LeadConduit(http).iter_events(query, page_size=page_size, max_events=max_events)
