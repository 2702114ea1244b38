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

Random streams
--------------
``grammar_rng`` chooses how the grammar is drawn from ``seed``:

* ``tinylang`` (default): our own vectorised draws. Same distribution as the paper's code
  (depth bounds, rule counts and lengths, symbol choice, flat-Dirichlet rule and head
  probabilities), but a different grammar for a given seed.
* ``legacy``: the paper's code's grammar, draw for draw: ``numpy.random.RandomState(seed)``
  consumed in that code's order (held-out pair matrix when ``train_test_split > 0``, depth
  bounds, rules, then the terminals of ``terminal_occurrence_factor`` rules, rule
  probabilities, head probabilities). With seed 42 it is the grammar of the paper's language
  files (``make_languages.py`` seeds the global numpy state with 42). Held-out pairs are then
  every (target, query) terminal pair whose uniform draw is below ``train_test_split`` (a
  random count, as in the original), not exactly ``round(fraction · V²)``.

``max_rhs_len`` is the largest right-hand side in both (the original's own ``max_rhs_len``
is exclusive: its 5 is our 4).

``sentence_rng`` chooses how sentences, query types and query/target items are drawn:

* ``tinylang`` (default): batched, per-split streams (``split_rng``).
* ``legacy`` (needs ``grammar_rng: legacy``): one sentence at a time from the same
  ``RandomState``, continuing after the grammar, in the original's order (depth-first
  derivation, a rule then a head draw per nonterminal; then the query type, the target and the
  query), the splits in the order train, dev, test. With the original's split sizes (train
  100,032, then 1024 per evaluation split) every split is the original's. The original's
  eligible pairs are reproduced too, including a quirk of sibling queries under
  ``train_test_split``: a word is always its own candidate sibling, even in test. Slower
  (one sentence at a time in Python: tens of seconds for a 100,032-example train split).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import Field, PrivateAttr, model_validator

from .base import BOS, EOS, LANGUAGES, POSITION_COLUMNS, SPECIAL_TOKENS, Language, LanguageConfig, split_rng

FIRST_ID = len(SPECIAL_TOKENS)
QUERY_TYPES = ("PARENT", "CHILD", "SIBLING")
MIN_SENTENCE = 3
"""Shorter sentences are resampled, as in the reference implementation."""

GRAMMAR_STREAM, HELD_OUT_STREAM = 1_000_001, 1_000_002
"""Random streams of the grammar and of the held-out pairs (splits use 0, 1, 2)."""

TERMINAL_CLASS = -2
"""Placeholder of a legacy rule symbol whose terminal is drawn after every rule exists."""

MAX_BATCH = 8192
"""Candidate sentences sampled per round of rejection sampling."""
MAX_TRIES_PER_EXAMPLE = 200
"""Rejection sampling gives up (with an error) after this many candidates per example."""
MAX_LEGACY_REJECTIONS = 10_000
"""Legacy sampling gives up (with an error) after this many rejected sentences in a row."""


def held_out_count(fraction: float, num_symbols: int) -> int:
    """Held-out (target, query) pairs: ``round(fraction · V²)``, at least one when ``fraction > 0``."""
    return max(1, round(fraction * num_symbols**2)) if fraction > 0 else 0


