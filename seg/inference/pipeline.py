"""Overlap reading and writing with the network: one thread ahead, one thread behind.

`seg predict` reads + normalises the next batch (`prefetch`) and blends + writes the previous
one (`Behind`) while the network runs on the current batch. numpy, GDAL and torch release the
GIL in their heavy loops, so on a GPU (or spare CPU cores) I/O hides behind the forward pass.
Each side keeps at most `depth` items in flight, so memory stays bounded; an error on either
side is raised in the caller's thread, and every thread is joined before the call returns.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate `items` in a background thread, `depth` items ahead of the consumer."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((True, _DONE))
        except BaseException as exc:  # handed to the consumer, raised there
            q.put((False, exc))

    thread = threading.Thread(target=produce, name="seg-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


class Behind:
    """Run submitted calls in order in one background thread, at most `depth` queued."""

    def __init__(self, depth: int = 2) -> None:
        self.q: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="seg-behind", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            job = self.q.get()
            if job is _DONE:
                return
            if self.error is None:
                try:
                    job()
                except BaseException as exc:
                    self.error = exc

    def submit(self, fn: Callable[[], None]) -> None:
        if self.error is not None:
            raise self.error
        self.q.put(fn)

    def close(self) -> None:
        """Wait for every submitted call; raise the first error any of them raised."""
        self.q.put(_DONE)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Stop after the calls already queued; their errors are dropped (one is in flight)."""
        self.error = self.error or RuntimeError("aborted")
        self.q.put(_DONE)
        self.thread.join()


def return_freed_memory() -> None:
    """Give freed heap memory back to the OS (glibc's malloc_trim; a no-op elsewhere).

    Strips, windows and probabilities of a few MB are allocated in one thread and freed in
    another; glibc keeps such memory in its per-thread arenas, so RSS would creep up with the
    scene's height although the live data does not. Called once per row of windows: cheap.
    (A fixed mmap threshold would do the same but slows torch's own allocations by ~30 %.)
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
