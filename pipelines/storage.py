"""Where a curation run reads its videos and writes its outputs: local paths or fsspec URLs, one code path.

Every location goes through fsspec, so a local folder and an `s3://bucket/run` (or `gs://`, `ftp://`, ...)
take the same code; only the filesystem behind it differs. Its package must be installed (`s3fs` for
s3://, `gcsfs` for gs://; see the README) and its credentials set the way that package reads them (for
s3fs: the AWS_* environment variables or an instance role), on every node of a cluster.

Decoders need local files: a remote source video, or a clip file in a remote OUT, is copied to a
temporary folder for as long as it is read; clip files are written to a local folder and then uploaded.
Local locations are used in place. Whatever is written becomes visible only complete: it is written
under a `.part` name and then moved to its own.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse
from urllib.request import url2pathname

import fsspec
from fsspec.implementations.local import LocalFileSystem

PARTIAL_SUFFIX = ".part"


class LocationError(ValueError):
    """A location that cannot be used: an unknown URL scheme, or a filesystem package that is missing."""


def filesystem(location: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of `location` and the path on it (a plain path or file:// URL is local)."""
    if "://" not in location:
        return LocalFileSystem(), str(Path(location).absolute())
    if urlparse(location).scheme == "file":
        return LocalFileSystem(), str(Path(url2pathname(urlparse(location).path)).absolute())
    try:
        return fsspec.core.url_to_fs(location)
    except ImportError as error:  # fsspec knows the scheme, its package is not installed
        raise LocationError(f"{location}: {str(error).splitlines()[0]}") from None
    except ValueError as error:  # "Protocol not known"
        raise LocationError(f"{location}: {error}") from None


def is_url(location: str) -> bool:
    return "://" in location and urlparse(location).scheme != "file"


def without_credentials(location: str) -> str:
    """`location` as it may be written into outputs and logs: a URL's user:password@ taken out."""
    if not is_url(location):
        return location
    url = urlparse(location)
    if url.username is None and url.password is None:
        return location
    host = url.hostname or ""
    netloc = f"{host}:{url.port}" if url.port else host
    return url._replace(netloc=netloc).geturl()


def normalise(location: str) -> str:
    """A local path or file:// URL as an absolute path (Ray workers may run in another folder); URLs as they are."""
    return location if is_url(location) else filesystem(location)[1]


