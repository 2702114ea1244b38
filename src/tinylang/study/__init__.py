"""Aggregation: a study's tables from its runs' evaluation tables (``build.build_study_tables``:
runs, run accuracy, the best-learning-rate selection, curves, the mechanism tables), and the
tables the per-run figures are drawn from (``run_tables``). Figures only draw these."""

from tinylang.study.build import build_study_tables

__all__ = ["build_study_tables"]
