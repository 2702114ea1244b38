"""Associative treecall: answers recomputed from the stored trees, splits, determinism, config errors,
and the paper's grammars (legacy random stream) against the original generator's output."""

from __future__ import annotations

import json
from collections import Counter
from functools import cache

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tinylang.languages import BOS, EOS, make_language, parse_language_config, read_meta, to_tensors, write_language
from tinylang.languages.atr import QUERY_TYPES

BASE = {
    "type": "atr",
    "num_terminals": 20,
    "num_nonterminals": 40,
    "max_rhs_len": 5,
    "max_rules_per_nt": 5,
    "max_depth": 10,
    "splits": {"train": 200, "test": 50},
}


def atr_config(**overrides):
    return parse_language_config(BASE | overrides)


def reference_pairs(labels: list[int], parents: list[int], query_type: str, allowed, unambiguous: bool,
                    self_sibling_always: bool = False):
    """Eligible (query, target) token positions of one sentence, computed naively (with
    ``self_sibling_always``, as the original: a word is its own sibling even where not allowed)."""
    L = len(labels)
    pos = range(1, L + 1)
    lab = {p: labels[p - 1] for p in pos}
    par = {p: parents[p - 1] for p in pos}
    last = {lab[p]: p for p in pos}  # rightmost occurrence of each label
    if query_type == "PARENT":
        pairs = [(q, par[q]) for q in pos if par[q] != 0]
    elif query_type == "CHILD":
        pairs = [(par[t], t) for t in pos if par[t] != 0]
    else:
        group = lambda q: [p for p in pos if par[p] == par[q]] if par[q] != 0 else [q]  # noqa: E731
        if self_sibling_always:
            pairs = [(q, max([q] + [p for p in group(q) if allowed(lab[p], lab[q])])) for q in pos]
        else:
            pairs = [(q, max(group(q))) for q in pos]
    pairs = [(q, t) for q, t in pairs if allowed(lab[t], lab[q]) or (self_sibling_always and q == t)]
    if unambiguous:
        pairs = [(q, t) for q, t in pairs if last[lab[q]] == q]
        if query_type == "SIBLING":
            pairs = [(q, t) for q, t in pairs if last[lab[t]] == t]
    return pairs, lab


def check_split(language, split, df):
    """Every example of a split is well formed and its answer is right."""
    cfg = language.config
    V = language.num_symbols
    held = language.held_out
    type_ids = language.query_type_ids
    for row in df.itertuples():
        tokens = [int(x) for x in row.tokens]
        L = row.sentence_length
        tail = 5 if type_ids else 4
        assert len(tokens) == row.doc_length == L + 1 + tail
        assert 3 <= L <= cfg.max_length
        assert tokens[0] == BOS and row.bos == 0
        labels = [x - 3 for x in tokens[1 : L + 1]]
        assert all(0 <= x < V for x in labels)
        assert row.divider == L + 1 and tokens[row.divider] == EOS and tokens[-1] == EOS

        # The stored tree: one root, parent on the head side, no cycles.
        parents = [int(x) for x in row.parents]
        assert len(parents) == L and parents.count(0) == 1
        for i, p in enumerate(parents, start=1):
            if p:
                assert (p < i) if cfg.head_position == "left" else (p > i)
        assert 1 <= row.depth <= cfg.max_depth

        # Query layout.
        assert row.query_type in cfg.query_types
        q, t = row.query_item_orig, row.target_item_orig
        assert row.query_item == L + 2 and tokens[row.query_item] == tokens[q]
        if type_ids:
            assert row.query_type_item == row.query_item + 1 == row.target_item - 1
            assert tokens[row.query_type_item] == type_ids[row.query_type]
        else:
            assert row.query_type_item == -1 and row.target_item == row.query_item + 1
        assert tokens[row.target_item] == tokens[t] == row.answer
        assert 1 <= q <= L and 1 <= t <= L

        # The answer recomputed from the tree.
        if held.any():
            own_sibling = cfg.sentence_rng == "legacy" and q == t  # allowed in every split
            if split == "test":
                assert held[tokens[t] - 3, tokens[q] - 3] or own_sibling
                allowed = lambda a, b: held[a, b]  # noqa: E731
            else:
                assert not held[tokens[t] - 3, tokens[q] - 3] or own_sibling
                allowed = lambda a, b: not held[a, b]  # noqa: E731
        else:
            allowed = lambda a, b: True  # noqa: E731
        legacy = cfg.sentence_rng == "legacy"
        pairs, lab = reference_pairs(labels, parents, row.query_type, allowed, cfg.unambiguous_queries, legacy)
        assert (q, t) in pairs
        assert row.eligible_pairs == len(pairs)
        assert row.eligible_queries == len({a for a, _ in pairs})
        assert row.eligible_targets == len({b for _, b in pairs})
        valid = sorted({b for a, b in pairs if lab[a] == lab[q]})
        assert list(row.all_target_items_orig) == valid
        counts = Counter(tokens[b] for b in valid)
        assert list(row.answer_set) == sorted(counts) and row.num_answers == len(counts)
        assert list(row.answer_counts) == [counts[a] for a in sorted(counts)]

        # Statistics.
        assert row.query_orig_target_orig_dist == abs(q - t)
        assert row.query_query_orig_dist == row.query_item - q
        assert row.query_target_orig_dist == row.query_item - t
        assert row.repeated_terminal_share == pytest.approx((L - len(set(labels))) / L)
        heads = {p for p in parents if p}  # every constituent's head has a dependent
        assert row.branching_factor == pytest.approx((L - 1) / len(heads))


