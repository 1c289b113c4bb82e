"""`search: optuna` sweeps: the keys are checked, the rules prune, a real search on the local
cluster prunes hopeless trials (checkpoint kept, "pruned (why)" shown) and continues after a
restart from its journal."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from seg.jobs.prune import rule_verdict
from seg.jobs.search_config import PruneSection

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "unet_mobilenetv2.yaml")
sys.path.insert(0, str(Path(__file__).parent))
from test_queue import TINY, metrics, seg, state, write_yaml  # noqa: E402


def sweep(**keys: Any) -> dict[str, Any]:
    return {"sweeps": [{"name": "s", "config": "c.yaml", "data": "d", **keys}]}


SPACE = {"optim.lr": {"low": 0.0001, "high": 0.01, "log": True}}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (sweep(search="optuna", trials=2), "needs a 'space'"),
        (sweep(search="optuna", space=SPACE), "needs 'trials'"),
        (sweep(search="optuna", trials=2, space={"optim.lr": []}), "empty list of values"),
        (
            sweep(search="optuna", trials=2, space={"optim.lr": {"low": 0.1, "high": 0.01}}),
            "must be below high",
        ),
        (
            sweep(search="optuna", trials=2, space={"x": {"low": 0, "high": 1, "log": True}}),
            "a log range needs low > 0",
        ),
        (sweep(search="optuna", trials=2, space=SPACE, metric="miuo"), "unknown metric 'miuo'"),
        (
            sweep(
                search="optuna",
                trials=2,
                space=SPACE,
                prune={
                    "loss_ratio": {
                        "numerator": "d_los",
                        "denominator": "train_g_adv",
                        "low": 0.1,
                        "high": 10,
                    }
                },
            ),
            "unknown figure 'd_los'",
        ),
        (sweep(search="optuna", trials=2, space=SPACE, prune={"mediam": {}}), "'sweeps.0.prune"),
        (sweep(grid={"optim.lr": [0.1]}, prune={"median": {}}), "prune need(s) search: optuna"),
        (sweep(search="optuna", trials=2, space=SPACE, grid={"x": [1]}), "remove 'grid'"),
        (sweep(search="optuna", trials=0, space=SPACE), "sweeps.0.trials"),
        (
            {
                "sweeps": [
                    {
                        "name": "s",
                        "config": CONFIG,
                        "data": "d",
                        "search": "optuna",
                        "trials": 2,
                        "space": {"optim.lrr": [0.1]},
                    }
                ]
            },
            "sweep 's': ",
        ),
        (
            {"sweeps": [{"name": "g", "config": CONFIG, "data": "d", "grid": {"optim.lr": ["x"]}}]},
            "sweep 'g': ",
        ),
        (
            {
                **sweep(search="optuna", trials=2, space=SPACE),
                "jobs": [{"name": "use", "command": "eval x", "after": ["s"]}],
            },
            "'s' is a search",
        ),
    ],
)
def test_bad_search_is_one_clear_line(
    tmp_path: Path, seg_run: Callable[..., tuple[int, str, str]], spec: dict[str, Any], message: str
) -> None:
    path = write_yaml(tmp_path / "jobs.yaml", spec)
    code, _out, err = seg_run("queue", "submit", str(path), "--runs", str(tmp_path / "runs"))
    assert code == 1, err
    assert err.startswith("seg: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def rules(**keys: Any) -> PruneSection:
    return PruneSection.model_validate(keys)


def test_the_rules_need_the_stated_epochs_in_a_row() -> None:
    ratio = rules(
        loss_ratio={
            "numerator": "train_d_loss",
            "denominator": "train_g_adv",
            "low": 0.1,
            "high": 10,
            "epochs": 2,
        }
    )
    fine, off = {"train_d_loss": 1.0, "train_g_adv": 1.0}, {"train_d_loss": 0.01, "train_g_adv": 1}
    assert rule_verdict([fine, off], ratio) is None  # one epoch out of the band is not enough
    assert rule_verdict([off, fine, off], ratio) is None  # not in a row
    why = rule_verdict([fine, off, off], ratio)
    assert why is not None and "train_d_loss/train_g_adv = 0.01" in why
    assert rule_verdict([off, {}], ratio) is None  # an epoch without the figures: no evidence

    collapse = rules(collapse=2)
    assert rule_verdict([{"train_collapsed": 1.0}, {"train_collapsed": 0.2}], collapse) is None
    assert "collapse" in (rule_verdict([{"train_collapsed": 1.0}] * 2, collapse) or "")

    div = rules(divergence={"factor": 3.0, "epochs": 2})
    losses = [{"train_loss": v} for v in (1.0, 0.5, 2.0, 1.2)]
    assert rule_verdict(losses, div) is None  # 2.0 and 1.2 are not both over 3 x 0.5
    losses.append({"train_loss": 1.6})
    assert rule_verdict(losses[:3] + losses[4:] + [{"train_loss": 1.7}], div) is not None
    assert "diverged" in (rule_verdict([{"train_loss": float("nan")}], div) or "")
    assert rule_verdict(losses, rules()) is None  # no rules, no verdict


def test_a_stop_in_control_json_ends_train_with_its_checkpoint(
    tmp_path: Path, make_store: Callable[..., Path], seg_run: Callable[..., tuple[int, str, str]]
) -> None:
    from seg.training.control import ControlWatch, request_stop

    store, out = make_store(), tmp_path / "run"
    args = ["train", "--config", CONFIG, "--data", str(store), "--out", str(out)]
    sets = [*TINY, "train.epochs=3", "train.steps_per_epoch=2"]
    code, _, err = seg_run(*args, *(w for s in sets for w in ("--set", s)))
    assert code == 0, err
    # every epoch line has the epoch means of the step's figures
    assert all(r["train_grad_norm"] > 0 for r in metrics(out)) and len(metrics(out)) == 3

    watch = ControlWatch(str(out), interval_s=60.0)
    assert watch.poll(now=0.0) is None
    request_stop(str(out), "pruned: test")
    assert watch.poll(now=1.0) is None  # looked at most once a minute
    assert watch.poll(now=61.0) == "pruned: test"

    again = tmp_path / "again"
    request_stop(str(again), "pruned: no hope")
    code, _, err = seg_run(*args[:-1], str(again), *(w for s in sets for w in ("--set", s)))
    assert code == 0, err
    summary = json.loads((again / "summary.json").read_text())
    assert summary["reason"] == "pruned: no hope" and summary["step"] == 0
    assert (again / "last.pt").exists() and not (again / "metrics.jsonl").exists()


def test_median_pruning_reports_each_epoch_once_and_names_the_median() -> None:
    import optuna

    from seg.jobs.jobs_file import SweepEntry
    from seg.jobs.search import judge

    entry = SweepEntry.model_validate(
        {
            "name": "s",
            "config": "c",
            "data": "d",
            "search": "optuna",
            "trials": 3,
            "space": SPACE,
            "prune": {"median": {"startup_trials": 1, "warmup_epochs": 1}},
        }
    )
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(1, 1))
    good, seen = study.ask(), set[int]()
    records = [{"epoch": e, "miou": v} for e, v in enumerate([0.3, 0.5, 0.6])]
    assert judge(good, records, seen, entry) == (None, True)
    assert seen == {0, 1, 2} and judge(good, records, seen, entry) == (None, False)
    study.tell(good, 0.6)
    bad, seen = study.ask(), set()
    assert judge(bad, [{"epoch": 0, "miou": 0.1}], seen, entry) == (None, True)  # warm-up
    why, fresh = judge(bad, [{"epoch": 0, "miou": 0.1}, {"epoch": 1, "miou": 0.1}], seen, entry)
    assert fresh and why == "miou 0.1000 below the median of earlier trials at epoch 1"
    close, seen = study.ask(), set()
    assert judge(close, [{"epoch": 1, "miou": 0.55}], seen, entry)[0] is None


@pytest.mark.slow
def test_search_prunes_on_the_local_cluster_and_continues_after_a_restart(
    tmp_path: Path, make_store: Callable[..., Path]
) -> None:
    store = make_store()
    settings = ["optim.grad_clip=null", "schedule.name=constant", "train.steps_per_epoch=2"]
    spec = {
        "sweeps": [
            {
                "name": "lr",
                "config": CONFIG,
                "data": str(store),
                "set": [*TINY, *settings, "train.epochs=40"],
                "search": "optuna",
                "sampler": "random",
                "trials": 3,
                "seed": 0,
                # lr 1e30: NaN at the first step, which the divergence rule prunes; every other
                # trial is stopped by a loss-ratio band that no run can be inside of
                "space": {"optim.lr": [0.01, 1e30]},
                "prune": {
                    "divergence": {"factor": 3.0, "epochs": 1},
                    "loss_ratio": {
                        "numerator": "train_loss",
                        "denominator": "val_loss",
                        "low": 1000,
                        "high": 2000,
                        "epochs": 2,
                    },
                },
            }
        ]
    }
    jobs = write_yaml(tmp_path / "jobs.yaml", spec)
    runs = tmp_path / "runs"
    result = seg("queue", "submit", str(jobs), "--runs", str(runs), cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (runs / "lr" / "optuna.journal").exists()
    names = sorted(p.parent.name for p in (runs / "lr").glob("*/job.json"))
    assert names == ["000", "001", "002"]
    states = {n: state(runs, f"lr/{n}") for n in names}
    assert all(s["state"] == "pruned" for s in states.values()), states
    lrs = {n: s["params"]["optim.lr"] for n, s in states.items()}
    assert sorted(set(lrs.values())) == [0.01, 1e30], lrs  # the seed draws both
    for n, s in states.items():
        if lrs[n] == 1e30:  # exit 3 (EXIT_DIVERGED): not retried, pruned by the rule
            assert s["message"].startswith("pruned: diverged") and s["attempts"] == 1
            continue
        assert s["message"].startswith("pruned: train_loss/val_loss") and s["exit_code"] == 0
        assert (runs / "lr" / n / "last.pt").exists()  # a pruned trial keeps its checkpoint
        # stopped soon after its second epoch (the driver and the loop each look every 1-2 s)
        assert 2 <= len(metrics(runs / "lr" / n)) < 40
    assert "3 pruned" in result.stdout and "search lr: 3 trials" in result.stdout
    with open(runs / "lr" / "leaderboard.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["state"].split(" (")[0] for r in rows} == {"pruned"}
    assert any(r["state"].startswith("pruned (train_loss/val_loss") for r in rows)
    status = seg("queue", "status", "--runs", str(runs), cwd=tmp_path)
    assert "pruned (diverged" in status.stdout, status.stdout

    # the same submit with more trials continues the study: finished trials are not run again
    spec["sweeps"][0]["trials"] = 4
    write_yaml(jobs, spec)
    before = {n: (runs / "lr" / n / "job.json").read_bytes() for n in names}
    again = seg("queue", "submit", str(jobs), "--runs", str(runs), cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "search lr: 4 trials" in again.stdout
    for n, blob in before.items():
        assert (runs / "lr" / n / "job.json").read_bytes() == blob
    last = state(runs, "lr/003")
    resolved = yaml.safe_load((runs / "lr" / "003" / "config.yaml").read_text())
    assert last["state"] == "pruned" and resolved["optim"]["lr"] == last["params"]["optim.lr"]


@pytest.mark.slow
def test_a_search_killed_mid_trial_resumes_that_trial(
    tmp_path: Path, make_store: Callable[..., Path]
) -> None:
    import signal
    import subprocess
    import time

    store = make_store()
    spec = {
        "sweeps": [
            {
                "name": "s",
                "config": CONFIG,
                "data": str(store),
                "set": [
                    *TINY,
                    "train.epochs=12",
                    "train.steps_per_epoch=2",
                    "early_stopping.enabled=false",
                ],
                "search": "optuna",
                "trials": 1,
                "space": {"optim.lr": {"low": 0.001, "high": 0.01, "log": True}},
            }
        ]
    }
    jobs = write_yaml(tmp_path / "jobs.yaml", spec)
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "seg", "queue", "submit", str(jobs), "--runs", str(runs)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while len(metrics(runs / "s" / "000")) < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)  # the submitter goes: its local cluster and the trial too
    proc.wait(timeout=120)
    assert state(runs, "s/000")["state"] != "done"
    done_before = len(metrics(runs / "s" / "000"))

    again = seg("queue", "submit", str(jobs), "--runs", str(runs), cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "search s: 1 trials, 1 complete" in again.stdout
    final = state(runs, "s/000")
    assert final["state"] == "done" and final["attempts"] == 2
    epochs = [r["epoch"] for r in metrics(runs / "s" / "000")]
    assert epochs == list(range(12)) and done_before >= 2  # resumed, not started over
    assert not (runs / "s" / "001").exists()


@pytest.mark.slow
def test_a_search_with_its_runs_on_gcs_continues_from_the_journal_there(
    tmp_path: Path, make_store: Callable[..., Path], gcs_bucket: str
) -> None:
    from seg import fs as segfs
    from seg.jobs.state import read_state

    runs = f"{gcs_bucket}/search-{tmp_path.name}"
    spec = {
        "sweeps": [
            {
                "name": "s",
                "config": CONFIG,
                "data": str(make_store()),
                "set": [*TINY, "train.epochs=2", "train.steps_per_epoch=1"],
                "search": "optuna",
                "trials": 1,
                "space": {"optim.lr": {"low": 0.001, "high": 0.01, "log": True}},
            }
        ]
    }
    jobs = write_yaml(tmp_path / "jobs.yaml", spec)
    first = seg("queue", "submit", str(jobs), "--runs", runs, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert b"datetime_complete" in segfs.read_bytes(f"{runs}/s/optuna.journal")
    assert (read_state(f"{runs}/s/000") or {}).get("state") == "done"
    spec["sweeps"][0]["trials"] = 2
    write_yaml(jobs, spec)
    second = seg("queue", "submit", str(jobs), "--runs", runs, cwd=tmp_path, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "search s: 2 trials, 2 complete" in second.stdout
    assert (read_state(f"{runs}/s/000") or {}).get("attempts") == 1  # not run again
    assert (read_state(f"{runs}/s/001") or {}).get("state") == "done"
