"""Associative recall: generated examples, file determinism, config errors, held-out pairs and tensors."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tinylang.languages import (
    BOS,
    EOS,
    PAD,
    config_hash,
    load_tensors,
    make_language,
    parse_language_config,
    read_meta,
    read_split,
    to_tensors,
    write_language,
)

NUM_KV = 16  # keys 3..10, values 11..18


def ar_config(**overrides):
    raw = {"type": "ar", "num_kv": NUM_KV, "min_pairs": 1, "max_pairs": 8, "splits": {"train": 300, "test": 50}}
    return parse_language_config(raw | overrides)


@pytest.fixture(scope="module", params=["key", "value"])
def generated(request):
    config = ar_config(query_type=request.param)
    return config, make_language(config).generate()


def test_splits_and_columns(generated):
    config, splits = generated
    assert {name: len(df) for name, df in splits.items()} == {"train": 300, "test": 50}
    df = splits["train"]
    assert set(df["query_type"]) == {config.query_type.upper()}
    assert df["num_pairs"].between(1, 8).all()
    assert set(df["num_pairs"]) == set(range(1, 9))  # 300 draws cover every count
    assert (df["doc_length"] == 2 * df["num_pairs"] + 5).all()
    assert not splits["train"]["tokens"].iloc[0].tolist() == splits["test"]["tokens"].iloc[0].tolist()


def test_examples_are_well_formed(generated):
    config, splits = generated
    m = NUM_KV // 2
    for df in splits.values():
        for row in df.itertuples():
            tokens = np.asarray(row.tokens)
            n = row.num_pairs
            assert len(tokens) == 2 * n + 5
            keys, values = tokens[1 : 2 * n + 1 : 2], tokens[2 : 2 * n + 1 : 2]
            assert ((3 <= keys) & (keys < 3 + m)).all() and ((3 + m <= values) & (values < 3 + 2 * m)).all()
            assert len(set(keys)) == n and len(set(values)) == n
            assert tokens[0] == BOS and tokens[-1] == EOS and tokens[2 * n + 1] == EOS

            query, answer = tokens[-3], tokens[-2]
            partner = dict(zip(keys, values)) if config.query_type == "key" else dict(zip(values, keys))
            assert query in partner and partner[query] == answer == row.answer

            assert row.bos == 0 and tokens[row.bos] == BOS
            assert row.divider == len(tokens) - 4 and tokens[row.divider] == EOS
            assert (row.query_item, row.target_item) == (len(tokens) - 3, len(tokens) - 2)
            assert tokens[row.query_item] == tokens[row.query_item_orig] == query
            assert tokens[row.target_item] == tokens[row.target_item_orig] == answer
            assert row.query_item_orig < row.divider and row.target_item_orig < row.divider
            queried_is_key = row.query_item_orig % 2 == 1
            assert queried_is_key == (config.query_type == "key")
            assert row.query_orig_target_orig_dist == abs(row.query_item_orig - row.target_item_orig) == 1
            assert row.query_query_orig_dist == row.query_item - row.query_item_orig
            assert row.query_target_orig_dist == row.query_item - row.target_item_orig


def test_queried_pair_is_spread():
    df = make_language(ar_config(min_pairs=4, max_pairs=4, splits={"train": 2000})).generate()["train"]
    counts = np.bincount((df["query_item_orig"].to_numpy() - 1) // 2, minlength=4)
    assert counts.min() > 400  # uniform would give 500 each


def test_files_are_deterministic(tmp_path):
    config = ar_config()
    write_language(config, tmp_path / "a")
    write_language(config, tmp_path / "b")
    write_language(ar_config(seed=1), tmp_path / "c")
    for name in ("train.parquet", "test.parquet", "meta.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()


def test_meta_and_round_trip(tmp_path):
    config = ar_config()
    write_language(config, tmp_path)
    meta = read_meta(tmp_path)
    assert meta["vocabulary"][:3] == ["<pad>", "<bos>", "<eos>"] and len(meta["vocabulary"]) == 3 + NUM_KV
    assert meta["token_classes"] == {"key": [3, 11], "value": [11, 19]}
    assert meta["config"] == config.model_dump(mode="json") and meta["config"]["mask_nonquery"] is True
    assert meta["config_hash"] == config_hash(config)
    assert meta["splits"] == {"train": 300, "test": 50}
    assert set(meta["stats"]["train"]) >= {"doc_length", "num_pairs", "query_query_orig_dist", "eligible_pairs"}
    assert set(meta["stats"]["train"]["num_pairs"]) == {"mean", "min", "max"}
    assert "tinylang_version" not in meta
    stored = json.loads((tmp_path / "meta.json").read_text())
    assert {k: v for k, v in stored.items() if k != "sha256"} == meta and len(stored["sha256"]) == 64
    assert set(meta["file_sha256"]) == {"train", "test"}

    df = read_split(tmp_path, "test")
    expected = make_language(config).generate()["test"]
    pd.testing.assert_frame_equal(df.drop(columns="tokens"), expected.drop(columns="tokens"))
    assert [list(t) for t in df["tokens"]] == [list(t) for t in expected["tokens"]]

    with pytest.raises(FileNotFoundError, match="dev.parquet"):
        read_split(tmp_path, "dev")
    with pytest.raises(FileNotFoundError, match="meta.json"):
        read_meta(tmp_path / "missing")


@pytest.mark.parametrize(
    ("overrides", "field", "detail"),
    [
        ({"num_kv": 7}, "num_kv", "must be even"),
        ({"num_kv": 2, "max_pairs": 1}, "num_kv", "≥ 4"),
        ({"min_pairs": 5, "max_pairs": 3}, "min_pairs", "max_pairs"),
        ({"min_pairs": 0}, "min_pairs", "greater than or equal to 1"),
        ({"max_pairs": 9}, "max_pairs", "num_kv/2 = 8"),
        ({"query_type": "pair"}, "query_type", "'key' or 'value'"),
        ({"splits": {"test": 5}}, "splits", "'train'"),
        ({"splits": {"train": 5, "valid": 5}}, "splits", "train, dev, test"),
        ({"splits": {"train": 0}}, "splits", "≥ 1"),
        ({"seed": -1}, "seed", "greater than or equal to 0"),
        ({"vocab": 3}, "vocab", "unknown key(s) 'vocab'; allowed: mask_nonquery"),
        ({"train_test_split": -0.1}, "train_test_split", "greater than or equal to 0"),
        ({"train_test_split": 1.0}, "train_test_split", "less than 1"),
        ({"train_test_split": float("nan")}, "train_test_split", "less than 1"),
        ({"splits": {"train": 5, "dev": 5}}, "splits", "train_test_split > 0"),
    ],
)
def test_config_errors_name_the_field(overrides, field, detail):
    with pytest.raises(ValidationError) as info:
        ar_config(**overrides)
    assert field in str(info.value) and detail in str(info.value)


def test_unknown_type_lists_allowed():
    with pytest.raises(ValueError, match="unknown language .zz.; allowed: ar"):
        parse_language_config({"type": "zz"})
    with pytest.raises(ValueError, match="'type'"):
        parse_language_config({"num_kv": 8})


@pytest.mark.parametrize("mask_nonquery", [True, False])
def test_tensors(mask_nonquery):
    df = make_language(ar_config(splits={"train": 40})).generate()["train"]
    tt = to_tensors(df, mask_nonquery)
    lengths = df["doc_length"].to_numpy()
    width = lengths.max()
    assert len(tt) == 40 and tt.input_ids.shape == tt.labels.shape == (40, width)
    assert tt.input_ids.dtype == tt.labels.dtype == torch.long
    assert tt.lengths.tolist() == lengths.tolist()
    assert set(tt.positions) == {"bos", "query_item_orig", "target_item_orig", "divider", "query_item", "target_item"}
    for i, tokens in enumerate(df["tokens"]):
        n = len(tokens)
        assert tt.input_ids[i, :n].tolist() == list(tokens)
        assert (tt.input_ids[i, n:] == PAD).all()
        labels = tt.labels[i].tolist()
        q = df["query_item"].iloc[i]
        if mask_nonquery:
            assert labels[q] == tokens[q + 1] == df["answer"].iloc[i]
            assert all(label == -100 for t, label in enumerate(labels) if t != q)
        else:
            assert labels[: n - 1] == list(tokens[1:]) and all(label == -100 for label in labels[n - 1 :])
    for name, pos in tt.positions.items():
        assert pos.tolist() == df[name].tolist()
    assert tt.answer.tolist() == df["answer"].tolist()
    assert list(tt.query_type) == ["KEY"] * 40

    index = torch.tensor([5, 0, 5])
    sub = tt.subset(index)
    assert len(sub) == 3 and torch.equal(sub.input_ids, tt.input_ids[index])
    assert torch.equal(sub.labels, tt.labels[index])
    assert torch.equal(sub.positions["query_item"], tt.positions["query_item"][index])
    assert list(sub.query_type) == ["KEY"] * 3


def test_load_tensors_reads_mask_from_meta(tmp_path):
    write_language(ar_config(mask_nonquery=False, splits={"train": 10}), tmp_path)
    tt = load_tensors(tmp_path, "train")
    assert ((tt.labels != -100).sum(1) == tt.lengths - 1).all()


# ---------------------------------------------------------------------------
# Held-out pairs (train_test_split) and property tests over random configs.


def check_example(tokens: np.ndarray, row, query_type: str, num_kv: int) -> tuple[int, int]:
    """Assert one example is right from its tokens alone; return its queried (key, value) ids."""
    m = num_kv // 2
    n = (len(tokens) - 5) // 2
    assert len(tokens) == 2 * n + 5 == row.doc_length and n == row.num_pairs
    assert tokens[0] == BOS and tokens[2 * n + 1] == EOS and tokens[-1] == EOS
    context = tokens[1 : 2 * n + 1]
    keys, values = context[0::2], context[1::2]
    assert ((3 <= keys) & (keys < 3 + m)).all() and ((3 + m <= values) & (values < 3 + 2 * m)).all()
    assert len(set(keys.tolist())) == n and len(set(values.tolist())) == n

    query = tokens[-3]
    (where,) = np.flatnonzero(context == query)  # the query occurs exactly once in the context
    partner = context[where + 1] if where % 2 == 0 else context[where - 1]
    assert (where % 2 == 0) == (query_type == "key")
    assert tokens[-2] == partner == row.answer

    assert tokens[row.bos] == BOS and row.bos == 0
    assert row.query_item_orig == 1 + where and tokens[row.query_item_orig] == query
    assert tokens[row.target_item_orig] == partner and abs(row.query_item_orig - row.target_item_orig) == 1
    assert (row.divider, row.query_item, row.target_item) == (len(tokens) - 4, len(tokens) - 3, len(tokens) - 2)
    assert tokens[row.divider] == EOS and tokens[row.query_item] == query and tokens[row.target_item] == partner
    assert row.query_orig_target_orig_dist == 1
    assert row.query_query_orig_dist == row.query_item - row.query_item_orig
    assert row.query_target_orig_dist == row.query_item - row.target_item_orig
    return (query, partner) if query_type == "key" else (partner, query)


def held_out_ids(language) -> set[tuple[int, int]]:
    """Held-out pairs as (key id, value id)."""
    m = language.num_keys
    k, v = np.nonzero(language.held_out)
    return set(zip((k + 3).tolist(), (v + 3 + m).tolist()))


@st.composite
def ar_raw_configs(draw):
    m = draw(st.integers(2, 20))
    max_pairs = draw(st.integers(1, m))
    fraction = draw(st.one_of(st.just(0.0), st.floats(0.02, 0.95)))
    splits = {"train": draw(st.integers(1, 40))}
    if draw(st.booleans()):
        splits["test"] = draw(st.integers(1, 30))
    if fraction > 0 and draw(st.booleans()):
        splits["dev"] = draw(st.integers(1, 20))
    return {
        "type": "ar",
        "num_kv": 2 * m,
        "min_pairs": draw(st.integers(1, max_pairs)),
        "max_pairs": max_pairs,
        "query_type": draw(st.sampled_from(["key", "value"])),
        "train_test_split": fraction,
        "seed": draw(st.integers(0, 2**16)),
        "splits": splits,
    }


PROPERTY_SETTINGS = settings(
    max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(raw=ar_raw_configs())
def test_property_examples_and_files(raw):
    config = parse_language_config(raw)
    language = make_language(config)
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a", Path(tmp) / "b"
        try:
            write_language(config, a)
        except ValueError as err:
            # Only a held-out set that leaves some split nothing to query may stop generation,
            # and then nothing is written.
            held = language.held_out
            assert held is not None and "train_test_split" in str(err)
            assert held.all() or ("test" in config.splits and not held.any())
            assert not list(a.iterdir())
            assume(False)
        write_language(config, b)
        files = sorted(p.name for p in a.iterdir())
        assert files == sorted([f"{s}.parquet" for s in config.splits] + ["meta.json"])
        for name in files:
            assert (a / name).read_bytes() == (b / name).read_bytes()
        held = held_out_ids(language) if config.train_test_split > 0 else set()
        for split, rows in config.splits.items():
            df = read_split(a, split)
            assert len(df) == rows
            for row in df.itertuples():
                tokens = np.asarray(row.tokens)
                queried = check_example(tokens, row, config.query_type, config.num_kv)
                n = row.num_pairs
                pairs = list(zip(tokens[1 : 2 * n + 1 : 2].tolist(), tokens[2 : 2 * n + 1 : 2].tolist()))
                if split == "test" and held:
                    assert queried in held
                    assert row.eligible_pairs == sum(p in held for p in pairs) >= 1
                else:
                    assert queried not in held
                    assert row.eligible_pairs == sum(p not in held for p in pairs) >= 1


@PROPERTY_SETTINGS
@given(
    raw=ar_raw_configs(),
    bad=st.sampled_from(["too_many_pairs", "fraction_low", "fraction_high", "dev_without_held_out"]),
)
def test_property_bad_configs_name_the_field(raw, bad):
    m = raw["num_kv"] // 2
    if bad == "too_many_pairs":
        raw |= {"max_pairs": m + 1}
        field = "max_pairs"
    elif bad == "fraction_low":
        raw |= {"train_test_split": -0.01}
        field = "train_test_split"
    elif bad == "fraction_high":
        raw |= {"train_test_split": 1.0 + raw["train_test_split"]}
        field = "train_test_split"
    else:
        raw |= {"train_test_split": 0.0, "splits": raw["splits"] | {"dev": 3}}
        field = "train_test_split"
    with pytest.raises(ValidationError) as info:
        parse_language_config(raw)
    assert field in str(info.value)


def test_held_out_pairs_depend_on_seed_only():
    def held(**overrides):
        return make_language(ar_config(num_kv=200, max_pairs=8, train_test_split=0.3, **overrides)).held_out

    base = held()
    assert base.shape == (100, 100) and 0.27 < base.mean() < 0.33
    assert np.array_equal(base, held(splits={"train": 7, "dev": 3, "test": 900}))
    assert np.array_equal(base, held(query_type="value", min_pairs=3))
    assert not np.array_equal(base, held(seed=1))
    assert make_language(ar_config()).held_out is None


def test_queried_pair_is_uniform_among_eligible():
    config = ar_config(num_kv=8, min_pairs=4, max_pairs=4, train_test_split=0.5, splits={"train": 4000, "test": 4000})
    language = make_language(config)
    held = held_out_ids(language)
    assert 0 < len(held) < 16
    for split, df in language.generate().items():
        # Among examples with exactly two eligible pairs, the first one is queried half the time.
        first = []
        for row in df.itertuples():
            tokens = row.tokens
            pairs = list(zip(tokens[1:9:2].tolist(), tokens[2:9:2].tolist()))
            ok = [(p in held) == (split == "test") for p in pairs]
            assert sum(ok) == row.eligible_pairs and ok[(row.query_item_orig - 1) // 2]
            if sum(ok) == 2:
                first.append((row.query_item_orig - 1) // 2 == ok.index(True))
        assert len(first) > 300 and 0.42 < np.mean(first) < 0.58


def test_no_eligible_pair_stops_before_writing(tmp_path):
    # num_kv 4 has 4 (key, value) pairs: at 1% nothing is held out, at 99% everything is.
    nothing = ar_config(num_kv=4, max_pairs=2, train_test_split=0.01, splits={"train": 5, "test": 5})
    everything = ar_config(num_kv=4, max_pairs=2, train_test_split=0.99, splits={"train": 5, "test": 5})
    assert not make_language(nothing).held_out.any() and make_language(everything).held_out.all()
    for config, detail in [(nothing, "holds out none"), (everything, "holds out all")]:
        out = tmp_path / detail.replace(" ", "_")
        with pytest.raises(ValueError, match=f"train_test_split: .*{detail}"):
            write_language(config, out)
        assert not out.exists() or not list(out.iterdir())
    # Without a test split, holding nothing out is harmless.
    write_language(nothing.model_copy(update={"splits": {"train": 5}}), tmp_path / "train_only")


def test_rare_eligible_examples_give_up_with_a_message(monkeypatch):
    from tinylang.languages import ar

    config = ar_config(num_kv=40, min_pairs=1, max_pairs=1, train_test_split=0.02, splits={"train": 5, "test": 50})
    language = make_language(config)
    assert language.held_out.any()
    monkeypatch.setattr(ar, "MAX_RESAMPLE_ROUNDS", 2)
    message = "train_test_split: after 2 rounds .* 'test' examples still had no held-out pair"
    with pytest.raises(ValueError, match=message):
        language.generate()


def test_writing_a_language_logs_each_split_as_it_is_made(tmp_path, caplog):
    import logging

    from tinylang.languages import parse_language_config, write_language

    config = parse_language_config({"type": "ar", "num_kv": 16, "min_pairs": 2, "max_pairs": 3, "seed": 0,
                                    "train_test_split": 0.2, "splits": {"train": 50, "dev": 7, "test": 9}})
    with caplog.at_level(logging.INFO, logger="tinylang.languages"):
        write_language(config, tmp_path / "ar")
    lines = [r.getMessage() for r in caplog.records if r.name == "tinylang.languages"]
    assert [line.split(" examples")[0] for line in lines] == [
        "ar language: split train, 50", "ar language: split dev, 7", "ar language: split test, 9"]
    assert [line.split("(")[1].split(" splits")[0] for line in lines] == ["1 of 3", "2 of 3", "3 of 3"]
