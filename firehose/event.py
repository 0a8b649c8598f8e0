"""A thin view over an event dict: its id, type, lead id, expiry, and where the firehose put it.

Where an event lives (facts.md §1.2, architecture.md §4): for each enabled destination named by the event's
``firehose`` property, the object ``<prefix>/<lead id>/<event id>.json``. Two shapes exist:

- legacy: ``{"enabled", "credential_id", "bucket", "prefix"}``, always S3;
- per service: ``{"enabled", "services": {"aws": {...}, "azure": {...}}}``, each service with its own
  ``enabled``, ``credential_id``, ``bucket`` (the container, for Azure) and ``prefix``.

Precedence when both are present is NOT DOCUMENTED; firehose reads ``services`` when it has any entry and the
legacy fields otherwise (a flow moved to services keeps its old fields, but they are no longer used).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from firehose.codec import decode
from firehose.errors import DataError
from firehose.ids import is_object_id, time_of

SERVICES = ("aws", "azure")


@dataclass(frozen=True)
class Destination:
    """One place the firehose writes an event to."""

    service: str  # "aws" or "azure" (or "file" when a run points at a directory)
    bucket: str  # the S3 bucket or the Azure container
    prefix: str
    credential_id: str | None
    enabled: bool = True

    @property
    def scheme(self) -> str:
        """The store URL scheme: ``s3`` for aws, ``az`` for azure, ``file`` for a directory (``--archive``)."""
        return {"aws": "s3", "azure": "az"}.get(self.service, "file")

    def key(self, lead_id: str, event_id: str) -> str:
        return object_key(self.prefix, lead_id, event_id)

    def url(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/")

    @classmethod
    def from_url(cls, url: str, credential_id: str | None = None, *, name: str | None = None) -> Destination:
        """The destination a store URL names (``s3://bucket/prefix``).

        With ``name`` (the flag it came from) the URL is a user's, parsed as every store URL a user gives is
        (``archive.StoreUrl``: percent-decoded, file URLs checked), and a bad one is a ``UsageError`` naming
        the flag. Without it the URL is data that ``url()`` wrote (a pack's manifest, a repair's intent): read
        back exactly as written, so a prefix with ``%``, ``?`` or ``#`` in it stays itself, and a bad one is
        a ``DataError``."""
        if name is not None:
            from firehose.archive import StoreUrl

            parsed = StoreUrl.parse(url, name)
            service = {"s3": "aws", "az": "azure"}.get(parsed.scheme, "file")
            return cls(service, parsed.bucket, parsed.prefix, credential_id)
        scheme, _, rest = url.partition("://")
        kind = {"s3": "aws", "az": "azure", "file": "file"}.get(scheme)
        if kind is None or not rest:
            raise DataError(f"{url!r} is not a destination URL (s3://, az:// or file://)")
        if scheme == "file":  # file:///abs/dir: the whole path is the folder, no prefix
            return cls("file", rest, "", credential_id)
        bucket, _, prefix = rest.partition("/")
        return cls(kind, bucket, prefix, credential_id)


def object_key(prefix: str, lead_id: str, event_id: str) -> str:
    """``<prefix>/<lead id>/<event id>.json``; an empty prefix or one ending in ``/`` adds no extra slash."""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return f"{prefix}{lead_id}/{event_id}.json"


def _service(raw: Any, service: str) -> Destination | None:
    if not isinstance(raw, Mapping) or not raw.get("bucket"):
        return None
    return Destination(
        service=service,
        bucket=str(raw["bucket"]),
        prefix=str(raw.get("prefix") or ""),
        credential_id=str(raw["credential_id"]) if raw.get("credential_id") else None,
        enabled=raw.get("enabled", True) is not False,
    )


def destinations(firehose: Any, *, include_disabled: bool = False) -> list[Destination]:
    """Every destination a ``firehose`` property names; only enabled ones unless asked."""
    if not isinstance(firehose, Mapping) or (firehose.get("enabled") is False and not include_disabled):
        return []
    found: list[Destination] = []
    services = firehose.get("services")
    if isinstance(services, Mapping) and services:
        for name in SERVICES:
            destination = _service(services.get(name), name)
            if destination:
                found.append(destination)
    else:
        legacy = _service(firehose, "aws")
        if legacy:
            found.append(legacy)
    if firehose.get("enabled") is False:
        found = [Destination(d.service, d.bucket, d.prefix, d.credential_id, enabled=False) for d in found]
    return found if include_disabled else [d for d in found if d.enabled]


class EventView:
    """Read-only accessors over one event dict, tolerant of what LeadConduit does not document."""

    __slots__ = ("data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data

    @property
    def id(self) -> str:
        value = self.data.get("id")
        if not is_object_id(value):
            raise DataError(f"event has no valid id: {str(value)[:40]!r}")
        return str(value).lower()

    @property
    def type(self) -> str | None:
        value = self.data.get("type")
        return str(value) if value is not None else None

    @property
    def created(self) -> datetime:
        return time_of(self.id)

    @property
    def ended(self) -> float:
        """When the event's step ended (``end_timestamp``), Unix seconds, else when its id was made: what a
        deadline and a delivery lag count from."""
        end = self.data.get("end_timestamp")
        if isinstance(end, int | float) and not isinstance(end, bool):
            return end / 1000
        return self.created.timestamp()

    @property
    def lead_id(self) -> str | None:
        """``vars.lead.id``, else the ``lead.id`` in the source response body (facts.md §2.4)."""
        vars_ = self.data.get("vars")
        if isinstance(vars_, Mapping):
            lead = vars_.get("lead")
            if isinstance(lead, Mapping) and is_object_id(lead.get("id")):
                return str(lead["id"]).lower()
            if is_object_id(vars_.get("lead.id")):  # a flattened vars map, should one appear
                return str(vars_["lead.id"]).lower()
        response = self.data.get("response")
        if isinstance(response, Mapping) and isinstance(response.get("body"), str):
            try:
                body = decode(response["body"], where="response body")
            except DataError:
                return None
            lead = body.get("lead") if isinstance(body, Mapping) else None
            if isinstance(lead, Mapping) and is_object_id(lead.get("id")):
                return str(lead["id"]).lower()
        return None

    def destinations(self, *, include_disabled: bool = False) -> list[Destination]:
        return destinations(self.data.get("firehose"), include_disabled=include_disabled)

    def get(self, *path: str) -> Any:
        """The value at a nested path (``get("vars", "flow", "id")``), or None where any part is missing."""
        value: Any = self.data
        for part in path:
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value
