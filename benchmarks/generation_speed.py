"""Generation throughput: examples/s of ``Language.generate()`` and of ``write_language``.

Run by hand (not a test):

    .venv/bin/python benchmarks/generation_speed.py              # 200,000 train examples, best of 3

Settings:

- **ar**: associative recall, ``num_kv`` 8192, exactly 16 pairs (37 tokens an example),
  as ``config/languages/ar_8192.yaml``;
- **ar_gen**: the same with ``train_test_split`` 0.2 (as ``config/languages/ar_gen.yaml``:
  held-out pairs are drawn, and the queried pair is chosen among the eligible ones);
- **atr**: associative treecall with 20 terminals, 40 nonterminals, right-hand sides of at
  most 5 symbols, at most 5 rules per nonterminal and depth at most 10, if the ``atr``
  language is registered when this runs (otherwise it is skipped with a message).

Each language gets one ``train`` split of ``--examples`` examples. ``generate`` times
``make_language(config).generate()`` (a fresh instance each repeat, so one-off set-up such
as drawing the held-out pairs is included); ``write_language`` times the whole call
(generation, Arrow conversion, zstd Parquet, ``meta.json``) into a temporary directory.
It prints the best and the median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from tinylang.languages import LANGUAGES, make_language, parse_language_config, write_language

AR = {"type": "ar", "num_kv": 8192, "min_pairs": 16, "max_pairs": 16, "query_type": "key", "seed": 0}
AR_GEN = AR | {"train_test_split": 0.2}
ATR = {
    "type": "atr",
    "num_terminals": 20,
    "num_nonterminals": 40,
    "max_rhs_len": 5,
    "max_rules_per_nt": 5,
    "max_depth": 10,
    "seed": 0,
}


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def bench(name: str, raw: dict, examples: int, repeats: int) -> None:
    config = parse_language_config(raw | {"splits": {"train": examples}})
    gen = timed(lambda: make_language(config).generate(), repeats)
    with tempfile.TemporaryDirectory() as tmp:
        write = timed(lambda: write_language(config, Path(tmp)), repeats)
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
    for what, times in (("generate", gen), ("write_language", write)):
        best, median = examples / min(times), examples / statistics.median(times)
        print(
            f"{name:<7} {what:<15} best {best:>11,.0f} ex/s  median {median:>11,.0f} ex/s  "
            f"({min(times):.3f} s best of {repeats})"
        )
    print(f"{name:<7} files           {size / 1e6:.1f} MB for {examples:,} examples")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=200_000, help="train examples per language (default 200000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement (default 3)")
    args = parser.parse_args()

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    bench("ar", AR, args.examples, args.repeats)
    bench("ar_gen", AR_GEN, args.examples, args.repeats)
    if "atr" in LANGUAGES:
        try:
            parse_language_config(ATR | {"splits": {"train": 1}})
        except ValueError as err:
            print(f"atr     skipped: the benchmark's ATR settings do not validate: {err}")
        else:
            bench("atr", ATR, args.examples, args.repeats)
    else:
        print(f"atr     skipped: no 'atr' language is registered (registered: {', '.join(LANGUAGES.names())})")


if __name__ == "__main__":
    main()
