#!/usr/bin/env bash
# Create a Spot GPU VM (Deep Learning VM image, NVIDIA driver 580) that runs one seg job in the
# container: its startup script pulls ${IMAGE} and runs `seg ${SEG_ARGS}`; its shutdown script
# sends SIGTERM (docker stop), so `seg train` checkpoints and exits 75 when the VM is preempted.
# The startup script runs on every boot: a STOPped VM that is started again resumes the job
# (`train` gets `--resume auto`). See restart_vms.sh.
#
#   SEG_ARGS="train --config gs://B/configs/exp1.yaml --data gs://B/ds.zarr --out gs://B/runs/exp1" \
#     deploy/gcp/create_vm.sh
#   DRY_RUN=1 ... deploy/gcp/create_vm.sh       # print the gcloud command instead
#
# Optional: VM_NAME, MACHINE_TYPE (g2-standard-8 = 1 x L4), ACCELERATOR (for N1, e.g.
# type=nvidia-tesla-t4,count=1), IMAGE_FAMILY, SPOT=0 (standard VM), TERMINATION_ACTION (STOP |
# DELETE), MAX_RUN_DURATION (e.g. 36000s), PREEMPTION_NOTICE (e.g. 120s), BOOT_DISK_SIZE.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${HERE}/common.sh"

: "${SEG_ARGS:?set SEG_ARGS to the seg command to run, e.g. SEG_ARGS=\"train --config gs://...\"}"
[[ "${SEG_ARGS}" == *"~"* ]] && die "SEG_ARGS must not contain '~' (used as the metadata separator)"

VM_NAME="${VM_NAME:-seg-$(date -u +%Y%m%d-%H%M%S)}"
MACHINE_TYPE="${MACHINE_TYPE:-g2-standard-8}"
ACCELERATOR="${ACCELERATOR:-}"
# Driver 580 is what CUDA 13 wheels need; list families with:
#   gcloud compute images list --project deeplearning-platform-release --no-standard-images \
#     --filter="family~nvidia-580"
IMAGE_FAMILY="${IMAGE_FAMILY:-common-cu129-ubuntu-2204-nvidia-580}"
SPOT="${SPOT:-1}"
TERMINATION_ACTION="${TERMINATION_ACTION:-STOP}"
MAX_RUN_DURATION="${MAX_RUN_DURATION:-}"
PREEMPTION_NOTICE="${PREEMPTION_NOTICE:-}"
BOOT_DISK_SIZE="${BOOT_DISK_SIZE:-200GB}"

args=(
  gcloud compute instances create "${VM_NAME}"
  --project="${PROJECT}"
  --zone="${ZONE}"
  --machine-type="${MACHINE_TYPE}"
  --image-family="${IMAGE_FAMILY}"
  --image-project=deeplearning-platform-release
  --boot-disk-size="${BOOT_DISK_SIZE}"
  --boot-disk-type=pd-balanced
  --maintenance-policy=TERMINATE
  --service-account="${SERVICE_ACCOUNT}"
  --scopes=cloud-platform
  # `^~^` makes `~` the separator, so SEG_ARGS may contain commas (gcloud topic escaping).
  --metadata="^~^seg-image=${IMAGE}~seg-args=${SEG_ARGS}~install-nvidia-driver=True"
  --metadata-from-file="startup-script=${HERE}/vm/startup.sh,shutdown-script=${HERE}/vm/shutdown.sh"
  --labels=app=seg
)
if [[ "${SPOT}" == "1" ]]; then
  args+=(--provisioning-model=SPOT --instance-termination-action="${TERMINATION_ACTION}")
fi
if [[ -n "${ACCELERATOR}" ]]; then
  args+=(--accelerator="${ACCELERATOR}")
fi
if [[ -n "${MAX_RUN_DURATION}" ]]; then
  args+=(--max-run-duration="${MAX_RUN_DURATION}")
  [[ "${SPOT}" == "1" ]] || args+=(--instance-termination-action="${TERMINATION_ACTION}")
fi
if [[ -n "${PREEMPTION_NOTICE}" ]]; then
  args+=(--preemption-notice-duration="${PREEMPTION_NOTICE}")
fi

run "${args[@]}"
