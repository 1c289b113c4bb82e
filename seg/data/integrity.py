"""`seg check STORE`: read every window of a window store back and name the damaged ones.

Every stored window is decoded the way training reads it (`WindowReader`): on stores written
with checksums (`seg.data.schema.CHECKSUM`) a single flipped byte in a window's chunk fails its
CRC32C, and a damaged shard index fails its own; a chunk that no longer decodes, an array whose
metadata is gone, and scenes left unfinished by a killed `seg tile` are reported too. The check
only reads: the fix is to re-tile the scenes it names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from seg.data.store import WindowStore
from seg.data.window_reader import WindowReader
from seg.errors import SegError
from seg.report import SILENT, Reporter


@dataclass(frozen=True)
class Damage:
    scene: str
    array: str  # "image" or "mask", or "scene" when the scene itself cannot be opened
    window: int | None
    reason: str

    def __str__(self) -> str:
        where = f"window {self.window} ({self.array})" if self.window is not None else self.array
        return f"scene {self.scene!r} {where}: {self.reason}"


@dataclass
class CheckReport:
    path: str
    scenes: int = 0
    windows: int = 0
    checksummed: bool = True  # every array carries per-window checksums
    unfinished: list[str] = field(default_factory=list)  # scenes a killed tile left
    damaged: list[Damage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.damaged

    def damaged_scenes(self) -> list[str]:
        return sorted({d.scene for d in self.damaged})


def check_store(path: str, reporter: Reporter = SILENT) -> CheckReport:
    """Read every window of every finished scene of the store at `path`."""
    store = WindowStore.open(path)
    report = CheckReport(path)
    ids = store.scene_ids()
    report.unfinished = sorted(k for k, _ in store.root.groups() if not store.is_done(k))
    with reporter.bar("scenes", len(ids)) as bar:
        for sid in ids:
            report.scenes += 1
            _check_scene(store, sid, report)
            bar.advance()
    return report


def _check_scene(store: WindowStore, sid: str, report: CheckReport) -> None:
    try:
        scene = store.scene(sid)
        arrays = {"image": scene.image, "mask": scene.mask}
        n = len(scene)
    except (SegError, KeyError, ValueError, OSError) as exc:
        report.damaged.append(Damage(sid, "scene", None, _reason(exc)))
        return
    for name, array in arrays.items():
        if array is None:
            continue
        codecs = [type(c).__name__ for c in getattr(array, "compressors", ())]
        report.checksummed &= "Crc32cCodec" in codecs
        reader = WindowReader(array)
        for w in range(n):
            try:
                reader.read(w)
            except Exception as exc:  # any decode failure is damage, named by its window
                report.damaged.append(Damage(sid, name, w, _reason(exc)))
    report.windows += n


def _reason(exc: BaseException) -> str:
    text = (str(exc).splitlines() or [""])[0][:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
