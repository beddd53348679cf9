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
import datetime
import importlib.metadata
import json
import logging
import multiprocessing
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from tqdm import tqdm

from espnet2_ext import __version__
from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.metrics.music import csdr, mixture_estimates, summarize, usdr
from espnet2_ext.utils.results import (
    atomic_write_text,
    format_results_md,
    per_track_table,
    plot_sdr_per_stem,
    write_csv,
)

MIXTURE_SYSTEM = "mixture"
BASELINE_CACHE_VERSION = 1
MIXTURE_FILE = "mixture.wav"
IMAGE = "images/sdr_per_stem.png"


class SongError(Exception):
    """A song cannot be scored; the message says why (shown to the user)."""


@dataclass
class SongTask:
    """One song to score (the unit of work of ``--nj``)."""

    track: str
    ref_song: str
    est_song: str
    stems: Tuple[str, ...]
    #: cached baseline scores {"uSDR": [nstems], "cSDR": [nstems]}, or None to compute
    baseline: Optional[Dict[str, List[float]]] = None


@dataclass
class SongResult:
    """Scores of one song, or the reason it was skipped. Arrays are [nstems]."""

    track: str
    error: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    usdr: Optional[np.ndarray] = None
    csdr: Optional[np.ndarray] = None
    mixture_usdr: Optional[np.ndarray] = None
    mixture_csdr: Optional[np.ndarray] = None
    baseline_cached: bool = False


def _read(path: Path, what: str) -> Tuple[np.ndarray, int]:
    """Read a WAV as float64 [T, C]; a missing or unreadable file is a SongError."""
    if not path.is_file():
        raise SongError(f"{what} {path} is missing")
    try:
        audio, rate = sf.read(str(path), dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as error:
        raise SongError(f"{what} {path} is not readable audio ({error})") from None
    if audio.shape[0] == 0:
        raise SongError(f"{what} {path} has no samples")
    if not np.all(np.isfinite(audio)):
        raise SongError(f"{what} {path} contains NaN or infinite samples")
    return audio, rate


def _check_like(
    audio: np.ndarray, rate: int, ref_shape: Tuple[int, int], ref_rate: int, what: str
) -> None:
    problems = []
    if rate != ref_rate:
        problems.append(f"sampling rate {rate} Hz, the reference has {ref_rate} Hz")
    if audio.shape[1] != ref_shape[1]:
        problems.append(
            f"{audio.shape[1]} channel(s), the reference has {ref_shape[1]}"
        )
    if audio.shape[0] != ref_shape[0]:
        problems.append(
            f"{audio.shape[0]} samples, the reference has {ref_shape[0]}"
        )
    if problems:
        raise SongError(f"{what}: " + "; ".join(problems))


def load_song(
    ref_song: Path, est_song: Path, stems: Sequence[str]
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int, List[str]]:
    """Read and check one song.

    Returns:
        references [nstems, T, C], estimates [nstems, T, C], mixture [T, C], the
        sampling rate, and notes (e.g. that the mixture was made from the stems).

    Raises:
        SongError: a file is missing, unreadable or inconsistent.
    """
    notes: List[str] = []
    references = []
    ref_rate = None
    for stem in stems:
        audio, rate = _read(ref_song / f"{stem}.wav", f"reference {stem!r}")
        if ref_rate is None:
            ref_rate, ref_shape = rate, audio.shape
        else:
            _check_like(audio, rate, ref_shape, ref_rate, f"reference {stem!r}")
        references.append(audio)
    if (ref_song / MIXTURE_FILE).exists():
        mixture, rate = _read(ref_song / MIXTURE_FILE, "reference mixture")
        _check_like(mixture, rate, ref_shape, ref_rate, "reference mixture")
    else:
        mixture = np.sum(references, axis=0)
        notes.append(f"no {MIXTURE_FILE}: the baseline uses the sum of the stems")
    if not est_song.is_dir():
        raise SongError(f"no estimates: folder {est_song} is missing")
    estimates = []
    for stem in stems:
        audio, rate = _read(est_song / f"{stem}.wav", f"estimate {stem!r}")
        _check_like(audio, rate, ref_shape, ref_rate, f"estimate {est_song / stem}.wav")
        estimates.append(audio)
    return np.stack(references), np.stack(estimates), mixture, ref_rate, notes


def score_song(task: SongTask) -> SongResult:
    """Score one song: the model's estimates and the mixture baseline; never raises."""
    stems = task.stems
    result = SongResult(track=task.track)
    try:
        references, estimates, mixture, rate, notes = load_song(
            Path(task.ref_song), Path(task.est_song), stems
        )
        result.notes = notes
        result.usdr = usdr(references, estimates)
        result.csdr = csdr(references, estimates, win=rate, hop=rate)
        if task.baseline is not None:
            result.mixture_usdr = _from_json(task.baseline["uSDR"])
            result.mixture_csdr = _from_json(task.baseline["cSDR"])
            result.baseline_cached = True
        else:
            baseline = mixture_estimates(mixture, len(stems))
            result.mixture_usdr = usdr(references, baseline)
            result.mixture_csdr = csdr(references, baseline, win=rate, hop=rate)
        for system, values in (
            ("model", result.csdr),
            (MIXTURE_SYSTEM, result.mixture_csdr),
        ):
            if np.isnan(values).any():
                result.notes.append(
                    f"{system} cSDR undefined (silent windows only) for "
                    + ", ".join(s for s, v in zip(stems, values) if np.isnan(v))
                )
    except SongError as error:
        result.error = str(error)
    except Exception as error:  # one broken song must not stop the evaluation
        result.error = f"scoring failed: {type(error).__name__}: {error}"
    return result


def reference_fingerprint(ref_song: Path, stems: Sequence[str]) -> str:
    """What a cached baseline score depends on: the stems, sizes and mtimes of files."""
    parts = [f"v{BASELINE_CACHE_VERSION}", "stems=" + ",".join(stems)]
    for name in [f"{stem}.wav" for stem in stems] + [MIXTURE_FILE]:
        path = ref_song / name
        if path.exists():
            stat = path.stat()
            parts.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}")
        else:
            parts.append(f"{name}:absent")
    return "|".join(parts)