class ATRConfig(LanguageConfig):
    """Associative treecall over sentences of a random PCFG built from ``seed``."""

    type: Literal["atr"] = "atr"  # associative treecall
    num_terminals: int = Field(ge=1)  # terminal classes: the words of the grammar
    num_nonterminals: int = Field(ge=1)  # nonterminals of the grammar
    max_rhs_len: int = Field(ge=1)  # the longest right-hand side, inclusive (the original's exclusive 5 is 4)
    max_rules_per_nt: int = Field(ge=1)  # rules per nonterminal at most
    max_depth: int = Field(ge=1)  # the grammar's derivation depth bound
    head_position: Literal["left", "right"] = "left"  # where a constituent's head word goes: before or after its children
    transparent_nonterminals: bool = False  # each nonterminal is its own head word (vocabulary: terminals + nonterminals)
    # Weight of a terminal against each allowed nonterminal when a right-hand side symbol is drawn
    # (None: num_terminals, i.e. every terminal class weighs as much as one nonterminal).
    terminal_occurrence_factor: float | None = Field(None, gt=0)
    max_length: int = Field(1024, ge=MIN_SENTENCE)  # longest sentence kept, in words (longer ones are dropped)
    no_parent_queries: bool = False  # leave out PARENT queries
    no_child_queries: bool = False  # leave out CHILD queries
    no_sibling_queries: bool = False  # leave out SIBLING queries
    unambiguous_queries: bool = False  # query a word only at its rightmost occurrence (SIBLING answers too): one position per query
    sample_first: Literal["target", "query"] = "target"  # draw the answer word first, then a query for it, or the reverse
    train_test_split: float = Field(0.0, ge=0.0, lt=1.0)  # share of (target, query) pairs only test queries
    mask_nonquery: bool = True  # only the answer is a training target
    grammar_rng: Literal["tinylang", "legacy"] = "tinylang"  # legacy: the paper's code's grammar for a seed
    sentence_rng: Literal["tinylang", "legacy"] = "tinylang"  # legacy: the paper's code's sentences, draw for draw

    _grammar: Grammar | None = PrivateAttr(None)

    @property
    def query_types(self) -> tuple[str, ...]:
        """The enabled query types, in the order PARENT, CHILD, SIBLING."""
        off = (self.no_parent_queries, self.no_child_queries, self.no_sibling_queries)
        return tuple(q for q, disabled in zip(QUERY_TYPES, off) if not disabled)

    def grammar(self) -> Grammar:
        """The grammar this config builds: made once (while the config is validated) and kept."""
        if self._grammar is None:
            self._grammar = Grammar.build(self)
        return self._grammar

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
        if self.sentence_rng == "legacy" and self.grammar_rng != "legacy":
            raise ValueError(
                "sentence_rng='legacy' continues the random stream of the legacy grammar: it needs "
                "grammar_rng='legacy' (or set sentence_rng='tinylang')"
            )
        V = self.num_terminals + (self.num_nonterminals if self.transparent_nonterminals else 0)
        if self.grammar_rng == "tinylang" and held_out_count(self.train_test_split, V) >= V * V:
            raise ValueError(
                f"train_test_split={self.train_test_split} holds out all {V * V} (target, query) "
                "terminal pairs, so train has nothing to query; lower it"
            )
        grammar = self.grammar()
        if grammar.held_out is not None and grammar.held_out[: self.num_terminals, : self.num_terminals].all():
            raise ValueError(
                f"train_test_split={self.train_test_split} holds out all {self.num_terminals ** 2} "
                f"(target, query) terminal pairs of this legacy grammar (seed {self.seed}), so train "
                "has nothing to query; lower it"
            )
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
    rule_p: np.ndarray  # [N, R] rule probabilities (flat Dirichlet), 0 for absent rules
    head_p: np.ndarray  # [N, num_symbols] head-terminal probabilities
    min_len: np.ndarray  # [N] shortest yield of each nonterminal
    max_len: np.ndarray  # [N] longest yield (float: may be astronomically large)
    held_out: np.ndarray | None = None  # [V, V] (target, query) pairs of the legacy grammar

    @cached_property
    def rule_cdf(self) -> np.ndarray:
        """[N, R] cumulative rule probabilities (constant past the last rule)."""
        return np.cumsum(self.rule_p, axis=1)

    @cached_property
    def head_cdf(self) -> np.ndarray:
        """[N, num_symbols] cumulative head-terminal probabilities."""
        return np.cumsum(self.head_p, axis=1)

    @classmethod
    def build(cls, cfg: ATRConfig) -> Grammar:
        if cfg.grammar_rng == "legacy":
            return cls.build_legacy(cfg, np.random.RandomState(cfg.seed))
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
        rule_p = rule_w / rule_w.sum(1, keepdims=True)
        if cfg.transparent_nonterminals:
            head_p = _transparent_heads(T, N)
        else:
            head_w = rng.standard_exponential((N, T))
            head_p = head_w / head_w.sum(1, keepdims=True)
        return cls._with_yield_bounds(V, depth_bound, rule_len, rule_sym, num_rules, rule_p, head_p)

    @classmethod
    def build_legacy(cls, cfg: ATRConfig, rs: np.random.RandomState) -> Grammar:
        """The grammar of the paper's code, drawn from ``rs`` in that code's order (see the
        module docstring); ``rs`` is left where the original's sentence sampling starts."""
        T, N, R, K = cfg.num_terminals, cfg.num_nonterminals, cfg.max_rules_per_nt, cfg.max_rhs_len
        V = T + N if cfg.transparent_nonterminals else T
        held_out = None
        if cfg.train_test_split > 0:
            held_out = np.zeros((V, V), dtype=bool)
            held_out[:T, :T] = rs.random_sample((T, T)) < cfg.train_test_split
        depth_bound = np.array([rs.randint(1, cfg.max_depth + 1) for _ in range(N)])

        # Symbols are indices into [allowed nonterminals..., terminals...], or with
        # terminal_occurrence_factor [allowed nonterminals..., one terminal class] whose
        # terminal is drawn after all rules exist (TERMINAL_CLASS until then).
        factor = cfg.terminal_occurrence_factor
        rules: list[list[list[int]]] = []
        for n in range(N):
            allowed = [m for m in range(N) if depth_bound[m] > depth_bound[n]]
            count = rs.randint(1, R + 1)
            if factor is not None:
                weights = np.ones(len(allowed) + 1)
                weights[-1] = factor
                weights = weights / np.sum(weights)
                drawn = [rs.choice(len(allowed) + 1, size=rs.randint(1, K + 1), p=weights) for _ in range(count)]
            else:
                drawn = [rs.choice(len(allowed) + T, size=rs.randint(1, K + 1)) for _ in range(count)]
            rules.append([[V + allowed[i] if i < len(allowed) else
                           (TERMINAL_CLASS if factor is not None else i - len(allowed)) for i in rhs]
                          for rhs in drawn])
        for per_nt in rules:
            for rhs in per_nt:
                rhs[:] = [int(rs.choice(T)) if s == TERMINAL_CLASS else s for s in rhs]

        num_rules = np.array([len(r) for r in rules])
        rule_len = np.zeros((N, R), dtype=np.int64)
        rule_sym = np.full((N, R, K), -1, dtype=np.int64)
        rule_p = np.zeros((N, R))
        for n, per_nt in enumerate(rules):
            for r, rhs in enumerate(per_nt):
                rule_len[n, r] = len(rhs)
                rule_sym[n, r, : len(rhs)] = rhs
        for n in range(N):
            rule_p[n, : num_rules[n]] = rs.dirichlet(np.ones(num_rules[n]))
        if cfg.transparent_nonterminals:
            head_p = _transparent_heads(T, N)
        else:
            head_p = np.stack([rs.dirichlet(np.ones(T)) for _ in range(N)])
        return cls._with_yield_bounds(V, depth_bound, rule_len, rule_sym, num_rules, rule_p, head_p, held_out)

    @classmethod
    def _with_yield_bounds(cls, V, depth_bound, rule_len, rule_sym, num_rules, rule_p, head_p, held_out=None) -> Grammar:
        """The grammar with its yield-length bounds, deepest nonterminals first (children
        always have larger depth bounds)."""
        N = len(depth_bound)
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
        return cls(V, depth_bound, rule_len, rule_sym, num_rules, rule_p, head_p, min_len, max_len, held_out)

    @property
    def shortest_sentence(self) -> int:
        """Terminals in the shortest usable sentence (≥ MIN_SENTENCE); needs ``max_len.max() ≥ MIN_SENTENCE``."""
        ok = self.max_len >= MIN_SENTENCE
        return int(max(MIN_SENTENCE, self.min_len[ok].min()))


