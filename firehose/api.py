"""The LeadConduit client: pages through ``GET /events`` and fetches single events.

Built to LeadConduit's documents (``list-all-events``, OpenAPI 2025): the response is a bare JSON array, there
is no page token, so paging is a cursor on ``id``: ``sort=asc&limit=1000`` and ``after_id=<last id seen>``.
What we send is only what is documented (``--type`` and ``--outcome`` become ``rules``, not the undocumented
``type=`` parameter); what we read is taken tolerantly (unknown fields pass through untouched, a server that
caps ``limit`` lower than asked still pages correctly because paging stops only on an empty page).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from firehose.codec import encode, preview
from firehose.errors import ApiError, ApiStatusError, DataError, UsageError
from firehose.http import HttpClient, QueryParams
from firehose.ids import is_object_id

PAGE_SIZE_MAX = 1000
"""The largest ``limit`` ``GET /events`` accepts (documented)."""

EVENT_TYPES = ("source", "recipient", "filter", "feedback-received", "feedback-sent", "retry")
"""The ``type`` values of the OpenAPI ``Event`` discriminator."""

Event = dict[str, Any]
Rule = dict[str, Any]


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, milliseconds only when there are some: what ``date-time`` means."""
    moment = moment.astimezone(UTC)
    # The year by hand: strftime's %Y does not pad years before 1000 on Linux (year 1 came out as "1-01-01").
    text = f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}"
    if moment.microsecond:
        return f"{text}.{moment.microsecond // 1000:03d}Z"
    return f"{text}Z"


def _field_rule(field: str, values: Sequence[str]) -> Rule:
    if len(values) == 1:
        return {"lhv": field, "op": "is equal to", "rhv": values[0]}
    return {"lhv": field, "op": "is included in", "rhv": list(values)}


@dataclass(frozen=True)
class EventQuery:
    """Which events to ask ``GET /events`` for. Times are inclusive, ids exclusive, as documented."""

    start: datetime | None = None
    end: datetime | None = None
    after_id: str | None = None
    before_id: str | None = None
    rules: tuple[Rule, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.include and self.exclude:
            raise UsageError("--include and --exclude cannot be used together (LeadConduit refuses both)")
        for name in ("after_id", "before_id"):
            value = getattr(self, name)
            if value is not None and not is_object_id(value):
                raise UsageError(f"--{name.replace('_', '-')} {value!r} is not a 24-hex-digit event id")
        for event_type in self.types:
            if event_type not in EVENT_TYPES:
                raise UsageError(f"unknown event type {event_type!r}; known: {', '.join(EVENT_TYPES)}")
        if self.start and self.end and self.start > self.end:
            raise UsageError(f"--start {format_time(self.start)} is after --end {format_time(self.end)}")

    def all_rules(self) -> list[Rule]:
        """The caller's rules plus one rule each for ``types`` and ``outcomes``; rules in a list all apply."""
        rules = list(self.rules)
        if self.types:
            rules.append(_field_rule("type", self.types))
        if self.outcomes:
            rules.append(_field_rule("outcome", self.outcomes))
        return rules

    def params(self, *, after_id: str | None, limit: int, sort: str) -> list[tuple[str, str]]:
        """Query parameters for one page, in a stable order."""
        params: list[tuple[str, str]] = [("sort", sort), ("limit", str(limit))]
        if after_id:
            params.append(("after_id", after_id))
        if self.before_id:
            params.append(("before_id", self.before_id))
        if self.start:
            params.append(("start", format_time(self.start)))
        if self.end:
            params.append(("end", format_time(self.end)))
        rules = self.all_rules()
        if rules:
            params.append(("rules", encode(rules).decode()))
        include = list(self.include)
        if include and "id" not in include:
            include.insert(0, "id")  # the cursor needs every event's id
        params.extend(("include", name) for name in include)
        params.extend(("exclude", name) for name in self.exclude if name != "id")
        return params


class LeadConduit:
    """LeadConduit's Leads API over an ``HttpClient`` (which owns auth, retries and error translation)."""

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    def iter_events(
        self, query: EventQuery, *, page_size: int = PAGE_SIZE_MAX, max_events: int | None = None
    ) -> Iterator[Event]:
        """Yield matching events oldest first, each once, fetching one page at a time (memory stays flat).

        Paging stops at the first empty page. An event whose id is not above the cursor (a server that
        ignored ``after_id``, or overlapping pages) is skipped, not yielded twice; a page that does not move
        the cursor at all is an error rather than an endless loop.
        """
        if not 1 <= page_size <= PAGE_SIZE_MAX:
            raise UsageError(f"page size {page_size} is outside 1..{PAGE_SIZE_MAX}")
        if max_events is not None and max_events <= 0:
            return
        cursor = query.after_id
        yielded = 0
        while True:
            page = self._page(query.params(after_id=cursor, limit=page_size, sort="asc"))
            if not page:
                return
            advanced = False
            for event in page:
                raw_id = event.get("id")
                if not is_object_id(raw_id):
                    raise DataError(f"GET /events returned an event without a valid id: {preview(event)}")
                event_id = str(raw_id).lower()
                if cursor is not None and event_id <= cursor.lower():
                    continue
                cursor = event_id
                advanced = True
                yield event
                yielded += 1
                if max_events is not None and yielded >= max_events:
                    return
            if not advanced:
                raise ApiError(f"GET /events did not move past after_id={cursor}; stopping to avoid a loop")

    def _page(self, params: QueryParams) -> list[Event]:
        page = self.http.get_json("/events", params)
        if not isinstance(page, list):
            raise DataError(f"GET /events answered {type(page).__name__}, expected a JSON array of events")
        for event in page:
            if not isinstance(event, dict):
                raise DataError(f"GET /events returned a non-object item: {preview(event)}")
        return page

    def get_event(self, event_id: str) -> Event:
        """One event by id (``GET /events/{id}``); an unknown or expired id is a clear error."""
        if not is_object_id(event_id):
            raise UsageError(f"{event_id!r} is not a 24-hex-digit event id")
        try:
            event = self.http.get_json(f"/events/{event_id}")
        except ApiStatusError as exc:
            if exc.status == 404:
                raise ApiStatusError(
                    f"event {event_id} not found in LeadConduit (unknown, or expired after 90 days)",
                    status=404,
                    url=exc.url,
                ) from exc
            raise
        if not isinstance(event, dict):
            raise DataError(f"GET /events/{event_id} answered {type(event).__name__}, expected an event object")
        return event
