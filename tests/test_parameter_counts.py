"""The parameter-count tables of docs/parameter_counts.md match the code.

Both tables are parsed from the markdown: every "ours" number is recomputed from a freshly built
model at width 64, every difference must equal ours minus the paper's number(s) in the same row,
and the first table must list every registered mixer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tinylang.models import MIXERS, ModelConfig, build_model

DOC = Path(__file__).resolve().parents[1] / "docs" / "parameter_counts.md"
D_MODEL, VOCAB, MAX_LEN = 64, 67, 64
NUMBER = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})*$")


def section_table(heading: str) -> list[dict[str, str]]:
    """The first markdown table after ``## heading``, one dict per row (header → cell)."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"## {heading}")
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    assert len(rows) > 2, f"no table under '## {heading}' in {DOC}"
    header, body = rows[0], rows[2:]  # rows[1] is the --- alignment row
    return [dict(zip(header, row, strict=True)) for row in body]


def numbers(cell: str) -> list[int]:
    """``"1,234"`` → ``[1234]``; ``"4,416 / 8,384"`` → ``[4416, 8384]``; ``"-64"`` → ``[-64]``."""
    parts = [p.strip() for p in cell.split("/")]
    for part in parts:
        assert NUMBER.match(part), f"not a number: {part!r} (cell {cell!r})"
    return [int(p.replace(",", "")) for p in parts]


def mixer_name(cell: str) -> str:
    match = re.fullmatch(r"`([a-z0-9_]+)`", cell)
    assert match, f"mixer cell should be a `name`: {cell!r}"
    return match.group(1)


def our_counts(mixer: str, mixer_args: dict | None = None) -> tuple[int, int]:
    """(parameters of layer 0's mixer, parameters of layer 0's whole block) at width 64."""
    config = ModelConfig(mixer=mixer, d_model=D_MODEL, n_layers=2, mixer_args=mixer_args or {})
    block = build_model(config, VOCAB, MAX_LEN).layers[0]
    return (sum(p.numel() for p in block.mixer.parameters()), sum(p.numel() for p in block.parameters()))


def check_differences(ours: int, paper_cell: str, diff_cell: str) -> None:
    papers, diffs = numbers(paper_cell), numbers(diff_cell)
    assert len(papers) == len(diffs), f"{paper_cell!r} and {diff_cell!r} should pair up"
    for paper, diff in zip(papers, diffs):
        assert diff == ours - paper, f"difference {diff} should be {ours} - {paper} = {ours - paper}"


PER_LAYER = section_table("Per-layer counts at width 64")
WITH_PAPER_ARGS = section_table("Ours with the paper's hyperparameters")


def test_per_layer_table_lists_every_mixer_once():
    names = [mixer_name(row["mixer"]) for row in PER_LAYER]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(MIXERS.names())


@pytest.mark.parametrize("row", PER_LAYER, ids=lambda row: row["mixer"].strip("`"))
def test_per_layer_counts_match_the_doc(row):
    mixer, block = our_counts(mixer_name(row["mixer"]))
    assert numbers(row["ours: mixer"]) == [mixer]
    assert numbers(row["ours: block"]) == [block]
    check_differences(mixer, row["paper: mixer"], row["mixer difference (ours − paper)"])
    assert len(numbers(row["paper: block"])) == len(numbers(row["paper: mixer"]))


@pytest.mark.parametrize(
    "row", WITH_PAPER_ARGS, ids=lambda row: f"{row['mixer'].strip('`')}-{row['mixer_args'].strip('`')}"
)
def test_counts_with_the_papers_hyperparameters_match_the_doc(row):
    args_cell = row["mixer_args"]
    assert args_cell.startswith("`") and args_cell.endswith("`"), args_cell
    mixer, _ = our_counts(mixer_name(row["mixer"]), json.loads(args_cell.strip("`")))
    assert numbers(row["ours: mixer"]) == [mixer]
    check_differences(mixer, row["paper: mixer"], row["remaining difference (ours − paper)"])
