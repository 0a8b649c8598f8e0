"""Checking an audit pack later, without the API: its signature, every file's SHA-256, and every manifest line
against the archive as it is now (what is gone or changed since the pack was made)."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firehose import signing
from firehose.archive import Store
from firehose.archive.base import IN_FLIGHT
from firehose.archive.listing import ordered_map
from firehose.codec import decode
from firehose.errors import ArchiveError, ArchiveNotFound, DataError, ExitCode, FirehoseError
from firehose.event import Destination
from firehose.evidence.seal import PUBLIC_KEY, SIGNATURE, SUMS, sha256_file
from firehose.progress import NO_PROGRESS, Progress


@dataclass
class Verification:
    """What ``audit verify`` found: problems with the pack itself, and objects gone or changed."""

    signature_ok: bool = False
    key_sha256: str = ""
    pack_problems: list[str] = field(default_factory=list)
    objects: int = 0
    changed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.signature_ok and not self.pack_problems and not self.changed

    @property
    def exit_code(self) -> ExitCode:
        """0 when the signature, every file and every object hold; 1 otherwise."""
        return ExitCode.OK if self.ok else ExitCode.DIFFERENCES

    def report(self) -> dict[str, Any]:
        """The versioned report (``firehose.audit-verify/1``)."""
        return {
            "schema": "firehose.audit-verify/1",
            "ok": self.ok,
            "signature_ok": self.signature_ok,
            "signing_key_sha256": self.key_sha256,
            "pack_problems": self.pack_problems,
            "objects": self.objects,
            "changed": self.changed,
        }


def check_pack(
    pack: Path,
    open_store: Callable[[Destination], Store],
    *,
    trusted_key: bytes | None = None,
    workers: int = IN_FLIGHT,
    progress: Progress = NO_PROGRESS,
) -> Verification:
    """Check a pack: its signature (against ``trusted_key`` when given, else the pack's own key), each file's
    SHA-256 against ``SHA256SUMS``, and each manifest line against the archive now (``progress``: one task,
    the manifest's lines, advanced as each is checked)."""
    result = Verification()
    sums = _check_signature(pack, trusted_key, result)
    _check_files(pack, sums, result)
    if any(p.startswith("manifest.ndjson") for p in result.pack_problems):
        return result  # a manifest that is not the signed one proves nothing about the archive
    stores: dict[str, Store] = {}
    if not (pack / "manifest.ndjson").is_file():
        result.pack_problems.append("manifest.ndjson: missing from the pack")
        return result
    manifest = pack / "manifest.ndjson"
    runs = _store_runs(manifest)
    task = progress.start("verifying objects", total=sum(run.lines for run in runs))

    def check(line: dict[str, Any] | str) -> dict[str, Any] | None:
        try:
            if isinstance(line, str):  # a line that is not a manifest entry: reported, never skipped
                return {"destination": None, "key": None, "url": None, "event_id": None,
                        "status": "invalid", "reason": line}  # fmt: skip
            return _check_line(line, stores, open_store)
        finally:
            task.advance()

    def check_runs(runs: list[_Run]) -> list[tuple[int, list[dict[str, Any]]]]:
        """The runs of one store, in order: (lines checked, problems) for each."""
        done = []
        with manifest.open("rb") as source:
            for run in runs:
                source.seek(run.offset)
                raws = (source.readline() for _ in range(run.lines))
                lines = (_manifest_line(number, raw) for number, raw in enumerate(raws, start=run.first))
                problems = [p for p in ordered_map(check, lines, workers=workers, ahead=workers * 4) if p is not None]
                done.append((run.lines, problems))
        return done

    try:
        # The lines of each store are checked at the same time as those of the others (one slow store does not
        # hold up the rest); the problems are reported in the manifest's order, as a serial check would.
        by_store: dict[str, list[_Run]] = {}
        for run in runs:
            by_store.setdefault(run.store, []).append(run)
        with ThreadPoolExecutor(max_workers=max(1, min(len(by_store), 8)), thread_name_prefix="verify") as pool:
            checked = dict(zip(by_store, pool.map(check_runs, by_store.values()), strict=True))
        position = dict.fromkeys(by_store, 0)
        for run in runs:
            count, problems = checked[run.store][position[run.store]]
            position[run.store] += 1
            result.objects += count
            result.changed.extend(problems)
    finally:
        task.done()
        for store in stores.values():
            store.close()
    claimed = _manifest_claims(pack, result.objects)
    if claimed is not None:
        result.pack_problems.append(claimed)
    return result


def _check_signature(pack: Path, trusted_key: bytes | None, result: Verification) -> bytes:
    """The pack's key and signature, against ``trusted_key`` when given; the signed ``SHA256SUMS``."""
    try:
        sums = (pack / SUMS).read_bytes()
        signature = (pack / SIGNATURE).read_bytes().decode("utf-8", "replace")  # edited into junk: no match
        public = (pack / PUBLIC_KEY).read_bytes()
    except OSError as exc:
        raise DataError(f"{pack}: not an audit pack ({exc.strerror}: {Path(str(exc.filename)).name})") from None
    try:
        result.key_sha256 = signing.fingerprint(public)
    except DataError:  # the pack's own key file edited into something else: a finding like any edit
        result.key_sha256 = "unreadable"
        result.pack_problems.append(f"{PUBLIC_KEY}: not a PEM Ed25519 public key")
    if trusted_key is not None and signing.fingerprint(trusted_key) != result.key_sha256:
        result.pack_problems.append(
            f"{PUBLIC_KEY}: not the trusted key (pack {result.key_sha256[:16]}…, "
            f"trusted {signing.fingerprint(trusted_key)[:16]}…)"
        )
    try:
        result.signature_ok = signing.verify(trusted_key or public, sums, signature)
    except DataError:
        result.signature_ok = False
    if not result.signature_ok:
        result.pack_problems.append(f"{SIGNATURE}: the signature does not match {SUMS}")
    return sums


def _check_files(pack: Path, sums: bytes, result: Verification) -> None:
    """Each file against its SHA-256 in ``SHA256SUMS``, and no file beside them."""
    listed: set[str] = set()
    for line in sums.decode(errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        listed.add(name)
        path = pack / name
        if not path.is_file():
            result.pack_problems.append(f"{name}: listed in {SUMS}, missing from the pack")
        elif sha256_file(path) != digest:
            result.pack_problems.append(f"{name}: changed since the pack was signed (SHA-256 differs)")
    for path in sorted(pack.iterdir()):
        if path.name not in listed | {SUMS, SIGNATURE}:
            result.pack_problems.append(f"{path.name}: in the pack but not in {SUMS}")


def _manifest_claims(pack: Path, lines: int) -> str | None:
    """Whether summary.json says the manifest holds every object coverage counts as archived, and as many lines
    as ``lines`` (what verify read); why not, if not."""
    try:
        manifest = decode((pack / "summary.json").read_bytes(), where="summary.json").get("manifest") or {}
    except (OSError, DataError, AttributeError) as exc:
        return f"summary.json: cannot be read ({exc})"
    if not isinstance(manifest, dict):
        return "summary.json: holds no manifest counts"
    if manifest.get("objects") != lines:
        return f"summary.json: says {manifest.get('objects')} manifest objects, manifest.ndjson holds {lines}"
    archived = manifest.get("archived_in_coverage")
    if archived is not None and archived != lines:
        return f"manifest.ndjson: {lines} objects, but coverage counts {archived} archived (an incomplete manifest)"
    return None


@dataclass(frozen=True)
class _Run:
    """Consecutive manifest lines of one store (``scheme://bucket``; lines that are no entry join the run they
    are in): where they start in the file, the first one's number, and how many there are."""

    store: str
    offset: int
    first: int
    lines: int


def _store_runs(manifest: Path) -> list[_Run]:
    """The manifest cut into runs of one store each, in one pass that keeps only the cuts (a pack is written
    one destination after another, so there are few)."""
    runs: list[_Run] = []
    store, offset, first, count, position = "", 0, 1, 0, 0
    with manifest.open("rb") as source:
        for number, raw in enumerate(source, start=1):
            line = _manifest_line(number, raw)
            here = store
            if isinstance(line, dict):
                where = Destination.from_url(line["destination"], line.get("credential_id"))
                here = f"{where.scheme}://{where.bucket}"
            if here != store and count:
                runs.append(_Run(store, offset, first, count))
                offset, first, count = position, number, 0
            store = here
            count += 1
            position += len(raw)
    if count:
        runs.append(_Run(store, offset, first, count))
    return runs


def _manifest_line(number: int, raw: bytes) -> dict[str, Any] | str:
    """A manifest line as a dict with what verify needs, or why it is not one (``manifest.ndjson line N: ...``)."""
    where = f"manifest.ndjson line {number}"
    try:
        line = decode(raw, where=where)
    except DataError as exc:
        return str(exc)
    if not isinstance(line, dict):
        return f"{where}: not a JSON object"
    for name in ("destination", "key", "sha256"):
        if not isinstance(line.get(name), str) or not line[name]:
            return f"{where}: no {name}"
    if "error" not in line and not re.fullmatch(r"[0-9a-f]{64}", line["sha256"]):
        return f"{where}: sha256 is not a SHA-256 digest"
    try:
        Destination.from_url(line["destination"], line.get("credential_id"))
    except FirehoseError as exc:
        return f"{where}: {exc}"
    return line


_OPENING = threading.Lock()
"""Held while a store is opened for verify: each store is opened once, whatever the threads."""


def _check_line(
    line: dict[str, Any], stores: dict[str, Store], open_store: Callable[[Destination], Store]
) -> dict[str, Any] | None:
    destination = Destination.from_url(str(line["destination"]), line.get("credential_id"))
    base = f"{destination.scheme}://{destination.bucket}"
    store = stores.get(base)
    if store is None:
        # Lines are checked on many threads: without the lock each one that found the store not yet open made
        # its own (a boto3 client is a tenth of a second of CPU), and all but one were never closed.
        with _OPENING:
            store = stores.get(base)
            if store is None:
                store = stores[base] = open_store(destination)
    where = {
        "destination": line["destination"],
        "key": line["key"],
        "url": f"{base}/{line['key']}",  # the key is whole: the destination's prefix is in it already
        "event_id": line.get("event_id"),
    }
    if "error" in line:
        return {**where, "status": "unreadable when the pack was made", "reason": line["error"]}
    try:
        body, _ = store.fetch(line["key"])
    except ArchiveNotFound:
        body = None
    except ArchiveError as exc:
        return {**where, "status": "error", "reason": str(exc)}
    if body is not None and hashlib.sha256(body).hexdigest() == line["sha256"]:
        return None
    kept = ""
    if line.get("version_id"):
        try:
            old, _ = store.fetch(line["key"], version_id=line["version_id"])
            if hashlib.sha256(old).hexdigest() == line["sha256"]:
                kept = f"; the recorded version {line['version_id']} is intact"
        except ArchiveError:
            kept = f"; the recorded version {line['version_id']} is gone too"
    status = "gone" if body is None else "changed"
    return {**where, "status": status, "reason": f"the object is {status} since the pack was made{kept}"}
