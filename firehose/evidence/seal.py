"""The parts every evidence pack is finished with, whoever gathered its contents: one process (``pack.write_pack``)
or the merge of a sliced audit's checkpoints (``slices.merge_audit``). Both hand over the same pieces (coverage
rows, findings, each destination's manifest lines and retention settings), so both write the same files, byte
for byte but for the moment the pack was made (``created_at``) and what depends on it (``report.html``,
``SHA256SUMS`` and its signature).

A pack is built in a hidden folder beside ``out`` (``whole_or_absent``) and renamed once signed.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from firehose import __version__, signing
from firehose.archive.base import RetentionSettings
from firehose.codec import encode_line, encode_pretty
from firehose.errors import UsageError
from firehose.evidence.retention import Check, days_text, judge, overall

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


@dataclass
class Tally:
    """One destination's manifest: its lines, their bytes, and the lines whose object could not be read."""

    objects: int = 0
    bytes: int = 0
    unreadable: int = 0

    def add(self, line: Mapping[str, Any]) -> None:
        self.objects += 1
        self.bytes += int(line.get("size") or 0)
        self.unreadable += "error" in line


def retention_entry(url: str, prefix: str, settings: RetentionSettings, required_days: int | None) -> dict[str, Any]:
    """A destination's line of ``retention.json``: its settings and, with ``required_days``, their checks."""
    found = judge(url, prefix, settings, required_days) if required_days else []
    return {
        "destination": url,
        "settings": {name: value for name, value in settings.__dict__.items() if name not in ("notes", "lifecycle")}
        | {
            "lifecycle": [rule.__dict__ for rule in settings.lifecycle] if settings.lifecycle is not None else None,
            "notes": dict(settings.notes),
        },
        "verdict": overall(found) if required_days else None,
        "checks": [{"check": c.check, "verdict": c.verdict, "finding": c.finding} for c in found],
    }


def summary_of(
    *,
    start: datetime,
    end: datetime,
    verify: str,
    required_days: int | None,
    coverage: Sequence[Mapping[str, Any]],
    tallies: Iterable[Tally],
    retention: Sequence[Mapping[str, Any]],
    destinations: Sequence[str],
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """``summary.json`` (without its key's fingerprint, which sealing adds): the window, coverage totals and verdict,
    retention verdict, and the manifest's size against what coverage counts as archived. A slice's report has the
    same fields (no ``created_at``: the pack's moment is the merge's)."""
    totals: Counter[str] = Counter()
    for row in coverage:
        totals.update({k: v for k, v in row.items() if isinstance(v, int)})
    manifest = Tally()
    for tally in tallies:
        manifest.objects, manifest.bytes = manifest.objects + tally.objects, manifest.bytes + tally.bytes
        manifest.unreadable += tally.unreadable
    checks = [
        Check(str(e["destination"]), c["check"], c["verdict"], c["finding"]) for e in retention for c in e["checks"]
    ]
    return {
        "schema": SCHEMA,
        "firehose": __version__,
        **({"created_at": iso(created_at)} if created_at else {}),
        "window": {"start": iso(start), "end": iso(end)},
        "verify": verify,
        "require_retention": days_text(required_days) if required_days else None,
        "coverage": dict(totals),
        "coverage_verdict": "FAIL" if totals["missing"] or totals["differing"] else "PASS",
        "retention_verdict": overall(checks) if required_days else None,
        # Every object coverage counts as archived is in the manifest: the pack says both, and verify checks.
        "manifest": {
            "objects": manifest.objects,
            "bytes": manifest.bytes,
            "unreadable": manifest.unreadable,
            "archived_in_coverage": totals["archived"],
            "complete": manifest.objects == totals["archived"],
        },
        "destinations": list(destinations),
    }


def write_tables(building: Path, coverage: Sequence[Mapping[str, Any]], findings: Iterable[Mapping[str, Any]]) -> None:
    """``coverage.csv``, ``coverage.json`` and ``findings.ndjson``."""
    with (building / "coverage.csv").open("w", newline="", encoding="utf-8") as sink:
        writer = csv.DictWriter(sink, fieldnames=list(COVERAGE_FIELDS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(coverage)
    (building / "coverage.json").write_bytes(encode_pretty({"schema": SCHEMA, "coverage": list(coverage)}))
    with (building / "findings.ndjson").open("wb") as lines:
        for item in findings:
            lines.write(encode_line(item))


def seal(
    building: Path,
    summary: dict[str, Any],
    coverage: Sequence[Mapping[str, Any]],
    retention: Sequence[Mapping[str, Any]],
    signing_key: Path,
    page: PageRenderer | None,
) -> bool:
    """Finish the pack in ``building`` (its tables and manifest written): ``retention.json``, ``summary.json``
    (with the key's fingerprint), ``report.html`` (with ``page``), the public key, ``SHA256SUMS`` and its
    signature. True when the signing key was made now."""
    (building / "retention.json").write_bytes(
        encode_pretty({"schema": SCHEMA, "require_retention": summary["require_retention"], "destinations": retention})
    )
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
    return created


def require_new_folder(out: Path) -> None:
    """A pack goes into a folder of its own: refuse one that holds files already (a pack never overwrites)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file; an evidence pack goes into a new folder")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--out {out}: the folder is not empty; an evidence pack goes into a new folder")


@contextmanager
def whole_or_absent(out: Path) -> Iterator[Path]:
    """A hidden folder beside ``out`` to build in, renamed to ``out`` when the block ends well and removed when
    it does not."""
    require_new_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
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


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
