"""What the buttons of `seg ui` do, each as `seg train` would be asked on a shell.

Start and Resume launch `python -m seg train ...` as a child in its own session (closing the
server does not stop training); its stdout/stderr go to RUN/train.log (for a gs:// run, a local
file: a bucket takes no stream). Stop sends SIGTERM to
the process holding the run's lock (it saves last.pt and exits 75); a run trained on another
machine (gs://) is asked through control.json instead. A new LR is a control.json request the
loop applies at its next step. Nothing here deletes anything.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

from seg import fs as segfs
from seg.config import TrainConfig, load_config
from seg.errors import ConfigError, ResourceError
from seg.locks import holder
from seg.training.control import request_lr, request_stop
from seg.ui.runs import is_run, read_json


@dataclass
class Launcher:
    """The `seg train` processes this server started (reaped, so none lingers as a zombie)."""

    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    exits: dict[str, int] = field(default_factory=dict)  # run folder -> its last exit status

    def reap(self) -> None:
        for run_dir, child in list(self.children.items()):
            code = child.poll()
            if code is not None:
                self.exits[run_dir] = code
                del self.children[run_dir]

    def launch(self, run_dir: str, args: list[str]) -> int:
        """`seg train ARGS --out RUN_DIR`, logged to RUN_DIR/train.log."""
        if holder(run_dir):
            raise ResourceError(f"{run_dir} is training already")
        argv = [sys.executable, "-m", "seg", "train", *args, "--out", run_dir]
        return self.spawn(run_dir, argv, log=local_log(run_dir, "train.log"))

    def spawn(self, key: str, argv: list[str], *, log: str) -> int:
        """Any `seg` child for the run folder `key`, in its own session, output to `log`."""
        self.reap()
        if key in self.children:
            raise ResourceError(f"{key} is training already")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        out = open(log, "ab")  # noqa: SIM115  (the child's)
        try:
            child = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        finally:
            out.close()
        self.children[key] = child
        return child.pid


def local_log(run_dir: str, name: str) -> str:
    """Where a child's output goes: RUN/NAME, or for a gs:// run a file in the local temp
    folder (a child's stdout cannot stream to a bucket)."""
    if not segfs.is_remote(run_dir):
        return os.path.join(run_dir, name)
    tail = run_dir.removeprefix("gs://").replace("/", "_")
    return os.path.join(tempfile.gettempdir(), "seg-ui", tail, name)


def check_config(config: str | None, overrides: list[str]) -> TrainConfig:
    """The config `seg train --config CONFIG --set ...` would train: the same checks, the same
    one-line errors naming the key."""
    return load_config(TrainConfig, config, overrides)


def start(
    launcher: Launcher, run_dir: str, *, config: str | None, overrides: list[str], data: str
) -> int:
    """Train a new run in `run_dir` (which must not hold a run yet); the child's pid."""
    check_config(config, overrides)
    if is_run(run_dir):
        raise ConfigError(f"{run_dir} holds a run already: choose a new name (nothing is replaced)")
    args = ["--data", data, *(["--config", config] if config else [])]
    for item in overrides:
        args += ["--set", item]
    return launcher.launch(run_dir, args)


def resume(launcher: Launcher, run_dir: str) -> int:
    """`seg train --config RUN/config.yaml --data DATA --out RUN --resume auto`."""
    facts = read_json(segfs.join(run_dir, "run.json"))
    if not facts or not facts.get("data"):
        raise ConfigError(f"{run_dir} has no run.json naming its data: resume it from a shell")
    config = segfs.join(run_dir, "config.yaml")
    return launcher.launch(run_dir, ["--config", config, "--data", str(facts["data"]),
                                     "--resume", "auto"])  # fmt: skip


def stop(run_dir: str) -> str:
    """SIGTERM to the local process training `run_dir` (last.pt, exit 75), else a control.json
    request (last.pt, exit 0). Says which."""
    owner = holder(run_dir)
    if owner and owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
        os.kill(int(owner["pid"]), signal.SIGTERM)
        return f"SIGTERM sent to pid {owner['pid']}: it saves last.pt and exits 75"
    if owner is None and not segfs.is_remote(run_dir):
        raise ConfigError(f"{run_dir} is not training")
    request_stop(run_dir, "stopped from seg ui")
    return "asked through control.json: it saves last.pt and stops at its next step"


def set_lr(run_dir: str, lr: float) -> str:
    if not lr > 0:
        raise ConfigError(f"a learning rate must be > 0, not {lr}")
    if holder(run_dir) is None and not segfs.is_remote(run_dir):
        raise ConfigError(f"{run_dir} is not training: set optim.lr when starting it")
    request_lr(run_dir, lr)
    return f"lr {lr:g} asked: the run applies it at its next step"
