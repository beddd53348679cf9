"""The outputs of scoring separated songs (:mod:`espnet2_ext.metrics.scoring`).

Writes, each file atomically:

* ``<out_dir>/scores.csv``: ``track, system, stem, uSDR, cSDR`` per track and stem;
* ``<out_dir>/summary.json``: the per-stem and average numbers of both systems;
* ``<out_dir>/RESULTS.md``: summary table, difference to the baseline, per-track table,
  skipped songs, and the plot ``<out_dir>/images/sdr_per_stem.png``.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Dict, Sequence

import numpy as np

from espnet2_ext import __version__
from espnet2_ext.metrics.music import summarize
from espnet2_ext.metrics.scoring import MIXTURE_SYSTEM, SongResult
from espnet2_ext.reports.plots import plot_sdr_per_stem
from espnet2_ext.reports.tables import format_results_md, per_track_table, write_csv
from espnet2_ext.utils.atomic import atomic_write_text, json_finite

IMAGE = "images/sdr_per_stem.png"


def _environment() -> Dict[str, str]:
    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        "python version": platform.python_version(),
        "espnet2_ext version": __version__,
        "museval version": version("museval"),
        "numpy version": np.__version__,
    }


def write_score_report(
    out_dir: Path,
    results: Sequence[SongResult],
    stems: Sequence[str],
    tag: str,
    ref_dir: Path,
    est_dir: Path,
) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Write scores.csv, summary.json, the plot and RESULTS.md; return the summaries.

    Args:
        results: of :func:`espnet2_ext.metrics.scoring.score_songs`; at least one
            scored.
        tag: the name of the system scored (the mixture baseline is the other).
    """
    scored = [r for r in results if r.error is None]
    skipped = {r.track: r.error for r in results if r.error is not None}
    tracks = [r.track for r in scored]
    tables = {
        tag: {
            "uSDR": np.stack([r.usdr for r in scored]),
            "cSDR": np.stack([r.csdr for r in scored]),
        },
        MIXTURE_SYSTEM: {
            "uSDR": np.stack([r.mixture_usdr for r in scored]),
            "cSDR": np.stack([r.mixture_csdr for r in scored]),
        },
    }
    summaries = {
        system: summarize(table["uSDR"], table["cSDR"], stems)
        for system, table in tables.items()
    }

    rows = []
    for i, track in enumerate(tracks):
        for system, table in tables.items():
            for j, stem in enumerate(stems):
                rows.append(
                    {
                        "track": track,
                        "system": system,
                        "stem": stem,
                        "uSDR": float(table["uSDR"][i, j]),
                        "cSDR": float(table["cSDR"][i, j]),
                    }
                )
    write_csv(out_dir / "scores.csv", rows, ["track", "system", "stem", "uSDR", "cSDR"])
    summary_json = {
        "tag": tag,
        "stems": list(stems),
        "num_scored": len(scored),
        "num_skipped": len(skipped),
        "skipped": skipped,
        "systems": summaries,
    }
    # strict JSON: undefined scores (NaN) are written as null
    text = json.dumps(json_finite(summary_json), indent=2, allow_nan=False)
    atomic_write_text(out_dir / "summary.json", text + "\n")
    plot_sdr_per_stem(
        out_dir / IMAGE, tables, stems, title=f"{tag}: {len(scored)} songs"
    )
    notes = [f"{r.track}: {note}" for r in scored for note in r.notes]
    description = [
        f"references: `{ref_dir}`; estimates: `{est_dir}`",
        f"{len(scored)} song(s) scored, {len(skipped)} skipped; "
        f"stems: {', '.join(stems)}",
        "uSDR: whole-song SNR per channel, averaged over channels; mean over songs",
        "cSDR: museval BSSEval v4, 1 s windows and hop, median over windows "
        "(silent windows skipped as museval does), median over songs",
        "average: mean over the stems; "
        f"`{MIXTURE_SYSTEM}`: every stem estimated by the mixture (baseline)",
    ] + notes
    mixture_avg = {
        "mixture avg uSDR": tables[MIXTURE_SYSTEM]["uSDR"].mean(axis=1),
        "mixture avg cSDR": tables[MIXTURE_SYSTEM]["cSDR"].mean(axis=1),
    }
    text = format_results_md(
        title=tag,
        description=description,
        summaries=summaries,
        stems=stems,
        baseline=MIXTURE_SYSTEM,
        per_track={
            f"Per-track scores: {tag}": per_track_table(
                tracks,
                tables[tag]["uSDR"],
                tables[tag]["cSDR"],
                stems,
                extra=mixture_avg,
            )
        },
        skipped=skipped,
        environment=_environment(),
        images=[IMAGE],
    )
    atomic_write_text(out_dir / "RESULTS.md", text)
    return summaries
