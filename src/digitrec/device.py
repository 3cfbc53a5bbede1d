"""Which device a run trains on, and whether it computes in bfloat16 natively."""

from __future__ import annotations

import os

import torch

from digitrec.errors import DigitrecError


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as error:
        raise DigitrecError(f"device {name!r} is not available here ({str(error).splitlines()[0]}); use --device cpu") from error
    return device


def bfloat16_is_fast(device: str) -> bool:
    """Whether this machine computes in bfloat16 natively (a recent GPU, or a CPU with AVX512-BF16 or AMX);
    elsewhere bfloat16 is emulated and slower than fp32."""
    kind = pick_device(device).type
    if kind == "cuda":
        return torch.cuda.is_bf16_supported()
    if kind == "cpu":
        return bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
    return False
