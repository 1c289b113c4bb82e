"""One writer at a time, and nothing a killed writer left is kept: locks on run folders and
output files, "done" only for this scene and checkpoint, temporaries cleaned by the next run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import make_checkpoint, one_line_error, synthetic_pair, write_geotiff

from seg import fs as segfs
from seg.errors import ResourceError
from seg.locks import FileLock, FolderLock

Run = Callable[..., tuple[int, str, str]]
DEAD_PID = 2**22 + 12345  # above Linux's pid_max: no such process


def owner(pid: int, what: str = "seg predict") -> str:
    return json.dumps({"pid": pid, "host": socket.gethostname(), "what": what})


def test_one_writer_per_run_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / ".last.pt.0123abcd.tmp").write_bytes(b"torn")  # left by a killed writer
    (run / "last.pt").write_bytes(b"kept")
    mine = FolderLock(str(run), "seg train")
    mine.acquire()
    assert segfs.remove_stale_temporaries(str(run)) == [".last.pt.0123abcd.tmp"]
    assert sorted(p.name for p in run.iterdir()) == [".seg-lock", "last.pt"]
    # Another live process holds it: refused, naming it.
    (run / ".seg-lock").write_text(owner(1, "seg train"))
    with pytest.raises(ResourceError, match=r"in use by another seg train \(pid 1"):
        FolderLock(str(run), "seg train").acquire()
    # A killed one (no such process): taken over.
    (run / ".seg-lock").write_text(owner(DEAD_PID))
    FolderLock(str(run), "seg train").acquire()
    assert json.loads((run / ".seg-lock").read_text())["pid"] == os.getpid()
    mine.release()
    assert not (run / ".seg-lock").exists()


def test_a_lock_being_written_is_live_and_an_old_unreadable_one_is_stale(tmp_path: Path) -> None:
    target = tmp_path / "a_mask.tif"
    lock = tmp_path / ".a_mask.tif.seg-lock"
    lock.write_text("")  # another process between creating it and writing its pid
    with pytest.raises(ResourceError, match="in use by another seg"):
        FileLock(str(target), "seg predict").acquire()
    old = time.time() - 60
    os.utime(lock, (old, old))  # its writer died before writing it
    with FileLock(str(target), "seg predict"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_a_second_process_cannot_take_a_held_file_lock(tmp_path: Path) -> None:
    target = tmp_path / "a_mask.tif"
    code = (
        "import sys, time; from seg.locks import FileLock;"
        f" FileLock({str(target)!r}, 'seg predict').acquire(); print('held', flush=True);"
        " time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(ResourceError, match=rf"pid {child.pid} on"):
            FileLock(str(target), "seg predict").acquire()
    finally:
        child.kill()
        child.wait()
    with FileLock(str(target), "seg predict"):  # its holder was killed: taken over
        pass


def test_only_a_files_own_temporaries_are_removed(tmp_path: Path) -> None:
    hexa = "0123456789abcdef" * 2
    mine = [f".a_mask.tif.{hexa}.tmp.tif", f".a_mask.tif.{hexa}.tmp"]
    others = [f".b_mask.tif.{hexa}.tmp.tif", ".a_mask.tif.notes.tmp", "a_mask.tif", ".a_mask.tif"]
    for name in mine + others:
        (tmp_path / name).write_bytes(b"x")
    assert sorted(segfs.remove_leftovers_of(str(tmp_path / "a_mask.tif"))) == sorted(mine)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others)


def _scene(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    image, _ = synthetic_pair(64, 64, 3, seed=2)
    return write_geotiff(folder / "x.tif", image)


def test_two_predicts_into_one_file_the_second_is_refused(tmp_path: Path, seg_run: Run) -> None:
    s = _scene(tmp_path / "scenes")
    ckpt = make_checkpoint(tmp_path / "best.pt", size=64)
    out = tmp_path / "masks"
    out.mkdir()
    (out / ".x_mask.tif.seg-lock").write_text(owner(1))  # a live predict writes x_mask.tif
    code, _, err = seg_run("predict", s, "-k", ckpt, "--out", out, "-q")
    assert one_line_error(code, err) and "in use by another seg predict (pid 1" in err, err
    assert sorted(p.name for p in out.iterdir()) == [".x_mask.tif.seg-lock"]  # nothing written
    (out / ".x_mask.tif.seg-lock").write_text(owner(DEAD_PID))  # that writer was killed
    code, _, err = seg_run("predict", s, "-k", ckpt, "--out", out, "-q")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["x_mask.tif"]  # its lock released


def test_predict_clears_what_a_killed_predict_left(tmp_path: Path, seg_run: Run) -> None:
    s = _scene(tmp_path / "scenes")
    ckpt = make_checkpoint(tmp_path / "best.pt", size=64)
    out = tmp_path / "masks"
    out.mkdir()
    hexa = "fedcba9876543210" * 2
    torn = [f".x_mask.tif.{hexa}.tmp.tif", f".x_mask_probs.tif.{hexa}.tmp.tif"]
    for name in torn:
        (out / name).write_bytes(b"half a COG")
    temp = Path(tempfile.gettempdir())
    dead = temp / f"seg-cog-{DEAD_PID}-abc"  # a killed writer's scene-sized work folder
    live = temp / f"seg-cog-{os.getppid()}-abc"  # a running writer's (the test's parent)
    for folder in (dead, live):
        folder.mkdir(exist_ok=True)
        (folder / "work.tif").write_bytes(b"x" * 1000)
    try:
        code, _, err = seg_run("predict", s, "-k", ckpt, "--out", out, "--probabilities", "-q")
        assert code == 0, err
        assert sorted(p.name for p in out.iterdir()) == ["x_mask.tif", "x_mask_probs.tif"]
        assert not dead.exists() and (live / "work.tif").exists()
    finally:
        for folder in (dead, live):
            segfs_rm(folder)


def segfs_rm(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def test_a_mask_of_another_checkpoint_is_not_taken_for_done(tmp_path: Path, seg_run: Run) -> None:
    s = _scene(tmp_path / "scenes")
    first = make_checkpoint(tmp_path / "first.pt", size=64)
    second = make_checkpoint(tmp_path / "second.pt", size=64)
    out = tmp_path / "masks"
    assert seg_run("predict", s, "-k", first, "--out", out, "-q")[0] == 0
    mask = (out / "x_mask.tif").read_bytes()
    code, _, err = seg_run("predict", s, "-k", first, "--out", out, "-q")
    assert code == 0 and (out / "x_mask.tif").read_bytes() == mask  # done: skipped
    code, _, err = seg_run("predict", s, "-k", second, "--out", out, "-q")
    assert one_line_error(code, err) and "by checkpoint" in err and "--overwrite" in err, err
    assert (out / "x_mask.tif").read_bytes() == mask
    code, _, err = seg_run("predict", s, "-k", second, "--out", out, "--overwrite", "-q")
    assert code == 0, err


@pytest.mark.slow
def test_predict_killed_at_seeded_moments_then_rerun_equals_a_clean_run(tmp_path: Path) -> None:
    """kill -9 of `seg predict` at seeded random moments; the re-run's masks equal an
    uninterrupted run's, and no temporary, lock or work folder is left anywhere."""
    import random
    import signal

    folder = tmp_path / "scenes"
    folder.mkdir()
    for i, (h, w) in enumerate([(70, 64), (400, 330), (96, 64)]):
        write_geotiff(folder / f"k{i}.tif", synthetic_pair(h, w, 3, seed=i)[0])
    ckpt = make_checkpoint(tmp_path / "best.pt", size=64)
    cmd = [sys.executable, "-m", "seg", "predict", str(folder), "-k", str(ckpt), "-q",
           "--probabilities"]  # fmt: skip
    clean = tmp_path / "clean"
    subprocess.run([*cmd, "--out", str(clean)], check=True, capture_output=True)
    rng = random.Random(7)
    for trial in range(3):
        out = tmp_path / f"killed{trial}"
        proc = subprocess.Popen([*cmd, "--out", str(out)], stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 6.0))  # import (~2-3 s) to the middle of the big scene
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rerun = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in clean.iterdir())
        for p in clean.iterdir():
            with rasterio.open(p) as a, rasterio.open(out / p.name) as b:
                np.testing.assert_array_equal(a.read(), b.read())
        temp = Path(tempfile.gettempdir())
        assert not list(temp.glob(f"seg-cog-{proc.pid}-*")), "a killed writer's work folder"
