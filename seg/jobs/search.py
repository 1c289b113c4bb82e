"""`search: optuna` sweeps: Optuna asks for trials, each runs as an ordinary queue job on the
cluster, and the trials that are hopeless are stopped early.

The submitter drives it: it keeps as many trials running as the cluster has workers, reads
each trial's metrics.jsonl every few seconds, reports every new epoch to Optuna (median
pruning) and checks the rules of seg.jobs.prune. A trial to prune is asked to stop through its
control.json (seg.training.control): it saves last.pt, exits 0, and its job.json says
"pruned" with the reason. The study lives in RUNS/SWEEP/optuna.journal (a journal file; on
gs:// a local copy uploaded after every change), so the same submit after a crash continues
it: finished trials stay, trials that were running run again (`--resume auto`), and `trials`
and `budget_s` count over every submit.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from seg import fs as segfs
from seg.errors import EXIT_DIVERGED
from seg.evaluation.metrics import metric_value
from seg.jobs import state as jobstate
from seg.jobs.dispatch import enqueue, settle
from seg.jobs.jobs_file import Job, Search, SweepEntry
from seg.jobs.prune import rule_verdict
from seg.jobs.search_config import Range, maximise
from seg.report import SILENT, Reporter
from seg.training.control import request_stop

JOURNAL = "optuna.journal"


@dataclass
class Live:
    """A trial running as a job."""

    trial: Any  # optuna.Trial
    job: Job
    future: Any
    reported: set[int]  # epochs Optuna has
    stop: str | None = None  # the reason asked for, once asked


@dataclass(frozen=True)
class SearchSummary:
    name: str
    trials: int
    complete: int
    pruned: int
    failed: int
    best: float | None
    best_trial: str | None
    seconds: float


@contextlib.contextmanager
def _journal(folder: str) -> Iterator[tuple[Any, Callable[[], None]]]:
    """(Optuna storage, sync): the study's journal file in the sweep folder."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    target = segfs.join(folder, JOURNAL)
    if not segfs.is_remote(folder):
        os.makedirs(folder, exist_ok=True)
        yield JournalStorage(JournalFileBackend(target)), lambda: None
        return
    with tempfile.TemporaryDirectory(prefix="seg-search-") as tmp:
        local = os.path.join(tmp, JOURNAL)
        with open(local, "wb") as fh, contextlib.suppress(FileNotFoundError):
            fh.write(segfs.read_bytes(target))

        def sync() -> None:
            with open(local, "rb") as fh:
                segfs.write_bytes_atomic(target, fh.read())

        yield JournalStorage(JournalFileBackend(local)), sync
        sync()


def suggest(trial: Any, space: dict[str, Range | list[Any]]) -> dict[str, Any]:
    """Draw each key of the space: a list is a choice, a Range a float or int."""
    params: dict[str, Any] = {}
    for key, spec in space.items():
        if isinstance(spec, list):
            params[key] = trial.suggest_categorical(key, spec)
        elif spec.int:
            step = int(spec.step or 1)
            params[key] = trial.suggest_int(key, int(spec.low), int(spec.high), step=step,
                                            log=spec.log)  # fmt: skip
        else:
            params[key] = trial.suggest_float(key, spec.low, spec.high, step=spec.step,
                                              log=spec.log)  # fmt: skip
    return params


def _score(metric: str, record: dict[str, Any]) -> float | None:
    try:
        value = metric_value(metric, record)
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def judge(
    trial: Any, records: list[dict[str, Any]], reported: set[int], sweep: SweepEntry
) -> tuple[str | None, bool]:
    """Report the epochs of `records` not in `reported` (which gains them) to the trial; then
    (why to prune it or None, whether anything was reported)."""
    fresh = False
    for record in records:
        epoch, value = record.get("epoch"), _score(sweep.metric, record)
        if isinstance(epoch, int) and value is not None and epoch not in reported:
            trial.report(value, epoch)
            reported.add(epoch)
            fresh = True
    prune = sweep.prune
    if prune is None or not records:
        return None, fresh
    reason = rule_verdict(records, prune)
    if reason is None and prune.median is not None and fresh and trial.should_prune():
        last = records[-1]
        score = _score(sweep.metric, last)
        reason = (
            f"{sweep.metric} {math.nan if score is None else score:.4f} below the median of"
            f" earlier trials at epoch {last.get('epoch')}"
        )
    return reason, fresh


