"""bench/metadata.py --quick trains plain and FiLM-conditioned models on the seasons set through
the real CLI and prints, per variant, mIoU, steps, s/step and parameters, then the difference."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import ROOT, env


@pytest.mark.slow
def test_bench_metadata_quick(tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "metadata.py"), "--quick", "--sets", "seasons",
         "--variants", "plain,film", "--work", str(tmp_path), "--json", str(out)],
        capture_output=True, text=True, env=env(), cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    line = r"^{}\s+mIoU \d\.\d{{4}} \(background=.* crop=.*\); steps \d+, [\d.]+ s/step, \d+ param"
    for who in ("plain", "film"):
        assert re.search(line.format(who), res.stdout, re.M), res.stdout
    assert re.search(r"^film - plain: mIoU [+-]\d\.\d{4}, \+\d+ parameters", res.stdout, re.M)
    row = json.loads(out.read_text())["seasons"]
    assert row["film"]["parameters"] > row["plain"]["parameters"]
