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

import csv
import hashlib
import itertools
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from firehose import __version__, signing
from firehose.archive import Store
from firehose.archive.base import IN_FLIGHT, RetentionSettings
from firehose.archive.layout import ArchivedEvent, parse_key
from firehose.archive.listing import ArchiveListing, ordered_map
from firehose.codec import encode_line, encode_pretty
from firehose.errors import ArchiveError, UsageError
from firehose.event import Destination
from firehose.evidence.retention import Check, days_text, judge, overall
from firehose.findings import Verdict
from firehose.ids import seconds_of
from firehose.progress import NO_PROGRESS, Progress
from firehose.reconciliation.run import NO_DESTINATION, PRESENT, Outcome

SCHEMA = "firehose.audit/1"
PageRenderer = Callable[[Mapping[str, Any], Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]], str]
"""Makes ``report.html`` from the summary, the coverage rows and the retention findings
(``firehose.report.html.render_report``): passed in, because a job never imports rendering."""
SUMS, SIGNATURE, PUBLIC_KEY = "SHA256SUMS", "SHA256SUMS.sig", "signing-key.pub.pem"
COVERAGE_FIELDS = (
    "day",
    "destination",
    "api_events",
    "archived",
    "missing",
    "differing",
    "repaired",
    "archive_only",
    "errors",
    "not_configured",
)
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
    coverage found archived), each read and hashed. A read that fails is a line with ``error``, never
    skipped."""
    listing = ArchiveListing(
        store,
        destination.prefix,
        start_seconds=int(start.timestamp()) - 3600,
        end_seconds=int(end.timestamp()),
        workers=workers,
    )
    first, last = int(start.timestamp()), int(end.timestamp())
    listed = (row for row in listing if isinstance(row, ArchivedEvent) and first <= seconds_of(row.event_id) <= last)
    wanted = itertools.chain(
        ((row.key, row.event_id, row.lead_id) for row in listed),
        (_ids_of(key) for key in older_leads),
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
            "last_modified": _iso(info.last_modified),
            "retention_mode": info.retention_mode,
            "retain_until": _iso(info.retain_until),
        }

    yield from ordered_map(read, wanted, workers=workers, ahead=workers * 4)


def _ids_of(key: str) -> tuple[str, str, str]:
    lead_id, event_id = parse_key(key) or ("", "")
    return key, event_id, lead_id


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def require_new_folder(out: Path) -> None:
    """A pack goes into a folder of its own: refuse one that holds files already (a pack never overwrites)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file; an evidence pack goes into a new folder")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--out {out}: the folder is not empty; an evidence pack goes into a new folder")


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
    require_new_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _whole_or_absent(out) as building:
        started = datetime.now(UTC)
        coverage = coverage_rows(outcome, repaired_before)
        _write_csv(building / "coverage.csv", COVERAGE_FIELDS, coverage)
        (building / "coverage.json").write_bytes(encode_pretty({"schema": SCHEMA, "coverage": coverage}))
        with (building / "findings.ndjson").open("wb") as sink:
            for item in findings:
                sink.write(encode_line(item))

        objects = size = failures = 0
        retention: list[dict[str, Any]] = []
        checks: list[Check] = []
        stop = threading.Event()

        def hash_destination(number: int, destination: Destination) -> tuple[int, int, int, RetentionSettings]:
            """One destination's manifest lines into a part file of their own, and the store's settings."""
            progress.note(f"hashing {destination.url()}")
            task = progress.start(f"hashing {destination.url()}", total=_archived(outcome, destination))
            count = nbytes = broken = 0
            store: Store | None = None
            try:
                store = open_store(destination)
                extra = (older_leads or {}).get(destination.url(), ())
                with (building / f".manifest-{number}.part").open("wb") as part:
                    for line in manifest_lines(store, destination, start, end, workers=workers, older_leads=extra):
                        if stop.is_set():  # another destination failed: the pack will not be made
                            break
                        part.write(encode_line(line))
                        task.advance()
                        count += 1
                        nbytes += int(line.get("size") or 0)
                        broken += "error" in line
                return count, nbytes, broken, store.retention()
            except BaseException:
                stop.set()
                raise
            finally:
                task.done()
                if store is not None:
                    store.close()

        # Destinations are hashed at the same time (each reads its own store; one slow store does not hold up
        # the rest), each into a part file, joined in order: the manifest reads the same as one made serially.
        with ThreadPoolExecutor(max_workers=max(1, min(len(destinations), 8)), thread_name_prefix="hash") as pool:
            hashed = [pool.submit(hash_destination, number, d) for number, d in enumerate(destinations)]
            results = [future.result() for future in hashed]
        with (building / "manifest.ndjson").open("wb") as sink:
            for number in range(len(destinations)):
                part = building / f".manifest-{number}.part"
                with part.open("rb") as source:
                    shutil.copyfileobj(source, sink, 1 << 20)
                part.unlink()
        for destination, (count, nbytes, broken, settings) in zip(destinations, results, strict=True):
            objects += count
            size += nbytes
            failures += broken
            found = judge(destination.url(), destination.prefix, settings, required_days) if required_days else []
            checks.extend(found)
            retention.append(
                {
                    "destination": destination.url(),
                    "settings": {
                        name: value for name, value in settings.__dict__.items() if name not in ("notes", "lifecycle")
                    }
                    | {
                        "lifecycle": [rule.__dict__ for rule in settings.lifecycle]
                        if settings.lifecycle is not None
                        else None,
                        "notes": dict(settings.notes),
                    },
                    "verdict": overall(found) if required_days else None,
                    "checks": [{"check": c.check, "verdict": c.verdict, "finding": c.finding} for c in found],
                }
            )
        (building / "retention.json").write_bytes(
            encode_pretty({"schema": SCHEMA, "require_retention": _required(required_days), "destinations": retention})
        )
        totals: Counter[str] = Counter()
        for row in coverage:
            totals.update({k: v for k, v in row.items() if isinstance(v, int)})
        summary: dict[str, Any] = {
            "schema": SCHEMA,
            "firehose": __version__,
            "created_at": _iso(started),
            "window": {"start": _iso(start), "end": _iso(end)},
            "verify": verify,
            "require_retention": _required(required_days),
            "coverage": dict(totals),
            "coverage_verdict": "FAIL" if totals["missing"] or totals["differing"] else "PASS",
            "retention_verdict": overall(checks) if required_days else None,
            # Every object coverage counts as archived is in the manifest: the pack says both, and verify checks.
            "manifest": {
                "objects": objects,
                "bytes": size,
                "unreadable": failures,
                "archived_in_coverage": totals["archived"],
                "complete": objects == totals["archived"],
            },
            "destinations": [d.url() for d in destinations],
        }
        key, created = signing.load_or_create_key(signing_key)
        public = signing.public_pem(key)
        summary["signing_key_sha256"] = signing.fingerprint(public)
        (building / "summary.json").write_bytes(encode_pretty(summary))
        if page is not None:
            (building / "report.html").write_text(page(summary, coverage, retention), encoding="utf-8")
        (building / PUBLIC_KEY).write_bytes(public)
        sums = "".join(
            f"{sha256_file(path)}  {path.name}\n"
            for path in sorted(building.iterdir())
            if path.name not in (SUMS, SIGNATURE)
        ).encode()
        (building / SUMS).write_bytes(sums)
        (building / SIGNATURE).write_text(signing.sign(key, sums) + "\n")
    return PackResult(out, summary, signing_key if created else None)


def _archived(outcome: Outcome, destination: Destination) -> int | None:
    """How many objects coverage found archived at ``destination`` (what its manifest should hold), if it
    checked it."""
    counts = outcome.by_destination.get(destination.url())
    if counts is None:
        return None
    return sum(counts[v.value] for v in (*PRESENT, Verdict.ARCHIVE_ONLY))


@contextmanager
def _whole_or_absent(out: Path) -> Iterator[Path]:
    """A hidden folder beside ``out`` to build in, renamed to ``out`` when the block ends well and removed when
    it does not."""
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield building
        require_new_folder(out)  # still new: nobody made a pack there meanwhile
        if out.exists():
            out.rmdir()
        building.rename(out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def _required(days: int | None) -> str | None:
    return days_text(days) if days else None


def _write_csv(path: Path, fields: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as sink:
        writer = csv.DictWriter(sink, fieldnames=list(fields), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
