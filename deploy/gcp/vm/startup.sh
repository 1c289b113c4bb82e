#!/usr/bin/env bash
# Startup script of a seg VM (create_vm.sh); runs as root on EVERY boot.
# Reads the image and the seg command from instance metadata (seg-image, seg-args), pulls the
# image and runs the job in the foreground. `train` jobs get `--resume auto`, so a preempted and
# restarted VM continues from the last checkpoint. Exit code 75 means "preempted, checkpoint
# saved": the next boot resumes. Otherwise the VM powers off (it stops costing money) and
# remembers the outcome on its disk: a finished job, or one that failed MAX_FAILURES times, is
# not run again when the VM is started again.
#   DRY_RUN=1 SEG_IMAGE=... SEG_ARGS="train ..." vm/startup.sh   # print the commands instead
set -euo pipefail

DRY_RUN="${DRY_RUN:-0}"
CONTAINER="seg-job"
STATE_DIR="${STATE_DIR:-/var/lib/seg}"
MAX_FAILURES="${MAX_FAILURES:-2}"

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

metadata() {
  curl -fsS -H "Metadata-Flavor: Google" \
    "http://metadata.google.internal/computeMetadata/v1/instance/attributes/$1"
}

SEG_IMAGE="${SEG_IMAGE:-$(metadata seg-image)}"
SEG_ARGS="${SEG_ARGS:-$(metadata seg-args)}"
read -r -a seg_args <<< "${SEG_ARGS}"
if [[ "${seg_args[0]:-}" == "train" && " ${SEG_ARGS} " != *" --resume "* ]]; then
  seg_args+=(--resume auto)
fi
job_id="$(printf '%s %s' "${SEG_IMAGE}" "${SEG_ARGS}" | sha256sum | cut -c1-16)"
done_marker="${STATE_DIR}/done-${job_id}"

if [[ "${DRY_RUN}" != "1" ]]; then
  if [[ -e "${done_marker}" ]]; then
    echo "seg: job ${job_id} finished earlier ($(cat "${done_marker}")); powering off"
    shutdown -h now
    exit 0
  fi
  # The NVIDIA driver may still be loading (or installing, on a first boot).
  for _ in $(seq 1 60); do
    nvidia-smi > /dev/null 2>&1 && break
    sleep 10
  done
  nvidia-smi
  # Deep Learning VM images ship Docker and the NVIDIA container toolkit; install if absent.
  if ! command -v docker > /dev/null 2>&1; then
    apt-get update && apt-get install -y docker.io
  fi
  if ! command -v nvidia-ctk > /dev/null 2>&1; then
    curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey |
      gpg --dearmor -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
    curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list |
      sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#' \
        > /etc/apt/sources.list.d/nvidia-container-toolkit.list
    apt-get update && apt-get install -y nvidia-container-toolkit
    nvidia-ctk runtime configure --runtime=docker && systemctl restart docker
  fi
fi

# Registry login with the VM's service account (no keys anywhere).
run gcloud auth configure-docker "${SEG_IMAGE%%/*}" --quiet
run docker pull "${SEG_IMAGE}"
run docker rm -f "${CONTAINER}" || true

set +e
run docker run --name "${CONTAINER}" --gpus all --ipc=host --stop-timeout 25 \
  -e PYTHONUNBUFFERED=1 "${SEG_IMAGE}" "${seg_args[@]}"
rc=$?
set -e
echo "seg: job ${job_id} exited with code ${rc}"

case "${rc}" in
  75) exit 0 ;; # preempted or stopped: checkpoint saved; the next boot resumes
  0) verdict="finished" ;;
  *)
    # A real failure is retried on the next boot, but not forever.
    failures=$(($(cat "${STATE_DIR}/failures-${job_id}" 2> /dev/null || echo 0) + 1))
    if [[ "${DRY_RUN}" != "1" ]]; then
      mkdir -p "${STATE_DIR}" && echo "${failures}" > "${STATE_DIR}/failures-${job_id}"
    fi
    verdict=""
    if ((failures >= MAX_FAILURES)); then
      verdict="failed ${failures} times, last exit ${rc}"
    fi
    ;;
esac
if [[ -n "${verdict}" && "${DRY_RUN}" != "1" ]]; then
  mkdir -p "${STATE_DIR}" && echo "${verdict} at $(date -u +%FT%TZ)" > "${done_marker}"
fi
run shutdown -h now
