"""Markdown tables, CSV and the ``RESULTS.md`` text of evaluation results.

Every number in a table goes through :func:`format_number`.

A *summary* is ``{"uSDR": {stem: dB, ..., "average": dB}, "cSDR": {...}}`` as
:func:`espnet2_ext.metrics.music.summarize` makes it.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import List, Mapping, Optional, Sequence

import numpy as np

from espnet2_ext.utils.atomic import PathLike, atomic_write_text

#: Row order of the metrics in :func:`summary_table`.
METRICS = ("cSDR", "uSDR")


def format_number(value: Optional[float], digits: int = 2) -> str:
    """A table cell: ``digits`` decimals; ``n/a`` for None or NaN."""
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


def csv_text(rows: Sequence[Mapping[str, object]], fieldnames: Sequence[str]) -> str:
    """``rows`` as CSV with a header; floats with 5 decimals, NaN as ``nan``."""
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
    return buffer.getvalue()


def write_csv(
    path: PathLike, rows: Sequence[Mapping[str, object]], fieldnames: Sequence[str]
) -> Path:
    """Write :func:`csv_text` of ``rows`` to ``path``, atomically."""
    return atomic_write_text(path, csv_text(rows, fieldnames))


def counted(value: Optional[float], count: int, total: int) -> str:
    """A cell with the number of songs it rests on when that is not all of them:
    ``4.21``, ``4.21 (6/8)``, ``n/a (0/8)``."""
    cell = format_number(value)
    return cell if count >= total else f"{cell} ({count}/{total})"


def mean_of_defined(values: Sequence[float]) -> str:
    """The mean of the defined (finite) ``values``, with ``(k/n)`` when some are not
    (e.g. a song's average over its stems, one of them silent)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    mean = float(np.mean(values[finite])) if finite.any() else math.nan
    return counted(mean, int(finite.sum()), values.size)


#: Marks an average or a difference that involves a value resting on fewer songs.
PARTIAL = "†"


def summary_table(
    summaries: Mapping[str, Mapping[str, Mapping[str, float]]],
    stems: Sequence[str],
    *,
    baseline: Optional[str] = None,
    counts: Optional[Mapping[str, Mapping[str, Mapping[str, int]]]] = None,
    total: Optional[int] = None,
) -> str:
    """Markdown table: one row per (system, metric), columns = stems + average.

    Args:
        summaries: ``{system name: summary}`` in the order of the rows.
        stems: the stem columns.
        baseline: a key of ``summaries``; adds rows "<system> − <baseline>" for every
            other system (the improvement over the baseline).
        counts: ``{system: {metric: {stem: songs}}}``, the songs each value rests on;
            with ``total`` (all the songs), a value on fewer songs is written
            ``4.21 (6/8)``, and an average or difference involving one gets
            :data:`PARTIAL`.
    """
    columns = list(stems) + ["average"]

    def partial(system: str, metric: str, stem: str) -> bool:
        return counts is not None and counts[system][metric][stem] < total

    def cells(system: str, metric: str, values: Mapping[str, float], others=()):
        row = []
        for col in columns:
            if col == "average":
                flag = any(
                    partial(name, metric, stem)
                    for name in (system, *others)
                    for stem in stems
                )
                row.append(format_number(values[col]) + (f" {PARTIAL}" if flag else ""))
            elif others:
                flag = any(partial(name, metric, col) for name in (system, *others))
                row.append(format_number(values[col]) + (f" {PARTIAL}" if flag else ""))
            elif counts is not None:
                row.append(counted(values[col], counts[system][metric][col], total))
            else:
                row.append(format_number(values[col]))
        return row

    rows: List[List[str]] = []
    for system, summary in summaries.items():
        for metric in METRICS:
            rows.append([system, metric] + cells(system, metric, summary[metric]))
    if baseline is not None:
        base = summaries[baseline]
        for system, summary in summaries.items():
            if system == baseline:
                continue
            for metric in METRICS:
                difference = {
                    col: summary[metric][col] - base[metric][col] for col in columns
                }
                rows.append(
                    [f"{system} − {baseline}", metric]
                    + cells(system, metric, difference, others=(baseline,))
                )
    return markdown_table(["system", "metric"] + columns, rows)


def per_track_table(
    tracks: Sequence[str],
    usdr: np.ndarray,
    csdr: np.ndarray,
    stems: Sequence[str],
    *,
    extra: Optional[Mapping[str, Sequence[object]]] = None,
) -> str:
    """Markdown table of one system: a row per track, uSDR and cSDR per stem, averages.

    A track's average is over its defined stems, with ``(k/n)`` when some are
    undefined (``n/a``: a silent reference, or no museval window).

    Args:
        tracks: [nsongs] names
        usdr: [nsongs, nstems]
        csdr: [nsongs, nstems]
        stems: [nstems] names
        extra: more columns ``{header: [nsongs] values}``: numbers, or cells already
            formatted (strings)
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
            row += [format_number(usdr[i, j]), format_number(csdr[i, j])]
        row += [mean_of_defined(usdr[i]), mean_of_defined(csdr[i])]
        row += [
            value[i] if isinstance(value[i], str) else format_number(float(value[i]))
            for value in extra.values()
        ]
        rows.append(row)
    return markdown_table(header, rows)


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
    sections: Optional[Mapping[str, str]] = None,
    counts: Optional[Mapping[str, Mapping[str, Mapping[str, int]]]] = None,
    total: Optional[int] = None,
) -> str:
    """The text of a ``RESULTS.md``.

    Args:
        title: first heading.
        description: lines written as a bullet list under the title (data, metrics).
        summaries: ``{system: summary}`` for the summary table.
        stems: the stem columns.
        baseline: the system of ``summaries`` that the others are compared with.
        per_track: ``{heading: markdown table}`` sections with per-track scores.
        sections: ``{heading: markdown text}`` sections between the summary and the
            per-track tables.
        counts, total: the songs each summary value rests on, of ``total`` (see
            :func:`summary_table`).
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
        summary_table(summaries, stems, baseline=baseline, counts=counts, total=total),
    ]
    for heading, text in {**(sections or {}), **per_track}.items():
        blocks += [f"## {heading}", text]
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
