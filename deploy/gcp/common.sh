# shellcheck shell=bash
# Shared by the deploy scripts: the names (env.sh) and `run`, which honours DRY_RUN=1.
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

DRY_RUN="${DRY_RUN:-0}"

# run CMD ARGS...: execute, or with DRY_RUN=1 print the command, shell-quoted on one line, so the
# output can be pasted into a terminal (and parsed back with shlex.split by the tests).
run() {
  if [[ "${DRY_RUN}" == "1" ]]; then
    printf '%q' "$1"
    shift
    if (($# > 0)); then
      printf ' %q' "$@"
    fi
    printf '\n'
  else
    "$@"
  fi
}

# die MESSAGE: one line on stderr, exit 1.
die() {
  printf '%s: error: %s\n' "$(basename "$0")" "$1" >&2
  exit 1
}