def test_default_grammar_examples():
    config = atr_config(head_position="right", unambiguous_queries=True)
    language = make_language(config)
    splits = language.generate()
    assert {k: len(v) for k, v in splits.items()} == {"train": 200, "test": 50}
    for split, df in splits.items():
        check_split(language, split, df)
    assert language.vocabulary()[:4] == ["<pad>", "<bos>", "<eos>", "t0"]
    assert len(language.vocabulary()) == 3 + 20 + 3
    assert language.token_classes() == {"terminal": [3, 23], "query_type": [23, 26]}
    assert set(splits["train"]["query_type"]) == set(QUERY_TYPES)


def test_single_query_type_has_no_type_token():
    config = atr_config(no_child_queries=True, no_sibling_queries=True)
    language = make_language(config)
    assert len(language.vocabulary()) == 23 and language.token_classes() == {"terminal": [3, 23]}
    df = language.generate()["train"]
    assert set(df["query_type"]) == {"PARENT"}
    check_split(language, "train", df)


def test_held_out_pairs():
    config = atr_config(train_test_split=0.3, splits={"train": 150, "dev": 40, "test": 40})
    language = make_language(config)
    held = language.held_out
    assert held.sum() == round(0.3 * 400)
    splits = language.generate()
    assert set(splits) == {"train", "dev", "test"}
    for split, df in splits.items():
        check_split(language, split, df)  # asserts held-out status of every queried pair


def test_transparent_heads():
    config = atr_config(transparent_nonterminals=True, num_nonterminals=8, max_depth=4)
    language = make_language(config)
    assert language.token_classes()["terminal"] == [3, 3 + 28]
    df = language.generate()["train"]
    check_split(language, "train", df)
    for tokens, parents in zip(df["tokens"], df["parents"]):
        heads = {int(p) for p in parents if p}
        assert all(tokens[h] >= 3 + 20 for h in heads)  # every head is its constituent's own token


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    T=st.integers(1, 6),
    N=st.integers(1, 6),
    rhs=st.integers(1, 4),
    rules=st.integers(1, 3),
    depth=st.integers(1, 4),
    head=st.sampled_from(["left", "right"]),
    transparent=st.booleans(),
    tof=st.one_of(st.none(), st.floats(0.1, 10)),
    max_length=st.integers(3, 40),
    disabled=st.sampled_from([(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1) if not a & b & c]),
    unambiguous=st.booleans(),
    first=st.sampled_from(["target", "query"]),
    tts=st.sampled_from([0.0, 0.3, 0.7]),
    rng=st.sampled_from(["tinylang", "legacy"]),
)
def test_random_configs(
    seed, T, N, rhs, rules, depth, head, transparent, tof, max_length, disabled, unambiguous, first, tts, rng
):
    splits = {"train": 20, "test": 8} | ({"dev": 8} if tts else {})
    raw = dict(
        seed=seed, num_terminals=T, num_nonterminals=N, max_rhs_len=rhs, max_rules_per_nt=rules,
        max_depth=depth, head_position=head, transparent_nonterminals=transparent,
        terminal_occurrence_factor=tof, max_length=max_length, no_parent_queries=bool(disabled[0]),
        no_child_queries=bool(disabled[1]), no_sibling_queries=bool(disabled[2]),
        unambiguous_queries=unambiguous, sample_first=first, train_test_split=tts, splits=splits,
        grammar_rng=rng, sentence_rng=rng,
    )
    try:
        config = atr_config(**raw)
    except ValidationError as err:
        assert any(f in str(err) for f in ("max_length", "max_rhs_len", "train_test_split"))
        return
    language = make_language(config)
    try:
        generated = language.generate()
    except RuntimeError as err:  # e.g. no held-out pair this grammar can produce
        assert "too few sentences" in str(err)
        return
    for split, df in generated.items():
        assert len(df) == splits[split]
        check_split(language, split, df)


