"""bench/search.py --quick runs a grid and a pruned search through `seg queue` and compares them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import ROOT, env


@pytest.mark.slow
def test_bench_search_quick_compares_grid_and_search(tmp_path: Path) -> None:
    out = tmp_path / "search.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "search.py"), "--quick", "--work",
         str(tmp_path / "work"), "--json", str(out)],
        capture_output=True, text=True, env=env(), cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    got = json.loads(out.read_text())
    assert "search / grid wall time" in res.stdout
    for name in ("grid", "search"):
        assert got[name]["trials"] == 2 and got[name]["best_lr"] in (1e-5, 3e-2)
        assert 0.0 <= got[name]["best_miou"] <= 1.0
    assert got["grid"]["pruned"] == 0 and got["grid"]["epochs"] == 4  # a grid runs every epoch
    assert got["wall_ratio"] == pytest.approx(got["search"]["wall_s"] / got["grid"]["wall_s"], 0.01)
