"""A time-budgeted run plans itself: the LR schedule ends decayed when the budget ends, the run
stops at a step, validation and checkpoints are counted, and the summary says where the time went.
The plan is tested with a controlled clock; one real run checks the loop uses it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import one_line_error

from seg.errors import ConfigError
from seg.training import budget as budget_mod
from seg.training.budget import Budget, Horizon

Run = Callable[..., tuple[int, str, str]]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(budget_mod.time, "perf_counter", c)
    return c


def test_horizon_moves_to_where_the_budget_ends(clock: Clock) -> None:
    plan = Budget(100.0, Horizon(1000))
    clock.now = 10.0  # start-up
    plan.charge("train", 2.0)
    plan.charge("data", 0.0)
    plan.steps = 2  # 1 s per step
    clock.now = 12.0
    plan.replan(global_step=2, val_windows=30, batch=4)
    # 88 s left, less the estimated final validation (30 windows x 1 s / 4 / 3) + 2 s checkpoint.
    assert plan.horizon.steps == 2 + int(88 - (30 / 4 / 3 + 2.0))
    # Once a validation + checkpoint were measured, their real cost is reserved.
    plan.charge("validation", 5.0)
    plan.charge("checkpoints", 1.0)
    plan.validations = 1
    assert plan.reserve(30, 4) == pytest.approx(1.2 * 6.0)


def test_stops_at_a_step_when_one_more_would_not_fit(clock: Clock) -> None:
    plan = Budget(20.0, Horizon(10))
    assert not plan.out_of_time(8, 4)  # no step measured yet
    plan.charge("train", 3.0)
    plan.steps = 1
    clock.now = 12.0
    assert not plan.out_of_time(8, 4)  # 12 + 3 + (8 x 3 / 4 / 3 + 2) = 19 <= 20
    clock.now = 13.5
    assert plan.out_of_time(8, 4) and plan.time_up


def test_a_budget_too_small_names_the_minimum(clock: Clock) -> None:
    plan = Budget(5.0, Horizon(10))
    plan.charge("train", 4.0)
    plan.steps = 1
    clock.now = 6.0
    with pytest.raises(ConfigError, match=r"time_budget_s=5 is too small.*give at least \d+ s"):
        plan.check_enough(16, 4)


def test_validations_are_spread_over_the_budget(clock: Clock) -> None:
    plan = Budget(100.0, Horizon(10))
    clock.now = 10.0
    assert not plan.validation_due()
    clock.now = 100.0 / (budget_mod.VALIDATIONS + 1) + 0.1
    assert plan.validation_due()  # every budget / (VALIDATIONS + 1)
    plan.last_validation = clock.now
    clock.now += 10.0
    assert not plan.validation_due()


@pytest.mark.slow
def test_budgeted_run_ends_with_a_decayed_lr_and_a_summary(
    make_store, tmp_path: Path, seg_run: Run
) -> None:
    store = make_store(windows=6)
    out = tmp_path / "run"
    args = [
        "train",
        "-c",
        "configs/unet_mobilenetv2.yaml",
        "-d",
        store,
        "--out",
        out,
        "--set",
        "train.time_budget_s=25",
        "--set",
        "data.batch_size=2",
        "--set",
        "data.num_workers=0",
        "--set",
        "schedule.warmup_steps=2",
        "--set",
        "train.log_every_steps=1",
        # the lowest mIoU is "best": a mid-run validation (early in training) would win
        "--set",
        "early_stopping.mode=min",
    ]
    code, stdout, err = seg_run(*args)
    assert code == 0, err
    assert "time budget of 25 s reached" in stdout and "time: train" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["spent"]) == {"train", "data", "validation", "checkpoints", "total"}
    assert summary["windows_seen"] == 2 * summary["step"] > 0
    assert summary["spent"]["validation"] > 0 and summary["spent"]["checkpoints"] > 0
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == summary["step"]  # the final state was validated
    # The schedule spanned the budget: the last LR is near the cosine floor, not the peak.
    assert records[-1]["lr"] < 0.25 * 1e-3, records[-1]["lr"]
    assert not list(out.glob("epoch_*.pt"))  # no per-epoch snapshots in a budgeted run
    assert (out / "best.pt").exists() and (out / "last.pt").exists()
    # The end of a budgeted run is its best.pt, whatever a mid-run validation scored.
    assert len(records) >= 2 and records[0]["miou"] < records[-1]["miou"], records
    from seg.checkpoint import read_checkpoint

    _, best = read_checkpoint(str(out / "best.pt"))
    assert best["step"] == summary["step"]
    assert summary["best"] == pytest.approx(records[-1]["miou"])


def test_budget_too_small_is_one_line(make_store, tmp_path: Path, seg_run: Run) -> None:
    store = make_store(windows=4)
    out = tmp_path / "run"
    code, _, err = seg_run(
        "train",
        "-c",
        "configs/unet_mobilenetv2.yaml",
        "-d",
        store,
        "--out",
        out,
        "--set",
        "train.time_budget_s=0.01",
        "--set",
        "data.num_workers=0",
    )
    assert one_line_error(code, err) and "too small" in err and "give at least" in err, err


def test_one_scene_is_enough_to_start(make_store, tmp_path: Path, seg_run: Run) -> None:
    """All scenes in train (one scene, say): validation uses training windows, with a warning,
    and fits no calibration on them (8 windows: 2048 sampled pixels, enough for one)."""
    store = make_store(splits={"a": "train"}, windows=8)
    code, stdout, err = seg_run(
        "train",
        "-c",
        "configs/unet_mobilenetv2.yaml",
        "-d",
        store,
        "--out",
        tmp_path / "run",
        "--set",
        "train.epochs=1",
        "--set",
        "data.num_workers=0",
        "--set",
        "data.batch_size=2",
    )
    assert code == 0, err
    assert "validating on training windows" in err and "trained: 1 epochs" in stdout
    from seg.checkpoint import read_checkpoint

    info, _ = read_checkpoint(str(tmp_path / "run" / "last.pt"))
    assert info.class_prior is not None and info.calibration is None


def test_warm_up_never_takes_more_than_a_fifth_of_the_schedule() -> None:
    from seg.config import TrainConfig
    from seg.training.steps import lr_factor

    cfg = TrainConfig.model_validate({"schedule": {"name": "cosine", "warmup_steps": 100}})
    f = [lr_factor(s, cfg, 50) for s in range(50)]  # a budget that fits only 50 steps
    assert max(f) == pytest.approx(1.0, abs=0.02) and f.index(max(f)) == 10
    assert f[-1] < 0.05  # and it still ends decayed


def test_sigterm_before_training_starts_is_a_preemption() -> None:
    """From the first line of `seg train` on, SIGTERM ends in exit 75 (retry), not 143."""
    import os
    import signal

    from seg.errors import EXIT_PREEMPTED, Preempted, preempt_on_sigterm

    old = signal.getsignal(signal.SIGTERM)
    try:
        preempt_on_sigterm()
        with pytest.raises(Preempted) as info:
            os.kill(os.getpid(), signal.SIGTERM)
        assert info.value.exit_code == EXIT_PREEMPTED == 75
    finally:
        signal.signal(signal.SIGTERM, old)
