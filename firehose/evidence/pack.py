"""Evidence for auditors: an audit pack for a period, and its verification later.

A pack is a folder an auditor can read without firehose:

- ``coverage.csv`` / ``coverage.json``: per day and destination, the events the API reports, archived,
  missing, differing, repaired (by this or earlier ``reconcile --repair`` runs), archive-only (the API's copy
  has expired, or it never reported them: unverifiable against the source), and errors;
- ``manifest.ndjson``: one line per archived event object in the period: destination, key, ids, size, SHA-256
  of the stored bytes, version id, last modified, retention mode and retain-until where the store reports them;
- ``retention.json``: each destination's settings and the PASS / FAIL / UNKNOWN checks against the required
  retention (``retention.py``);
- ``findings.ndjson``: the events that are not ``match`` (ids, keys, classes, reasons; no lead data unless
  ``include_pii``);
- ``summary.json`` (``"schema": "firehose.audit/1"``) and ``report.html`` (one self-contained page);
- ``SHA256SUMS`` (every file above with its SHA-256), ``SHA256SUMS.sig`` (its Ed25519 signature, base64) and
  ``signing-key.pub.pem``.

``verify.check_pack`` checks a pack later.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from firehose import signing
from firehose.archive import Store
from firehose.archive.base import IN_FLIGHT, RetentionSettings
from firehose.archive.layout import ArchivedEvent, parse_key
from firehose.archive.listing import ArchiveListing, ordered_map
from firehose.codec import encode_line
from firehose.errors import ArchiveError, UsageError
from firehose.event import Destination
from firehose.evidence.seal import (
    PageRenderer,
    Tally,
    iso,
    require_new_folder,
    retention_entry,
    seal,
    summary_of,
    whole_or_absent,
    write_tables,
)
from firehose.findings import Verdict
from firehose.ids import seconds_of
from firehose.progress import NO_PROGRESS, Progress
from firehose.reconciliation.run import NO_DESTINATION, PRESENT, Outcome

MANIFEST_FIELDS = (
    "destination",
    "credential_id",
    "key",
    "event_id",
    "lead_id",
    "size",
    "sha256",
    "version_id",
    "last_modified",
    "retention_mode",
    "retain_until",
)


def coverage_rows(outcome: Outcome, repaired_before: Counter[tuple[str, str]]) -> list[dict[str, Any]]:
    """One row per (day, destination) with the counts an auditor asks about."""
    rows = []
    keys = set(outcome.by_day_destination) | set(repaired_before)
    for day, destination in sorted(keys):
        counts = outcome.by_day_destination.get((day, destination), Counter())
        repaired = counts[Verdict.REPAIRED.value] + repaired_before[(day, destination)]
        present = counts[Verdict.MATCH.value] + counts[Verdict.DIFFER.value] + counts[Verdict.REPAIRED.value]
        rows.append(
            {
                "day": day,
                "destination": destination,
                "api_events": sum(
                    counts[v.value]
                    for v in (Verdict.MATCH, Verdict.MISSING, Verdict.DIFFER, Verdict.ERROR, Verdict.REPAIRED)
                ),
                "archived": present + counts[Verdict.ARCHIVE_ONLY.value],
                "missing": counts[Verdict.MISSING.value],
                "differing": counts[Verdict.DIFFER.value],
                "repaired": repaired,
                "archive_only": counts[Verdict.ARCHIVE_ONLY.value],
                "errors": counts[Verdict.ERROR.value],
                "not_configured": counts[Verdict.NOT_CONFIGURED.value] if destination == NO_DESTINATION else 0,
            }
        )
    return rows


def manifest_lines(
    store: Store,
    destination: Destination,
    start: datetime,
    end: datetime,
    *,
    workers: int = IN_FLIGHT,
    older_leads: Sequence[str] = (),
) -> Iterator[dict[str, Any]]:
    """One manifest line per archived event object of ``destination`` made in ``[start, end]`` (leads listed
    from an hour before, and the keys ``older_leads``: the period's events of leads made before that, which
    coverage found archived), each read and hashed, in key order (byte order: a listing's order, with those keys
    merged in), so that a sliced audit's merge can put its slices' lines in the same order. A read that fails is
    a line with ``error``, never skipped."""
    listing = ArchiveListing(
        store,
        destination.prefix,
        start_seconds=int(start.timestamp()) - 3600,
        end_seconds=int(end.timestamp()),
        workers=workers,
    )
    first, last = int(start.timestamp()), int(end.timestamp())
    listed = (row for row in listing if isinstance(row, ArchivedEvent) and first <= seconds_of(row.event_id) <= last)
    wanted = heapq.merge(
        ((row.key, row.event_id, row.lead_id) for row in listed),
        sorted(_ids_of(key) for key in older_leads),
        key=lambda row: row[0],
    )

    def read(row: tuple[str, str, str]) -> dict[str, Any]:
        key, event_id, lead_id = row
        line: dict[str, Any] = {
            "destination": destination.url(),
            "credential_id": destination.credential_id,
            "key": key,
            "event_id": event_id,
            "lead_id": lead_id,
        }
        try:
            body, info = store.fetch(key)
        except ArchiveError as exc:
            return {**line, "error": str(exc)}
        return {
            **line,
            "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "version_id": info.version_id,
            "last_modified": iso(info.last_modified),
            "retention_mode": info.retention_mode,
            "retain_until": iso(info.retain_until),
        }

    yield from ordered_map(read, wanted, workers=workers, ahead=workers * 4)


def _ids_of(key: str) -> tuple[str, str, str]:
    lead_id, event_id = parse_key(key) or ("", "")
    return key, event_id, lead_id


def check_outputs(out: Path, signing_key: Path) -> None:
    """What the pack will need at its end, checked before the long coverage run (which once ended in a
    traceback when ``--out``'s folder did not exist): a new folder in a writable one, and a signing key that
    loads, or a writable place to make one."""
    require_new_folder(out)
    parent = out.absolute().parent
    if not parent.is_dir():
        raise UsageError(f"--out {out}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: the folder {parent} is not writable")
    if signing_key.is_dir():
        raise UsageError(f"--signing-key {signing_key} is a folder, not a key file")
    if signing_key.exists():
        signing.load_or_create_key(signing_key)  # loads it: a file that is no key is refused now, not at the end
        return
    folder = signing_key.absolute().parent
    while not folder.exists():  # the key's folders are made when it is saved: the first existing one must be writable
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--signing-key {signing_key}: cannot make it there ({folder} is not a writable folder)")


@dataclass
class PackResult:
    out: Path
    summary: dict[str, Any]
    key_created: Path | None = None


def write_pack(
    out: Path,
    *,
    start: datetime,
    end: datetime,
    outcome: Outcome,
    repaired_before: Counter[tuple[str, str]],
    findings: list[dict[str, Any]],
    open_store: Callable[[Destination], Store],
    destinations: list[Destination],
    required_days: int | None,
    verify: str,
    signing_key: Path,
    workers: int = IN_FLIGHT,
    progress: Progress = NO_PROGRESS,
    older_leads: Mapping[str, Sequence[str]] | None = None,
    page: PageRenderer | None = None,
) -> PackResult:
    """Write the pack into ``out`` (created; refused if it holds files already), sign it, and return the
    summary.

    The pack is built in a hidden folder beside ``out`` and renamed to ``out`` once signed: a pack is whole or
    absent, and a run that fails part-way (a store error while hashing, a full disk, a kill) leaves nothing a
    rerun would refuse or an auditor could take for a pack. ``page`` makes ``report.html`` (none without it);
    ``progress`` gets a note and a task per destination hashed, its total the objects coverage counts archived
    there (unknown when coverage does not name it)."""
    with whole_or_absent(out) as building:
        started = datetime.now(UTC)
        coverage = coverage_rows(outcome, repaired_before)
        write_tables(building, coverage, findings)
        parts = [building / f".manifest-{number}.part" for number in range(len(destinations))]
        with ExitStack() as files:
            sinks = [files.enter_context(part.open("wb")) for part in parts]
            hashed = hash_all(destinations, [_writer(sink) for sink in sinks],
                              open_store=open_store, start=start, end=end, workers=workers, progress=progress,
                              outcome=outcome, older_leads=older_leads)  # fmt: skip
        with (building / "manifest.ndjson").open("wb") as sink:
            for part in parts:  # joined in the destinations' order: the manifest reads as one made serially
                with part.open("rb") as source:
                    shutil.copyfileobj(source, sink, 1 << 20)
                part.unlink()
        retention = [
            retention_entry(d.url(), d.prefix, settings, required_days)
            for d, (_, settings) in zip(destinations, hashed, strict=True)
        ]
        summary = summary_of(start=start, end=end, verify=verify, required_days=required_days, coverage=coverage,
                             tallies=[tally for tally, _ in hashed], retention=retention,
                             destinations=[d.url() for d in destinations], created_at=started)  # fmt: skip
        created = seal(building, summary, coverage, retention, signing_key, page)
    return PackResult(out, summary, signing_key if created else None)


def _writer(sink: BinaryIO) -> Callable[[dict[str, Any]], None]:
    def write(line: dict[str, Any]) -> None:
        sink.write(encode_line(line))

    return write


def hash_all(
    destinations: Sequence[Destination],
    sinks: Sequence[Callable[[dict[str, Any]], Any]],
    *,
    open_store: Callable[[Destination], Store],
    start: datetime,
    end: datetime,
    workers: int,
    progress: Progress,
    outcome: Outcome,
    older_leads: Mapping[str, Sequence[str]] | None,
) -> list[tuple[Tally, RetentionSettings]]:
    """Every destination's manifest lines, each handed to its own sink (from its own thread), and each store's
    retention settings. Destinations are hashed at the same time: each reads its own store, and one slow store
    does not hold up the rest. A store that fails stops the others and is raised."""
    stop = threading.Event()

    def hash_destination(destination: Destination, sink: Callable[[dict[str, Any]], Any]) -> tuple[Tally, Any]:
        progress.note(f"hashing {destination.url()}")
        task = progress.start(f"hashing {destination.url()}", total=_archived(outcome, destination))
        tally = Tally()
        store: Store | None = None
        try:
            store = open_store(destination)
            extra = (older_leads or {}).get(destination.url(), ())
            for line in manifest_lines(store, destination, start, end, workers=workers, older_leads=extra):
                if stop.is_set():  # another destination failed: the pack will not be made
                    break
                sink(line)
                task.advance()
                tally.add(line)
            return tally, store.retention()
        except BaseException:
            stop.set()
            raise
        finally:
            task.done()
            if store is not None:
                store.close()

    with ThreadPoolExecutor(max_workers=max(1, min(len(destinations), 8)), thread_name_prefix="hash") as pool:
        hashed = [pool.submit(hash_destination, d, sink) for d, sink in zip(destinations, sinks, strict=True)]
        return [future.result() for future in hashed]


def _archived(outcome: Outcome, destination: Destination) -> int | None:
    """How many objects coverage found archived at ``destination`` (what its manifest should hold), if it
    checked it."""
    counts = outcome.by_destination.get(destination.url())
    if counts is None:
        return None
    return sum(counts[v.value] for v in (*PRESENT, Verdict.ARCHIVE_ONLY))
