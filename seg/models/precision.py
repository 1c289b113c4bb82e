"""Which autocast dtype a device runs fastest: shared by training and prediction."""

from __future__ import annotations

import torch


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles).

    Without those units oneDNN emulates bf16 and autocast is slower than fp32, not faster:
    on a 2-core AVX2 EPYC a UNet-MobileNetV2 training step took minutes in bf16 against seconds
    in fp32, so `auto` must not pick bf16 there.
    """
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def auto_dtype(device: torch.device) -> torch.dtype | None:
    """`precision: auto`: fp16 on CUDA, bf16 on a CPU with native bf16, else plain fp32 (None)."""
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else None
