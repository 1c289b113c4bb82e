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


def is_dir(path: str) -> bool:
    """Whether `path` is a folder (local or gs://); False when it cannot be reached."""
    fs, p = filesystem(path)
    try:
        return bool(fs.isdir(p))
    except Exception:
        return False


def low_on_space(folder: str, below: int = 1 << 20) -> bool:
    """Whether the local file system holding `folder` has less than `below` bytes free."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < below


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


LOCK = ".seg-lock"  # a folder's lock file (seg.locks); `.<name>.seg-lock` locks one file


def remove_stale_temporaries(folder: str, of: str | None = None) -> list[str]:
    """Temporary files (`.<name>.<uuid>.tmp*`) a killed writer left in a local folder, or only
    those of the file named `of` in it; call it only while holding the folder's (or that
    file's) lock, when no other writer can own them."""
    if is_remote(folder) or not os.path.isdir(folder):
        return []
    gone = []
    for name in os.listdir(folder):
        if not (name.startswith(".") and ".tmp" in name) or name.endswith(LOCK):
            continue
        if of is not None and not _temporary_of(name, of):
            continue
        with contextlib.suppress(OSError):
            os.remove(os.path.join(folder, name))
            gone.append(name)
    return gone


def remove_leftovers_of(path: str) -> list[str]:
    """The temporaries a killed writer of the local file `path` left beside it."""
    if is_remote(path):
        return []
    local = os.path.abspath(str(path).removeprefix("file://"))
    return remove_stale_temporaries(os.path.dirname(local), of=os.path.basename(local))


def _temporary_of(name: str, of: str) -> bool:
    """Whether `name` is `.<of>.<32 hex>.tmp*`, the name `write_bytes_atomic` and
    `local_copy_for_write` give a temporary of the file `of`."""
    prefix = f".{of}."
    if not name.startswith(prefix):
        return False
    token, _, tail = name[len(prefix) :].partition(".")
    return (
        len(token) == 32 and all(c in "0123456789abcdef" for c in token) and tail.startswith("tmp")
    )


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


def write_files_atomic(folder: str, files: dict[str, bytes]) -> list[str]:
    """Write several files into `folder`, all or none: locally into a temporary folder first,
    then renamed in (needs no space); gs:// objects are each atomic already."""
    import shutil

    paths = [join(folder, name) for name in files]
    if is_remote(folder):
        for path, data in zip(paths, files.values(), strict=True):
            write_bytes_atomic(path, data)
        return paths
    local = str(folder).removeprefix("file://")
    made = not os.path.isdir(local)
    os.makedirs(local, exist_ok=True)
    work = os.path.join(local, f".seg-files.{uuid.uuid4().hex}.tmp")
    try:
        for name, data in files.items():
            target = os.path.join(work, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for name in files:
            final = os.path.join(local, name)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.replace(os.path.join(work, name), final)
    except BaseException:
        if made:
            shutil.rmtree(local, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return paths


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
