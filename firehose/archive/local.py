"""The disk backend: a directory tree laid out like a bucket (``<root>/<prefix>/<lead id>/<event id>.json``)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from firehose.archive.base import ObjectInfo
from firehose.errors import ArchiveError, ArchiveNotFound


class LocalStore:
    """A directory; keys are ``/``-separated paths below it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()

    def __repr__(self) -> str:
        return f"LocalStore({self.url!r})"

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ArchiveError(f"{self.url}: key {key!r} leaves the store")
        return self.root / key

    def _info(self, key: str, path: Path) -> ObjectInfo:
        stat = path.stat()
        # A stand-in for an ETag: the MD5 of the content, as S3 gives for single-part uploads.
        etag = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        return ObjectInfo(
            key=key, size=stat.st_size, etag=etag, last_modified=datetime.fromtimestamp(stat.st_mtime, tz=UTC)
        )

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        if not self.root.is_dir():
            raise ArchiveNotFound(f"{self.url}: directory does not exist")
        # Walk in sorted order so keys come out in ascending byte order, as S3 lists them.
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            rel = Path(dirpath).relative_to(self.root).as_posix()
            base = "" if rel == "." else rel + "/"
            keys.extend(base + name for name in filenames if not name.endswith(".tmp"))
        for key in sorted(keys):
            if key.startswith(prefix) and (start_after is None or key > start_after):
                yield self._info(key, self.root / key)

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ArchiveNotFound(f"{self.url}/{key}: no such key") from exc
        except OSError as exc:
            raise ArchiveError(f"{self.url}/{key}: {exc.strerror}") from exc

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        return self._info(key, path) if path.is_file() else None

    def write(self, key: str, data: bytes, *, if_absent: bool = True, content_type: str = "application/json") -> bool:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if if_absent:
                # Exclusive create: refused if the file exists, even against a concurrent writer.
                with path.open("xb") as handle:
                    handle.write(data)
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
