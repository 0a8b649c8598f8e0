"""The disk backend: a directory tree laid out like a bucket (``<root>/<prefix>/<lead id>/<event id>.json``).

The store never reaches outside its root: a key with ``..`` or a leading ``/`` is refused, and so is a key
whose path leads out through a symbolic link (a ``file://`` repair once wrote through a linked folder into
wherever it pointed). Listing does not follow a link that leads outside the root, dangles or loops back into a
folder being walked; each one is named in a warning, not listed, never followed round and round.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from firehose.archive.base import ObjectInfo, RequestCount, RetentionSettings
from firehose.archive.layout import KEY_END
from firehose.errors import ArchiveError, ArchiveNotFound

log = logging.getLogger(__name__)


class LocalStore:
    """A directory; keys are ``/``-separated paths below it."""

    def __init__(self, root: Path, *, page_size: int = 1000) -> None:
        self.root = root.absolute()
        self.page_size = page_size
        """The slice size parallel listing aims at (a directory has no pages of its own)."""
        self.url = root.as_uri()
        self.requests = RequestCount()

    def __repr__(self) -> str:
        return f"LocalStore({self.url!r})"

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/") or "\0" in key:
            raise ArchiveError(f"{self.url}: key {key!r} leaves the store")
        path = self.root / key
        if not self._inside(os.path.realpath(path)):
            raise ArchiveError(f"{self.url}/{key}: a symbolic link leads out of the store; refused")
        return path

    def _inside(self, real: str) -> bool:
        """Whether a resolved path is the root or below it (the root itself may be reached through a link)."""
        root = os.path.realpath(self.root)
        return real == root or real.startswith(root.rstrip(os.sep) + os.sep)

    def _info(self, key: str, path: Path) -> ObjectInfo:
        stat = path.stat()
        # A stand-in for an ETag that needs no read: size and modification time. It changes when the file
        # does; content hashes are computed where they matter (reconcile, audit), not while listing.
        etag = f"{stat.st_size:x}-{stat.st_mtime_ns:x}"
        return ObjectInfo(
            key=key, size=stat.st_size, etag=etag, last_modified=datetime.fromtimestamp(stat.st_mtime, tz=UTC)
        )

    def list(
        self, prefix: str = "", *, start_after: str | None = None, end_at: str | None = None, limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        self.requests.add("list")
        if not self.root.is_dir():
            raise ArchiveNotFound(f"{self.url}: directory does not exist")
        count = 0
        for key in self._walk(self.root, "", prefix, start_after, end_at):
            try:
                info = self._info(key, self.root / key)
            except FileNotFoundError:  # gone between the folder read and now (another writer's partial file)
                continue
            except OSError as exc:
                raise ArchiveError(f"{self.url}/{key}: {exc.strerror}") from exc
            yield info
            count += 1
            if limit is not None and count >= limit:
                return

    def _walk(
        self,
        directory: Path,
        base: str,
        prefix: str,
        start_after: str | None,
        end_at: str | None,
        walking: tuple[Path, ...] = (),
    ) -> Iterator[str]:
        """Keys below ``directory`` in S3's order (a folder sorts as its name plus ``/``), pruning folders that
        cannot hold a key in range. ``walking``: this folder and those above it, so a link back to one of them is
        not walked again (a loop)."""
        walking = (*walking, directory)
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            raise ArchiveError(f"{self.url}/{base}: {exc.strerror}") from exc
        named = sorted((base + entry.name + ("/" if _is_dir(entry) else ""), entry) for entry in entries)
        for key, entry in named:
            if entry.is_symlink() and not self._followable(key, entry, walking):
                continue
            if key.endswith("/"):
                if not (prefix.startswith(key) or key.startswith(prefix)):
                    continue
                if start_after is not None and key + KEY_END <= start_after:
                    continue
                if end_at is not None and key > end_at:
                    return
                yield from self._walk(Path(entry.path), key, prefix, start_after, end_at, walking)
            elif key.startswith(prefix) and not key.endswith((".tmp", ".partial")):  # files being written
                if start_after is not None and key <= start_after:
                    continue
                if end_at is not None and key > end_at:
                    return
                yield key

    def _followable(self, key: str, entry: os.DirEntry[str], walking: tuple[Path, ...]) -> bool:
        """A link is listed (or walked) only when it resolves to something inside the root, and, for a folder,
        to none of the folders it sits in."""
        real = os.path.realpath(entry.path)
        if not os.path.exists(real):
            why = "dangles or loops"
        elif not self._inside(real):
            why = "leads out of the store"
        elif real in {os.path.realpath(folder) for folder in walking}:  # resolved only here: links are rare
            why = "loops back into a folder above it"
        else:
            return True
        log.warning("%s/%s: a symbolic link that %s: not followed", self.url, key.rstrip("/"), why)
        return False

    def read(self, key: str) -> bytes:
        self.requests.add("get")
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ArchiveNotFound(f"{self.url}/{key}: no such key") from exc
        except OSError as exc:
            raise ArchiveError(f"{self.url}/{key}: {exc.strerror}") from exc

    def fetch(self, key: str, *, version_id: str | None = None) -> tuple[bytes, ObjectInfo]:
        if version_id is not None:
            raise ArchiveNotFound(f"{self.url}/{key}: a directory keeps no versions (asked for {version_id})")
        body = self.read(key)
        return body, self._info(key, self._path(key))

    def retention(self) -> RetentionSettings:
        why = "not reported: a directory has no retention settings"
        return RetentionSettings(
            kind="file", notes=tuple((name, why) for name in ("versioning", "object_lock", "lifecycle"))
        )

    def head(self, key: str) -> ObjectInfo | None:
        self.requests.add("head")
        path = self._path(key)
        try:
            return self._info(key, path) if path.is_file() else None
        except OSError as exc:
            raise ArchiveError(f"{self.url}/{key}: {exc.strerror}") from exc

    def write(self, key: str, data: bytes, *, if_absent: bool = True, content_type: str = "application/json") -> bool:
        self.requests.add("put")
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # FileExistsError too (a file or a looping link where a folder goes): not "absent"
            raise ArchiveError(f"{self.url}/{key}: cannot make its folder ({exc.strerror})") from exc
        try:
            if if_absent:
                # Whole or absent, and never over another: the bytes go to a file of our own first, then a hard
                # link makes them the key in one step, refused if the key exists (even against a concurrent
                # writer). Writing the key directly left a truncated or empty object when the disk was full.
                partial = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.partial")
                try:
                    with partial.open("xb") as handle:
                        handle.write(data)
                        handle.flush()
                        os.fsync(handle.fileno())
                    os.link(partial, path)
                finally:
                    partial.unlink(missing_ok=True)
            else:
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_bytes(data)
                tmp.replace(path)
        except FileExistsError:
            return False
        except OSError as exc:
            raise ArchiveError(f"{self.url}/{key}: {exc.strerror}") from exc
        return True

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        return None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """Whether an entry is a folder (through a link too); a link that loops (ELOOP) is not, rather than an
    error that stopped the whole listing."""
    try:
        return entry.is_dir()
    except OSError:
        return False