def _transparent_heads(T: int, N: int) -> np.ndarray:
    """Head probabilities of transparent nonterminals: nonterminal ``n`` always heads with ``T + n``."""
    head_p = np.zeros((N, T + N))
    head_p[np.arange(N), T + np.arange(N)] = 1.0
    return head_p


def _kept_trees(ex: np.ndarray, sym: np.ndarray, hid: np.ndarray, cid: np.ndarray, depth: np.ndarray, count: int,
                n_constituents: int, max_length: int) -> _Trees:
    """The sampled sentences of ``MIN_SENTENCE`` to ``max_length`` terminals, renumbered, with
    each terminal's parent (the position of the head of the constituent it depends on)."""
    length = np.bincount(ex, minlength=count)
    keep_ex = (length >= MIN_SENTENCE) & (length <= max_length)
    keep = keep_ex[ex]
    ex, sym, hid, cid, depth = ex[keep], sym[keep], hid[keep], cid[keep], depth[keep]
    ex = (np.cumsum(keep_ex) - 1)[ex]
    length = length[keep_ex]
    pos_of_cid = np.full(n_constituents, -1)
    heads = cid >= 0
    pos_of_cid[cid[heads]] = np.flatnonzero(heads)
    parent = np.where(hid >= 0, pos_of_cid[np.maximum(hid, 0)], -1)
    return _Trees(ex, sym, parent, depth, heads, length, _group_starts(length))

