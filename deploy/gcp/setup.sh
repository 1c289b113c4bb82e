#!/usr/bin/env bash
# One-time project setup: APIs, the Artifact Registry repository, the bucket, and a runtime
# service account that VMs and Batch jobs run as (no key files: VMs get tokens from the
# metadata server). Safe to re-run: what exists already is left alone.
#
#   deploy/gcp/setup.sh                 # uses the names in deploy/gcp/env.sh
#   DRY_RUN=1 deploy/gcp/setup.sh       # print the gcloud commands instead
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# missing CMD...: true when a `describe` fails, i.e. the resource has to be created.
# In a dry run nothing is asked, so every create command is printed.
missing() {
  [[ "${DRY_RUN}" == "1" ]] && return 0
  ! "$@" > /dev/null 2>&1
}

SA_NAME="${SERVICE_ACCOUNT%%@*}"
MEMBER="serviceAccount:${SERVICE_ACCOUNT}"

run gcloud services enable compute.googleapis.com artifactregistry.googleapis.com \
  cloudbuild.googleapis.com batch.googleapis.com logging.googleapis.com \
  --project="${PROJECT}"

if missing gcloud artifacts repositories describe "${REPOSITORY}" \
  --location="${REGION}" --project="${PROJECT}"; then
  run gcloud artifacts repositories create "${REPOSITORY}" --repository-format=docker \
    --location="${REGION}" --project="${PROJECT}" --description="seg images"
fi

if missing gcloud storage buckets describe "gs://${BUCKET}" --project="${PROJECT}"; then
  run gcloud storage buckets create "gs://${BUCKET}" --location="${REGION}" \
    --uniform-bucket-level-access --project="${PROJECT}"
fi

if missing gcloud iam service-accounts describe "${SERVICE_ACCOUNT}" --project="${PROJECT}"; then
  run gcloud iam service-accounts create "${SA_NAME}" --display-name="seg jobs" \
    --project="${PROJECT}"
fi

# Read/write the data bucket; pull images; write logs; report Batch task state.
run gcloud storage buckets add-iam-policy-binding "gs://${BUCKET}" \
  --member="${MEMBER}" --role=roles/storage.objectUser --project="${PROJECT}"
run gcloud artifacts repositories add-iam-policy-binding "${REPOSITORY}" \
  --location="${REGION}" --member="${MEMBER}" --role=roles/artifactregistry.reader \
  --project="${PROJECT}"
for role in roles/logging.logWriter roles/batch.agentReporter; do
  run gcloud projects add-iam-policy-binding "${PROJECT}" --member="${MEMBER}" --role="${role}" \
    --condition=None
done