def test_files_are_deterministic(tmp_path):
    config = atr_config(train_test_split=0.2, splits={"train": 60, "dev": 10, "test": 10})
    write_language(config, tmp_path / "a")
    write_language(config, tmp_path / "b")
    write_language(config.model_copy(update={"seed": 1}), tmp_path / "c")
    for name in ("train.parquet", "dev.parquet", "test.parquet", "meta.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    meta = read_meta(tmp_path / "a")
    assert meta["splits"] == {"train": 60, "dev": 10, "test": 10}
    assert set(meta["stats"]["test"]) >= {"doc_length", "branching_factor", "depth", "eligible_pairs"}
    assert meta["token_classes"]["terminal"] == [3, 23]


def test_holding_out_every_pair_is_an_error(tmp_path):
    with pytest.raises(ValidationError, match="train_test_split=0.7 holds out all 1"):
        write_language(atr_config(num_terminals=1, train_test_split=0.7), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _shortest(**overrides) -> int:
    return make_language(atr_config(max_length=10_000, **overrides)).grammar.shortest_sentence


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"max_rhs_len": 0}, "max_rhs_len"),
        ({"max_rules_per_nt": 0}, "max_rules_per_nt"),
        ({"no_parent_queries": True, "no_child_queries": True, "no_sibling_queries": True}, "no_sibling_queries"),
        ({"train_test_split": 1.0}, "train_test_split"),
        ({"train_test_split": -0.1}, "train_test_split"),
        ({"splits": {"train": 5, "dev": 5}}, "dev"),
        ({"head_position": "middle"}, "head_position"),
        ({"sample_first": "pair"}, "sample_first"),
        ({"max_length": 2}, "max_length"),
        ({"num_terminals": 1, "num_nonterminals": 1, "max_rhs_len": 1}, "max_rhs_len"),
        ({"vocab": 3}, "vocab"),
        ({"grammar_rng": "numpy"}, "grammar_rng"),
        ({"sentence_rng": "legacy"}, "grammar_rng"),  # legacy sentences need the legacy grammar
    ],
)
def test_config_errors_name_the_field(tmp_path, overrides, field):
    with pytest.raises(ValidationError) as info:
        write_language(atr_config(**overrides), tmp_path / "out")
    assert field in str(info.value)
    assert not (tmp_path / "out").exists()


def test_impossible_max_length_is_rejected(tmp_path):
    seed = next(s for s in range(200) if _shortest(seed=s, num_nonterminals=4, max_depth=3) > 3)
    shortest = _shortest(seed=seed, num_nonterminals=4, max_depth=3)
    with pytest.raises(ValidationError, match=f"max_length={shortest - 1} is below the shortest sentence"):
        write_language(atr_config(seed=seed, num_nonterminals=4, max_depth=3, max_length=shortest - 1), tmp_path / "x")
    assert not (tmp_path / "x").exists()
    config = atr_config(seed=seed, num_nonterminals=4, max_depth=3, max_length=shortest, splits={"train": 3})
    try:
        df = make_language(config).generate()["train"]
    except RuntimeError as err:  # fitting sentences may exist but be too rare: a bounded, clear failure
        assert "max_length" in str(err)
    else:
        assert (df["sentence_length"] <= shortest).all()


