"""Choosing the torch device."""

from __future__ import annotations

from ravdess_ser.errors import PipelineError


def resolve_device(name: str):
    """``auto`` picks CUDA when present, else the CPU; an explicit CUDA device must exist."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise PipelineError(f"device {name!r} is not a torch device ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PipelineError(f"device {name!r} was asked for, but CUDA is not available here; use 'auto' or 'cpu'")
    return device
