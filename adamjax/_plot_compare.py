"""Several runs side by side: :func:`compare`, :func:`compare_traces` and their two layouts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from adamjax._plot_runs import _as_runs
from adamjax._plot_style import (
    _FIELD_LABELS,
    _PLAIN,
    _check_window,
    _coinciding,
    _draw_curves,
    _finish_axes,
    _legend,
    _new_figure,
    _series,
    _settings_text,
    _title,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from adamjax._simulate import Trace


def _spans(total: int, window: int | None, spans: Sequence[Any] | None) -> list[tuple[int, int, str]]:
    if window is not None and spans is not None:
        raise ValueError("`adamjax.plot.compare`: pass `window=` or `spans=`, not both.")
    if window is not None:
        window = _check_window(window, total)
        return [(0, window, f"first {window} steps"), (total - window, total, f"last {window} steps")]
    if spans is None:
        return [(0, total, "")]
    found = []
    for span in spans:
        start, stop, *name = span
        if not (
            isinstance(start, int | np.integer) and isinstance(stop, int | np.integer) and 0 <= start < stop <= total
        ):
            raise ValueError(
                f"`adamjax.plot.compare(spans=...)`: each span is (start, stop[, name]) with 0 <= start < stop <= "
                f"{total}; got {span!r}."
            )
        found.append((int(start), int(stop), name[0] if name else f"steps {start + 1} to {stop}"))
    return found


def compare(
    runs: Mapping[str, Any] | Trace,
    grads: Any = None,
    *,
    labels: Sequence[str] | None = None,
    fields: Sequence[str] | None = None,
    show_grad: bool = True,
    window: int | None = None,
    spans: Sequence[Any] | None = None,
    log_steps: bool = False,
    index: Any = None,
    layout: str = "fields",
    learning_rate: float | None = None,
    params: Any = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    r"""Several optimizers side by side on the same signals: one curve per optimizer, one row per quantity.

    The first row draws the gradient (once per signal: it is the same for every
    run), then one row per field. Columns are the signals, each cut into
    ``spans`` or, with ``window``, into its first and last ``window`` steps.
    The figure's title says what all runs share (read from each trace's
    settings) and the legend names each run; where two runs draw the same
    curve, the second is drawn thinner, dashed and marked, and the legend says
    they coincide.

    Any optax transformation can be compared: one containing an adamjax core
    is simulated with its internals (:func:`adamjax.simulate`); any other
    (``optax.radam``, ``optax.contrib.adopt``, ``optax.lamb``, ...) is run on
    the same signal recording only its updates and parameters, so draw
    ``"update"``, ``"params"`` or ``"step"`` for it -- ``"step"`` is the update
    over the learning rate, :math:`-u_t/\eta`, the optimizer's own step
    whatever :math:`\eta` is (pass ``learning_rate``). With many members,
    ``layout="runs"`` gives each its own row, the first run drawn behind
    every other in grey for reference, all on one vertical scale per column.

    Args:
      runs: a mapping from a name to an optimizer (any optax transformation),
        an :class:`adamjax.AdamConfig`, a dict of
        :func:`adamjax.scale_by_adam` arguments, or an already simulated
        :class:`adamjax.Trace`; or one Trace whose leading axis indexes the
        runs (what ``jax.vmap`` over :func:`adamjax.simulate` returns) with
        ``labels``.
      grads: the gradient signal to run the optimizers on (a ``[T]`` array),
        or a mapping ``{name: signal}`` for one column per signal; not needed
        when ``runs`` holds traces only.
      labels: one label per run of a stacked trace.
      fields: the Trace fields to draw below the gradient, one row each
        (``"mu_hat"``, ``"nu_hat"``, ``"denom"``, ``"direction"``,
        ``"update"``, ``"step"``, ``"params"``, ``"nu_max"``, ...); by default
        ``("denom", "direction")``, or ``("step",)`` with ``layout="runs"``
        (which draws exactly one field).
      show_grad: draw the gradient row.
      window: draw the first and the last ``window`` steps of each signal.
      spans: instead, parts of each signal to draw side by side, as
        ``(start, stop)`` or ``(start, stop, name)`` with zero-based ``start``
        and exclusive ``stop`` -- each part gets its own vertical scale, so a
        ±0.001 stretch is not flattened by a ±1 one.
      log_steps: a logarithmic step axis.
      index: which coordinate to draw when each step holds an array.
      layout: ``"fields"`` (one row per field, one curve per run) or
        ``"runs"`` (one row per run).
      learning_rate: the learning rate :math:`\eta` all the optimizers were
        built with; needed for the ``"step"`` field.
      params: the initial parameter (zeros by default); it matters to
        optimizers that read the parameters, such as LAMB's trust ratio or a
        weight decay.
      title: the figure's title (the question the comparison answers).
      figsize: in inches; by default sized to the grid.

    Returns:
      A ``matplotlib.figure.Figure``.

    Raises:
      ValueError: an unknown field or layout, optimizers without ``grads``,
        bad ``labels``, ``window`` or ``spans``, ``"step"`` without
        ``learning_rate``.
      TypeError: a run that is neither an optimizer, a config nor a trace.

    Examples:
      >>> import adamjax
      >>> runs = {"adam": adamjax.adam(1e-3), "centered": adamjax.adam(1e-3, centered=True)}
      >>> fig = adamjax.plot.compare(runs, {"sine": adamjax.signals.sine(300),
      ...                                   "pulses": adamjax.signals.pulses()})
      >>> len(fig.axes)  # (gradient, denominator, step) x two signals
      6

      Any optax transformation, one row per optimizer:

      >>> import optax
      >>> runs = {"adam": adamjax.adam(1e-3), "radam": optax.radam(1e-3), "lamb": optax.lamb(1e-3)}
      >>> fig = adamjax.plot.compare(runs, adamjax.signals.sine(300), layout="runs", learning_rate=1e-3,
      ...                            params=1.0)
      >>> [ax.get_ylabel() for ax in fig.axes]
      ['gradient $g_t$', 'adam', 'radam', 'lamb']
    """
    return compare_traces(
        _as_runs(runs, grads, labels, params),
        fields=fields,
        show_grad=show_grad,
        window=window,
        spans=spans,
        log_steps=log_steps,
        index=index,
        layout=layout,
        learning_rate=learning_rate,
        title=title,
        figsize=figsize,
    )


def _has_field(trace: Trace, field: str) -> bool:
    return getattr(trace, "update" if field == "step" else field) is not None


def compare_traces(
    per_signal: Mapping[str, Mapping[str, Trace]],
    *,
    fields: Sequence[str] | None = None,
    show_grad: bool = True,
    window: int | None = None,
    spans: Sequence[Any] | None = None,
    log_steps: bool = False,
    index: Any = None,
    layout: str = "fields",
    learning_rate: float | None = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    r""":func:`compare` for runs already simulated on several signals: ``{signal: {run name: Trace}}``.

    One column (or one per span) for each signal; the arguments are those of
    :func:`compare`. A run without a field (``nu_max`` of a run without
    AMSGrad, the moments of a transformation without an adamjax core) is left
    out of that row.

    Examples:
      >>> import adamjax
      >>> tx = adamjax.adam(1e-3)
      >>> runs = {name: {"adam": adamjax.simulate(tx, g)}
      ...         for name, g in [("sine", adamjax.signals.sine(300)), ("pulses", adamjax.signals.pulses())]}
      >>> [ax.get_title() for ax in adamjax.plot.compare_traces(runs).axes[:2]]
      ['sine', 'pulses']
    """
    if layout not in ("fields", "runs"):
        raise ValueError(f"`adamjax.plot.compare(layout=...)` must be 'fields' or 'runs'; got {layout!r}.")
    per_signal = {signal: dict(traces) for signal, traces in per_signal.items()}
    if not per_signal or not all(per_signal.values()):
        raise ValueError("`adamjax.plot.compare_traces` needs at least one trace per signal.")
    if fields is None:
        fields = ("denom", "direction") if layout == "fields" else ("step",)
    fields = list(fields)
    if not fields and not show_grad:
        raise ValueError("`adamjax.plot.compare(fields=...)` needs at least one field (or show_grad=True).")
    if layout == "runs" and len(fields) != 1:
        raise ValueError(
            f"`adamjax.plot.compare(layout='runs')` draws one field, one row per run; got fields={tuple(fields)!r}."
        )
    for field in fields:
        if field not in _FIELD_LABELS:
            raise ValueError(f"`adamjax.plot`: unknown trace field {field!r}; choose from {', '.join(_FIELD_LABELS)}.")
    if "step" in fields and learning_rate is None:
        raise ValueError(
            "`adamjax.plot.compare(fields=('step',))` draws the update over the learning rate: pass "
            "`learning_rate=` (the one the optimizers were built with)."
        )
    wanted = (["grad"] if show_grad else []) + fields

    def series_of(trace: Trace, field: str) -> np.ndarray:
        values = _series(trace, field, index)
        return -values / float(learning_rate) if field == "step" else values  # type: ignore[arg-type]

    columns = []
    for signal, traces in per_signal.items():
        for field in wanted:
            if not any(_has_field(t, field) for t in traces.values()):
                _series(next(iter(traces.values())), field, index)  # raises, naming the field
        series = {label: {f: series_of(t, f) for f in wanted if _has_field(t, f)} for label, t in traces.items()}
        total = min(v.shape[0] for per_field in series.values() for v in per_field.values())
        for start, stop, name in _spans(total, window, spans):
            columns.append((signal, name, start, stop, series))
    names = _legend_names(per_signal)
    all_traces = [t for traces in per_signal.values() for t in traces.values()]
    if layout == "runs":
        fig = _runs_layout(columns, fields[0], show_grad, names, log_steps, figsize)
    else:
        fig = _fields_layout(columns, wanted, names, log_steps, figsize)
    _title(fig, "How do these optimizers differ on the same gradients?", all_traces, title)
    _legend(fig, fig._adamjax_notes)  # type: ignore[attr-defined]
    return fig


def _draw_grad(ax: Axes, steps: np.ndarray, curves: dict[str, np.ndarray], log_steps: bool, names: dict[str, str]):
    """The gradient row: one grey curve when every run saw the same gradient."""
    first = next(iter(curves.values()))
    if all(np.array_equal(first, other) for other in curves.values()):
        ax.plot(
            steps,
            first,
            color="0.45",
            linewidth=1,
            label="gradient $g_t$ (the same for all)",
            **({"marker": "o", "markersize": 3} if len(steps) <= 40 else {}),
        )
        return []
    return _draw_curves(ax, steps, curves, "gradient", log_steps, names)


def _fields_layout(columns, rows, names, log_steps, figsize) -> Figure:
    fig = _new_figure(figsize or (min(5.2 * len(columns), 16) + 3.5, 2.5 * len(rows) + 1.2))
    axes = np.asarray(fig.subplots(len(rows), len(columns), squeeze=False, sharex="col"))
    notes: list[str] = []
    for column, (signal, name, start, stop, series) in enumerate(columns):
        steps = np.arange(start + 1, stop + 1)
        for row, field in enumerate(rows):
            ax = axes[row, column]
            curves = {label: per_field[field][start:stop] for label, per_field in series.items() if field in per_field}
            if field == "grad":
                notes += _draw_grad(ax, steps, curves, log_steps, names)
            else:
                notes += _draw_curves(ax, steps, curves, _FIELD_LABELS[field], log_steps, names)
            _finish_axes(ax, _FIELD_LABELS[field], row == len(rows) - 1, log_steps)
            if row == 0:
                ax.set_title(" · ".join(part for part in (signal, name) if part))
    fig._adamjax_notes = notes  # type: ignore[attr-defined]
    return fig


def _runs_layout(columns, field, show_grad, names, log_steps, figsize) -> Figure:
    """One row per run; the first run drawn behind the others in grey; one vertical scale per column."""
    labels = list(names)
    rows = (["grad"] if show_grad else []) + labels
    # Narrower than the fields layout: the rows name the runs, so the short legend goes below.
    fig = _new_figure(figsize or (min(5.2 * len(columns), 16) + 1.5, 1.55 * len(rows) + 2.0))
    axes = np.asarray(fig.subplots(len(rows), len(columns), squeeze=False, sharex="col"))
    reference = labels[0]
    # Grey is the reference run's; the runs' own colours skip matplotlib's grey (C7).
    palette = [f"C{i}" for i in range(10) if i != 7]
    notes: list[str] = []
    for column, (signal, name, start, stop, series) in enumerate(columns):
        steps = np.arange(start + 1, stop + 1)
        first_run_row = 1 if show_grad else 0
        for row, label in enumerate(rows):
            ax = axes[row, column]
            last = row == len(rows) - 1
            if label == "grad":
                curves = {run: per_field["grad"][start:stop] for run, per_field in series.items()}
                notes += _draw_grad(ax, steps, curves, log_steps, names)
                _finish_axes(ax, _FIELD_LABELS["grad"], last, log_steps)
                ax.set_title(" · ".join(part for part in (signal, name) if part))
                continue
            if row > first_run_row:
                ax.sharey(axes[first_run_row, column])
            own = series.get(label, {}).get(field)
            behind = series.get(reference, {}).get(field)
            if label != reference and behind is not None:
                ax.plot(
                    steps,
                    behind[start:stop],
                    color="0.7",
                    linewidth=2.4,
                    label=f"{names[reference]} (drawn behind each other member)",
                    zorder=1,
                )
            if own is not None:
                number = labels.index(label)
                ax.plot(
                    steps,
                    own[start:stop],
                    color=palette[number % len(palette)],
                    linewidth=1.3,
                    label=f"_{names[label]}",  # named by its row, not in the legend
                    zorder=2,
                    **({"marker": "o", "markersize": 3} if len(steps) <= 40 else {}),
                )
                if label != reference and behind is not None:
                    pairs = _coinciding({reference: behind[start:stop], label: own[start:stop]})
                    notes += [f"{names[label]} coincides with {names[reference]}" for _ in pairs]
            else:
                ax.text(0.5, 0.5, f"{names[label]} records no {field!r}", transform=ax.transAxes, ha="center")
            _finish_axes(ax, names[label].replace(" (", "\n("), last, log_steps)
            if row == first_run_row and not show_grad:
                ax.set_title(" · ".join(part for part in (signal, name) if part))
        if first_run_row < len(rows):
            axes[first_run_row, column].annotate(
                _FIELD_LABELS[field],
                (0.0, 1.0),
                xycoords="axes fraction",
                xytext=(2, 3),
                textcoords="offset points",
                fontsize="small",
                va="bottom",
            )
    fig._adamjax_notes = notes  # type: ignore[attr-defined]
    return fig


def _legend_names(per_signal: dict[str, dict[str, Trace]]) -> dict[str, str]:
    """Each run's legend entry: its name, followed by the settings in which it differs from the others."""
    labels = list(dict.fromkeys(label for traces in per_signal.values() for label in traces))
    first = {label: next(ts[label] for ts in per_signal.values() if label in ts) for label in labels}
    _, varied = _settings_text(list(first.values()))
    names = {}
    for label, run in first.items():
        parts = []
        settings = run.settings
        for name in varied:  # empty unless every run has its settings (_settings_text)
            if settings is None:
                break
            value = getattr(settings, name)
            if value is False or value is None or name == "optimizer" or _PLAIN.get(name, object()) == value:
                continue
            text = settings.describe((name,))
            if text.lower() not in label.lower():
                parts.append(text)
        names[label] = f"{label} ({', '.join(parts)})" if parts else label
    return names
