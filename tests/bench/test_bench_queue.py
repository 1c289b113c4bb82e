"""bench/queue_overhead.py --quick runs the jobs both ways and prints its side-by-side figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_queue_quick(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "queue_overhead.py"),
            "--quick",
            "--work",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures = {
        key.strip(): float(value.split()[0])
        for key, value in (line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    }
    assert set(figures) == {
        "direct, one after the other",
        "seg queue submit (local)",
        "ratio queue / direct",
        "start-up + shutdown, once",
        "overhead per job",
    }
    # the ratio is the two printed times divided (up to their rounding)
    ratio = figures["seg queue submit (local)"] / figures["direct, one after the other"]
    assert abs(figures["ratio queue / direct"] - ratio) < 0.02 * ratio + 0.01
    states = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("j*/job.json")]
    assert len(states) == 3 and all(s["state"] == "done" for s in states)
