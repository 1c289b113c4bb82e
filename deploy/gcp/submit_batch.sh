#!/usr/bin/env bash
# Fill in a Cloud Batch job template (batch/KIND.json) and submit it.
#
#   CONFIG=gs://B/configs/exp1.yaml DATA=gs://B/ds.zarr RUN_DIR=gs://B/runs/exp1 \
#     deploy/gcp/submit_batch.sh train
#   SCENES='gs://B/scenes/*.tif' LABELS=gs://B/labels/ STORE=gs://B/ds.zarr TASKS=16 \
#     deploy/gcp/submit_batch.sh tile
#   SCENES='gs://B/new/*.tif' CHECKPOINT=gs://B/runs/exp1/best.pt OUT=gs://B/pred/ TASKS=8 \
#     deploy/gcp/submit_batch.sh predict
#   DRY_RUN=1 ... deploy/gcp/submit_batch.sh train      # write the job JSON, print the command
#
# tile/predict are array jobs: task i of N gets BATCH_TASK_INDEX=i, BATCH_TASK_COUNT=N, passed
# to --shard-index/--shard-count. All tasks run on Spot VMs; a task is retried (up to
# maxRetryCount) when Spot preempts it (exit code 50001) or seg exits 75 (stopped, checkpoint
# saved), and not retried after a real failure (exit 1).
# Optional: JOB_NAME, MACHINE_TYPE, GPU_TYPE (nvidia-l4), GPU_DRIVER (e.g. a 580.x version when
# Batch's default driver is older), TASKS, PARALLELISM, MAX_RUN_DURATION, JOB_JSON (where the
# filled-in job is written).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${HERE}/common.sh"

KIND="${1:-}"
case "${KIND}" in
  train)
    : "${CONFIG:?set CONFIG (the experiment config, local path not allowed: gs://...)}"
    : "${DATA:?set DATA (the window store, gs://...)}"
    : "${RUN_DIR:?set RUN_DIR (the run directory, gs://...)}"
    MACHINE_TYPE="${MACHINE_TYPE:-g2-standard-8}"
    MAX_RUN_DURATION="${MAX_RUN_DURATION:-86400s}"
    names=(CONFIG DATA RUN_DIR)
    ;;
  tile)
    : "${SCENES:?set SCENES (GeoTIFFs: a gs:// folder or glob)}"
    : "${STORE:?set STORE (the window store to write, gs://...)}"
    LABELS="${LABELS:-}"
    MACHINE_TYPE="${MACHINE_TYPE:-e2-standard-8}"
    MAX_RUN_DURATION="${MAX_RUN_DURATION:-14400s}"
    names=(SCENES LABELS STORE)
    ;;
  predict)
    : "${SCENES:?set SCENES (GeoTIFFs: a gs:// folder or glob)}"
    : "${CHECKPOINT:?set CHECKPOINT (gs://.../best.pt)}"
    : "${OUT:?set OUT (where the masks go, gs://...)}"
    MACHINE_TYPE="${MACHINE_TYPE:-g2-standard-8}"
    MAX_RUN_DURATION="${MAX_RUN_DURATION:-14400s}"
    names=(SCENES CHECKPOINT OUT)
    ;;
  *)
    die "usage: submit_batch.sh train|tile|predict (got '${KIND}')"
    ;;
esac

TASKS="${TASKS:-8}"
PARALLELISM="${PARALLELISM:-${TASKS}}"
GPU_TYPE="${GPU_TYPE:-nvidia-l4}"
GPU_DRIVER="${GPU_DRIVER:-}"
[[ "${TASKS}" =~ ^[1-9][0-9]*$ ]] || die "TASKS must be a positive integer, not '${TASKS}'"
[[ "${PARALLELISM}" =~ ^[1-9][0-9]*$ ]] || die "PARALLELISM must be a positive integer"
JOB_NAME="${JOB_NAME:-seg-${KIND}-$(date -u +%Y%m%d-%H%M%S)}"
[[ "${JOB_NAME}" =~ ^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$ ]] ||
  die "JOB_NAME '${JOB_NAME}' must be lowercase letters, digits and '-', starting with a letter"
JOB_JSON="${JOB_JSON:-${TMPDIR:-/tmp}/${JOB_NAME}.json}"

# Fill ${NAME} placeholders with JSON-escaped values; any placeholder left over is a bug.
text="$(< "${HERE}/batch/${KIND}.json")"
for name in "${names[@]}" IMAGE REGION SERVICE_ACCOUNT MACHINE_TYPE GPU_TYPE GPU_DRIVER TASKS \
  PARALLELISM MAX_RUN_DURATION; do
  value="${!name}"
  value="${value//\\/\\\\}"
  value="${value//\"/\\\"}"
  text="${text//\$\{${name}\}/"${value}"}"
done
if [[ "${text}" =~ \$\{[A-Z_][A-Z0-9_]*\} ]]; then
  die "batch/${KIND}.json: no value for ${BASH_REMATCH[0]}"
fi
printf '%s\n' "${text}" > "${JOB_JSON}"
echo "job definition: ${JOB_JSON}" >&2

run gcloud batch jobs submit "${JOB_NAME}" --project="${PROJECT}" --location="${REGION}" \
  --config="${JOB_JSON}"
