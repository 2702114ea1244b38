"""Associative treecall (ATR): retrieve a syntactic relative of a queried word.

A random PCFG (built from the config's seed) generates a sentence; every constituent
has one *head* terminal, so the sentence is also a dependency tree: the head of a
constituent depends on the head of the enclosing constituent, and the other terminal
children of a constituent depend on its head. An example reads::

    [BOS, w_1 .. w_L, EOS, q, (T), a, EOS]

where ``q`` repeats a sentence terminal, ``T`` names the query type (only present when
more than one type is enabled) and ``a`` is the queried relative of ``q``:

* ``PARENT``: the word ``q`` depends on;
* ``CHILD``: a word that depends on ``q`` (several may be correct);
* ``SIBLING``: the rightmost word that shares ``q``'s parent (``q`` itself when ``q``
  is rightmost in its group or has no siblings, as in the reference implementation).

The answer is predicted from the token just before it, i.e. from position
``target_item - 1`` (the query terminal ``query_item`` when there is no type token,
the type token ``query_item + 1`` otherwise).

Per example, ``parents[i]`` is the token position of the parent of the word at token
position ``i + 1`` (``0``, the BOS position, for the root), enough to recompute every
answer. ``answer_set`` holds the distinct valid answer ids and ``answer_counts`` how many
valid target positions carry each: the target distribution is ``counts / sum(counts)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import Field, model_validator

from .base import BOS, EOS, LANGUAGES, POSITION_COLUMNS, SPECIAL_TOKENS, Language, LanguageConfig, split_rng

FIRST_ID = len(SPECIAL_TOKENS)
QUERY_TYPES = ("PARENT", "CHILD", "SIBLING")
MIN_SENTENCE = 3
"""Shorter sentences are resampled, as in the reference implementation."""

GRAMMAR_STREAM, HELD_OUT_STREAM = 1_000_001, 1_000_002
"""Random streams of the grammar and of the held-out pairs (splits use 0, 1, 2)."""

MAX_BATCH = 8192
"""Candidate sentences sampled per round of rejection sampling."""
MAX_TRIES_PER_EXAMPLE = 200
"""Rejection sampling gives up (with an error) after this many candidates per example."""


def held_out_count(fraction: float, num_symbols: int) -> int:
    """Held-out (target, query) pairs: ``round(fraction · V²)``, at least one when ``fraction > 0``."""
    return max(1, round(fraction * num_symbols**2)) if fraction > 0 else 0


class ATRConfig(LanguageConfig):
    """Associative treecall over sentences of a random PCFG built from ``seed``."""

    type: Literal["atr"] = "atr"
    num_terminals: int = Field(ge=1)
    num_nonterminals: int = Field(ge=1)
    max_rhs_len: int = Field(ge=1)
    max_rules_per_nt: int = Field(ge=1)
    max_depth: int = Field(ge=1)
    head_position: Literal["left", "right"] = "left"
    transparent_nonterminals: bool = False
    terminal_occurrence_factor: float | None = Field(None, gt=0)
    max_length: int = Field(1024, ge=MIN_SENTENCE)
    no_parent_queries: bool = False
    no_child_queries: bool = False
    no_sibling_queries: bool = False
    unambiguous_queries: bool = False
    sample_first: Literal["target", "query"] = "target"
    train_test_split: float = Field(0.0, ge=0.0, lt=1.0)
    mask_nonquery: bool = True

    @property
    def query_types(self) -> tuple[str, ...]:
        """The enabled query types, in the order PARENT, CHILD, SIBLING."""
        off = (self.no_parent_queries, self.no_child_queries, self.no_sibling_queries)
        return tuple(q for q, disabled in zip(QUERY_TYPES, off) if not disabled)

    @model_validator(mode="after")
    def _check(self) -> ATRConfig:
        if not self.query_types:
            raise ValueError(
                "no_parent_queries, no_child_queries and no_sibling_queries are all true: "
                "at least one query type must be enabled"
            )
        if "dev" in self.splits and self.train_test_split == 0:
            raise ValueError(
                "splits: a 'dev' split exists only when train_test_split > 0 (it holds "
                "training-distribution examples next to a test split of held-out pairs)"
            )
        V = self.num_terminals + (self.num_nonterminals if self.transparent_nonterminals else 0)
        if held_out_count(self.train_test_split, V) >= V * V:
            raise ValueError(
                f"train_test_split={self.train_test_split} holds out all {V * V} (target, query) "
                "terminal pairs, so train has nothing to query; lower it"
            )
        grammar = Grammar.build(self)
        if grammar.max_len.max() < MIN_SENTENCE:
            raise ValueError(
                f"max_rhs_len={self.max_rhs_len}: this grammar (seed {self.seed}) never generates a "
                f"sentence of {MIN_SENTENCE} or more terminals; raise max_rhs_len or max_depth"
            )
        shortest = grammar.shortest_sentence
        if shortest > self.max_length:
            raise ValueError(
                f"max_length={self.max_length} is below the shortest sentence this grammar "
                f"(seed {self.seed}) can generate ({shortest} terminals); raise max_length"
            )
        return self


@dataclass(frozen=True)
class Grammar:
    """A random PCFG; terminals are ``0 .. num_symbols-1``, nonterminal ``n`` is ``num_symbols + n``."""

    num_symbols: int  # terminal symbols, transparent heads included
    depth_bound: np.ndarray  # [N] children of n have a strictly larger bound
    rule_len: np.ndarray  # [N, R] 0 for absent rules
    rule_sym: np.ndarray  # [N, R, K] symbol codes, -1 past rule_len
    num_rules: np.ndarray  # [N]
    rule_cdf: np.ndarray  # [N, R] cumulative rule probabilities (flat Dirichlet)
    head_cdf: np.ndarray  # [N, num_symbols] cumulative head-terminal probabilities
    min_len: np.ndarray  # [N] shortest yield of each nonterminal
    max_len: np.ndarray  # [N] longest yield (float: may be astronomically large)

    @classmethod
    def build(cls, cfg: ATRConfig) -> Grammar:
        rng = np.random.default_rng([cfg.seed, GRAMMAR_STREAM])
        T, N, R, K = cfg.num_terminals, cfg.num_nonterminals, cfg.max_rules_per_nt, cfg.max_rhs_len
        V = T + N if cfg.transparent_nonterminals else T
        depth_bound = rng.integers(1, cfg.max_depth + 1, size=N)
        num_rules = rng.integers(1, R + 1, size=N)
        rule_len = rng.integers(1, K + 1, size=(N, R))
        rule_len[np.arange(R) >= num_rules[:, None]] = 0

        # Right-hand sides: each symbol is a terminal class (weight terminal_occurrence_factor,
        # default num_terminals: every terminal weighs 1) or an allowed nonterminal (weight 1).
        deeper = depth_bound[None, :] > depth_bound[:, None]  # [N, N] allowed children
        num_allowed = deeper.sum(1)
        term_weight = float(cfg.terminal_occurrence_factor or T)
        p_term = term_weight / (term_weight + num_allowed)  # 1 where nothing is allowed
        is_term = rng.random((N, R, K)) < p_term[:, None, None]
        term = rng.integers(0, T, size=(N, R, K))
        pick = np.floor(rng.random((N, R, K)) * np.maximum(num_allowed, 1)[:, None, None]).astype(np.int64)
        allowed_sorted = np.argsort(~deeper, axis=1, kind="stable")  # allowed children first, in order
        child = np.take_along_axis(allowed_sorted, pick.reshape(N, -1), axis=1).reshape(N, R, K)
        rule_sym = np.where(is_term, term, V + child)
        rule_sym[np.arange(K) >= rule_len[..., None]] = -1

        rule_w = rng.standard_exponential((N, R)) * (rule_len > 0)  # flat Dirichlet over present rules
        rule_cdf = np.cumsum(rule_w / rule_w.sum(1, keepdims=True), axis=1)
        if cfg.transparent_nonterminals:
            head_p = np.zeros((N, V))
            head_p[np.arange(N), T + np.arange(N)] = 1.0
        else:
            head_w = rng.standard_exponential((N, T))
            head_p = head_w / head_w.sum(1, keepdims=True)
        head_cdf = np.cumsum(head_p, axis=1)

        # Yield-length bounds, deepest nonterminals first (children always have larger bounds).
        min_len = np.zeros(N, dtype=np.int64)
        max_len = np.zeros(N, dtype=np.float64)
        for n in np.argsort(-depth_bound, kind="stable"):
            lo, hi = [], []
            for r in range(num_rules[n]):
                syms = rule_sym[n, r, : rule_len[n, r]]
                nts = syms[syms >= V] - V
                terms = len(syms) - len(nts)
                lo.append(terms + int(min_len[nts].sum()))
                hi.append(terms + float(max_len[nts].sum()))
            min_len[n], max_len[n] = 1 + min(lo), 1 + max(hi)
        return cls(V, depth_bound, rule_len, rule_sym, num_rules, rule_cdf, head_cdf, min_len, max_len)

    @property
    def shortest_sentence(self) -> int:
        """Terminals in the shortest usable sentence (≥ MIN_SENTENCE); needs ``max_len.max() ≥ MIN_SENTENCE``."""
        ok = self.max_len >= MIN_SENTENCE
        return int(max(MIN_SENTENCE, self.min_len[ok].min()))


def _sample_rows(cdf: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per i, the index drawn from the cumulative distribution ``cdf[rows[i]]`` with uniform ``u[i]``."""
    width = cdf.shape[1]
    flat = (cdf + np.arange(cdf.shape[0])[:, None]).ravel()
    idx = np.searchsorted(flat, rows + u, side="right") - rows * width
    return np.minimum(idx, width - 1)


