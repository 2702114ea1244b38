"""The prepared GPU check (benchmarks/gpu_check.sh) in its CPU dry mode: every part runs and
the summary records each one's command and status."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.slow
def test_the_gpu_check_dry_run_on_the_cpu_writes_a_summary_of_every_part(tmp_path):
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--cpu", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable},
                          check=False)
    summary = (tmp_path / "summary.md").read_text()
    assert proc.returncode == 0, summary
    titles = re.findall(r"^## \d\. (.+)$", summary, flags=re.MULTILINE)
    assert titles == ["Machine", "GPU parity tests", "Train step, one by one and packed",
                      "Compiled train step against eager", "Default study (device: cuda)"]
    assert re.findall(r": exit (\d+) after", summary) == ["0"] * 5
    assert "GPU: none" in summary
    assert re.search(r"\| attention \| 16 \| 2 \| \d+ \| \d+ \| [\d.]+ \|", summary)  # the benchmark's table
    assert re.search(r"\| attention \| aot_eager \| (\d+|nan) \| ", summary)  # the compiled step ran
    assert "needs CUDA" in summary  # the parity tests ran, and skipped on this machine
    assert "Job stats:" in summary and "gpu=1" in (tmp_path / "5.log").read_text()  # planned as on a GPU


def test_the_gpu_check_refuses_an_unknown_argument(tmp_path):
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--gpu"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 2 and "unknown argument --gpu" in proc.stderr


def test_the_gpu_checks_parts_end_within_its_8_minutes():
    script = (REPO / "benchmarks" / "gpu_check.sh").read_text()
    gpu_limits = re.search(r'if \[ "\$mode" = gpu \]; then.*?limits=\(([\d ]+)\)', script, flags=re.DOTALL)
    assert sum(int(seconds) for seconds in gpu_limits.group(1).split()) < 8 * 60


def test_the_wheel_download_refuses_an_environment_without_the_projects_packages(tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=60)
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_wheels.sh"), str(tmp_path / "wheels")],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHON": str(bare / "bin" / "python")},
                          check=False)
    assert proc.returncode == 1 and "pydantic is not installed here" in proc.stderr
    assert not list((tmp_path / "wheels").glob("*.whl"))
