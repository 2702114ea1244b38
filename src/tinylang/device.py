"""Which torch device a stage runs on."""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

log = logging.getLogger("tinylang.device")

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


def wants_gpu(name: str) -> bool:
    """Whether a stage with this ``device`` setting will use a GPU (never raises: the machine
    that plans a workflow, e.g. a cluster's login node, may have none)."""
    key = str(name).strip().lower()
    return key.startswith("cuda") or (key == "auto" and torch.cuda.is_available())


def count_gpus() -> int:
    """GPUs on this machine, from ``nvidia-smi -L``: counting them through torch would
    initialise CUDA, after which CUDA_VISIBLE_DEVICES no longer has any effect."""
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in listing.stdout.splitlines())


@contextmanager
def gpu_slot(device: str, lock_dir: str | os.PathLike | None = None, count: int | None = None,
             poll_seconds: float = 2.0) -> Iterator[int | None]:
    """Pin this process to one GPU that no other tinylang job on this machine holds.

    Snakemake counts GPUs (``--resources gpu=N``) but does not say which one a job gets, so
    concurrent local jobs would all land on GPU 0. Each job takes a file lock per GPU before
    CUDA initialises and sets CUDA_VISIBLE_DEVICES to it. Nothing happens on the CPU, with one
    GPU, or when CUDA_VISIBLE_DEVICES is already set (e.g. by SLURM). Yields the GPU index or None.
    """
    if str(device).lower() == "cpu" or os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        yield None
        return
    n = count_gpus() if count is None else count
    if n <= 1:
        yield None
        return
    root = Path(lock_dir or os.environ.get("TINYLANG_GPU_LOCKS") or tempfile.gettempdir()) / "tinylang-gpu-slots"
    root.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for index in range(n):
            handle = open(root / f"gpu{index}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            os.environ["CUDA_VISIBLE_DEVICES"] = str(index)
            log.info("using GPU %d of %d (lock %s)", index, n, handle.name)
            try:
                yield index
            finally:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        if not waited:
            log.info("all %d GPUs are held by other tinylang jobs; waiting for one", n)
            waited = True
        time.sleep(poll_seconds)
