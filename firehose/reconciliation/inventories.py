"""``--inventory``: a reconcile that reads S3 or Azure inventories instead of listing, and confirms what they lack.

An inventory is up to a day old (a daily scan), so the run never reports ``missing`` on its word alone:

- leads made after the inventory's scan began are listed as ever (the inventory cannot hold all of their events);
- each event the inventory lacks is confirmed live before it is reported: one listing of its lead's folder
  (every spelling of its key at once, ``listing.lead_objects``); an object found there is ``match``;
- a content check (``--verify content|sample``) reads each object anyway: one the inventory lists but a read no
  longer finds is ``missing``.

What presence alone cannot see is an object the inventory lists that was deleted after its scan: that costs a
request per object, as much as listing (README, "Inventories").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from itertools import chain

from firehose.archive import ObjectInfo, Store
from firehose.archive.inventory import Inventory, read_manifest
from firehose.archive.listing import lead_objects, list_window, ordered_map
from firehose.event import Destination
from firehose.findings import Finding, Verdict
from firehose.reconciliation.classify import Expected, classify_presence

GONE = "listed by the inventory, but a read finds no object: deleted since the inventory was taken"


class Inventories:
    """The inventories a run was given, opened once, each serving the destinations whose bucket it lists."""

    def __init__(self, urls: tuple[str, ...] = (), opener: Callable[[str], Store] | None = None) -> None:
        self._all: list[Inventory] = []
        try:
            for url in urls:
                assert opener is not None, "inventories are opened with the run's credentials"
                self._all.append(read_manifest(url, opener))
        except BaseException:
            self.close()
            raise

    def __bool__(self) -> bool:
        return bool(self._all)

    def serving(self, destination: Destination) -> Inventory | None:
        """The inventory of ``destination``'s bucket or container (None when none was given at all); a
        ``UsageError`` when inventories were given but none lists it."""
        if not self._all:
            return None
        for inventory in self._all:
            if inventory.serves(destination.scheme, destination.bucket):
                return inventory
        from firehose.errors import UsageError

        given = "; ".join(f"{i.url} is {i.describe()}" for i in self._all)
        where = f"{destination.scheme}://{destination.bucket}"
        raise UsageError(f"--inventory: none is of {where}, a destination of the window's events ({given})")

    def stream(
        self, store: Store, destination: Destination, start_seconds: int, end_seconds: int, *, workers: int, ahead: int
    ) -> Iterator[ObjectInfo]:
        """What a listing of the leads made in ``[start_seconds, end_seconds]`` yields, in the same order: from
        the inventory up to its scan, listed after it."""
        inventory = self.serving(destination)
        assert inventory is not None
        cut = inventory.taken_at
        head: Iterator[ObjectInfo] = iter(())
        tail: Iterator[ObjectInfo] = iter(())
        if start_seconds < cut:
            head = inventory.objects(
                destination.scheme, destination.bucket, destination.prefix, start_seconds, min(end_seconds, cut - 1)
            )
        if end_seconds >= cut:
            tail = list_window(store, destination.prefix, start_seconds=max(start_seconds, cut),
                               end_seconds=end_seconds, workers=workers, ahead=ahead)  # fmt: skip
        return chain(head, tail)

    def confirmed(
        self,
        store: Store,
        destination: Destination,
        items: list[Expected],
        found: list[Finding],
        listed: dict[str, ObjectInfo],
        *,
        workers: int,
    ) -> list[Finding]:
        """``found`` with each ``missing`` confirmed live: its lead's folder listed (one request, two when the id
        could be spelt in upper case too); what is there now is added to ``listed`` and classified again."""
        wanted: dict[str, list[str]] = defaultdict(list)
        for finding in found:
            if finding.verdict == Verdict.MISSING and finding.lead_id:
                wanted[finding.lead_id].append(finding.event_id)
        if not wanted:
            return found

        def lead(lead_id: str) -> dict[str, list[ObjectInfo]]:
            return lead_objects(store, destination.prefix, lead_id, wanted=wanted[lead_id])

        for objects in ordered_map(lead, sorted(wanted), workers=workers, ahead=workers * 4):
            for infos in objects.values():
                listed.update((info.key, info) for info in infos)
        return list(classify_presence(items, listed))

    def close(self) -> None:
        for inventory in self._all:
            inventory.store.close()
