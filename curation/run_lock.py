"""One job at a time in an output folder: `svd curate`'s OUT, `svd train`'s RUN_DIR.

A job holds `FOLDER/.lock` (JSON: host, pid, start time, command) while it runs and removes it at the end. A
second job on the same folder is refused in one line naming the holder. A lock left by a job that died is stale
and is taken over, with a line saying so:
  - on the same host, when the holder's process no longer exists;
  - from another host (a shared or remote folder), when the holder has not refreshed the lock for `STALE_SECONDS`
    (a live holder rewrites it every `HEARTBEAT_SECONDS`).
On a local disk the lock is created atomically (O_EXCL). On remote storage (fsspec) there is no atomic create:
the lock is written, then read back, and the job goes ahead only if it reads its own token, so two jobs started
within the same moment can still both go ahead there (documented in the README).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 300.0


class FolderLocked(Exception):
    """Another live job holds the folder: one line naming it (host, pid, start time)."""


@contextmanager
def run_lock(fs: AbstractFileSystem, folder: str, what: str) -> Iterator[dict]:
    """Hold `folder`/.lock for the block (the folder is created if needed); FolderLocked if another job holds it.
    `what` names the folder in messages ("OUT", "RUN_DIR"). Yields the lock's record."""
    fs.makedirs(folder, exist_ok=True)
    path = f"{folder.rstrip('/')}/{LOCK_FILE}"
    record = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "heartbeat": time.time(),
        "command": " ".join(sys.argv) or "python",
        "token": uuid.uuid4().hex,
    }
    _acquire(fs, path, record, what)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(fs, path, record, stop), daemon=True, name="run-lock")
    beat.start()
    try:
        yield record
    finally:
        stop.set()
        beat.join()
        if _token(fs, path) == record["token"]:
            fs.rm(path)


def _acquire(fs: AbstractFileSystem, path: str, record: dict, what: str) -> None:
    for _ in range(3):  # a stale lock removed, or one that vanished as it was read: try again
        if _create(fs, path, record):
            if _token(fs, path) == record["token"]:
                return
        holder = _read(fs, path)
        if holder is None:
            continue
        if _alive(holder):
            raise FolderLocked(
                f"{what} {path.removesuffix('/' + LOCK_FILE)} is in use by another job (host {holder.get('host')}, pid "
                f"{holder.get('pid')}, started {holder.get('started')}): wait for it to finish, or use another {what}"
            )
        log.warning(
            "taking over the stale lock of %s (host %s, pid %s, started %s): that job is no longer running",
            path,
            holder.get("host"),
            holder.get("pid"),
            holder.get("started"),
        )
        fs.rm(path)
    raise FolderLocked(f"{what} {path}: cannot take the lock (other jobs keep taking it)")


def _create(fs: AbstractFileSystem, path: str, record: dict) -> bool:
    data = json.dumps(record).encode()
    if isinstance(fs, LocalFileSystem):
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        return True
    if fs.exists(path):
        return False
    with fs.open(path, "wb") as file:
        file.write(data)
    return True


def _read(fs: AbstractFileSystem, path: str) -> dict | None:
    try:
        return json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return None
    except ValueError:  # half-written by a job that died: stale
        return {}


def _token(fs: AbstractFileSystem, path: str) -> str | None:
    holder = _read(fs, path)
    return None if holder is None else holder.get("token")


def _alive(holder: dict) -> bool:
    if not holder:
        return False
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's live process
            return True
        return True
    return time.time() - float(holder.get("heartbeat", 0)) < STALE_SECONDS


def _heartbeat(fs: AbstractFileSystem, path: str, record: dict, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        if _token(fs, path) != record["token"]:
            return  # taken over (this job was thought dead): leave it to its new holder
        record["heartbeat"] = time.time()
        with fs.open(path, "wb") as file:
            file.write(json.dumps(record).encode())
