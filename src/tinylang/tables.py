"""Tidy tables on disk: the one way every stage saves a Parquet table and reads one back.

Tables are written with Parquet's page checksums (a CRC-32 of every data page) and read with
them verified, so a table damaged after it was written stops the reader with the file named
instead of feeding it other numbers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tinylang.files import atomic_file


class TableError(ValueError):
    """A table file is truncated, damaged or not Parquet; the message names it and the fix."""


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``df`` as Parquet without its index, atomically (a killed job leaves no half file)."""
    with atomic_file(path) as tmp:
        df.reset_index(drop=True).to_parquet(tmp, index=False, write_page_checksum=True)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A table ``write_table`` wrote, its page checksums verified; TableError if it is damaged."""
    path = Path(path)
    try:
        return pq.read_table(path, page_checksum_verification=True).to_pandas()
    except (pa.ArrowException, OSError) as err:
        if not path.is_file():
            raise
        reason = " ".join(str(err).split())
        raise TableError(f"table {path} is truncated or damaged (pyarrow: {reason}); write it again: snakemake "
                         f"--cores all --forcerun {written_by(path)} (add the study's --configfile if it has one)"
                         ) from None


def written_by(path: Path) -> Path:
    """The output Snakemake writes ``path`` as: the table itself, or the checkpoint folder
    (``.../eval/step<N>``, one evaluate job's output) that holds an evaluation table."""
    folder = path.parent
    return folder if re.fullmatch(r"step\d+", folder.name) and folder.parent.name == "eval" else path
