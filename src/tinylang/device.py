"""Which torch device a stage runs on."""

from __future__ import annotations

import torch

DEVICE_NAMES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch device for a config's ``device`` setting.

    ``"auto"``: CUDA when it is available, else the CPU. ``"cpu"``: the CPU. ``"cuda"``
    (or ``"cuda:N"``): that GPU; a RuntimeError when this torch build or machine has no CUDA.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str):
        raise TypeError(f"device must be one of {', '.join(DEVICE_NAMES)}, got {name!r}")
    key = name.strip().lower()
    if key == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if key == "cpu":
        return torch.device("cpu")
    if key == "cuda" or key.startswith("cuda:"):
        if not torch.cuda.is_available():
            why = (
                "this torch build has no CUDA support"
                if torch.version.cuda is None
                else "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)"
            )
            raise RuntimeError(
                f"device {name!r} was requested but {why} (torch {torch.__version__}); "
                "use device 'cpu' or 'auto' to run on the CPU"
            )
        device = torch.device(key)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device {name!r} was requested but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        return device
    raise ValueError(f"unknown device {name!r}; allowed: {', '.join(DEVICE_NAMES)}")
