"""Local-or-`gs://` file access in one place (fsspec + gcsfs).

Local paths need no account. `gs://` uses Application Default Credentials, or the emulator named
by `STORAGE_EMULATOR_HOST` (then anonymous), which is how the tests reach a fake GCS on 127.0.0.1.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import uuid
import weakref
from collections.abc import Iterator
from typing import IO, Any

# gcsfs probes the bucket type over gRPC, which an HTTP emulator cannot answer (40-90 s stalls).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
# gcsfs logs a traceback when it gives up on a request; `unreachable()` reports it in one line.
logging.getLogger("gcsfs").setLevel(logging.CRITICAL)

import fsspec  # noqa: E402

from seg.errors import ResourceError, SegError  # noqa: E402


def is_remote(path: str) -> bool:
    return "://" in str(path) and not str(path).startswith("file://")


def storage_options(path: str) -> dict[str, Any]:
    """fsspec options for `path`: emulator endpoint when STORAGE_EMULATOR_HOST is set."""
    if str(path).startswith("gs://"):
        host = os.environ.get("STORAGE_EMULATOR_HOST")
        if host:
            if not host.startswith("http"):
                host = "http://" + host
            return {"endpoint_url": host, "token": "anon"}
    return {}


def filesystem(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for `path` and the path as that filesystem names it."""
    # url_to_fs, not get_fs_token_paths: the latter expands a glob to its first match.
    fs, p = fsspec.core.url_to_fs(str(path), **storage_options(path))
    return fs, p


def join(base: str, *parts: str) -> str:
    out = str(base).rstrip("/")
    for p in parts:
        out = out + "/" + str(p).strip("/")
    return out


def exists(path: str) -> bool:
    fs, p = filesystem(path)
    try:
        return bool(fs.exists(p))
    except Exception as exc:  # network or permission trouble: tell the user where
        raise unreachable(path, exc) from exc


def unreachable(path: str, exc: BaseException) -> SegError:
    return SegError(
        f"cannot reach {path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        " (check the bucket name, your credentials (gcloud auth application-default login)"
        " and the network)"
    )


def check_writable(out: str) -> None:
    """Fail before any work if `out` (a .tif file, or a folder; local or gs://) cannot be
    written: a missing bucket, a read-only folder, no permission."""
    single = str(out).lower().endswith((".tif", ".tiff"))
    if is_remote(out):
        scheme, rest = str(out).split("://", 1)
        bucket = rest.split("/", 1)[0]
        if not exists(f"{scheme}://{bucket}"):
            raise ResourceError(
                f"the bucket of --out {out} does not exist (create it: gcloud storage buckets"
                f" create {scheme}://{bucket})"
            )
        folder = str(out).rsplit("/", 1)[0] if single else str(out)
        probe = join(folder, f".seg-write-probe-{uuid.uuid4().hex}")
        try:
            fs, p = filesystem(probe)
            fs.pipe_file(p, b"ok")
            fs.rm(p)
        except Exception as exc:
            raise unreachable(out, exc) from exc
        return
    local = str(out).removeprefix("file://")
    target = os.path.abspath(os.path.dirname(os.path.abspath(local)) if single else local)
    made = []  # folders this probe creates: removed again, so a refused run leaves nothing
    folder = target
    while not os.path.exists(folder):
        made.append(folder)
        folder = os.path.dirname(folder)
    try:
        os.makedirs(target, exist_ok=True)
        probe = os.path.join(target, f".seg-write-probe-{uuid.uuid4().hex}")
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ResourceError(f"cannot write to {target} (--out {out}): {reason}") from exc
    finally:
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                os.rmdir(folder)


LOCK = ".seg-lock"


class FolderLock:
    """One seg process at a time writes into a local folder (a run, a store): a `.seg-lock`
    file created exclusively, holding the owner's pid and host. A lock whose process is gone
    (killed) is taken over; a live one is refused with who holds it. gs:// folders: no lock."""

    def __init__(self, folder: str, what: str, enabled: bool = True) -> None:
        local = enabled and not is_remote(folder)
        self.path = os.path.join(str(folder), LOCK) if local else None
        self.folder, self.what = str(folder), what

    def acquire(self) -> None:
        import json
        import socket

        if self.path is None:
            return
        me = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what}
        os.makedirs(self.folder.removeprefix("file://"), exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    with open(self.path) as f:
                        owner = json.load(f)
                except (OSError, ValueError):
                    owner = {}
                if _alive(owner) and owner.get("pid") != os.getpid():
                    raise ResourceError(
                        f"{self.folder} is in use by another {owner.get('what', 'seg')} (pid"
                        f" {owner.get('pid')} on {owner.get('host')}); wait for it to finish or"
                        " choose another --out"
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)  # its process is gone: take the folder over
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return

    def release(self) -> None:
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)


