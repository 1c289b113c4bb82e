"""`seg queue submit|status` and `seg quickstart`: many jobs at once, and the whole flow on a
sample."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from seg.cli.app import app, command
from seg.report import ConsoleReporter

if TYPE_CHECKING:
    from seg.jobs.status import StatusReport


def show(report: StatusReport) -> None:
    """Print the job table and leaderboards on stdout (wide enough when piped: rich assumes
    80 columns then) and name the CSV files written."""
    import sys

    from rich.console import Console

    out = Console(width=None if sys.stdout.isatty() else 160)
    for table in report.tables:
        out.print(table)
    for path in report.written:
        out.print(f"wrote {path}")
    for note in report.notes:
        out.print(note)


queue_app = typer.Typer(
    help="Queue seg jobs (tile/train/predict, sweeps) on a Dask cluster or this machine.",
    no_args_is_help=True,
)
app.add_typer(queue_app, name="queue")


@command(queue_app, "submit")
def queue_submit_command(
    jobs: str = typer.Argument(..., help="JOBS.yaml: jobs (seg commands) and sweeps (grids)."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="Dask scheduler, e.g. tcp://host:8786; default: this machine."
    ),
    runs: str | None = typer.Option(
        None, "--runs", help="Folder for job state, logs and runs (local or gs://); default 'runs'."
    ),
    detach: bool = typer.Option(False, "--detach", help="Queue and exit (needs --scheduler)."),
) -> None:
    """Run the jobs of JOBS.yaml, retrying preempted ones; sweeps end with a leaderboard.

    Example: seg queue submit night.yaml --scheduler tcp://gpu-box:8786 --runs gs://b/runs/n1
    """
    from seg.jobs.submit import JobsFailed, submit_jobs

    reporter = ConsoleReporter()
    try:
        report = submit_jobs(jobs, scheduler, runs, detach=detach, reporter=reporter)
    except JobsFailed as exc:
        show(exc.report)
        raise
    show(report)
    if report.states:
        pruned = sum(s.get("state") == "pruned" for s in report.states)
        more = f" ({pruned} pruned early by their search)" if pruned else ""
        typer.echo(f"all {len(report.states)} jobs done{more}")


@command(queue_app, "status")
def queue_status_command(
    runs: str = typer.Option("runs", "--runs", help="The runs folder given to `seg queue submit`."),
) -> None:
    """Each job's state, attempts, progress and best metric; sweep leaderboards."""
    from seg.jobs.status import status_report

    report = status_report(runs)
    if not report.states:
        typer.echo(f"no queue jobs in {runs}")
    show(report)


@command(app, "quickstart")
def quickstart_command(
    out: str = typer.Argument("quickstart", help="Folder (local or gs://) for all it makes."),
) -> None:
    """Run the whole main job on a built-in sample: sample -> tile -> train -> predict -> eval.

    Local files, CPU, no account, minutes on 2 cores; re-running skips finished steps.
    """
    from seg.quickstart import run_quickstart

    result = run_quickstart(out, reporter=ConsoleReporter())
    typer.echo(f"mask:    {result.mask}")
    for path in result.files:
        typer.echo(f"report:  {path}")
    typer.echo(
        f"held-out scene: building IoU {result.report['building_iou']:.3f},"
        f" mIoU {result.report['miou']:.3f}"
    )
