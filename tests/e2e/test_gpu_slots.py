"""GPU slots on a faked 4-GPU machine: concurrent jobs hold distinct slots, a killed job's
slot is free again at once, and a CPU study ignores all of it. No CUDA needed."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, SNAKEFILE, write_study

from tinylang.config import load_study
from tinylang.device import JOBS_PER_GPU_VAR, LOCK_DIR_VAR, NUM_GPUS_VAR, count_gpus, gpu_slot, jobs_per_gpu

# A job: take a slot the way workflow/scripts/train.py does, report it, hold it until killed.
HOLDER = """
import os, sys, time
from tinylang.device import gpu_slot
with gpu_slot(sys.argv[1], poll_seconds=0.05) as slot:
    print(slot, os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
    time.sleep(120)
"""


@pytest.fixture
def fake_gpus(tmp_path, monkeypatch) -> dict[str, str]:
    """This process and its children see 4 GPUs and share one lock folder."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv(NUM_GPUS_VAR, "4")
    monkeypatch.setenv(LOCK_DIR_VAR, str(tmp_path / "locks"))
    return dict(os.environ)


def start_job(env: dict[str, str], device: str = "cuda") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, device], stdout=subprocess.PIPE, text=True, env=env)


def reported(job: subprocess.Popen, timeout: float) -> str | None:
    """The job's first line, or None if it prints none within ``timeout`` seconds."""
    with selectors.DefaultSelector() as sel:
        sel.register(job.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return None
    return job.stdout.readline().strip()


def test_four_jobs_hold_four_distinct_slots_and_a_killed_job_frees_its_slot(fake_gpus):
    jobs = [start_job(fake_gpus) for _ in range(4)]  # all at once
    try:
        lines = [reported(job, timeout=60) for job in jobs]
        slots = {}
        for job, line in zip(jobs, lines):
            slot, visible = line.split()
            assert visible == slot  # the job sees only its own GPU
            slots[int(slot)] = job
        assert sorted(slots) == [0, 1, 2, 3]

        fifth = start_job(fake_gpus)
        jobs.append(fifth)
        assert reported(fifth, timeout=3) is None  # every slot is held: it waits

        slots[2].send_signal(signal.SIGKILL)  # no cleanup runs; the kernel drops its flock
        slots[2].wait()
        assert reported(fifth, timeout=30) == "2 2"
        assert all(job.poll() is None for job in jobs if job is not slots[2])
    finally:
        for job in jobs:
            job.kill()
            job.wait()
            job.stdout.close()


def test_two_jobs_per_gpu_share_each_of_two_gpus(fake_gpus):
    env = {**fake_gpus, NUM_GPUS_VAR: "2", JOBS_PER_GPU_VAR: "2"}
    jobs = [start_job(env) for _ in range(4)]
    try:
        gpus = sorted(int(reported(job, timeout=60).split()[1]) for job in jobs)
        assert gpus == [0, 0, 1, 1]
        fifth = start_job(env)
        jobs.append(fifth)
        assert reported(fifth, timeout=3) is None  # four slots, all held
    finally:
        for job in jobs:
            job.kill()
            job.wait()
            job.stdout.close()


def test_jobs_per_gpu_must_be_a_whole_number(monkeypatch):
    monkeypatch.setenv(JOBS_PER_GPU_VAR, "3")
    assert jobs_per_gpu() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(JOBS_PER_GPU_VAR, bad)
        with pytest.raises(ValueError, match=JOBS_PER_GPU_VAR):
            jobs_per_gpu()


def test_a_cpu_study_ignores_the_fake_gpus(fake_gpus, tmp_path):
    job = start_job(fake_gpus, device="cpu")
    try:
        assert reported(job, timeout=60) == "None None"
    finally:
        job.kill()
        job.wait()
        job.stdout.close()
    with gpu_slot("cpu") as slot:
        assert slot is None and "CUDA_VISIBLE_DEVICES" not in os.environ
    assert not (tmp_path / "locks").exists()  # no lock was even looked at


def test_the_gpu_count_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv(LOCK_DIR_VAR, str(tmp_path))
    monkeypatch.setenv(NUM_GPUS_VAR, "4")
    assert count_gpus() == 4
    with gpu_slot("cuda") as slot:
        assert slot == 0 and os.environ["CUDA_VISIBLE_DEVICES"] == "0"
        assert (tmp_path / "gpu0.lock").exists()
    monkeypatch.setenv(NUM_GPUS_VAR, "0")
    with gpu_slot("cuda") as slot:
        assert slot is None and "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.setenv(NUM_GPUS_VAR, "four")
    with pytest.raises(ValueError, match=NUM_GPUS_VAR):
        count_gpus()


@pytest.mark.slow
def test_the_gpu_box_profile_runs_four_gpu_jobs_at_once_on_distinct_slots(fake_gpus, tmp_path):
    """Snakemake with profiles/gpu-box (``resources: gpu=4``) starts four ``gpu=1`` jobs
    together; each takes a different slot and all four hold theirs at the same time."""
    job = (
        "import json, os, sys, time\n"
        "from tinylang.device import gpu_slot\n"
        "with gpu_slot('cuda', poll_seconds=0.05) as slot:\n"
        "    start = time.time(); time.sleep(3)\n"
        "    record = dict(slot=slot, visible=os.environ['CUDA_VISIBLE_DEVICES'], start=start, end=time.time())\n"
        "open(sys.argv[1], 'w').write(json.dumps(record))\n"
    )
    (tmp_path / "job.py").write_text(job)
    (tmp_path / "Snakefile").write_text(
        "rule all:\n"
        "    input: expand('held/{i}.json', i=range(4))\n\n"
        "rule hold:\n"
        "    output: 'held/{i}.json'\n"
        "    resources: gpu=1\n"
        f"    shell: '{sys.executable} job.py {{output}}'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(tmp_path / "Snakefile"), "-d", str(tmp_path),
         "--profile", str(REPO / "profiles" / "gpu-box"), "--cores", "4"],
        capture_output=True, text=True, timeout=300, check=False, env=fake_gpus,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [yaml.safe_load((tmp_path / "held" / f"{i}.json").read_text()) for i in range(4)]
    assert sorted(r["slot"] for r in records) == [0, 1, 2, 3]
    assert all(str(r["slot"]) == r["visible"] for r in records)
    assert max(r["start"] for r in records) < min(r["end"] for r in records)  # held together


def job_blocks(output: str) -> list[tuple[str, str]]:
    """(rule, text) of every job a Snakemake run or dry run prints."""
    return [(m.group(1), m.group(2)) for m in
            (re.match(r"(?:local)?rule ([\w.-]+):(.*)", block, re.DOTALL) for block in re.split(r"\n(?=(?:local)?rule )", output))
            if m]


def test_the_slurm_profile_plans_the_default_study_with_one_gpu_per_training_job(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(tmp_path),
         "--profile", str(REPO / "profiles" / "slurm"), "-n"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    resources, trained = {}, set()
    for rule, block in job_blocks(proc.stdout + proc.stderr):
        found = re.search(r"resources: (.*)", block)
        if found:
            resources.setdefault(rule, []).append(dict(re.findall(r"(\w+)=([^,\s]+)", found.group(1))))
        if rule == "train":
            trained.add(re.search(r"wildcards: run=(\S+)", block).group(1))
    study = load_study(yaml.safe_load((REPO / "config" / "config.yaml").read_text()),
                       language_library=REPO / "config" / "languages")
    assert trained == set(study.run_names) and len(resources["train"]) == len(study.run_names)
    for rule in ("train", "evaluate"):
        for job in resources[rule]:
            assert job["gpu"] == "1" and job["slurm_partition"] == "gpu", (rule, job)
    for job in resources["language"]:
        assert job["gpu"] == "0" and job["slurm_partition"] == "cpu", job


def test_the_slurm_profile_gives_a_pack_the_training_resources(tmp_path):
    """A pack's rule is named per study (``train_pack-<run>``), so the profile's
    ``set-resources: train`` reaches it through the workflow (common.smk: like_train)."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    from test_study_workflow import SWEEP_STUDY

    configfile = write_study(tmp_path, SWEEP_STUDY)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(tmp_path), "--configfile", str(configfile),
         "--profile", str(REPO / "profiles" / "slurm"), "-n", "study_tables"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    packs = [block for rule, block in job_blocks(proc.stdout + proc.stderr) if rule.startswith("train_pack")]
    assert len(packs) == 1
    resources = dict(re.findall(r"(\w+)=([^,\s]+)", re.search(r"resources: (.*)", packs[0]).group(1)))
    assert resources["gpu"] == "1" and resources["slurm_partition"] == "gpu", resources
    assert resources["runtime"] == "240" and resources["cpus_per_task"] == "2", resources


FAKE_SLURM_TOOL = """#!/bin/sh
[ "$(basename "$0")" = sbatch ] && echo "sbatch $*" >> "$(dirname "$0")/sbatch.calls"
echo "fake $(basename "$0"): no cluster here" >&2
exit 1
"""


@pytest.fixture
def fake_slurm(tmp_path, tiny_study):
    """A tiny study with its language already generated (by the stage function: outputs without
    Snakemake's records of them are not re-planned), and stand-in ``sbatch``/``sacct`` in a folder
    to put first on PATH: ``(that folder, the Snakemake command line without a profile)``."""
    from tinylang.languages import parse_language_config
    from tinylang.stages import LanguageSpec, generate_language

    pytest.importorskip("snakemake_executor_plugin_slurm")
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("sbatch", "sacct"):
        (fake / tool).write_text(FAKE_SLURM_TOOL)
        (fake / tool).chmod(0o755)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(tiny_study))
    base = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(tmp_path),
            "--configfile", str(tmp_path / "study.yaml")]
    language = tiny_study["languages"]["ar"]
    generate_language(LanguageSpec(parse_language_config(language), tmp_path / "results" / "tiny" / "languages" / "ar"))
    return fake, base


@pytest.mark.slow
def test_the_slurm_profile_submits_each_training_job_with_one_gpu(fake_slurm):
    """The sbatch lines themselves, without a cluster: fake ``sbatch`` and ``sacct`` record
    the submission and refuse it, so the run stops right after submitting the train jobs."""
    fake, base = fake_slurm
    proc = subprocess.run(
        [*base, "--profile", str(REPO / "profiles" / "slurm"), "--until", "train", "--retries", "0",
         "--slurm-init-seconds-before-status-checks", "1"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"},
    )
    assert proc.returncode != 0 and "SLURM sbatch failed" in proc.stdout + proc.stderr
    calls = (fake / "sbatch.calls").read_text().splitlines()
    assert sorted(re.search(r"--comment (\S+)", call).group(1) for call in calls) == [
        "rule_train_wildcards_attention", "rule_train_wildcards_mamba"]
    for call in calls:
        options = call.split(" --wrap=")[0].split()
        assert "--gpus=1" in options and options[options.index("-p") + 1] == "gpu", call


@pytest.mark.slow
def test_the_grouped_slurm_profile_submits_one_job_per_run_with_one_gpu(fake_slurm):
    """``profiles/slurm-grouped``: a run's training and evaluations are one sbatch job on one
    GPU, its evaluations stacked two at a time (``cores: 2``) rather than all asked for at once."""
    fake, base = fake_slurm
    proc = subprocess.run(
        [*base, "--profile", str(REPO / "profiles" / "slurm-grouped"), "--retries", "0",
         "--slurm-init-seconds-before-status-checks", "1", "study_tables"],  # no local figure job to wait for
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"},
    )
    assert proc.returncode != 0 and "Error in group run" in proc.stdout + proc.stderr  # the fake refused it
    calls = (fake / "sbatch.calls").read_text().splitlines()
    assert [re.search(r"--comment (\S+)", call).group(1) for call in calls] == ["rule_run_evaluate_train"] * 2
    for call in calls:
        options = call.split(" --wrap=")[0].split()
        assert "--gpus=1" in options and "--cpus-per-task=2" in options, call
        assert options[options.index("--mem") + 1] == "16000" and options[options.index("-p") + 1] == "gpu", call
