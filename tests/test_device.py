"""GPU slots: concurrent local jobs land on distinct GPUs; nothing changes on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tinylang.device import gpu_slot, wants_gpu


@pytest.fixture(autouse=True)
def no_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_cpu_and_single_gpu_machines_are_left_alone(tmp_path):
    with gpu_slot("cpu", tmp_path, count=4) as slot:
        assert slot is None and "CUDA_VISIBLE_DEVICES" not in os.environ
    with gpu_slot("cuda", tmp_path, count=1) as slot:
        assert slot is None and "CUDA_VISIBLE_DEVICES" not in os.environ


def test_a_scheduler_assigned_gpu_is_respected(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with gpu_slot("cuda", tmp_path, count=4) as slot:
        assert slot is None and os.environ["CUDA_VISIBLE_DEVICES"] == "3"


def test_concurrent_jobs_get_distinct_gpus(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom tinylang.device import gpu_slot\n"
         f"with gpu_slot('cuda', {str(tmp_path)!r}, count=2) as slot:\n"
         "    print(slot, flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True, env={k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"},
    )
    try:
        assert holder.stdout.readline().strip() == "0"
        with gpu_slot("cuda", tmp_path, count=2) as slot:
            assert slot == 1 and os.environ["CUDA_VISIBLE_DEVICES"] == "1"
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
    finally:
        holder.kill()
        holder.wait()
    start = time.monotonic()
    with gpu_slot("cuda", tmp_path, count=2) as slot:  # the killed holder's lock is gone
        assert slot == 0
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("available", [True, False])
def test_wants_gpu_never_raises_on_a_cpu_machine(monkeypatch, available):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert wants_gpu("cuda") is True and wants_gpu("cuda:1") is True
    assert wants_gpu("cpu") is False
    assert wants_gpu("auto") is available  # what the machine has


def test_jobs_and_the_conda_env_learn_the_planning_process_tinylang(monkeypatch):
    import tinylang
    from tinylang.environment import SOURCE_VARIABLE, export_package_source

    monkeypatch.delenv(SOURCE_VARIABLE, raising=False)
    source = export_package_source()
    assert os.environ[SOURCE_VARIABLE] == source
    assert Path(source, "src", "tinylang", "__init__.py") == Path(tinylang.__file__).resolve()
    script = Path(source, "workflow", "envs", "tinylang.post-deploy.sh").read_text()
    assert f"--editable \"${{{SOURCE_VARIABLE}:?" in script
