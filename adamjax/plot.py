r"""Figures of :func:`adamjax.simulate` traces (needs matplotlib: ``pip install matplotlib``).

Each figure answers one question and says which in its title; the settings the
traces were simulated with (``trace.settings``) appear in the title or the
legend, every axis is labelled, the step has a panel of its own, the legend
sits outside the axes, and curves that coincide stay visible (different line
styles and markers, and a note in the legend).

* :func:`trace`, :func:`windows`: one run, whole or its first and last steps.
* :func:`compare`: several optimizers side by side on the same signals.
* One figure per question: :func:`suppression` (why the second moment
  suppresses a swinging gradient), :func:`bias_correction` (the first steps),
  :func:`centered` (centered second moment or not), :func:`amsgrad` (its
  running maximum), :func:`power` (a p-th power moment against Adam),
  :func:`b2_sweep` (what ``b2`` changes), :func:`quantization` (what 8-bit
  and 4-bit storage keeps of the moments, and what that does to the step).

Importing this module does not import matplotlib; each function does, and
raises ``ImportError`` with the install command when it is missing. Every
function builds a ``matplotlib.figure.Figure`` directly (no pyplot state, so
it works under the Agg backend, in scripts, tests and servers), returns it,
and never calls ``show()``: save it with ``fig.savefig("adam.png")`` or let a
notebook display it.

Examples:
  >>> import adamjax
  >>> trace = adamjax.simulate(adamjax.adam(1e-3), adamjax.signals.sine(300))
  >>> fig = adamjax.plot.trace(trace)
  >>> fig.axes[0].get_title()
  'gradient and moments'
  >>> fig = adamjax.plot.compare({"b2=0.9": adamjax.adam(1e-3, b2=0.9), "b2=0.999": adamjax.adam(1e-3)},
  ...                            adamjax.signals.sine(300))
  >>> fig.savefig("adam.png")  # doctest: +SKIP
"""

from __future__ import annotations

from adamjax._plot_compare import compare as compare
from adamjax._plot_compare import compare_traces as compare_traces
from adamjax._plot_quantization import quantization as quantization
from adamjax._plot_second_moment import b2_sweep as b2_sweep
from adamjax._plot_second_moment import suppression as suppression
from adamjax._plot_trace import linear_trend as linear_trend
from adamjax._plot_trace import trace as trace
from adamjax._plot_trace import windows as windows
from adamjax._plot_variants import amsgrad as amsgrad
from adamjax._plot_variants import bias_correction as bias_correction
from adamjax._plot_variants import centered as centered
from adamjax._plot_variants import power as power

__all__ = [
    "amsgrad",
    "b2_sweep",
    "bias_correction",
    "centered",
    "compare",
    "compare_traces",
    "linear_trend",
    "power",
    "quantization",
    "suppression",
    "trace",
    "windows",
]