def test_answer_is_predicted_from_the_token_before_it():
    """The answer label sits at ``target_item - 1``: ``query_item`` without a query-type token,
    the query-type token with one."""
    single = make_language(atr_config(no_child_queries=True, no_sibling_queries=True, splits={"train": 20})).generate()
    tt = to_tensors(single["train"], mask_nonquery=True)
    rows = np.arange(20)
    assert (tt.labels[rows, single["train"]["target_item"].to_numpy() - 1] == tt.answer).all()
    multi = make_language(atr_config(splits={"train": 20})).generate()["train"]
    assert (multi["target_item"] - 1 == multi["query_item"] + 1).all()
    tm = to_tensors(multi, mask_nonquery=True)
    assert torch.equal(tm.predicts_answer, torch.as_tensor(multi["query_item"].to_numpy() + 1))
    assert (tm.labels[rows, tm.predicts_answer] == tm.answer).all()
    assert ((tm.labels != -100).sum(1) == 1).all()


# ---- the paper's grammars: grammar_rng / sentence_rng "legacy" ------------------------------

FIXTURE = REPO / "tests" / "fixtures" / "atr_legacy_grammar_seed42.json"
PAPER_LANGUAGES = ("atr_easy_20", "atr_medium_20", "atr_easy_8192", "atr_medium_8192", "atr_gen", "atr_sibling",
                   "atr_multihop")
SMALL = {  # the fixture's small_left_transparent_query_first, in our terms (the original's max_rhs_len 5)
    "type": "atr", "num_terminals": 6, "num_nonterminals": 8, "max_rhs_len": 4, "max_rules_per_nt": 3,
    "max_depth": 6, "head_position": "left", "transparent_nonterminals": True, "sample_first": "query",
    "train_test_split": 0.3, "unambiguous_queries": False, "max_length": 12, "seed": 42,
    "grammar_rng": "legacy", "sentence_rng": "legacy",
}


@cache
def original() -> dict:
    """What the original generator drew (see the fixture's ``made_by``)."""
    return json.loads(FIXTURE.read_text())["settings"]


def paper_config(name: str, **overrides):
    raw = yaml.safe_load((REPO / "config" / "languages" / f"{name}.yaml").read_text())
    return parse_language_config(raw | overrides)


def fixture_coded_rules(grammar) -> list:
    """Rules as the fixture writes them: terminal k is k, nonterminal k is -(k + 1)."""
    V = grammar.num_symbols
    return [
        [[int(x) if x < V else V - 1 - int(x) for x in grammar.rule_sym[n, r, : grammar.rule_len[n, r]]]
         for r in range(grammar.num_rules[n])]
        for n in range(len(grammar.depth_bound))
    ]


def assert_same_examples(df, expected: list[dict], type_ids: dict[str, int]):
    """Our rows equal the original's samples: tokens (the query-type token compared by name:
    ids differ), parents, query type, positions, and the valid targets."""
    assert len(df) >= len(expected)
    for i, (row, e) in enumerate(zip(df.itertuples(), expected)):
        ours, theirs = [int(x) for x in row.tokens], list(e["tokens"])
        if type_ids:
            assert ours[row.query_type_item] == type_ids[row.query_type]
            ours[row.query_type_item] = theirs[row.query_type_item] = -1
        assert ours == theirs, f"example {i}"
        assert [int(p) for p in row.parents] == e["parents"], f"example {i}"
        assert row.query_type == e["query_type"]
        assert (row.query_item_orig, row.target_item_orig) == (e["query_item_orig"], e["target_item_orig"])


@pytest.mark.parametrize("name", PAPER_LANGUAGES)
def test_legacy_grammar_is_the_originals(name):
    expected = original()[name]
    config = paper_config(name, splits={"train": 1})
    assert (config.seed, config.grammar_rng) == (42, "legacy")
    g = make_language(config).grammar
    assert g.depth_bound.tolist() == expected["max_depths"]
    assert fixture_coded_rules(g) == expected["rules"]
    assert [g.rule_p[n, : g.num_rules[n]].tolist() for n in range(len(g.num_rules))] == expected["rule_probs"]
    if "head_probs" in expected:
        assert g.head_p.tolist() == expected["head_probs"]
    else:
        assert g.head_p[:, :8].tolist() == expected["head_probs_first8"]
        assert g.head_p.argmax(1).tolist() == expected["head_probs_argmax"]
    if config.train_test_split:
        assert np.argwhere(g.held_out).tolist() == expected["prohibited_pairs"]


@pytest.mark.parametrize("name", PAPER_LANGUAGES)
def test_legacy_sentences_are_the_originals(name):
    expected = original()[name]["train_first"]
    language = make_language(paper_config(name, splits={"train": len(expected)}))
    df = language.generate()["train"]
    assert_same_examples(df, expected, language.query_type_ids)
    assert [list(r) for r in df["all_target_items_orig"]] == [e["all_target_items_orig"] for e in expected]


