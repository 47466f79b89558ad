"""Which torch device a command runs on: ``auto`` (CUDA when present, else CPU), ``cpu`` or
``cuda``; asking for CUDA on a machine without it is a :class:`DeviceError` (a user error).
"""

from __future__ import annotations

import torch

from sensor_removal.core.errors import DeviceError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU. Asking for CUDA without one is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev
