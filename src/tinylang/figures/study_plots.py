"""A study's figures, drawn from its aggregate tables (``tinylang.study``).

Each function takes one tidy table and its keyword options, checks the columns it needs
(a ValueError names the missing ones), draws and returns a ``Plot``: the figure and the
tidy table it drew. It writes no file (the workflow's ``tinylang.stages.draw_study_figure``
saves both). ``fig=`` draws into a given ``Figure`` or ``SubFigure``, so that several
compose into one (``root.subfigures(1, 2)``).

Conventions shared by every figure:

* one colour per mixer, fixed across figures (``mixer_palette``);
* positions: solid lines / filled markers for NoPE (``pos_embed == False``), dashed
  lines / hollow markers for learned positions;
* any column that is not a known coordinate or value column is taken for another sweep
  axis (e.g. ``mixer_args.d_conv``); where such axes vary, their values tell lines apart
  by marker shape (a missing value, as for a mixer without that argument, is left out of
  the label);
* facets: columns by ``n_layers`` and rows by ``language``, each only where it takes
  more than one value;
* a table with nothing to draw (e.g. no selected runs) gives a figure that says so, not
  an error;
* accuracy figures draw the runs at each configuration's selected (best) learning rate;
  mechanism figures draw every run the paper's gap filter keeps (``kept``), over all
  learning rates and widths, with the paper's Attrib (a ratio of means over examples, see
  ``tinylang.evaluation.attribution``);
* the paper's numbers (``reference=``, a ``tinylang.figures.reference.study_reference``
  table) are drawn beside ours where the figure's axes match (its metric, languages, mixers,
  layer counts and positions; the accuracy figure also the report split): black-edged
  diamonds in the mixer's colour labelled "paper" (a white centre for learned positions), a
  dotted line in the mixer's colour for a best-over-widths value; the Plot's table then has
  a ``source`` column, "ours" or "paper".

Figures are built on ``matplotlib.figure.Figure`` (no pyplot state, nothing to close)
inside ``rc_context``, so the seaborn theme does not leak into the caller's matplotlib
settings; a figure saved later, outside it, looks the same.

The figures live one module each (``study_accuracy``, ``study_mechanism``, ``study_curves``,
``study_generalisation``) over the shared look of ``_study_style``; this module gathers them."""

from tinylang.figures._study_style import (
    COORDINATES,
    HEADLINE_COMPONENT,
    HEADLINE_CORRUPTED,
    LAYER_COMPONENT,
    LAYER_READOUT,
    MIXER_ORDER,
    QUANTITIES,
    READOUTS,
    Plot,
    mixer_order,
    mixer_palette,
    sweep_axes,
)
from tinylang.figures.study_accuracy import accuracy_vs_width
from tinylang.figures.study_curves import training_curves
from tinylang.figures.study_generalisation import generalisation, generalisation_table
from tinylang.figures.study_mechanism import mechanism_boxes, mechanism_layers, mechanism_points, mechanism_scatter

__all__ = [
    "COORDINATES",
    "HEADLINE_COMPONENT",
    "HEADLINE_CORRUPTED",
    "LAYER_COMPONENT",
    "LAYER_READOUT",
    "MIXER_ORDER",
    "QUANTITIES",
    "READOUTS",
    "Plot",
    "accuracy_vs_width",
    "generalisation",
    "generalisation_table",
    "mechanism_boxes",
    "mechanism_layers",
    "mechanism_points",
    "mechanism_scatter",
    "mixer_order",
    "mixer_palette",
    "sweep_axes",
    "training_curves",
]
