# syntax=docker/dockerfile:1.7
#
# The `seg` image: `docker run --gpus all IMAGE train --config ...` runs `seg train`.
#
#   docker build -t seg .                                      # CUDA 13.0 wheels (driver >= 580)
#   docker build --build-arg TORCH_FLAVOR=cu126 -t seg:cu126 . # CUDA 12.6 for older drivers/GPUs
#   docker build --build-arg TORCH_FLAVOR=cpu -t seg:cpu .     # tiling-only machines, CI
#
# BuildKit is required (cache mounts); Cloud Build: deploy/gcp/cloudbuild.yaml sets it.
# Google's PyTorch Deep Learning Containers stopped at PyTorch 2.4, so the base is a slim Python
# image and torch comes as pinned wheels that bundle their CUDA runtime: the host needs only the
# NVIDIA driver and the container toolkit. No credentials are baked in: on GCP the VM's service
# account answers through the metadata server; elsewhere mount an ADC file at run time.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

############################ builder: a venv with everything ############################
FROM ${PYTHON_IMAGE} AS builder

# cu130 (default) | cu126 | cpu: a folder of https://download.pytorch.org/whl/
ARG TORCH_FLAVOR=cu130
# Must equal the pins in pyproject.toml (tests/test_docker.py checks it).
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

RUN case "${TORCH_FLAVOR}" in \
      cu130|cu126|cpu) ;; \
      *) echo "TORCH_FLAVOR must be cu130, cu126 or cpu, not '${TORCH_FLAVOR}'" >&2; exit 1 ;; \
    esac \
 && python -m venv "${VIRTUAL_ENV}"

# 1) torch + torchvision from the index of the chosen flavour. `pip install .` below then finds
#    `torch==2.14.1` already satisfied (2.14.1+cu130 matches ==2.14.1) and keeps this build.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url "https://download.pytorch.org/whl/${TORCH_FLAVOR}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

WORKDIR /src

# 2) the other dependencies, read from pyproject.toml itself (so the pins are the ones CI
#    installs), in their own layer: editing the code does not reinstall them.
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

# 3) the project: exactly what CI does, `pip install .` (dependencies are already satisfied).
#    README.md* : the long description, when the checkout has one.
COPY pyproject.toml README.md* ./
COPY seg/ seg/
COPY data_prep/ data_prep/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install . \
 && seg --help > /dev/null

############################ runtime: venv + tini, non-root ############################
FROM ${PYTHON_IMAGE} AS runtime

ARG TORCH_FLAVOR=cu130
# The commit the image is built from (deploy/gcp/build_push.sh passes it): every checkpoint and
# mask made in the container records it (seg.provenance).
ARG SEG_GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="seg" \
      org.opencontainers.image.description="Satellite/aerial scenes to segmentation masks: seg tile | train | predict" \
      org.opencontainers.image.licenses="Apache-2.0"

# tini as PID 1: forwards SIGTERM (docker stop, Spot preemption) to seg, whose training loop
# then checkpoints and exits 75; it also reaps DataLoader worker processes.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 1000 seg \
 && useradd --uid 1000 --gid seg --create-home --shell /usr/sbin/nologin seg \
 && mkdir -p /work /home/seg/.cache \
 && chown seg:seg /work \
 && chmod 1777 /home/seg/.cache

COPY --from=builder /opt/venv /opt/venv
# The shipped experiment configs, so `train --config /opt/seg/configs/unet_mobilenetv2.yaml` works
# without mounting anything.
COPY configs/ /opt/seg/configs/

# NVIDIA_*: what the container toolkit reads (unset capabilities mean "utility" only).
# Caches live in /home/seg/.cache, writable by any uid (`docker run --user "$(id -u):$(id -g)"`);
# no model weights are downloaded by default.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NO_ALBUMENTATIONS_UPDATE=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    XDG_CACHE_HOME=/home/seg/.cache \
    TORCH_HOME=/home/seg/.cache/torch \
    HF_HOME=/home/seg/.cache/huggingface \
    SEG_TORCH_FLAVOR=${TORCH_FLAVOR} \
    SEG_GIT_COMMIT=${SEG_GIT_COMMIT}

WORKDIR /work
USER 1000:1000

# `docker run IMAGE train --config ...` -> tini -- seg train --config ...
ENTRYPOINT ["tini", "--", "seg"]
CMD ["--help"]
