"""Which torch device a stage runs on, and which GPU a local job may use.

torch is imported only where a device is resolved: ``gpu_slot`` must run before CUDA
initialises and stays cheap to import.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tinylang.files import try_lock

if TYPE_CHECKING:
    import torch

log = logging.getLogger("tinylang.device")

DEVICE_NAMES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch device for a config's ``device`` setting.

    ``"auto"``: CUDA when it is available, else the CPU. ``"cpu"``: the CPU. ``"cuda"``
    (or ``"cuda:N"``): that GPU; a RuntimeError when this torch build or machine has no CUDA.
    """
    import torch

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
    if key.startswith("cuda"):
        return True
    if key != "auto":
        return False
    import torch

    return torch.cuda.is_available()


NUM_GPUS_VAR = "TINYLANG_NUM_GPUS"
"""Environment variable: how many GPUs ``gpu_slot`` shares out (overrides ``nvidia-smi``)."""

JOBS_PER_GPU_VAR = "TINYLANG_JOBS_PER_GPU"
"""Environment variable: how many jobs ``gpu_slot`` lets share one GPU (default 1; tiny models
leave a GPU mostly idle, so several at once use it better)."""

LOCK_DIR_VAR = "TINYLANG_GPU_LOCK_DIR"
"""Environment variable: the folder of the per-GPU lock files (default: the system temp folder)."""


def count_gpus() -> int:
    """GPUs on this machine: ``$TINYLANG_NUM_GPUS`` when set, else from ``nvidia-smi -L``
    (counting them through torch would initialise CUDA, after which CUDA_VISIBLE_DEVICES no
    longer has any effect). A ValueError when the variable is not a whole number ≥ 0."""
    override = os.environ.get(NUM_GPUS_VAR, "").strip()
    if override:
        if not override.isdigit():
            raise ValueError(f"{NUM_GPUS_VAR} must be a whole number of GPUs (0 or more), got {override!r}")
        return int(override)
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in listing.stdout.splitlines())


def jobs_per_gpu() -> int:
    """``$TINYLANG_JOBS_PER_GPU`` (default 1); a ValueError when it is not a whole number ≥ 1."""
    value = os.environ.get(JOBS_PER_GPU_VAR, "").strip() or "1"
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{JOBS_PER_GPU_VAR} must be a whole number of jobs (1 or more), got {value!r}")
    return int(value)


def _slots(n: int, per_gpu: int) -> list[tuple[int, str]]:
    """(GPU, lock file name) of every slot: each GPU's first slot before any GPU's second."""
    if per_gpu == 1:
        return [(index, f"gpu{index}.lock") for index in range(n)]
    return [(index, f"gpu{index}-{k}.lock") for k in range(per_gpu) for index in range(n)]


def gpu_lock_dir(lock_dir: str | os.PathLike | None = None) -> Path:
    """The folder of the per-GPU lock files: ``lock_dir``, else ``$TINYLANG_GPU_LOCK_DIR``,
    else ``<temp folder>/tinylang-gpu-slots`` (shared by every user of the machine)."""
    chosen = lock_dir or os.environ.get(LOCK_DIR_VAR)
    return Path(chosen) if chosen else Path(tempfile.gettempdir()) / "tinylang-gpu-slots"


@contextmanager
def gpu_slot(device: str, lock_dir: str | os.PathLike | None = None, count: int | None = None,
             poll_seconds: float = 2.0) -> Iterator[int | None]:
    """Pin this process to one GPU that no other tinylang job on this machine holds.

    Snakemake counts GPUs (``--resources gpu=N``) but does not say which one a job gets, so
    concurrent local jobs would all land on GPU 0. Each job takes a file lock per GPU
    (``gpu<N>.lock`` in ``gpu_lock_dir(lock_dir)``; with ``$TINYLANG_JOBS_PER_GPU`` = J > 1, one
    of J slots ``gpu<N>-<k>.lock``, spread over the GPUs first) before CUDA initialises and sets
    CUDA_VISIBLE_DEVICES to it; when every slot is held it waits for one. The lock is an
    ``flock``, so the kernel releases it when its process ends, however it ends (even SIGKILL).

    Nothing happens on the CPU, with one GPU or none (``count``, else ``count_gpus()``), or when
    CUDA_VISIBLE_DEVICES is already set (e.g. by SLURM). Yields the GPU index or None.
    """
    if str(device).strip().lower() == "cpu" or os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        yield None
        return
    n = count_gpus() if count is None else count
    if n <= 1:
        yield None
        return
    root = gpu_lock_dir(lock_dir)
    if not root.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        if not (lock_dir or os.environ.get(LOCK_DIR_VAR)):
            try:  # the shared default, like /tmp itself: every user may add lock files
                root.chmod(0o1777)
            except OSError:
                pass
    slots = _slots(n, jobs_per_gpu())
    waited = False
    while True:
        for index, name in slots:
            fd = try_lock(root / name)
            if fd is None:
                continue
            os.environ["CUDA_VISIBLE_DEVICES"] = str(index)
            log.info("using GPU %d of %d (lock %s)", index, n, root / name)
            try:
                yield index
            finally:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                os.close(fd)  # closing the only descriptor releases the flock
            return
        if not waited:
            log.info("all %d GPU slots are held by other tinylang jobs (locks in %s); waiting for one", len(slots), root)
            waited = True
        time.sleep(poll_seconds)
