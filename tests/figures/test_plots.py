"""The per-run figures' axes: Attrib bars of dropped runs do not flatten the kept ones."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from tinylang.figures.plots import ATTRIB_AXIS, _clip_bars  # noqa: E402


def test_bars_beyond_the_attrib_axis_are_clipped_and_print_their_value():
    fig, ax = plt.subplots()
    ax.bar(range(4), [0.5, 1.0, 512.0, -300.0])
    clipped = _clip_bars(ax, pd.Series([0.5, 1.0]))  # the two huge bars belong to dropped runs
    assert clipped == 2 and ax.get_ylim() == ATTRIB_AXIS
    assert sorted(t.get_text() for t in ax.texts) == ["-300", "512"]
    plt.close(fig)


def test_the_axis_widens_to_show_every_kept_run():
    fig, ax = plt.subplots()
    ax.bar(range(2), [0.5, 2.4])
    assert _clip_bars(ax, pd.Series([0.5, 2.4])) == 0
    assert ax.get_ylim()[1] >= 2.4 and not ax.texts
    plt.close(fig)
