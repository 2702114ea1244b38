"""The parameter-count tables of docs/parameter_counts.md match the code and the paper's code.

Every "ours" number is recomputed from a freshly built model; for the paper's mixers it must also
equal the original's number in the same row, and the whole-model table's original totals must add
up from the per-layer table. Together the tables list every registered mixer.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import REPO

from tinylang.models import MIXERS, ModelConfig, build_model

DOC = REPO / "docs" / "parameter_counts.md"
NUMBER = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})*$")
AR_VOCAB, AR_EXTRA, N_POSITIONS = 8195, 1, 1024  # ar_8192 and the paper's token/position tables


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


def number(cell: str) -> int:
    assert NUMBER.match(cell), f"not a number: {cell!r}"
    return int(cell.replace(",", ""))


def mixer_name(cell: str) -> str:
    match = re.fullmatch(r"`([a-z0-9_]+)`", cell)
    assert match, f"mixer cell should be a `name`: {cell!r}"
    return match.group(1)


def mixer_args(cell: str) -> dict:
    assert cell.startswith("`") and cell.endswith("`"), cell
    return json.loads(cell.strip("`"))


def build(row: dict[str, str], **model):
    config = ModelConfig(mixer=mixer_name(row["mixer"]), n_layers=2, mixer_args=mixer_args(row["mixer_args"]),
                         **model)
    return build_model(config, AR_VOCAB, 64)


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


PER_LAYER = section_table("Per-layer counts of the paper's mixers")
TOTALS = section_table("Whole models in the paper's AR setting")
OTHERS = section_table("Mixers outside the paper's studies")


def row_id(row: dict[str, str]) -> str:
    return "-".join(row.get(k, "").strip("`") for k in ("mixer", "mixer_args", "d_model", "layer", "positions"))


def test_the_tables_list_every_mixer():
    paper = {mixer_name(row["mixer"]) for row in PER_LAYER}
    others = [mixer_name(row["mixer"]) for row in OTHERS]
    assert sorted(paper | set(others)) == sorted(MIXERS.names()) and not paper & set(others)
    assert {int(row["d_model"]) for row in PER_LAYER} == {16, 64}
    assert {mixer_name(row["mixer"]) for row in TOTALS} == paper


@pytest.mark.parametrize("row", PER_LAYER, ids=row_id)
def test_per_layer_counts_equal_the_originals(row):
    block = build(row, d_model=int(row["d_model"])).layers[int(row["layer"])]
    assert number(row["ours: mixer"]) == count(block.mixer) == number(row["original: mixer"])
    assert number(row["ours: block"]) == count(block) == number(row["original: block"])


@pytest.mark.parametrize("row", TOTALS, ids=row_id)
def test_whole_model_counts_equal_the_originals(row):
    d = int(row["d_model"])
    pos = {"yes": True, "no": False}[row["positions"]]
    model = build(row, d_model=d, pos_embed=pos, n_positions=N_POSITIONS, extra_tokens=AR_EXTRA)
    assert number(row["ours: total"]) == count(model) == number(row["original: total"])
    layers = [r for r in PER_LAYER if (r["mixer"], r["mixer_args"], r["d_model"]) ==
              (row["mixer"], row["mixer_args"], row["d_model"])]
    blocks = sum(number(r["original: block"]) for r in layers)
    assert number(row["original: total"]) == (AR_VOCAB + AR_EXTRA) * d + pos * N_POSITIONS * d + 2 * d + blocks


@pytest.mark.parametrize("row", OTHERS, ids=lambda row: row["mixer"].strip("`"))
def test_other_mixers_counts_match_the_doc(row):
    block = build_model(ModelConfig(mixer=mixer_name(row["mixer"]), d_model=64, n_layers=2), 67, 64).layers[0]
    assert number(row["ours: mixer"]) == count(block.mixer)
    assert number(row["ours: block"]) == count(block)
    assert number(row["mixer difference (ours − original)"]) == count(block.mixer) - number(row["original: mixer"])
