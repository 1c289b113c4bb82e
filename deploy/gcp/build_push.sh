#!/usr/bin/env bash
# Build the seg image and push it to Artifact Registry as ${IMAGE} (see env.sh).
#
#   deploy/gcp/build_push.sh                      # Cloud Build (BuildKit), no local Docker needed
#   BUILDER=docker deploy/gcp/build_push.sh       # local docker build + docker push
#   TORCH_FLAVOR=cpu TAG=cpu deploy/gcp/build_push.sh   # the small CPU image for tiling
#   DRY_RUN=1 deploy/gcp/build_push.sh            # print the commands instead
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
source "${HERE}/common.sh"

BUILDER="${BUILDER:-cloudbuild}"
# Recorded in every checkpoint and mask made with the image (seg.provenance).
COMMIT="$(git -C "${HERE}" rev-parse HEAD 2>/dev/null || echo unknown)"
ROOT="$(cd "${HERE}/../.." && pwd)"
cd "${ROOT}"

case "${BUILDER}" in
  cloudbuild)
    # `gcloud builds submit --tag` uses the classic builder, which rejects the Dockerfile's
    # cache mounts; cloudbuild.yaml turns BuildKit on.
    run gcloud builds submit . --project="${PROJECT}" --region="${REGION}" \
      --config=deploy/gcp/cloudbuild.yaml --ignore-file=deploy/gcp/gcloudignore \
      --substitutions="_IMAGE=${IMAGE},_TORCH_FLAVOR=${TORCH_FLAVOR},_GIT_COMMIT=${COMMIT}"
    ;;
  docker)
    run gcloud auth configure-docker "${REGION}-docker.pkg.dev" --quiet
    run env DOCKER_BUILDKIT=1 docker build --build-arg "TORCH_FLAVOR=${TORCH_FLAVOR}" \
      --build-arg "SEG_GIT_COMMIT=${COMMIT}" --tag "${IMAGE}" .
    run docker push "${IMAGE}"
    ;;
  *)
    die "BUILDER must be cloudbuild or docker, not '${BUILDER}'"
    ;;
esac

# Jobs should name the image by digest (immutable); this prints it.
run gcloud artifacts docker images describe "${IMAGE}" --project="${PROJECT}" \
  --format="value(image_summary.digest)"
