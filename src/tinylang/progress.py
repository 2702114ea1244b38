"""Progress lines for log files: what a progress bar shows, readable with ``tail -f``.

A bar redrawn in place is unreadable in a cluster job's log, so long work also logs one line at
every tenth of the way and at least every ``every_s`` seconds: how far, the rate, the time left,
and any figures the caller adds (e.g. the loss).
"""

from __future__ import annotations

import logging
import sys
import time


def duration(seconds: float) -> str:
    """``75`` → ``"1m 15s"``; ``3700`` → ``"1h 01m"``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


class ProgressLines:
    """Logs ``label: 1250/12500 steps (10 %), 130 steps/s, 1m 26s left[, extra]`` through
    ``logger`` whenever ``update`` crosses a tenth of ``total`` or ``every_s`` seconds have passed
    since the last line (never for the last unit: the caller's own end line says that)."""

    def __init__(self, logger: logging.Logger, label: str, total: int, *, unit: str = "steps", start: int = 0,
                 every_s: float = 60.0):
        self.logger, self.label, self.total, self.unit, self.every_s = logger, label, total, unit, every_s
        self.start = self.done = start
        self.t_start = self.t_last = time.perf_counter()
        self.next_tenth = start * 10 // max(total, 1) + 1

    def update(self, done: int, **extra: float) -> None:
        """Record that ``done`` units of ``total`` are finished; log a line if one is due."""
        self.done = done
        now = time.perf_counter()
        tenth = done * 10 // max(self.total, 1)
        if done >= self.total or (tenth < self.next_tenth and now - self.t_last < self.every_s):
            return
        self.next_tenth, self.t_last = max(self.next_tenth, tenth + 1), now
        rate = (done - self.start) / max(now - self.t_start, 1e-9)
        left = duration((self.total - done) / rate) if rate > 0 else "?"
        figures = "".join(f", {name} {value:.4g}" for name, value in extra.items())
        self.logger.info("%s: %d/%d %s (%d %%), %.3g %s/s, %s left%s", self.label, done, self.total, self.unit,
                         100 * done // max(self.total, 1), rate, self.unit, left, figures)


class Progress:
    """A tqdm bar on a terminal plus ``ProgressLines`` in the log, advanced together; use as a
    context manager (``with Progress(log, "interventions", n, unit="examples") as p: p.advance(k)``)."""

    def __init__(self, logger: logging.Logger, label: str, total: int, *, unit: str = "steps"):
        from tqdm.auto import tqdm

        self.lines = ProgressLines(logger, label, total, unit=unit)
        self.bar = tqdm(total=total, desc=label, unit=f" {unit}", disable=not sys.stderr.isatty(),
                        dynamic_ncols=True)

    def advance(self, count: int = 1, **extra: float) -> None:
        self.bar.update(count)
        self.lines.update(self.lines.done + count, **extra)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
