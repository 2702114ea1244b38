"""The code passes the project's ruff configuration (pyproject.toml [tool.ruff]) and Snakemake's linter."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SNAKEFILE


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([ruff, "check", "src", "tests", "benchmarks", "workflow/scripts"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_snakemakes_linter_finds_nothing(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "-s", str(SNAKEFILE), "-d",
                           str(tmp_path)], capture_output=True, text=True, check=False, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "good condition" in output, output[-4000:]


def test_snakefmt_leaves_the_workflow_as_it_is():
    snakefmt = shutil.which("snakefmt", path=str(Path(sys.executable).parent)) or shutil.which("snakefmt")
    if snakefmt is None:
        pytest.skip("snakefmt is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([snakefmt, "--check", "--diff", "workflow"], cwd=REPO, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("caption", sorted((REPO / "workflow" / "report").glob("*.rst")), ids=lambda p: p.name)
def test_report_captions_render_without_mail_links_or_warnings(caption):
    """Captions are Jinja, then reStructuredText: ``Attrib@Value`` unquoted becomes a mailto link."""
    from types import SimpleNamespace

    import jinja2
    from docutils.core import publish_parts

    from tinylang.figures.registry import STUDY_FIGURES

    for figure in [*STUDY_FIGURES.names(), "mechanism_by_layer"]:
        snakemake = SimpleNamespace(config={"study": "s"}, wildcards=SimpleNamespace(figure=figure, run="r"),
                                    params=SimpleNamespace())
        text = jinja2.Template(caption.read_text()).render(snakemake=snakemake)
        html = publish_parts(text, writer="html", settings_overrides={"report_level": 2, "halt_level": 2})["body"]
        assert "mailto:" not in html, (figure, html)
