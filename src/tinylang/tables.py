"""Writing tidy tables: the one way every stage saves a Parquet table."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``df`` as Parquet without its index, atomically (a killed job leaves no half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.reset_index(drop=True).to_parquet(tmp, index=False)
    os.replace(tmp, path)
