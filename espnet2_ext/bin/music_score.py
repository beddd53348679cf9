#!/usr/bin/env python3
"""Score separated songs against MUSDB-style references: uSDR, cSDR, mixture baseline.

Layout: references ``<ref_dir>/<song>/<stem>.wav`` (+ ``mixture.wav``), estimates
``<est_dir>/<song>/<stem>.wav``. For every song of ``ref_dir`` the model's estimates
and the "mixture as estimate" baseline are scored per stem: uSDR, museval's BSSEval v4
cSDR (``--scorer fast``, our batched implementation, by default; ``--scorer museval``
to cross-check), and the cSDR on the windows where each stem is active (an extra for
songs with silent stems). See :mod:`espnet2_ext.metrics.scoring` and
:mod:`espnet2_ext.reports.scores` for the files.

Three ways to run it:

* ``--job J/N``: score every N-th song starting at the J-th (1-based, as a job
  runner's ``JOB``) into ``<out_dir>/songs/``, nothing else;
* ``--merge``: read ``<out_dir>/songs/`` (every song of ``ref_dir``, scored with the
  same options, from unchanged files) and write ``RESULTS.md``, ``summary.json``,
  ``scores.csv``, museval's per-track JSON and the plot, as one set;
* neither: both, in one process with ``--nj`` worker processes.

A song whose references or estimates are missing, unreadable or inconsistent (sampling
rate, channels, length, NaN/Inf samples) is reported with a reason that names the file
and counted as skipped in every table; the other songs are scored. The merge exits with
status 1, writing nothing, when no song could be scored.

The baseline does not depend on the model: ``--baseline_cache FILE`` keeps its scores
keyed by the content of the references, so every system scored on the same songs (in
any folder) pays for it once.

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
from typing import Dict, Optional, Sequence, Tuple

from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.metrics.music import SCORERS
from espnet2_ext.metrics.scoring import (
    MIXTURE_FILE,
    MIXTURE_SYSTEM,
    SONGS_DIR,
    ScoringSetup,
    find_songs,
    job_songs,
    load_baseline_cache,
    read_song_results,
    score_songs,
    update_baseline_cache,
)
from espnet2_ext.reports.scores import write_score_report
from espnet2_ext.utils.cli import run_command


def _job(value: str) -> Tuple[int, int]:
    try:
        job, num_jobs = (int(part) for part in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected J/N (e.g. 2/4), got {value!r}"
        ) from None
    if not 1 <= job <= num_jobs:
        raise argparse.ArgumentTypeError(f"need 1 <= J <= N, got {value!r}")
    return job, num_jobs


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
    parser.add_argument(
        "--scorer",
        choices=SCORERS,
        default="fast",
        help="BSSEval v4 window scores: 'fast' (espnet2_ext.metrics.bsseval, batched "
        "torch) or 'museval' (museval itself, to cross-check)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="Where the fast scorer computes, e.g. 'cuda' (the museval scorer runs "
        "on the CPU)",
    )
    parser.add_argument(
        "--nj", type=int, default=1, help="Songs scored in parallel (processes)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--job",
        type=_job,
        default=None,
        metavar="J/N",
        help=f"Score every N-th song starting at the J-th (1-based) into "
        f"<out_dir>/{SONGS_DIR}/ and nothing else; --merge writes the tables",
    )
    mode.add_argument(
        "--merge",
        action="store_true",
        help=f"Write the tables, JSON and plot from <out_dir>/{SONGS_DIR}/",
    )
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
        help="JSON file that keeps the mixture baseline's scores keyed by the content "
        "of the references (the baseline does not depend on the model), shared by "
        "every system scored on the same songs wherever their folder is; jobs read "
        "it, the merge adds to it",
    )
    return parser


def _score(
    parser: argparse.ArgumentParser,
    ref_dir: Path,
    est_dir: Path,
    out_dir: Path,
    stems: Sequence[str],
    scorer: str,
    device: str,
    nj: int,
    job: Optional[Tuple[int, int]],
    merge: bool,
    tag: Optional[str],
    baseline_cache: Optional[Path],
) -> None:
    if nj < 1:
        parser.error(f"--nj must be >= 1, got {nj}")
    if len(set(stems)) != len(stems):
        parser.error(f"--stems has duplicates: {stems}")
    if MIXTURE_FILE[: -len(".wav")] in stems:
        parser.error("--stems must not contain 'mixture' (it is the baseline input)")
    if scorer == "museval" and device != "cpu":
        parser.error(f"--device {device}: the museval scorer runs on the CPU only")
    tag = tag or est_dir.resolve().name
    if tag == MIXTURE_SYSTEM:
        parser.error(f"--tag {MIXTURE_SYSTEM!r} is the baseline's name; choose another")
    if "/" in tag or tag in (".", "..") or "\0" in tag:
        parser.error(f"--tag {tag!r} must be usable as a folder name (no '/')")
    try:
        songs = find_songs(ref_dir, est_dir)
    except ValueError as error:
        parser.error(str(error))
    setup = ScoringSetup.make(ref_dir, est_dir, stems, scorer)
    load_baseline_cache(baseline_cache)  # a file that is not a cache: refused now
    device = None if device == "cpu" else device
    if job is not None:
        mine = job_songs(songs, *job)
        results = score_songs(
            setup, mine, out_dir, nj=nj, device=device, baseline_cache=baseline_cache
        )
        logging.info(
            "job %d/%d: %d song(s) scored, %d skipped, in %s",
            *job,
            sum(r.error is None for r in results),
            sum(r.error is not None for r in results),
            out_dir / SONGS_DIR,
        )
        return
    if not merge:
        score_songs(
            setup, songs, out_dir, nj=nj, device=device, baseline_cache=baseline_cache
        )
    _merge(setup, songs, out_dir, tag, baseline_cache)


def _merge(
    setup: ScoringSetup,
    songs: Sequence[str],
    out_dir: Path,
    tag: str,
    baseline_cache: Optional[Path],
) -> None:
    results = read_song_results(out_dir, songs, setup)
    n_ok = sum(r.error is None for r in results)
    if n_ok == 0:
        reasons = "; ".join(f"{r.track}: {r.error}" for r in results[:3])
        raise ValueError(
            f"no song could be scored ({len(results)} skipped: {reasons}"
            + (" ..." if len(results) > 3 else "")
            + f"); no report written to {out_dir}"
        )
    summaries = write_score_report(
        out_dir,
        results,
        setup.stems,
        tag,
        Path(setup.ref_dir),
        Path(setup.est_dir),
        setup.scorer,
    )
    if baseline_cache is not None:
        update_baseline_cache(baseline_cache, results, setup.stems, setup.scorer)
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
