#!/usr/bin/env python3
"""Score separated songs against MUSDB-style references: uSDR, cSDR, mixture baseline.

Layout: references ``<ref_dir>/<song>/<stem>.wav`` (+ ``mixture.wav``), estimates
``<est_dir>/<song>/<stem>.wav``. For every song present in ``ref_dir`` the model's
estimates and the "mixture as estimate" baseline are scored per stem (uSDR and museval's
cSDR, :mod:`espnet2_ext.metrics.music`). Writes, each file atomically:

* ``<out_dir>/scores.csv``: ``track, system, stem, uSDR, cSDR`` per track and stem;
* ``<out_dir>/summary.json``: the per-stem and average numbers of both systems;
* ``<out_dir>/RESULTS.md``: summary table, difference to the baseline, per-track table,
  skipped songs, and the plot ``<out_dir>/images/sdr_per_stem.png``.

A song whose references or estimates are missing, unreadable or inconsistent (sampling
rate, channels, length, non-finite samples) is reported with the reason and skipped; the
other songs are scored. The exit status is 1 when no song could be scored.

The baseline does not depend on the model: ``--baseline_cache FILE`` keeps its scores
per reference song, so that scoring further systems on the same references pays for one
museval pass per song instead of two.

Example::

    python -m espnet2_ext.bin.music_score --ref_dir data/musdb18hq/test \\
        --est_dir exp/enh_train/decode/test --out_dir exp/enh_train/decode/test_score \\
        --nj 4 --tag bs_locoformer_medium
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.metrics.scoring import (
    MIXTURE_FILE,
    MIXTURE_SYSTEM,
    find_songs,
    score_songs,
)
from espnet2_ext.reports.scores import write_score_report
from espnet2_ext.utils.cli import run_command


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Score separated songs (uSDR, museval cSDR, mixture baseline)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--log_level",
        type=lambda x: x.upper(),
        default="INFO",
        choices=("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"),
        help="The verbose level of logging",
    )
    parser.add_argument(
        "--ref_dir", type=Path, required=True, help="<ref_dir>/<song>/<stem>.wav"
    )
    parser.add_argument(
        "--est_dir", type=Path, required=True, help="<est_dir>/<song>/<stem>.wav"
    )
    parser.add_argument("--out_dir", type=Path, required=True, help="Output folder")
    parser.add_argument(
        "--stems", nargs="+", default=list(MUSDB_STEMS), help="Stems to score"
    )
    parser.add_argument("--nj", type=int, default=1, help="Songs scored in parallel")
    parser.add_argument(
        "--tag",
        type=str,
        default=None,
        help="Name of the system in the tables; None: the name of --est_dir",
    )
    parser.add_argument(
        "--baseline_cache",
        type=Path,
        default=None,
        help="JSON file that keeps the mixture baseline's scores per reference song "
        "(the baseline does not depend on the model): later runs on the same "
        "references skip its museval pass. Entries are invalidated when a reference "
        "file changes (size or modification time).",
    )
    return parser


def _score(
    parser: argparse.ArgumentParser,
    ref_dir: Path,
    est_dir: Path,
    out_dir: Path,
    stems: Sequence[str],
    nj: int,
    tag: Optional[str],
    baseline_cache: Optional[Path],
) -> None:
    if nj < 1:
        parser.error(f"--nj must be >= 1, got {nj}")
    if len(set(stems)) != len(stems):
        parser.error(f"--stems has duplicates: {stems}")
    if MIXTURE_FILE[: -len(".wav")] in stems:
        parser.error("--stems must not contain 'mixture' (it is the baseline input)")
    tag = tag or est_dir.resolve().name
    if tag == MIXTURE_SYSTEM:
        parser.error(f"--tag {MIXTURE_SYSTEM!r} is the baseline's name; choose another")
    try:
        songs = find_songs(ref_dir, est_dir)
    except ValueError as error:
        parser.error(str(error))
    stems = tuple(stems)
    results = score_songs(ref_dir, est_dir, songs, stems, nj, baseline_cache)
    n_ok = sum(r.error is None for r in results)
    if n_ok == 0:
        raise ValueError(
            f"no song could be scored ({len(results)} skipped); nothing written to "
            f"{out_dir}"
        )
    summaries = write_score_report(out_dir, results, stems, tag, ref_dir, est_dir)
    for system, summary in summaries.items():
        logging.info(
            "%s: uSDR %s | cSDR %s",
            system,
            _line(summary["uSDR"]),
            _line(summary["cSDR"]),
        )
    if n_ok < len(results):
        logging.warning(
            "%d of %d song(s) skipped (see %s)",
            len(results) - n_ok,
            len(results),
            out_dir / "RESULTS.md",
        )
    logging.info("wrote %s", out_dir / "RESULTS.md")


def _line(row: Dict[str, float]) -> str:
    return " ".join(f"{key}={value:.2f}" for key, value in row.items())


def main(cmd: Optional[Sequence[str]] = None) -> int:
    parser = get_parser()
    return run_command("music_score", parser, functools.partial(_score, parser), cmd)


if __name__ == "__main__":
    sys.exit(main())
