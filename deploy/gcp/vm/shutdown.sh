#!/usr/bin/env bash
# Shutdown script of a seg VM (create_vm.sh): runs when the VM stops or Spot preempts it.
# `docker stop` sends SIGTERM to the container's PID 1 (tini), which forwards it to seg:
# `seg train` saves a checkpoint within seconds and exits 75. Spot shutdown is best effort
# (up to ~30 s), so docker gets 25 s before it sends SIGKILL; periodic checkpoints are the
# real safety net.
#   DRY_RUN=1 vm/shutdown.sh      # print the command instead
set -euo pipefail

DRY_RUN="${DRY_RUN:-0}"
args=(docker stop --time 25 seg-job)
if [[ "${DRY_RUN}" == "1" ]]; then
  printf '%q ' "${args[@]}"
  printf '\n'
else
  "${args[@]}" || true
fi