def _ragged(values: np.ndarray, groups: np.ndarray, count: int) -> pa.Array:
    """``values`` as ``count`` lists, grouped by their (sorted) ``groups``."""
    offsets = np.concatenate([[0], np.cumsum(np.bincount(groups, minlength=count))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.astype(np.int32)))


def _sample_rows(cdf: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per i, the index drawn from the cumulative distribution ``cdf[rows[i]]`` with uniform ``u[i]``."""
    width = cdf.shape[1]
    flat = (cdf + np.arange(cdf.shape[0])[:, None]).ravel()
    idx = np.searchsorted(flat, rows + u, side="right") - rows * width
    return np.minimum(idx, width - 1)


def _group_starts(counts: np.ndarray) -> np.ndarray:
    return np.cumsum(counts) - counts


def _distinct(items: np.ndarray, n: int) -> np.ndarray:
    """The distinct values of ``items`` (indices below ``n``), ascending."""
    seen = np.zeros(n, dtype=bool)
    seen[items] = True
    return np.flatnonzero(seen)


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


@dataclass
class _LegacySentence:
    labels: list[int]  # terminal symbols, left to right
    parents: list[int]  # index of each terminal's parent in the sentence, -1 for the root
    depths: list[int]
    is_head: list[bool]


class _LegacySampler:
    """Sentences and queries drawn one at a time as the paper's code draws them.

    A draw ``numpy.random.choice(n, p=p)`` of the original is ``random_sample()`` searched in
    ``cumsum(p) / cumsum(p)[-1]`` and ``choice(n)`` (or of a list of n) is ``randint(0, n)``, so
    both are made here with those calls on precomputed tables.
    """

    def __init__(self, grammar: Grammar, cfg: ATRConfig, held_out: np.ndarray):
        self.grammar, self.cfg, self.held_out = grammar, cfg, held_out
        self.restricted = bool(held_out.any())
        N = len(grammar.depth_bound)
        self.start_cdf = _choice_cdf(np.ones(N) / N)
        self.rule_cdf = [_choice_cdf(grammar.rule_p[n, : grammar.num_rules[n]]) for n in range(N)]
        self.head_cdf = [_choice_cdf(grammar.head_p[n]) for n in range(N)]
        self.rules = [[[int(x) for x in grammar.rule_sym[n, r, : grammar.rule_len[n, r]]]
                       for r in range(grammar.num_rules[n])] for n in range(N)]

    def sentence(self, rs: np.random.RandomState) -> _LegacySentence | None:
        """One depth-first derivation (a rule, then a head per nonterminal); None once it
        reaches ``max_length`` terminals with symbols still pending."""
        V, max_length = self.grammar.num_symbols, self.cfg.max_length
        right = self.cfg.head_position == "right"
        labels, governor, heads, depths = [], [], [], []  # governor: constituent it depends on
        # Stack items: (symbol, constituent it depends on, constituent it heads or -1, depth).
        stack = [(V + bisect_right(self.start_cdf, rs.random_sample()), -1, -1, 0)]
        constituents = 0
        while stack:
            if len(labels) >= max_length:
                return None
            sym, dep, heads_c, depth = stack.pop()
            if sym < V:
                labels.append(sym)
                governor.append(dep)
                heads.append(heads_c)
                depths.append(depth)
                continue
            n, c = sym - V, constituents
            constituents += 1
            rhs = self.rules[n][bisect_right(self.rule_cdf[n], rs.random_sample())]
            head = (bisect_right(self.head_cdf[n], rs.random_sample()), dep, c, depth + 1)
            children = [(s, c, -1, depth + 1) for s in reversed(rhs)]
            stack.extend([head, *children] if right else [*children, head])
        position_of = {c: i for i, c in enumerate(heads) if c >= 0}
        parents = [position_of[d] if d >= 0 else -1 for d in governor]
        return _LegacySentence(labels, parents, depths, [c >= 0 for c in heads])

    def eligible_pairs(self, s: _LegacySentence, split: str) -> dict[int, list[tuple[int, int]]]:
        """Query type index → its (query, target) index pairs, in the original's order (by
        target, then query; sibling pairs by query); types without pairs left out."""
        lab, par, L = s.labels, s.parents, len(s.labels)
        held_out, restricted = self.held_out, self.restricted
        in_train = split in ("train", "dev")

        def allowed(q: int, t: int) -> bool:
            return not restricted or bool(held_out[lab[t], lab[q]]) != in_train

        last = {x: i for i, x in enumerate(lab)}
        out = {}
        for index, qt in enumerate(self.cfg.query_types):
            if qt == "PARENT":
                pairs = [(q, t) for t, q in sorted((par[q], q) for q in range(L) if par[q] >= 0) if allowed(q, t)]
            elif qt == "CHILD":
                pairs = [(par[t], t) for t in range(L) if par[t] >= 0 and allowed(par[t], t)]
            else:  # each word's rightmost allowed sibling, else itself (even where that pair is not allowed)
                group: dict[int, list[int]] = {}
                for i, p in enumerate(par):
                    group.setdefault(p, []).append(i)
                pairs = [(q, max([q] + [t for t in group[par[q]] if t != q and allowed(q, t)])) for q in range(L)]
            if self.cfg.unambiguous_queries:
                pairs = [(q, t) for q, t in pairs if last[lab[q]] == q and (qt != "SIBLING" or last[lab[t]] == t)]
            if pairs:
                out[index] = pairs
        return out

    def example(self, rs: np.random.RandomState, split: str):
        """The next accepted example: (sentence, query type index, that type's pairs, (query, target))."""
        for _ in range(MAX_LEGACY_REJECTIONS):
            s = self.sentence(rs)
            too_short = s is None or len(s.labels) < MIN_SENTENCE
            eligible = {} if too_short else self.eligible_pairs(s, split)
            if eligible:
                break
        else:
            raise RuntimeError(
                f"ATR split {split!r} (sentence_rng: legacy): {MAX_LEGACY_REJECTIONS} sentences in a row "
                f"were rejected: too few sentences fit max_length={self.cfg.max_length} (≥ {MIN_SENTENCE} terminals) "
                f"and have a query allowed in this split (train_test_split={self.cfg.train_test_split}, "
                f"query types {list(self.cfg.query_types)}, unambiguous_queries={self.cfg.unambiguous_queries})"
            )
        types = list(eligible)
        index = types[rs.randint(0, len(types))]
        pairs = eligible[index]
        # list(set(...)): the original draws from this order (CPython's, for small ints).
        if self.cfg.sample_first == "target":
            targets = list(set([t for _, t in pairs]))
            t = targets[rs.randint(0, len(targets))]
            partners = [q for q, tt in pairs if tt == t]
            q = partners[rs.randint(0, len(partners))]
        else:
            queries = list(set([q for q, _ in pairs]))
            q = queries[rs.randint(0, len(queries))]
            partners = [t for qq, t in pairs if qq == q]
            t = partners[rs.randint(0, len(partners))]
        return s, index, pairs, (q, t)


def _choice_cdf(p: np.ndarray) -> list[float]:
    """The table ``numpy.random.choice`` searches for ``p``: ``cumsum(p)`` over its last value."""
    cdf = np.cumsum(p)
    return (cdf / cdf[-1]).tolist()


def _kept_example_of(t: _Trees, usable: np.ndarray) -> np.ndarray:
    """Flat item → its example's index among the ``usable`` sentences (-1: dropped)."""
    new_ex = np.full(t.length.size, -1)
    new_ex[usable] = np.arange(usable.size)
    return new_ex[t.ex]


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
        self.grammar = config.grammar()

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
        positive), uniformly at random from the seed; the legacy grammar's own pairs with
        ``grammar_rng: legacy``.
        """
        if self.grammar.held_out is not None:
            return self.grammar.held_out
        V, f = self.num_symbols, self.config.train_test_split
        held = np.zeros(V * V, dtype=bool)
        if f > 0:
            rng = np.random.default_rng([self.config.seed, HELD_OUT_STREAM])
            held[rng.permutation(V * V)[: held_out_count(f, V)]] = True
        return held.reshape(V, V)

    # ---- generation -------------------------------------------------------------------

    def generate(self) -> dict[str, pd.DataFrame]:
        return dict(self.generate_splits())

    def generate_splits(self) -> Iterator[tuple[str, pd.DataFrame]]:
        if self.config.sentence_rng == "legacy":  # one stream for all splits, in the original's order
            yield from self.generate_legacy().items()
            return
        for split, n in self.config.splits.items():
            yield split, self.generate_split(split, n)

    def _answer_sets(self, t: _Trees, ex_of, pq, pt, pe, q_item):
        """Every valid target of any eligible occurrence of the query's label: its flat items
        and examples, and per example the distinct answers (keys ``example * V + label``) and
        their counts."""
        same = t.label[pq] == t.label[q_item][pe]
        is_a = np.zeros(t.ex.size, dtype=bool)
        is_a[pt[same]] = True
        all_t = np.flatnonzero(is_a)
        all_e = ex_of[all_t]
        akey, acount = np.unique(all_e * self.num_symbols + t.label[all_t], return_counts=True)
        return all_t, all_e, akey, acount, akey // self.num_symbols

    def _tokens(self, t: _Trees, usable, chosen, kept, ke, local, L, s_start, q_item, t_item):
        """The examples' tokens, flat with offsets ``off``: BOS, the sentence, EOS, the query,
        its type token where types are told apart, the answer, EOS; and the positions."""
        cfg, B = self.config, usable.size
        qt_ids = self.query_type_ids
        tail = 5 if qt_ids else 4
        tok_len = L + 1 + tail
        off = np.concatenate([[0], np.cumsum(tok_len)])
        tokens = np.empty(off[-1], dtype=np.int32)
        tokens[off[:-1]] = BOS
        tokens[off[ke] + local] = t.label[kept] + FIRST_ID
        divider = L + 1
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
        return tokens, off, tok_len, divider, query_item, query_type_item, target_item, type_names, answer

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

        return _kept_trees(ex, sym, hid, cid, depth, count, next_cid, cfg.max_length)

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

    # ---- legacy sentence stream ---------------------------------------------------------

    def generate_legacy(self) -> dict[str, pd.DataFrame]:
        """Every split from one ``RandomState(seed)`` continuing after the legacy grammar, in
        the order train, dev, test (``sentence_rng: legacy``)."""
        rs = np.random.RandomState(self.config.seed)
        Grammar.build_legacy(self.config, rs)  # the grammar's draws come first in the stream
        return {split: self.legacy_split(rs, split, n) for split, n in self.config.splits.items()}

    def legacy_split(self, rs: np.random.RandomState, split: str, rows: int) -> pd.DataFrame:
        """``rows`` examples of ``split`` drawn from ``rs`` one at a time, as the original draws them."""
        sampler = _LegacySampler(self.grammar, self.config, self.held_out)
        drawn = [sampler.example(rs, split) for _ in range(rows)]  # (sentence, type, pairs, (q, t))
        length = np.array([len(s.labels) for s, *_ in drawn])
        start = _group_starts(length)
        parents = [np.array(s.parents) for s, *_ in drawn]
        trees = _Trees(
            ex=np.repeat(np.arange(rows), length),
            label=np.concatenate([s.labels for s, *_ in drawn]),
            parent=np.concatenate([np.where(p >= 0, p + offset, -1) for p, offset in zip(parents, start)]),
            depth=np.concatenate([s.depths for s, *_ in drawn]),
            is_head=np.concatenate([s.is_head for s, *_ in drawn]),
            length=length,
            start=start,
        )
        pairs = np.concatenate([np.array(p) + offset for (_, _, p, _), offset in zip(drawn, start)])
        items = np.array([item for *_, item in drawn]) + start[:, None]
        chosen = np.array([index for _, index, _, _ in drawn])
        return self._table(trees, np.arange(rows), chosen, pairs[:, 0], pairs[:, 1], items[:, 0], items[:, 1]).to_pandas()

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
        ex_of = _kept_example_of(t, usable)

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
        queries, targets = _distinct(pq, t.ex.size), _distinct(pt, t.ex.size)

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
        return self._table(t, usable, chosen, pq, pt, q_item, t_item)

    def _table(self, t: _Trees, usable: np.ndarray, chosen: np.ndarray, pq: np.ndarray, pt: np.ndarray,
               q_item: np.ndarray, t_item: np.ndarray) -> pa.Table:
        """The examples of sentences ``usable`` of ``t``: query type index ``chosen``, the flat
        (query, target) items ``q_item``/``t_item``, and the chosen type's eligible pairs
        ``pq``/``pt`` (flat indices)."""
        B = usable.size
        n = t.ex.size
        ex_of = _kept_example_of(t, usable)
        pe = ex_of[pq]
        queries, targets = _distinct(pq, n), _distinct(pt, n)

        all_t, all_e, akey, acount, aset_e = self._answer_sets(t, ex_of, pq, pt, pe, q_item)

        # Sentences of kept examples.
        kept = np.flatnonzero(ex_of >= 0)
        ke = ex_of[kept]
        L = t.length[usable]
        s_start = t.start[usable]
        local = kept - s_start[ke] + 1  # token position of each kept terminal
        par = t.parent[kept]
        parents = np.where(par >= 0, par - s_start[ke] + 1, 0)

        tokens, off, tok_len, divider, query_item, query_type_item, target_item, type_names, answer = self._tokens(
            t, usable, chosen, kept, ke, local, L, s_start, q_item, t_item)
        q_orig, t_orig = q_item - s_start + 1, t_item - s_start + 1

        def ragged(values: np.ndarray, groups: np.ndarray) -> pa.Array:
            return _ragged(values, groups, B)

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
            **self._tree_statistics(t, kept, ke, L),
            "eligible_pairs": np.bincount(pe, minlength=B),
            "eligible_queries": np.bincount(ex_of[queries], minlength=B),
            "eligible_targets": np.bincount(ex_of[targets], minlength=B),
            "num_answers": np.bincount(aset_e, minlength=B),
        }
        return self._as_table(columns)

    def _tree_statistics(self, t: _Trees, kept: np.ndarray, ke: np.ndarray, L: np.ndarray) -> dict[str, np.ndarray]:
        """Per example: the branching factor, depth and repeated-terminal share of its sentence
        (``kept`` terminals, of example ``ke`` each; ``L`` terminals per sentence)."""
        B = L.size
        constituents = np.bincount(ke, weights=t.is_head[kept], minlength=B)
        distinct = np.bincount(np.unique(ke * self.num_symbols + t.label[kept]) // self.num_symbols, minlength=B)
        return {
            "branching_factor": (L - 1) / constituents,
            "depth": np.maximum.reduceat(t.depth[kept], _group_starts(L)),
            "repeated_terminal_share": (L - distinct) / L,
        }

    def _as_table(self, columns: dict[str, Any]) -> pa.Table:
        """``columns`` (in schema order) cast to the schema's types."""
        assert list(columns) == self.schema.names
        arrays = [
            col if isinstance(col, pa.Array) else pa.array(np.asarray(col).astype(field.type.to_pandas_dtype()))
            for col, field in zip(columns.values(), self.schema)
        ]
        return pa.Table.from_arrays(arrays, schema=self.schema)