class Searcher:
    """One search's study and its running trials."""

    def __init__(self, client: Any, search: Search, futures: dict[str, Any], gpu_cluster: bool,
                 *, study: Any, sync: Callable[[], None], reporter: Reporter) -> None:  # fmt: skip
        self.client, self.search, self.sweep = client, search, search.sweep
        self.futures, self.gpu_cluster, self.study, self.sync = futures, gpu_cluster, study, sync
        self.reporter, self.halted = reporter, False
        self.live: dict[int, Live] = {}
        workers = client.scheduler_info()["workers"].values()
        gpus = sum(1 for w in workers if w.get("resources", {}).get("GPU"))
        self.parallel = max(gpus if self.sweep.gpu and gpu_cluster else len(workers), 1)
        if "started" not in study.user_attrs:
            study.set_user_attr("started", time.time())

    def _can_ask(self) -> bool:
        budget, started = self.sweep.budget_s, float(self.study.user_attrs["started"])
        if budget is not None and time.time() - started > budget:
            return False
        return not self.halted and len(self.study.trials) < (self.sweep.trials or 0)

    def _launch(self, trial: Any, params: dict[str, Any], reported: set[int]) -> None:
        job = self.search.job(trial.number, params)
        job.after = list(self.search.upstream)
        trial.set_user_attr("job", job.name)
        trial.set_user_attr("params", params)
        enqueue(self.client, [job], self.gpu_cluster, self.futures)
        self.live[trial.number] = Live(trial, job, self.futures.get(job.name), reported)
        self.sync()

    def resume(self) -> None:
        """Run again the trials an earlier submit left running (their jobs resume)."""
        import optuna

        for frozen in self.study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            trial = optuna.trial.Trial(self.study, frozen._trial_id)
            params = dict(frozen.user_attrs.get("params", frozen.params))
            self._launch(trial, params, set(frozen.intermediate_values))

    def fill(self) -> None:
        while len(self.live) < self.parallel and self._can_ask():
            trial = self.study.ask()
            self._launch(trial, suggest(trial, self.sweep.space or {}), set())

    def watch(self, live: Live) -> None:
        """Report the trial's new epochs; ask it to stop when a rule says so."""
        records = jobstate.read_records(live.job.run_dir) or []
        reason, fresh = judge(live.trial, records, live.reported, self.sweep)
        if fresh:
            self.sync()
        if reason and not live.stop:
            live.stop = f"pruned: {reason}"
            request_stop(live.job.run_dir, live.stop)

    def finish(self, live: Live) -> str:
        """Tell Optuna how the trial ended; its state for the progress bar."""
        import optuna

        TrialState = optuna.trial.TrialState
        if live.future is not None and live.future.status != "finished":
            settle(live.job, live.future)
        # the last epochs it wrote, reported (a run that has ended is not asked to stop)
        records = jobstate.read_records(live.job.run_dir) or []
        judge(live.trial, records, live.reported, self.sweep)
        state = jobstate.read_state(live.job.run_dir) or {}
        end = state.get("state", "failed")
        prune = self.sweep.prune
        diverged = end == "failed" and state.get("exit_code") == EXIT_DIVERGED
        if diverged and prune is not None and prune.divergence is not None:
            end, message = "pruned", "pruned: diverged (loss not finite); see job.log"
            jobstate.update_state(live.job.run_dir, state=end, message=message)
        scores = [s for r in records if (s := _score(self.sweep.metric, r)) is not None]
        best = (max if maximise(self.sweep.metric) else min)(scores) if scores else None
        if end == "done" and best is not None:
            self.study.tell(live.trial, best)
        elif end == "pruned":
            self.study.tell(live.trial, state=TrialState.PRUNED)
        else:
            self.study.tell(live.trial, state=TrialState.FAIL)
            self.halted = self.halted or end == "skipped"  # upstream failed: no more trials
        self.sync()
        return end

    def step(self) -> list[tuple[str, str]]:
        """Watch the running trials once; (job, state) of those that ended."""
        ended = []
        for number, live in list(self.live.items()):
            if live.future is None or live.future.done():
                ended.append((live.job.name, self.finish(live)))
                del self.live[number]
            else:
                self.watch(live)
        return ended


def run_search(client: Any, search: Search, futures: dict[str, Any], gpu_cluster: bool, *,
               reporter: Reporter = SILENT, poll_s: float = 2.0) -> SearchSummary:  # fmt: skip
    """Run a search to its `trials` (or `budget_s`) with pruning; its summary."""
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    sweep, t0 = search.sweep, time.monotonic()
    samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
    median = sweep.prune.median if sweep.prune else None
    pruner = (
        optuna.pruners.MedianPruner(median.startup_trials, median.warmup_epochs)
        if median
        else optuna.pruners.NopPruner()
    )
    with _journal(segfs.join(search.runs, sweep.name)) as (storage, sync):
        study = optuna.create_study(
            study_name=sweep.name, storage=storage, load_if_exists=True, pruner=pruner,
            direction="maximize" if maximise(sweep.metric) else "minimize",
            sampler=samplers[sweep.sampler](seed=sweep.seed),
        )  # fmt: skip
        searcher = Searcher(client, search, futures, gpu_cluster, study=study, sync=sync,
                            reporter=reporter)  # fmt: skip
        with reporter.bar(f"search {sweep.name}", sweep.trials or 0) as bar:
            bar.advance(sum(1 for t in study.trials if t.state.is_finished()))
            searcher.resume()
            searcher.fill()
            while searcher.live:
                time.sleep(poll_s)
                for name, end in searcher.step():
                    bar.advance(1, note=f"{name}: {end}")
                searcher.fill()
        return _summary(study, search, time.monotonic() - t0)


def _summary(study: Any, search: Search, seconds: float) -> SearchSummary:
    import optuna

    S = optuna.trial.TrialState
    trials = study.trials
    complete = [t for t in trials if t.state == S.COMPLETE]
    best = study.best_trial if complete else None
    return SearchSummary(
        search.sweep.name, len(trials), len(complete),
        sum(t.state == S.PRUNED for t in trials), sum(t.state == S.FAIL for t in trials),
        best.value if best else None, best.user_attrs.get("job") if best else None, seconds,
    )  # fmt: skip
