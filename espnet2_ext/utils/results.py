"""Writers for evaluation results: atomic files, ``RESULTS.md`` tables, the SDR plot.

Every writer goes through a temporary file in the destination folder followed by
``os.replace``, so a reader (or a packing stage) never sees a half-written file and an
interrupted run leaves the previous version in place.

A *summary* is ``{"uSDR": {stem: dB, ..., "average": dB}, "cSDR": {...}}`` as
:func:`espnet2_ext.metrics.music.summarize` makes it.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Union

import numpy as np

PathLike = Union[str, os.PathLike]

METRICS = ("cSDR", "uSDR")


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
        raise
    return path


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def json_finite(value):
    """``value`` with every non-finite float (NaN, ±inf) replaced by None, recursively
    through dicts, lists and tuples: strict JSON has no NaN."""
    if isinstance(value, dict):
        return {k: json_finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_json(path: PathLike, data) -> Path:
    """Write ``data`` as strict JSON (non-finite floats as null), atomically."""
    import json

    text = json.dumps(json_finite(data), indent=1, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def write_csv(
    path: PathLike, rows: Sequence[Mapping[str, object]], fieldnames: Sequence[str]
) -> Path:
    """Write ``rows`` as CSV with a header; floats with 5 decimals, NaN as ``nan``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                key: (f"{value:.5f}" if isinstance(value, float) else value)
                for key, value in row.items()
            }
        )
    return atomic_write_text(path, buffer.getvalue())


def _fmt(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, numeric: bool = True
) -> str:
    """A GitHub markdown table; ``numeric``: columns after the first align right."""
    rule = "---:" if numeric else "---"
    lines = ["|" + "|".join(header) + "|"]
    lines.append("|" + "|".join(["---"] + [rule] * (len(header) - 1)) + "|")
    lines += ["|" + "|".join(str(cell) for cell in row) + "|" for row in rows]
    return "\n".join(lines) + "\n"


def summary_table(
    summaries: Mapping[str, Mapping[str, Mapping[str, float]]],
    stems: Sequence[str],
    *,
    baseline: Optional[str] = None,
) -> str:
    """Markdown table: one row per (system, metric), columns = stems + average.

    Args:
        summaries: ``{system name: summary}`` in the order of the rows.
        stems: the stem columns.
        baseline: a key of ``summaries``; adds rows "<system> − <baseline>" for every
            other system (the improvement over the baseline).
    """
    columns = list(stems) + ["average"]
    rows: List[List[str]] = []
    for system, summary in summaries.items():
        for metric in METRICS:
            rows.append(
                [system, metric] + [_fmt(summary[metric][col]) for col in columns]
            )
    if baseline is not None:
        base = summaries[baseline]
        for system, summary in summaries.items():
            if system == baseline:
                continue
            for metric in METRICS:
                rows.append(
                    [f"{system} − {baseline}", metric]
                    + [
                        _fmt(summary[metric][col] - base[metric][col])
                        for col in columns
                    ]
                )
    return markdown_table(["system", "metric"] + columns, rows)


def per_track_table(
    tracks: Sequence[str],
    usdr: np.ndarray,
    csdr: np.ndarray,
    stems: Sequence[str],
    *,
    extra: Optional[Mapping[str, Sequence[float]]] = None,
) -> str:
    """Markdown table of one system: a row per track, uSDR and cSDR per stem, averages.

    Args:
        tracks: [nsongs] names
        usdr: [nsongs, nstems]
        csdr: [nsongs, nstems]
        stems: [nstems] names
        extra: more columns ``{header: [nsongs] values}`` (e.g. the baseline's average)
    """
    header = ["track"]
    for stem in stems:
        header += [f"{stem} uSDR", f"{stem} cSDR"]
    header += ["avg uSDR", "avg cSDR"]
    extra = dict(extra or {})
    header += list(extra)
    rows = []
    for i, track in enumerate(tracks):
        row = [track]
        for j in range(len(stems)):
            row += [_fmt(usdr[i, j]), _fmt(csdr[i, j])]
        row += [_fmt(float(np.mean(usdr[i]))), _fmt(float(np.mean(csdr[i])))]
        row += [_fmt(float(values[i])) for values in extra.values()]
        rows.append(row)
    return markdown_table(header, rows)


def plot_sdr_per_stem(
    path: PathLike,
    scores: Mapping[str, Mapping[str, np.ndarray]],
    stems: Sequence[str],
    *,
    title: Optional[str] = None,
) -> Path:
    """Box plots (and points) of the per-song uSDR and cSDR per stem and system.

    Drawn on matplotlib's Agg canvas (no display needed), written atomically as PNG.

    Args:
        path: the ``.png`` to write.
        scores: ``{system: {"uSDR": [nsongs, nstems], "cSDR": [nsongs, nstems]}}``.
        stems: [nstems] names.
        title: figure title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    systems = list(scores)
    figure = Figure(figsize=(4.0 + 1.6 * len(stems), 4.0 * len(METRICS)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(METRICS), 1, squeeze=False)[:, 0]
    width = 0.8 / max(len(systems), 1)
    colors = [f"C{i}" for i in range(len(systems))]
    for axis, metric in zip(axes, ("uSDR", "cSDR")):
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
    return atomic_write_bytes(path, buffer.getvalue())


def format_results_md(
    *,
    title: str,
    description: Sequence[str],
    summaries: Mapping[str, Mapping[str, Mapping[str, float]]],
    stems: Sequence[str],
    baseline: Optional[str],
    per_track: Mapping[str, str],
    skipped: Mapping[str, str],
    environment: Mapping[str, str],
    images: Sequence[str] = (),
) -> str:
    """The text of a ``RESULTS.md``.

    Args:
        title: first heading.
        description: lines written as a bullet list under the title (data, metrics).
        summaries: ``{system: summary}`` for the summary table.
        stems: the stem columns.
        baseline: the system of ``summaries`` that the others are compared with.
        per_track: ``{heading: markdown table}`` sections with per-track scores.
        skipped: ``{song: reason}`` of songs that could not be scored.
        environment: ``{name: version}`` lines of the environment section.
        images: paths relative to the ``RESULTS.md``, embedded at the end.
    """
    blocks = [  # joined by one blank line
        "<!-- Generated by espnet2_ext.bin.music_score -->",
        f"# RESULTS: {title}",
        "## Environments",
        "\n".join(f"- {key}: `{value}`" for key, value in environment.items()),
        "## Summary",
        "\n".join(f"- {line}" for line in description),
        summary_table(summaries, stems, baseline=baseline),
    ]
    for heading, table in per_track.items():
        blocks += [f"## {heading}", table]
    if skipped:
        rows = [[song, reason.replace("|", "/")] for song, reason in skipped.items()]
        blocks += [
            f"## Skipped songs ({len(skipped)})",
            markdown_table(["song", "reason"], rows, numeric=False),
        ]
    if images:
        blocks.append("## Plots")
        blocks += [f"![{Path(image).stem}]({image})" for image in images]
    return "\n".join(block.rstrip("\n") + "\n" for block in blocks if block)