def load_baseline_cache(path: Optional[Path]) -> Dict[str, dict]:
    """Cache entries: ``{reference song folder: {"fingerprint", "uSDR", "cSDR"}}``."""
    if path is None or not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text())["songs"]
        if not isinstance(entries, dict):
            raise TypeError("'songs' is not a mapping")
        return entries
    except (ValueError, KeyError, TypeError) as error:
        logging.warning("ignoring the unreadable baseline cache %s (%s)", path, error)
        return {}


def find_songs(ref_dir: Path, est_dir: Path) -> List[str]:
    """Sorted song folders of ``ref_dir``; warns about estimates with no reference."""
    if not ref_dir.is_dir():
        raise ValueError(f"--ref_dir {ref_dir} is not a folder")
    if not est_dir.is_dir():
        raise ValueError(f"--est_dir {est_dir} is not a folder")
    songs = sorted(p.name for p in ref_dir.iterdir() if p.is_dir())
    if not songs:
        raise ValueError(
            f"--ref_dir {ref_dir} holds no song folders; expected "
            "<ref_dir>/<song>/<stem>.wav (MUSDB18-HQ layout)"
        )
    extra = sorted(
        p.name for p in est_dir.iterdir() if p.is_dir() and p.name not in set(songs)
    )
    if extra:
        logging.warning(
            "%d estimate folder(s) without a reference are ignored: %s",
            len(extra),
            ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else ""),
        )
    return songs


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


