"""The sandbox's firehose: writes each new event to its flow's destinations, the way LeadConduit's does.

Each event goes to every enabled destination of its ``firehose`` property, at
``<prefix>/<lead id>/<event id>.json``, as compact JSON. A settable drop rate loses some writes on purpose
(per destination), so that reconcile has gaps to find. Writes overwrite, as a firehose redelivery would.
Outages (``outages``) stop a destination's writes, or delay them, while the sandbox runs.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firehose.archive import AzureCredential, S3Credential, Store, StoreUrl, open_store
from firehose.codec import encode
from firehose.errors import FirehoseError
from firehose.event import Destination, EventView
from firehose.sandbox.outages import Outage, Outages, Write

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Targets:
    """Where the sandbox's firehose really writes: S3 and Azure endpoints, or one directory for both."""

    s3: S3Credential | None = None
    azure: AzureCredential | None = None
    directory: Path | None = None
    """If set, ``<directory>/<service>/<bucket>/<key>`` replaces S3 and Azure."""
    create_buckets: bool = False


class FirehoseStream:
    """A pool of writers; ``status()`` tells what was written, dropped on purpose, or failed."""

    def __init__(self, targets: Targets, *, drop_rate: float = 0.0, seed: int = 0, workers: int = 8) -> None:
        self.targets = targets
        self.drop_rate = drop_rate
        self._rng = random.Random(f"drops:{seed}")
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="firehose-write")
        self._stores: dict[tuple[str, str], Store | None] = {}
        self._lock = threading.Lock()
        self._opening = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self.written = self.dropped = self.failed = self.skipped = self.pending = 0
        """``pending`` counts every write still to land: in flight, delayed, or held for a stopped destination."""
        self.errors: list[str] = []
        self.outages = Outages(self._submit)

    def _store(self, destination: Destination) -> Store | None:
        name = (destination.service, destination.bucket)
        with self._lock:
            if name in self._stores:
                return self._stores[name]
        # One thread opens (and creates) a bucket while the others wait: SeaweedFS fails some of several
        # CreateBucket requests for one new bucket that arrive at once, and every write into it then failed.
        with self._opening:
            with self._lock:
                if name in self._stores:
                    return self._stores[name]
            return self._open(destination, name)

    def _open(self, destination: Destination, name: tuple[str, str]) -> Store | None:
        store: Store | None = None
        if self.targets.directory is not None:
            root = self.targets.directory / destination.service / destination.bucket
            store = open_store(StoreUrl("file", str(root), ""))
        elif destination.service == "aws" and self.targets.s3 is not None:
            store = open_store(StoreUrl("s3", destination.bucket, ""), s3=self.targets.s3)
        elif destination.service == "azure" and self.targets.azure is not None:
            store = open_store(StoreUrl("az", destination.bucket, ""), azure=self.targets.azure)
        if store is not None and self.targets.create_buckets:
            store.create()
        with self._lock:
            self._stores.setdefault(name, store)
            return self._stores[name]

    def send(self, events: Iterable[dict[str, Any]]) -> None:
        """Queue events for writing; returns at once."""
        for event in events:
            view = EventView(event)
            lead_id = view.lead_id
            for destination in view.destinations():
                with self._lock:
                    drop = self._rng.random() < self.drop_rate
                    if drop:
                        self.dropped += 1
                        continue
                    if lead_id is None:
                        self.skipped += 1
                        continue
                    self.pending += 1
                write = (destination, destination.key(lead_id, view.id), encode(event), _end_seconds(event))
                if not self.outages.route(write):
                    self._submit(write)

    def set_outages(self, changes: dict[str, Outage | None]) -> int:
        """Stop, resume or delay destinations (``outages.parse_outages``); returns the held writes released."""
        released = self.outages.change(changes)
        with self._lock:
            self._idle.notify_all()
        return released

    def _submit(self, write: Write) -> None:
        self._pool.submit(self._write, *write[:3])

    def _write(self, destination: Destination, key: str, body: bytes) -> None:
        try:
            store = self._store(destination)
            if store is None:
                with self._lock:
                    self.skipped += 1
                return
            store.write(key, body, if_absent=False)
            with self._lock:
                self.written += 1
        except FirehoseError as exc:
            log.warning("firehose write failed: %s", exc)
            with self._lock:
                self.failed += 1
                self.errors = [*self.errors[-4:], str(exc)]
        finally:
            with self._lock:
                self.pending -= 1
                self._idle.notify_all()

    def wait(self, timeout_seconds: float | None = None) -> bool:
        """Block until every queued write is done (delayed ones too; not those held for a stopped destination);
        False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: self.pending <= self.outages.held(), timeout=timeout_seconds)

    def status(self) -> dict[str, Any]:
        outages = self.outages.status()
        with self._lock:
            return {
                "written": self.written,
                "dropped": self.dropped,
                "failed": self.failed,
                "skipped": self.skipped,
                "pending": self.pending - outages["held"],
                "drop_rate": self.drop_rate,
                "last_errors": list(self.errors),
                **outages,
            }

    def close(self) -> None:
        self.outages.close()
        self._pool.shutdown(wait=True)
        for store in self._stores.values():
            if store is not None:
                store.close()


def _end_seconds(event: dict[str, Any]) -> float:
    """When the event's step ended (``end_timestamp``, ms), else when its id was made: what a delay counts from."""
    end = event.get("end_timestamp")
    if isinstance(end, int | float) and not isinstance(end, bool):
        return end / 1000
    return float(int(str(event["id"])[:8], 16))
