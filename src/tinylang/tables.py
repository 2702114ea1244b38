"""Writing tidy tables: the one way every stage saves a Parquet table."""

from __future__ import annotations

import os

import pandas as pd

from tinylang.files import atomic_file


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``df`` as Parquet without its index, atomically (a killed job leaves no half file)."""
    with atomic_file(path) as tmp:
        df.reset_index(drop=True).to_parquet(tmp, index=False)
