#!/usr/bin/env bash
# Start the seg Spot VMs that preemption STOPped, so their jobs resume (`--resume auto`).
# Run it from cron on any always-on machine, e.g. every 15 minutes overnight:
#   */15 * * * * /path/to/seg/deploy/gcp/restart_vms.sh >> ~/seg-restart.log 2>&1
# A VM whose job has finished powers itself off again right after booting (its startup script
# remembers the finished job), so restarting it by mistake costs a minute, not a night.
#   DRY_RUN=1 deploy/gcp/restart_vms.sh      # print the gcloud commands instead
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

list=(gcloud compute instances list --project="${PROJECT}"
  --filter="labels.app=seg AND status=TERMINATED" --format="value(name,zone.basename())")

if [[ "${DRY_RUN}" == "1" ]]; then
  run "${list[@]}"
  run gcloud compute instances start NAME --project="${PROJECT}" --zone=ZONE
  exit 0
fi

"${list[@]}" | while read -r name zone; do
  [[ -n "${name}" ]] || continue
  # Spot capacity may be missing in that zone right now: try again on the next run.
  run gcloud compute instances start "${name}" --project="${PROJECT}" --zone="${zone}" --async ||
    echo "could not start ${name} in ${zone}; will retry" >&2
done