def _alive(owner: dict[str, Any]) -> bool:
    """Whether the lock's process still runs (another host's: assumed to, to be safe)."""
    import socket

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


def remove_stale_temporaries(folder: str) -> list[str]:
    """Temporary files (`.<name>.<uuid>.tmp*`) a killed writer left in a local folder; call it
    only while holding the folder's lock, when no other writer can own them."""
    if is_remote(folder) or not os.path.isdir(folder):
        return []
    gone = []
    for name in os.listdir(folder):
        if name.startswith(".") and ".tmp" in name and name != LOCK:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))
                gone.append(name)
    return gone


def open_file(path: str, mode: str = "rb") -> IO[Any]:
    return fsspec.open(str(path), mode, **storage_options(path)).open()


def read_bytes(path: str) -> bytes:
    with open_file(path, "rb") as f:
        return f.read()


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write `data` so that readers see either the old object or the whole new one.

    Locally: temporary name in the same folder, fsync, then rename. On GCS an object is only
    visible once its upload completes, so a plain write is already atomic.
    """
    if is_remote(path):
        fs, p = filesystem(path)
        fs.pipe_file(p, data)
        return
    local = str(path).removeprefix("file://")
    folder = os.path.dirname(os.path.abspath(local))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(local)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, local)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


@contextlib.contextmanager
def local_copy_for_write(path: str, suffix: str = "") -> Iterator[str]:
    """Yield a local temporary path; on success it becomes `path` atomically (local or gs://).

    On failure the temporary file is removed, so nothing half-written is left behind.
    """
    import tempfile

    if is_remote(path):
        fd, tmp = tempfile.mkstemp(suffix=suffix)
        os.close(fd)
        try:
            yield tmp
            fs, p = filesystem(path)
            fs.put_file(tmp, p)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        return
    local = str(path).removeprefix("file://")
    folder = os.path.dirname(os.path.abspath(local))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(local)}.{uuid.uuid4().hex}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, local)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def close_sessions() -> None:
    """Close gcsfs HTTP sessions in the event loop that opened them.

    zarr opens gs:// stores in its own event loop; at exit gcsfs tries to close those sessions
    from fsspec's loop and prints a traceback ("attached to a different loop"). Closing them
    here first (at exit, and from the CLI) keeps the output to what seg says.
    """
    import asyncio
    import sys

    gcsfs = sys.modules.get("gcsfs")
    if gcsfs is None:
        return
    for inst in list(getattr(gcsfs.GCSFileSystem, "_cache", {}).values()):
        session = getattr(inst, "_session", None)
        loop = getattr(session, "_loop", None)
        if session is None or session.closed or loop is None or not loop.is_running():
            continue
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(session.close(), loop).result(timeout=2)


# weakref.finalize (which gcsfs uses) registers its exit hook on first use; register ours after
# it so that ours runs first (atexit is last in, first out).
weakref.finalize(close_sessions, lambda: None)
atexit.register(close_sessions)