@pytest.mark.parametrize("name", ["atr_easy_20", "atr_medium_20"])
def test_legacy_test_split_continues_the_originals_stream(name):
    """From the original's random state after its 100,032 train examples, the same test examples."""
    expected = original()[name]
    state = expected["rng_state_after_train"]
    rs = np.random.RandomState()
    rs.set_state(("MT19937", np.array(state["key"], dtype=np.uint32), state["pos"], state["has_gauss"],
                  state["cached_gaussian"]))
    language = make_language(paper_config(name, splits={"train": 1}))
    assert_same_examples(language.legacy_split(rs, "test", 20), expected["test_first"], language.query_type_ids)


def test_legacy_branches_the_paper_leaves_out():
    """Left heads, transparent nonterminals, query-first sampling, every query type, held-out
    pairs (the test split draws sibling queries only, a word being its own sibling) and aborted
    derivations (max_length 12), against the original."""
    expected = original()["small_left_transparent_query_first"]
    language = make_language(parse_language_config(SMALL | {"splits": {"train": 20, "test": 20}}))
    g = language.grammar
    assert fixture_coded_rules(g) == expected["rules"] and g.head_p.tolist() == expected["head_probs"]
    assert np.argwhere(g.held_out).tolist() == expected["prohibited_pairs"]
    splits = language.generate()
    # (the original's all_target_items_orig is the query position's only; ours every occurrence's)
    assert_same_examples(splits["train"], expected["train_first"], language.query_type_ids)
    assert_same_examples(splits["test"], expected["test_first_after_train_first"], language.query_type_ids)
    for split, df in splits.items():
        check_split(language, split, df)


@pytest.mark.parametrize("name", ["atr_gen", "atr_multihop"])
def test_legacy_splits_are_well_formed(name):
    config = paper_config(name, splits={"train": 150, "test": 40} | ({"dev": 40} if name == "atr_gen" else {}))
    language = make_language(config)
    splits = language.generate()
    for split, df in splits.items():
        check_split(language, split, df)
    assert {k: len(v) for k, v in splits.items()} == config.splits
    again = make_language(config).generate()
    assert all(splits[k].equals(again[k]) for k in splits)


def test_atr_easy_sentence_length_is_the_papers():
    """The paper's ATR-easy sentences average 15.0 terminals (the original's 100,032 train
    sentences: 14.98); the old grammar of our own stream (seed 0) averaged 8.8."""
    assert original()["atr_easy_20"]["train_sentence_length_mean"] == pytest.approx(14.98, abs=0.005)
    legacy = make_language(paper_config("atr_easy_20", splits={"train": 5000})).generate()["train"]
    assert legacy["sentence_length"].mean() == pytest.approx(15.0, abs=0.6)
    ours = paper_config("atr_easy_20", seed=0, grammar_rng="tinylang", sentence_rng="tinylang", splits={"train": 5000})
    tinylang = make_language(ours).generate()["train"]
    assert tinylang["sentence_length"].mean() < 10
    assert fixture_coded_rules(make_language(ours).grammar) != original()["atr_easy_20"]["rules"]


@pytest.mark.slow
def test_legacy_atr_easy_20_is_the_originals_language():
    """The whole language file: 100,032 train sentences, then the test split, as the original's."""
    expected = original()["atr_easy_20"]
    language = make_language(paper_config("atr_easy_20"))
    splits = language.generate()
    lengths = splits["train"]["sentence_length"]
    assert lengths.mean() == pytest.approx(expected["train_sentence_length_mean"], rel=1e-12)
    assert lengths.max() == expected["train_sentence_length_max"]
    assert splits["test"]["sentence_length"].mean() == pytest.approx(expected["test_sentence_length_mean"], rel=1e-12)
    assert_same_examples(splits["test"], expected["test_first"], language.query_type_ids)


def test_the_grammar_is_built_once_when_the_config_is_validated(monkeypatch):
    from tinylang.languages import atr

    built = []
    original = atr.Grammar.build.__func__

    def counting(cls, config):
        built.append(config.seed)
        return original(cls, config)

    monkeypatch.setattr(atr.Grammar, "build", classmethod(counting))
    config = atr_config(seed=3)
    language = make_language(config)
    assert built == [3] and language.grammar is config.grammar()
