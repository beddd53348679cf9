"""Plots of evaluation results, drawn on matplotlib's Agg canvas (no display needed)
and written atomically as PNG."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from espnet2_ext.reports.multistep_runs import Trace
from espnet2_ext.utils.atomic import PathLike, atomic_write_bytes

#: The two panels of :func:`plot_sdr_per_stem`, top to bottom.
SDR_METRICS = ("uSDR", "cSDR")


def plot_sdr_per_stem(
    path: PathLike,
    scores: Mapping[str, Mapping[str, np.ndarray]],
    stems: Sequence[str],
    *,
    title: Optional[str] = None,
) -> Path:
    """:func:`render_sdr_per_stem` written atomically to ``path`` (a ``.png``)."""
    return atomic_write_bytes(path, render_sdr_per_stem(scores, stems, title=title))


def render_sdr_per_stem(
    scores: Mapping[str, Mapping[str, np.ndarray]],
    stems: Sequence[str],
    *,
    title: Optional[str] = None,
) -> bytes:
    """Box plots (and points) of the per-song uSDR and cSDR per stem and system, as PNG
    bytes, drawn on matplotlib's Agg canvas (no display needed). Undefined (NaN)
    scores are left out.

    Args:
        scores: ``{system: {"uSDR": [nsongs, nstems], "cSDR": [nsongs, nstems]}}``.
        stems: [nstems] names.
        title: figure title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    systems = list(scores)
    figure = Figure(figsize=(4.0 + 1.6 * len(stems), 4.0 * len(SDR_METRICS)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(SDR_METRICS), 1, squeeze=False)[:, 0]
    width = 0.8 / max(len(systems), 1)
    colors = [f"C{i}" for i in range(len(systems))]
    for axis, metric in zip(axes, SDR_METRICS):
        for s, system in enumerate(systems):
            values = np.asarray(scores[system][metric], dtype=np.float64)
            offset = (s - (len(systems) - 1) / 2) * width
            columns = [v[np.isfinite(v)] for v in values.T]  # per stem
            positions = [j + offset for j in range(len(stems))]
            drawable = [(p, c) for p, c in zip(positions, columns) if c.size > 0]
            if not drawable:
                continue
            boxes = axis.boxplot(
                [c for _, c in drawable],
                positions=[p for p, _ in drawable],
                widths=width * 0.9,
                patch_artist=True,
                showfliers=False,  # every song is drawn as a point below
                medianprops={"color": "black"},
                manage_ticks=False,
            )
            for box in boxes["boxes"]:
                box.set_facecolor(colors[s])
                box.set_alpha(0.4)
            jitter = np.random.default_rng(s)  # fixed seed: same data, same plot
            for position, column in drawable:
                spread = jitter.uniform(-0.25, 0.25, column.size) * width
                axis.scatter(position + spread, column, s=9, color=colors[s], zorder=3)
            axis.plot([], [], color=colors[s], linewidth=8, alpha=0.6, label=system)
        axis.set_xticks(range(len(stems)))
        axis.set_xticklabels(stems)
        axis.set_ylabel(f"{metric} [dB]")
        axis.grid(axis="y", alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="best", fontsize="small")
        else:
            axis.text(
                0.5, 0.5, "no finite scores", ha="center", transform=axis.transAxes
            )
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def plot_traces(
    path: PathLike, traces: Sequence[Trace], stems: Sequence[str], title: str
) -> Path:
    """Metric (dB) against the step: a panel per metric; dashed lines per stem below.

    Drawn on matplotlib's Agg canvas, written atomically as PNG.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    metrics = list(dict.fromkeys(t.metric for t in traces))
    n_cols = max(len(metrics), 1)
    figure = Figure(figsize=(5.5 * n_cols, 8.0))
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, n_cols, squeeze=False)
    labels = list(dict.fromkeys(t.label for t in traces))
    colors = {label: f"C{i}" for i, label in enumerate(labels)}
    styles = ["-", "--", ":", "-."]
    for col, metric in enumerate(metrics):
        top, bottom = axes[0, col], axes[1, col]
        for trace in (t for t in traces if t.metric == metric):
            steps = np.arange(len(trace.values))
            values = np.array(
                [np.nan if v is None else v for v in trace.values], dtype=float
            )
            top.plot(steps, values, marker="o", ms=3, color=colors[trace.label],
                     label=trace.label)  # fmt: skip
            if trace.per_source is not None:
                rows = np.array(
                    [[np.nan if v is None else v for v in r] for r in trace.per_source],
                    dtype=float,
                )  # [T + 1, N]
                for n, stem in enumerate(stems[: rows.shape[1]]):
                    bottom.plot(
                        steps,
                        rows[:, n] - rows[0, n],
                        linestyle=styles[n % len(styles)],
                        color=colors[trace.label],
                        label=f"{stem}: {trace.label}",
                    )
        for axis in (top, bottom):
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        top.set_title(f"{metric}: mean over stems")
        top.set_xlabel("step (0 = one-step)")
        top.set_ylabel(f"{metric} [dB]")
        top.grid(alpha=0.3)
        top.legend(fontsize="x-small", loc="best")
        bottom.set_title(f"{metric}: gain over step 0 per stem (line style = stem)")
        bottom.set_xlabel("step (0 = one-step)")
        bottom.set_ylabel(f"Δ{metric} [dB]")
        bottom.grid(alpha=0.3)
        handles = [
            bottom.plot([], [], color="black", linestyle=styles[n % len(styles)])[0]
            for n in range(len(stems))
        ]
        bottom.legend(handles, list(stems), fontsize="x-small", loc="best")
    if not metrics:
        axes[0, 0].text(0.5, 0.5, "no traces", ha="center")
    figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return atomic_write_bytes(path, buffer.getvalue())