def write_outputs(
    out_dir: Path,
    results: Sequence[SongResult],
    stems: Sequence[str],
    tag: str,
    ref_dir: Path,
    est_dir: Path,
) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Write scores.csv, summary.json, the plot and RESULTS.md; return the summaries."""
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
    text = json.dumps(_nan_to_none(summary_json), indent=2, allow_nan=False)
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


def main(cmd: Optional[Sequence[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(cmd)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    if args.nj < 1:
        parser.error(f"--nj must be >= 1, got {args.nj}")
    if len(set(args.stems)) != len(args.stems):
        parser.error(f"--stems has duplicates: {args.stems}")
    if MIXTURE_FILE[: -len(".wav")] in args.stems:
        parser.error("--stems must not contain 'mixture' (it is the baseline input)")
    tag = args.tag or args.est_dir.resolve().name
    if tag == MIXTURE_SYSTEM:
        parser.error(f"--tag {MIXTURE_SYSTEM!r} is the baseline's name; choose another")
    try:
        songs = find_songs(args.ref_dir, args.est_dir)
    except ValueError as error:
        parser.error(str(error))

    stems = tuple(args.stems)
    cache = load_baseline_cache(args.baseline_cache)
    tasks, fingerprints = [], {}
    for song in songs:
        ref_song = args.ref_dir / song
        key = str(ref_song.resolve())
        fingerprints[song] = (key, reference_fingerprint(ref_song, stems))
        cached = cache.get(key)
        if cached is not None and cached.get("fingerprint") != fingerprints[song][1]:
            cached = None  # the references changed
        tasks.append(
            SongTask(song, str(ref_song), str(args.est_dir / song), stems, cached)
        )
    logging.info(
        "scoring %d song(s) of %s against %s with %d job(s)",
        len(tasks),
        args.est_dir,
        args.ref_dir,
        args.nj,
    )
    results: List[SongResult] = []
    bar = tqdm(total=len(tasks), desc="scoring", unit="song")
    if args.nj == 1 or len(tasks) == 1:
        for task in tasks:
            results.append(_report(score_song(task)))
            bar.update()
    else:
        n_workers = min(args.nj, len(tasks))
        # spawn: workers start clean; they read the BLAS thread counts when they import
        # numpy, so share the cores between them instead of oversubscribing
        threads = str(max(1, (os.cpu_count() or 1) // n_workers))
        saved = {var: os.environ.get(var) for var in _THREAD_VARIABLES}
        for var in _THREAD_VARIABLES:
            os.environ.setdefault(var, threads)
        try:
            context = multiprocessing.get_context("spawn")
            with context.Pool(n_workers) as pool:
                for result in pool.imap_unordered(score_song, tasks):
                    results.append(_report(result))
                    bar.update()
        finally:
            for var, value in saved.items():
                if value is None:
                    os.environ.pop(var, None)
    bar.close()
    results.sort(key=lambda r: r.track)
    if args.baseline_cache is not None:
        _update_baseline_cache(args.baseline_cache, cache, results, fingerprints)

    n_ok = sum(r.error is None for r in results)
    if n_ok == 0:
        logging.error(
            "no song could be scored (%d skipped); nothing written to %s",
            len(results),
            args.out_dir,
        )
        return 1
    summaries = write_outputs(
        args.out_dir, results, stems, tag, args.ref_dir, args.est_dir
    )
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
            args.out_dir / "RESULTS.md",
        )
    logging.info("wrote %s", args.out_dir / "RESULTS.md")
    return 0


def _report(result: SongResult) -> SongResult:
    if result.error is not None:
        logging.warning("skipping song %r: %s", result.track, result.error)
    for note in result.notes:
        logging.info("song %r: %s", result.track, note)
    return result


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _update_baseline_cache(
    path: Path,
    cache: Dict[str, dict],
    results: Sequence[SongResult],
    fingerprints: Dict[str, Tuple[str, str]],
) -> None:
    new = [r for r in results if r.error is None and not r.baseline_cached]
    if not new:
        return
    for result in new:
        key, fingerprint = fingerprints[result.track]
        cache[key] = {
            "fingerprint": fingerprint,
            "uSDR": _nan_to_none([float(v) for v in result.mixture_usdr]),
            "cSDR": _nan_to_none([float(v) for v in result.mixture_csdr]),
        }
    text = json.dumps({"version": BASELINE_CACHE_VERSION, "songs": cache}, indent=1)
    atomic_write_text(path, text + "\n")
    logging.info("baseline scores of %d song(s) cached in %s", len(new), path)


def _from_json(values: Sequence[Optional[float]]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _nan_to_none(value):
    if isinstance(value, dict):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(item) for item in value]
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def _line(row: Dict[str, float]) -> str:
    return " ".join(f"{key}={value:.2f}" for key, value in row.items())


if __name__ == "__main__":
    sys.exit(main())