class Folder:
    """A folder on any fsspec filesystem, addressed by paths relative to it ("clips/KEY.mp4")."""

    def __init__(self, location: str):
        self.location = normalise(location)
        self.fs, self.root = filesystem(self.location)
        self.is_local = isinstance(self.fs, LocalFileSystem)

    def path(self, relative: str) -> str:
        return str(PurePosixPath(self.root, relative)) if relative else self.root

    def url(self, relative: str = "") -> str:
        """How to name `relative` to the user: the location they gave (no password), plus `relative`."""
        location = without_credentials(self.location)
        return f"{location.rstrip('/')}/{relative}" if relative else location

    def exists(self, relative: str) -> bool:
        return self.fs.exists(self.path(relative))

    def size(self, relative: str) -> int:
        return self.fs.size(self.path(relative))

    def is_folder(self, relative: str) -> bool:
        return self.fs.isdir(self.path(relative))

    def read_bytes(self, relative: str) -> bytes:
        return self.fs.cat_file(self.path(relative))

    def open(self, relative: str):
        """`relative` as a binary file to read from, a piece at a time."""
        return self.fs.open(self.path(relative), "rb")

    def read_text(self, relative: str) -> str:
        return self.read_bytes(relative).decode("utf-8")

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write `data` under a .part name, then move it into place: readers never see half a file."""
        self._make_parent(relative)
        partial = self.path(relative + PARTIAL_SUFFIX)
        self.fs.pipe_file(partial, data)
        self.fs.mv(partial, self.path(relative))

    def write_text(self, relative: str, text: str) -> None:
        self.write_bytes(relative, text.encode("utf-8"))

    def upload(self, local: Path, relative: str) -> None:
        """Copy a local file here under a .part name, then move it into place."""
        self._make_parent(relative)
        partial = self.path(relative + PARTIAL_SUFFIX)
        self.fs.put_file(str(local), partial)
        self.fs.mv(partial, self.path(relative))

    def open_partial(self, relative: str):
        """A binary file to stream `relative` into; `publish(relative)` once it is closed."""
        self._make_parent(relative)
        return self.fs.open(self.path(relative + PARTIAL_SUFFIX), "wb")

    def publish(self, relative: str) -> None:
        self.fs.mv(self.path(relative + PARTIAL_SUFFIX), self.path(relative))

    def list(self, folder: str, pattern: str = "*") -> list[str]:
        """Names (relative to `folder`) of the files in `folder` that match `pattern`; none if it is missing."""
        found = self.fs.glob(self.path(f"{folder}/{pattern}"))
        return sorted(PurePosixPath(path).name for path in found)

    def remove(self, relative: str) -> None:
        """Remove a file or a whole folder; nothing happens if it is not there."""
        path = self.path(relative)
        if self.fs.isdir(path):
            self.fs.rm(path, recursive=True)
        elif self.fs.exists(path):
            self.fs.rm_file(path)

    @contextmanager
    def local_file(self, relative: str) -> Iterator[Path]:
        """`relative` as a local file for the duration of the block (a temporary copy if this folder is remote)."""
        if self.is_local:
            yield Path(self.path(relative))
            return
        with local_copy(self.fs, self.path(relative)) as path:
            yield path

    @contextmanager
    def staged(self, relative: str) -> Iterator[Path]:
        """A local folder whose files end up in `relative`: this folder's own if local, else a temporary
        folder of the same name whose files are uploaded at the end of the block."""
        if self.is_local:
            target = Path(self.path(relative))
            target.mkdir(parents=True, exist_ok=True)
            yield target
            return
        with tempfile.TemporaryDirectory(prefix="svd-stage-") as temporary:
            staging = Path(temporary, relative)
            staging.mkdir(parents=True)
            yield staging
            for local in sorted(staging.rglob("*")):
                if local.is_file():
                    self.upload(local, f"{relative}/{local.relative_to(staging).as_posix()}")

    def _make_parent(self, relative: str) -> None:
        parent = str(PurePosixPath(self.path(relative)).parent)
        if not self.is_local:  # another process (a Ray task) may have made it since this one listed the parent
            self.fs.invalidate_cache()
        self.fs.makedirs(parent, exist_ok=True)  # a no-op on object stores, which have no folders


@contextmanager
def local_source(source: str) -> Iterator[Path]:
    """A source video as a local file: in place if local, else a temporary copy with the same file name
    (clip keys are made from the name)."""
    fs, path = filesystem(source)
    if isinstance(fs, LocalFileSystem):
        yield Path(path)
        return
    with local_copy(fs, path) as copy:
        yield copy


@contextmanager
def local_copy(fs: fsspec.AbstractFileSystem, path: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="svd-input-") as temporary:
        copy = Path(temporary) / PurePosixPath(path).name
        fs.get_file(path, str(copy))
        yield copy


def find_files(location: str, suffixes: set[str], others: list[str] | None = None) -> list[str] | None:
    """Locations of the files under `location` with one of `suffixes` (recursively), or None if it is not
    a folder. Each is named the way `location` was: a path, or a URL with its scheme and host. The files
    with other suffixes are appended to `others`, when given."""
    fs, root = filesystem(location)
    if not fs.isdir(root):
        return None
    prefix = normalise(location).rstrip("/")
    found = []
    for path in sorted(fs.find(root)):
        relative = PurePosixPath(path).relative_to(PurePosixPath(root.rstrip("/") or "/"))
        named = f"{prefix}/{relative.as_posix()}"
        if PurePosixPath(path).suffix.lower() in suffixes:
            found.append(named)
        elif others is not None:
            others.append(named)
    return found
