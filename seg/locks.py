"""Advisory locks: one seg process at a time writes a local folder (a run, an unsharded store)
or one output file (a scene's mask).

A lock is a small file created exclusively (`O_EXCL`), holding the owner's pid, host and
command. A second writer gets one line naming the first; a lock whose process is gone (killed)
is taken over, and whoever takes it over may then clean what the dead writer left (its
temporary files). gs:// targets are not locked: object writes there are atomic, and a lock
object would outlive a preempted VM.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from types import TracebackType
from typing import Any

from seg.errors import ResourceError
from seg.fs import LOCK, is_remote

# A lock file that cannot be read yet is younger than this: its writer is between creating it
# and writing its pid, so it is live, not stale.
FRESH_S = 10.0


class _Lock:
    def __init__(self, path: str | None, target: str, what: str) -> None:
        self.path = path  # the lock file; None: nothing to lock (gs://, or disabled)
        self.target, self.what = target, what
        self._made: list[str] = []  # folders made for the lock file, removed again if empty

    def acquire(self) -> None:
        if self.path is None:
            return
        me = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what}
        folder = os.path.dirname(os.path.abspath(self.path))
        missing = []
        while folder and not os.path.isdir(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._made = missing  # deepest first
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = _owner(self.path)
                if owner is None or (_alive(owner) and owner.get("pid") != os.getpid()):
                    owner = owner or {}
                    raise ResourceError(
                        f"{self.target} is in use by another {owner.get('what', 'seg')} (pid"
                        f" {owner.get('pid', '?')} on {owner.get('host', '?')}); wait for it to"
                        " finish or choose another --out"
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)  # its process is gone: take over
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return
        raise ResourceError(
            f"{self.target} is being taken by another seg process; try again or choose another"
            " --out"
        )

    def release(self) -> None:
        """Remove the lock, and the folders acquiring it made if nothing else went into them
        (a refused `seg predict --out new/` leaves no `new/` behind)."""
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
        for folder in self._made:
            try:
                os.rmdir(folder)
            except OSError:
                break  # not empty: this run wrote into it
        self._made = []

    def __enter__(self) -> _Lock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class FolderLock(_Lock):
    """`<folder>/.seg-lock`: one writer of a run folder or an unsharded store."""

    def __init__(self, folder: str, what: str, enabled: bool = True) -> None:
        local = enabled and not is_remote(folder)
        folder = str(folder).removeprefix("file://")
        super().__init__(os.path.join(folder, LOCK) if local else None, folder, what)
        self.folder = folder


class FileLock(_Lock):
    """`.<name>.seg-lock` beside the file `path`: one writer of an output file."""

    def __init__(self, path: str, what: str) -> None:
        local = str(path).removeprefix("file://")
        head, name = os.path.split(os.path.abspath(local))
        lock = None if is_remote(path) else os.path.join(head, f".{name}{LOCK}")
        super().__init__(lock, str(path), what)


def _owner(path: str) -> dict[str, Any] | None:
    """Who holds the lock file; {} when it is unreadable and old (stale), None when it is
    unreadable and fresh (its writer is still writing it)."""
    try:
        with open(path) as f:
            owner = json.load(f)
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        try:
            fresh = time.time() - os.path.getmtime(path) < FRESH_S
        except OSError:
            return {}
        return None if fresh else {}


def _alive(owner: dict[str, Any]) -> bool:
    """Whether the lock's process still runs (another host's: assumed to, to be safe)."""
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder(folder: str) -> dict[str, Any] | None:
    """The live process holding `folder`'s lock ({pid, host, what}), or None (no lock, a dead
    holder, a gs:// folder)."""
    path = FolderLock(folder, "seg").path  # None on gs://
    if path is None or not os.path.exists(path):
        return None
    owner = _owner(path)
    return owner if owner and _alive(owner) else None
