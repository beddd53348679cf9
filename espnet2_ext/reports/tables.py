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
                [system, metric]
                + [format_number(summary[metric][col]) for col in columns]
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
                        format_number(summary[metric][col] - base[metric][col])
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
            row += [format_number(usdr[i, j]), format_number(csdr[i, j])]
        row += [
            format_number(float(np.mean(usdr[i]))),
            format_number(float(np.mean(csdr[i]))),
        ]
        row += [format_number(float(values[i])) for values in extra.values()]
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
