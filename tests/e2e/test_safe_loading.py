"""Safe loading: checkpoints load with ``weights_only=True``, languages are Parquet, and a
truncated checkpoint, a truncated split or a split edited to hold out-of-vocabulary ids each
fail with an error that names the file and says what to do, not a torch/pyarrow traceback."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tinylang.integrity import file_digest, sealed
from tinylang.languages import load_tensors, parse_language_config, read_meta, read_split, to_tensors, write_language
from tinylang.languages.base import LanguageDataError
from tinylang.models import CheckpointError, ModelConfig, build_model, load_checkpoint, read_checkpoint, save_checkpoint
from tinylang.models.checkpoint import FORMAT

SMALL_AR = {"type": "ar", "num_kv": 16, "min_pairs": 2, "max_pairs": 3, "seed": 0, "splits": {"train": 64, "test": 16}}


@pytest.fixture
def language(tmp_path) -> Path:
    out = tmp_path / "languages" / "ar"
    write_language(parse_language_config(SMALL_AR), out)
    return out


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    path = tmp_path / "runs" / "attention" / "checkpoints" / "step3.pt"
    model = build_model(ModelConfig(mixer="attention", d_model=16, n_layers=1), vocab_size=19, max_len=12)
    save_checkpoint(path, model, step=3)
    return path


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def assert_clear(err: pytest.ExceptionInfo, path: Path, remedy: str) -> None:
    """The message names the file and the remedy; no library traceback is chained to it."""
    message = str(err.value)
    assert str(path) in message and remedy in message, message
    assert err.value.__cause__ is None and err.value.__suppress_context__


# --- checkpoints ------------------------------------------------------------------------


class Planted:
    """Unpickling this runs ``os.mkdir(marker)``: what a malicious checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_checkpoints_are_read_with_weights_only(tmp_path):
    path, marker = tmp_path / "checkpoints" / "step1.pt", tmp_path / "code-ran"
    path.parent.mkdir()
    torch.save({"format": FORMAT, "planted": Planted(marker)}, path)
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        read_checkpoint(path)
    assert "weights" in str(err.value).lower()  # torch's weights-only unpickler refused it
    assert not marker.exists()  # nothing in the file ran
    torch.load(path, weights_only=False)  # the plant is real: a full unpickle runs it
    assert marker.is_dir()


def test_a_truncated_checkpoint_names_the_file_and_the_remedy(checkpoint):
    truncate(checkpoint)
    with pytest.raises(CheckpointError, match="is truncated or corrupt") as err:
        load_checkpoint(checkpoint)
    assert_clear(err, checkpoint, f"snakemake --cores all --forcerun {checkpoint.parent}")


def test_a_checkpoint_of_another_format_or_shape_names_the_file(checkpoint, tmp_path):
    payload = torch.load(checkpoint, weights_only=True)
    payload["state_dict"].pop(next(iter(payload["state_dict"])))  # a weight went missing
    torch.save(sealed({k: v for k, v in payload.items() if k != "sha256"}), checkpoint)  # and the hash agrees
    with pytest.raises(CheckpointError, match="does not hold a model") as err:
        load_checkpoint(checkpoint)
    assert_clear(err, checkpoint, "--forcerun")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match=f"not a {FORMAT} file"):
        load_checkpoint(other)


# --- language splits ----------------------------------------------------------------------


def test_languages_are_parquet_and_json_only(language):
    assert sorted(p.name for p in language.iterdir()) == ["meta.json", "test.parquet", "train.parquet"]
    for split in ("train", "test"):
        data = (language / f"{split}.parquet").read_bytes()
        assert data[:4] == data[-4:] == b"PAR1"  # Parquet's magic, not a pickle


def test_a_truncated_split_names_the_file_and_the_remedy(language):
    split = language / "train.parquet"
    truncate(split)
    for read in (lambda: read_split(language, "train"), lambda: load_tensors(language, "train")):
        with pytest.raises(LanguageDataError, match="is damaged: its bytes do not match the SHA-256") as err:
            read()
        assert_clear(err, split, f"snakemake --cores all --forcerun {language}")
    assert len(load_tensors(language, "test")) == 16  # the other split still loads


def test_a_corrupt_meta_json_names_the_file(language):
    (language / "meta.json").write_text('{"vocabulary": ["<pad>"')
    with pytest.raises(LanguageDataError, match="truncated or corrupt") as err:
        read_meta(language)
    assert_clear(err, language / "meta.json", f"--forcerun {language}")


def test_an_edited_meta_json_is_detected_by_its_hash(language):
    meta = json.loads((language / "meta.json").read_text())
    meta["token_classes"]["key"][1] += 1  # valid JSON, plausible values
    (language / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(LanguageDataError, match="meta.json is damaged") as err:
        read_meta(language)
    assert_clear(err, language / "meta.json", f"--forcerun {language}")


def reseal(language: Path) -> None:
    """Record the splits' current bytes in meta.json, as a deliberate edit (or a language from
    before the hashes, whose files are not checked) would leave it: the checks after the hash run."""
    meta = {k: v for k, v in json.loads((language / "meta.json").read_text()).items() if k != "sha256"}
    meta["file_sha256"] = {split: file_digest(language / f"{split}.parquet") for split in meta["file_sha256"]}
    (language / "meta.json").write_text(json.dumps(sealed(meta)))


def rewrite(language: Path, split: str, column: str, row: int, edit) -> None:
    """Rewrite one cell of a split the way a hand edit would (same schema)."""
    path = language / f"{split}.parquet"
    table = pq.read_table(path)
    values = table.column(column).to_pylist()
    values[row] = edit(values[row])
    index = table.schema.get_field_index(column)
    pq.write_table(table.set_column(index, table.schema.field(index), pa.array(values, table.schema.field(index).type)), path)
    reseal(language)


@pytest.mark.parametrize(("column", "edit", "what"), [
    ("tokens", lambda tokens: [*tokens[:2], 19, *tokens[3:]], "1 token id(s)"),  # vocab is [0, 19)
    ("tokens", lambda tokens: [-1, *tokens[1:]], "1 token id(s)"),
    ("answer", lambda answer: 400, "1 answer id(s)"),
])
def test_out_of_vocabulary_ids_name_the_split_the_example_and_the_remedy(language, column, edit, what):
    assert len(read_meta(language)["vocabulary"]) == 19
    rewrite(language, "test", column, row=5, edit=edit)
    with pytest.raises(LanguageDataError, match=re.escape(f"{what} outside the vocabulary [0, 19)")) as err:
        load_tensors(language, "test")
    assert "in example 5" in str(err.value)
    assert_clear(err, language / "test.parquet", f"--forcerun {language}")
    assert len(load_tensors(language, "train")) == 64  # only the edited split is refused


def test_a_probe_position_outside_its_example_is_refused(language):
    rewrite(language, "test", "target_item", row=2, edit=lambda position: 500)
    with pytest.raises(LanguageDataError, match="'target_item' position outside the example") as err:
        load_tensors(language, "test")
    assert "example 2" in str(err.value)


def test_to_tensors_checks_ids_only_when_given_a_vocabulary(language):
    df = read_split(language, "test")
    df.at[0, "tokens"] = [1, 99, 2]
    assert len(to_tensors(df, mask_nonquery=False)) == 16  # no vocabulary, no check (as before)
    with pytest.raises(LanguageDataError, match=r"my frame: 1 token id\(s\) outside the vocabulary \[0, 19\)"):
        to_tensors(df, mask_nonquery=False, vocab_size=19, source="my frame")


# --- the workflow -------------------------------------------------------------------------
