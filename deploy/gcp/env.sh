# shellcheck shell=bash
# The one place for names. Edit the defaults here, or export the variables before running a
# script (exported values win). Every script in deploy/gcp sources this file.

PROJECT="${PROJECT:-my-gcp-project}"                 # gcloud projects list
REGION="${REGION:-us-central1}"                      # Artifact Registry, Batch jobs and the bucket
ZONE="${ZONE:-${REGION}-a}"                          # the single GPU VM (create_vm.sh)
BUCKET="${BUCKET:-${PROJECT}-seg}"                   # gs://BUCKET holds data, runs and predictions
REPOSITORY="${REPOSITORY:-seg}"                      # Artifact Registry docker repository
IMAGE_NAME="${IMAGE_NAME:-seg}"
TAG="${TAG:-$(git rev-parse --short=12 HEAD 2> /dev/null || echo dev)}"
IMAGE="${IMAGE:-${REGION}-docker.pkg.dev/${PROJECT}/${REPOSITORY}/${IMAGE_NAME}:${TAG}}"
TORCH_FLAVOR="${TORCH_FLAVOR:-cu130}"                # cu130 (driver >= 580) | cu126 | cpu
SERVICE_ACCOUNT="${SERVICE_ACCOUNT:-seg-runner@${PROJECT}.iam.gserviceaccount.com}"

export PROJECT REGION ZONE BUCKET REPOSITORY IMAGE_NAME TAG IMAGE TORCH_FLAVOR SERVICE_ACCOUNT