def _group_starts(counts: np.ndarray) -> np.ndarray:
    return np.cumsum(counts) - counts


def _pick_per_group(group: np.ndarray, num_groups: int, rng: np.random.Generator) -> np.ndarray:
    """For items grouped contiguously by ascending ``group`` (every group non-empty), one
    uniformly random item index per group."""
    counts = np.bincount(group, minlength=num_groups)
    return _group_starts(counts) + np.floor(rng.random(num_groups) * counts).astype(np.int64)


@dataclass
class _Trees:
    """Sentences of many examples, flattened: item ``g`` is one terminal."""

    ex: np.ndarray  # example of each terminal (non-decreasing)
    label: np.ndarray  # terminal symbol
    parent: np.ndarray  # flat index of the parent terminal, -1 for the root
    depth: np.ndarray  # tree depth at which the terminal was generated
    is_head: np.ndarray  # heads a constituent
    length: np.ndarray  # [B] terminals per sentence
    start: np.ndarray  # [B] flat index of each sentence's first terminal


@LANGUAGES.register("atr")
class AssociativeTreecall(Language):
    """Associative treecall over sentences of a random PCFG."""

    Config = ATRConfig
    config: ATRConfig
    stat_columns = (
        "doc_length",
        "sentence_length",
        "query_orig_target_orig_dist",
        "query_query_orig_dist",
        "query_target_orig_dist",
        "branching_factor",
        "depth",
        "repeated_terminal_share",
        "eligible_pairs",
        "eligible_queries",
        "eligible_targets",
        "num_answers",
    )
    schema = pa.schema(
        [("tokens", pa.list_(pa.int32())), ("query_type", pa.string()), ("answer", pa.int32())]
        + [(c, pa.int32()) for c in POSITION_COLUMNS]
        + [
            ("query_type_item", pa.int32()),
            ("all_target_items_orig", pa.list_(pa.int32())),
            ("answer_set", pa.list_(pa.int32())),
            ("answer_counts", pa.list_(pa.int32())),
            ("parents", pa.list_(pa.int32())),
        ]
        + [
            (c, pa.float64() if c in ("branching_factor", "repeated_terminal_share") else pa.int32())
            for c in stat_columns
        ]
    )

    def __init__(self, config: ATRConfig):
        super().__init__(config)
        self.grammar = Grammar.build(config)

    # ---- vocabulary -------------------------------------------------------------------

    @property
    def num_symbols(self) -> int:
        return self.grammar.num_symbols

    @property
    def query_type_ids(self) -> dict[str, int]:
        """Query type → its token id; empty when only one type is enabled (no type token)."""
        types = self.config.query_types
        if len(types) == 1:
            return {}
        return {q: FIRST_ID + self.num_symbols + i for i, q in enumerate(types)}

    def vocabulary(self) -> list[str]:
        return SPECIAL_TOKENS + [f"t{i}" for i in range(self.num_symbols)] + [f"q{q}" for q in self.query_type_ids]

    def token_classes(self) -> dict[str, list[int]]:
        classes = {"terminal": [FIRST_ID, FIRST_ID + self.num_symbols]}
        if self.query_type_ids:
            first = FIRST_ID + self.num_symbols
            classes["query_type"] = [first, first + len(self.query_type_ids)]
        return classes

    @cached_property
    def held_out(self) -> np.ndarray:
        """``[V, V]`` bool over (target terminal, query terminal): pairs queried only in test.

        Exactly ``round(train_test_split * V²)`` pairs (at least one when the fraction is
        positive), uniformly at random from the seed.
        """
        V, f = self.num_symbols, self.config.train_test_split
        held = np.zeros(V * V, dtype=bool)
        if f > 0:
            rng = np.random.default_rng([self.config.seed, HELD_OUT_STREAM])
            held[rng.permutation(V * V)[: held_out_count(f, V)]] = True
        return held.reshape(V, V)

    # ---- generation -------------------------------------------------------------------

    def generate(self) -> dict[str, pd.DataFrame]:
        return {split: self.generate_split(split, n) for split, n in self.config.splits.items()}

    def sample_trees(self, rng: np.random.Generator, count: int) -> _Trees:
        """Sample ``count`` sentences; those outside ``[3, max_length]`` terminals are dropped.

        Expands every pending nonterminal of every sentence at once, level by level; a
        sentence is dropped as soon as its shortest possible yield exceeds ``max_length``.
        """
        g, cfg, V = self.grammar, self.config, self.grammar.num_symbols
        N = len(g.depth_bound)
        min_yield = np.concatenate([np.ones(V, dtype=np.int64), g.min_len])
        sym = rng.integers(0, N, size=count) + V  # the start symbol: a uniform nonterminal
        ex = np.arange(count)
        hid = np.full(count, -1)  # constituent each item depends on
        cid = np.full(count, -1)  # constituent an item heads (-1: not a head)
        depth = np.zeros(count, dtype=np.int64)
        next_cid = 0
        left = cfg.head_position == "left"
        for level in range(1, cfg.max_depth + 2):
            nt = np.flatnonzero(sym >= V)
            if nt.size == 0:
                break
            if level > cfg.max_depth:  # unreachable: every derivation step deepens the bound
                raise AssertionError("derivation deeper than max_depth")
            n = sym[nt] - V
            c = next_cid + np.arange(nt.size)
            next_cid += nt.size
            rule = _sample_rows(g.rule_cdf, n, rng.random(nt.size))
            rule = np.minimum(rule, g.num_rules[n] - 1)
            head = _sample_rows(g.head_cdf, n, rng.random(nt.size))
            k = g.rule_len[n, rule]

            counts = np.ones(sym.size, dtype=np.int64)
            counts[nt] = 1 + k
            src = np.repeat(np.arange(sym.size), counts)
            slot = np.arange(src.size) - np.repeat(_group_starts(counts), counts)
            rank = np.full(sym.size, -1)
            rank[nt] = np.arange(nt.size)
            r = rank[src]
            new = r >= 0
            rn = r[new]
            s = slot[new]
            head_slot = np.where(left, 0, k[rn])
            is_head = s == head_slot
            child = np.where(left, s - 1, s)
            child_sym = g.rule_sym[n[rn], rule[rn], np.clip(child, 0, g.rule_sym.shape[2] - 1)]

            sym, ex, hid, cid, depth = sym[src], ex[src], hid[src], cid[src], depth[src]
            sym[new] = np.where(is_head, head[rn], child_sym)
            hid[new] = np.where(is_head, hid[new], c[rn])
            cid[new] = np.where(is_head, c[rn], -1)
            depth[new] = level

            # Drop sentences that can no longer fit max_length.
            shortest = np.bincount(ex, weights=min_yield[sym], minlength=count)
            keep = (shortest <= cfg.max_length)[ex]
            if not keep.all():
                sym, ex, hid, cid, depth = sym[keep], ex[keep], hid[keep], cid[keep], depth[keep]

        length = np.bincount(ex, minlength=count)
        keep_ex = (length >= MIN_SENTENCE) & (length <= cfg.max_length)
        keep = keep_ex[ex]
        ex, sym, hid, cid, depth = ex[keep], sym[keep], hid[keep], cid[keep], depth[keep]
        renumber = np.cumsum(keep_ex) - 1
        ex = renumber[ex]
        length = length[keep_ex]
        pos_of_cid = np.full(next_cid, -1)
        heads = cid >= 0
        pos_of_cid[cid[heads]] = np.flatnonzero(heads)
        parent = np.where(hid >= 0, pos_of_cid[np.maximum(hid, 0)], -1)
        return _Trees(ex, sym, parent, depth, heads, length, _group_starts(length))

    def eligible_pairs(self, t: _Trees, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per enabled query type, flat ``(query, target)`` index arrays, grouped by example."""
        cfg = self.config
        n = t.ex.size
        g = np.arange(n)
        child = np.flatnonzero(t.parent >= 0)
        rightmost = None
        if cfg.unambiguous_queries:  # is each terminal the last of its label in its sentence?
            key = t.ex * self.num_symbols + t.label
            _, last = np.unique(key[::-1], return_index=True)
            rightmost = np.zeros(n, dtype=bool)
            rightmost[n - 1 - last] = True
        allowed = None
        if self.held_out.any():
            allowed = ~self.held_out if split in ("train", "dev") else self.held_out
        pairs = []
        for qt in cfg.query_types:
            if qt == "PARENT":
                q, tg = child, t.parent[child]
            elif qt == "CHILD":
                q, tg = t.parent[child], child
            else:
                last_child = np.full(n, -1)
                np.maximum.at(last_child, t.parent[child], child)
                q = g
                tg = np.where(t.parent >= 0, last_child[np.maximum(t.parent, 0)], g)
            ok = np.ones(q.size, dtype=bool)
            if allowed is not None:
                ok &= allowed[t.label[tg], t.label[q]]
            if rightmost is not None:
                ok &= rightmost[q]
                if qt == "SIBLING":
                    ok &= rightmost[tg]
            pairs.append((q[ok], tg[ok]))
        return pairs

    def generate_split(self, split: str, rows: int) -> pd.DataFrame:
        """``rows`` examples of one split, by batched rejection sampling."""
        rng = split_rng(self.config.seed, split)
        parts: list[pa.Table] = []
        need, tried, rate = rows, 0, 1.0
        while need > 0:
            if tried >= MAX_TRIES_PER_EXAMPLE * rows + 1000:
                raise RuntimeError(
                    f"ATR split {split!r}: only {rows - need} of {rows} examples after {tried} sampled "
                    f"sentences; too few sentences fit max_length={self.config.max_length} "
                    f"(≥ {MIN_SENTENCE} terminals) and have a query allowed in this split "
                    f"(train_test_split={self.config.train_test_split}, query types "
                    f"{list(self.config.query_types)}, unambiguous_queries={self.config.unambiguous_queries})"
                )
            batch = int(min(MAX_BATCH, max(64, np.ceil(1.2 * need / max(rate, 1e-3)))))
            table = self._examples(rng, batch, need, split)
            tried += batch
            parts.append(table)
            need -= table.num_rows
            rate = (rows - need) / tried
        return pa.concat_tables(parts).to_pandas()

    def _examples(self, rng: np.random.Generator, batch: int, limit: int, split: str) -> pa.Table:
        """Up to ``limit`` examples from ``batch`` candidate sentences."""
        cfg = self.config
        t = self.sample_trees(rng, batch)
        B0 = t.length.size
        pairs = self.eligible_pairs(t, split)

        # Query type: uniform over the types with at least one eligible pair.
        avail = np.stack([np.bincount(t.ex[q], minlength=B0) > 0 for q, _ in pairs])
        usable = np.flatnonzero(avail.any(0))[:limit]
        B = usable.size
        if B == 0:
            return self.schema.empty_table()
        avail = avail[:, usable]
        k = np.floor(rng.random(B) * avail.sum(0)).astype(np.int64)
        chosen = np.argmax(np.cumsum(avail, axis=0) > k, axis=0)
        new_ex = np.full(B0, -1)
        new_ex[usable] = np.arange(B)
        ex_of = new_ex[t.ex]  # flat item → kept example (-1: dropped)

        # The chosen type's pairs of every kept example, grouped by example.
        pq, pt = [], []
        for i, (q, tg) in enumerate(pairs):
            e = ex_of[q]
            sel = e >= 0
            sel[sel] = chosen[e[sel]] == i
            pq.append(q[sel])
            pt.append(tg[sel])
        pq, pt = np.concatenate(pq), np.concatenate(pt)
        order = np.argsort(ex_of[pq], kind="stable")
        pq, pt = pq[order], pt[order]
        pe = ex_of[pq]

        n = t.ex.size
        is_q = np.zeros(n, dtype=bool)
        is_q[pq] = True
        is_t = np.zeros(n, dtype=bool)
        is_t[pt] = True
        queries, targets = np.flatnonzero(is_q), np.flatnonzero(is_t)

        # sample_first: draw a target (query) uniformly among distinct ones, then its partner.
        if cfg.sample_first == "target":
            first = targets[_pick_per_group(ex_of[targets], B, rng)]
            cand = pt == first[pe]
            second = pq[cand][_pick_per_group(pe[cand], B, rng)]
            q_item, t_item = second, first
        else:
            first = queries[_pick_per_group(ex_of[queries], B, rng)]
            cand = pq == first[pe]
            second = pt[cand][_pick_per_group(pe[cand], B, rng)]
            q_item, t_item = first, second

        # Every valid target of any eligible occurrence of the query's label.
        same = t.label[pq] == t.label[q_item][pe]
        is_a = np.zeros(n, dtype=bool)
        is_a[pt[same]] = True
        all_t = np.flatnonzero(is_a)
        all_e = ex_of[all_t]
        akey, acount = np.unique(all_e * self.num_symbols + t.label[all_t], return_counts=True)
        aset_e = akey // self.num_symbols

        # Sentences of kept examples.
        kept = np.flatnonzero(ex_of >= 0)
        ke = ex_of[kept]
        L = t.length[usable]
        s_start = t.start[usable]
        local = kept - s_start[ke] + 1  # token position of each kept terminal
        par = t.parent[kept]
        parents = np.where(par >= 0, par - s_start[ke] + 1, 0)

        qt_ids = self.query_type_ids
        tail = 5 if qt_ids else 4
        tok_len = L + 1 + tail
        off = np.concatenate([[0], np.cumsum(tok_len)])
        tokens = np.empty(off[-1], dtype=np.int32)
        tokens[off[:-1]] = BOS
        tokens[off[ke] + local] = t.label[kept] + FIRST_ID
        divider = L + 1
        q_orig = q_item - s_start + 1
        t_orig = t_item - s_start + 1
        answer = t.label[t_item] + FIRST_ID
        query_item = divider + 1
        tokens[off[:-1] + divider] = EOS
        tokens[off[:-1] + query_item] = t.label[q_item] + FIRST_ID
        type_names = np.array(cfg.query_types, dtype=object)[chosen]
        if qt_ids:
            type_tok = np.array([qt_ids[q] for q in cfg.query_types], dtype=np.int32)[chosen]
            tokens[off[:-1] + query_item + 1] = type_tok
            query_type_item = query_item + 1
        else:
            query_type_item = np.full(B, -1)
        target_item = query_item + (2 if qt_ids else 1)
        tokens[off[:-1] + target_item] = answer
        tokens[off[1:] - 1] = EOS

        # Statistics.
        depth = np.maximum.reduceat(t.depth[kept], _group_starts(L))
        constituents = np.bincount(ke, weights=t.is_head[kept], minlength=B)
        distinct = np.bincount(np.unique(ke * self.num_symbols + t.label[kept]) // self.num_symbols, minlength=B)

        def ragged(values: np.ndarray, groups: np.ndarray) -> pa.Array:
            offsets = np.concatenate([[0], np.cumsum(np.bincount(groups, minlength=B))]).astype(np.int32)
            return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.astype(np.int32)))

        columns = {
            "tokens": pa.ListArray.from_arrays(pa.array(off.astype(np.int32)), pa.array(tokens)),
            "query_type": pa.array(type_names, pa.string()),
            "answer": answer,
            "bos": np.zeros(B),
            "query_item_orig": q_orig,
            "target_item_orig": t_orig,
            "divider": divider,
            "query_item": query_item,
            "target_item": target_item,
            "query_type_item": query_type_item,
            "all_target_items_orig": ragged(all_t - s_start[all_e] + 1, all_e),
            "answer_set": ragged(akey % self.num_symbols + FIRST_ID, aset_e),
            "answer_counts": ragged(acount, aset_e),
            "parents": ragged(parents, ke),
            "doc_length": tok_len,
            "sentence_length": L,
            "query_orig_target_orig_dist": np.abs(q_orig - t_orig),
            "query_query_orig_dist": query_item - q_orig,
            "query_target_orig_dist": query_item - t_orig,
            "branching_factor": (L - 1) / constituents,
            "depth": depth,
            "repeated_terminal_share": (L - distinct) / L,
            "eligible_pairs": np.bincount(pe, minlength=B),
            "eligible_queries": np.bincount(ex_of[queries], minlength=B),
            "eligible_targets": np.bincount(ex_of[targets], minlength=B),
            "num_answers": np.bincount(aset_e, minlength=B),
        }
        assert list(columns) == self.schema.names
        arrays = [
            col if isinstance(col, pa.Array) else pa.array(np.asarray(col).astype(field.type.to_pandas_dtype()))
            for col, field in zip(columns.values(), self.schema)
        ]
        return pa.Table.from_arrays(arrays, schema=self.schema)
