"""Where and how a training run executes: DDP process group, device, precision, and the checks
that refuse a run up front (missing GPU, busy GPU, too little GPU memory or host RAM) instead of
letting it crash mid-way."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from seg.config import TrainConfig, TrainSection
from seg.errors import ConfigError, ResourceError
from seg.models.precision import auto_dtype


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def agree(self, flags: list[float]) -> list[float]:
        """Max of per-rank flags over all ranks: a stop request taken by one rank must be
        taken by every rank, or the others wait forever in the next collective."""
        if not self.enabled:
            return flags
        t = torch.tensor(flags, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [float(x) for x in t.tolist()]

    def total(self, values: np.ndarray) -> np.ndarray:
        """Sum of a per-rank array over all ranks (float64)."""
        if not self.enabled:
            return values
        t = torch.from_numpy(np.ascontiguousarray(values, np.float64))
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.numpy()


def init_distributed(use_cuda: bool) -> Distributed:
    """Join the process group torchrun set up (WORLD_SIZE > 1); a plain run is world 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def rank_is_main() -> bool:
    """True unless this is a torchrun process other than rank 0 (only rank 0 reports)."""
    return int(os.environ.get("RANK", "0")) == 0


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def parse_gpus(gpus: str | None) -> list[int] | None:
    if gpus is None or not gpus.strip():
        return None
    try:
        return [int(g) for g in gpus.split(",") if g.strip()]
    except ValueError as exc:
        raise ConfigError(f"--gpus {gpus!r} must be GPU indices like 0 or 0,1") from exc


def wants_cuda(section: TrainSection, gpus: list[int] | None) -> bool:
    if section.device == "cpu":
        if gpus:
            raise ConfigError("--gpus was given but train.device is cpu; drop one of them")
        return False
    if section.device == "cuda" or gpus:
        return True
    return torch.cuda.is_available()


def select_device(section: TrainSection, gpus: list[int] | None, ddp: Distributed) -> torch.device:
    """CUDA when present (or asked for), else CPU; under DDP each process takes its GPU."""
    if not wants_cuda(section, gpus):
        return torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        asked = f"--gpus {','.join(map(str, gpus))}" if gpus else "train.device=cuda"
        raise ResourceError(
            f"{asked} asks for a GPU but this machine has no usable CUDA GPU;"
            " leave --gpus out (or set train.device=cpu) to train on the CPU"
        )
    chosen = gpus or list(range(count))
    for g in chosen:
        if g < 0 or g >= count:
            raise ResourceError(
                f"GPU {g} does not exist: this machine has {count} GPU(s), indices 0..{count - 1}"
            )
    if ddp.enabled and len(chosen) < ddp.world and gpus:
        raise ConfigError(
            f"--gpus lists {len(chosen)} GPU(s) but torchrun started {ddp.world} processes;"
            " give one GPU per process"
        )
    if gpus and len(gpus) > 1 and not ddp.enabled:
        raise ConfigError(
            f"--gpus {','.join(map(str, gpus))} needs one process per GPU: run `torchrun"
            f" --nproc-per-node {len(gpus)} -m seg train ... --gpus {','.join(map(str, gpus))}`"
        )
    index = chosen[ddp.local_rank % len(chosen)]
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


# `data.num_workers: auto` where a GPU trains or a gs:// store is read: the data is prepared
# while the device computes, and a remote read's latency is hidden.
AUTO_WORKERS = 2


def resolve_workers(cfg: TrainConfig, device: torch.device, remote: bool) -> TrainConfig:
    """The config with `data.num_workers: auto` replaced by a number: 0 where the network trains
    on the CPU from a local store, AUTO_WORKERS otherwise. On the CPU torch's threads take every
    core, and a worker's reading, augmenting and collating preempts one of them, which stalls
    the whole op at its next barrier: on a 2-core CPU 159-164 steps in 100 s without workers
    against 126-133 with two (docs/recipe.md row 129)."""
    if cfg.data.num_workers != "auto":
        return cfg
    workers = AUTO_WORKERS if device.type == "cuda" or remote else 0
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"num_workers": workers})})


def amp_dtype(section: TrainSection, device: torch.device) -> torch.dtype | None:
    """fp16 (with a grad scaler) on CUDA by default, bf16 autocast on a CPU with native bf16,
    fp32 on other CPUs (see `seg.models.precision`); None = fp32."""
    p = section.precision
    if p == "fp32":
        return None
    if p == "fp16":
        if device.type != "cuda":
            raise ConfigError("train.precision=fp16 needs a CUDA GPU; use bf16 or fp32 on the CPU")
        return torch.float16
    if p == "bf16":
        return torch.bfloat16
    return auto_dtype(device)


def estimate_gpu_bytes(batch_size: int, bands: int, size: int, amp: bool) -> int:
    """Rough training memory of UNet-MobileNetV2: weights + Adam state, plus activations that
    grow with batch x pixels (~3 kB per pixel in fp32 measured for this network, half in AMP)."""
    params = 7_000_000 * 16
    per_pixel = 1500 if amp else 3000
    return int(params + batch_size * size * size * (per_pixel + 8 * bands))


def check_gpu(device: torch.device, need: int, max_busy: float) -> None:
    if device.type != "cuda":
        return
    free, total = torch.cuda.mem_get_info(device)
    used = 1.0 - free / total
    if used > max_busy:
        raise ResourceError(
            f"GPU {device.index} is busy: {used:.0%} of its memory is in use by other processes;"
            " wait for it, choose another with --gpus, or raise train.max_gpu_busy_fraction"
        )
    if need > free:
        raise ResourceError(
            f"GPU {device.index} has {free / 2**30:.1f} GiB free but this batch needs about"
            f" {need / 2**30:.1f} GiB; lower data.batch_size (e.g. --set data.batch_size=2)"
        )


def check_host_ram(batch_size: int, bands: int, size: int, workers: int) -> None:
    """Model + optimizer + prefetched batches (2 per worker) must fit in available RAM."""
    import psutil

    batch_bytes = batch_size * (bands * 4 + 8) * size * size
    need = 600 * 2**20 + (2 * max(workers, 1) + 2) * batch_bytes * 4
    available = psutil.virtual_memory().available
    if need > available:
        raise ResourceError(
            f"this run needs about {need / 2**30:.1f} GiB of RAM but only"
            f" {available / 2**30:.1f} GiB is available; lower data.batch_size or data.num_workers"
        )


def preflight(cfg: TrainConfig, device: torch.device, *, bands: int, size: int, amp: bool) -> None:
    """Refuse up front what would crash later: a busy or too small GPU, too little RAM."""
    batch = cfg.data.batch_size
    need = estimate_gpu_bytes(batch, bands, size, amp)
    check_gpu(device, need, cfg.train.max_gpu_busy_fraction)
    check_host_ram(batch, bands, size, cfg.data.workers())


def seed_everything(seed: int, deterministic: bool) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        # warn_only: a few CUDA kernels have no deterministic version; CPU runs are exact.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
