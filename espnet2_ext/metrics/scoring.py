"""Scoring separated songs against MUSDB-style references: uSDR, cSDR, mixture baseline.

Layout: references ``<ref_dir>/<song>/<stem>.wav`` (+ ``mixture.wav``), estimates
``<est_dir>/<song>/<stem>.wav``. For every song present in ``ref_dir`` the model's
estimates and the "mixture as estimate" baseline are scored per stem (uSDR and museval's
cSDR, :mod:`espnet2_ext.metrics.music`).

A song whose references or estimates are missing, unreadable or inconsistent (sampling
rate, channels, length, non-finite samples) is reported with the reason and skipped;
the other songs are scored (:func:`score_song` never raises).

The baseline does not depend on the model: a baseline cache (a JSON file) keeps its
scores per reference song, so that scoring further systems on the same references pays
for one museval pass per song instead of two. An entry is invalidated when a reference
file changes (:func:`reference_fingerprint`).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from tqdm import tqdm

from espnet2_ext.metrics.music import csdr, mixture_estimates, usdr
from espnet2_ext.utils.atomic import atomic_write_text, json_finite

#: The system name of the "mixture as every stem" baseline.
MIXTURE_SYSTEM = "mixture"
BASELINE_CACHE_VERSION = 1
MIXTURE_FILE = "mixture.wav"

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class SongError(Exception):
    """A song cannot be scored; the message says why (shown to the user)."""


@dataclass
class SongTask:
    """One song to score (the unit of work of the parallel jobs)."""

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


# ------------------------------------------------------------------------ one song
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
        problems.append(f"{audio.shape[0]} samples, the reference has {ref_shape[0]}")
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


def _from_json(values: Sequence[Optional[float]]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


# ------------------------------------------------------------------ baseline cache
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


def update_baseline_cache(
    path: Path,
    cache: Dict[str, dict],
    results: Sequence[SongResult],
    fingerprints: Dict[str, Tuple[str, str]],
) -> None:
    """Add the baselines computed in this run to ``cache`` and write it to ``path``.

    Args:
        fingerprints: ``{track: (cache key, fingerprint)}``.
    """
    new = [r for r in results if r.error is None and not r.baseline_cached]
    if not new:
        return
    for result in new:
        key, fingerprint = fingerprints[result.track]
        cache[key] = {
            "fingerprint": fingerprint,
            "uSDR": json_finite([float(v) for v in result.mixture_usdr]),
            "cSDR": json_finite([float(v) for v in result.mixture_csdr]),
        }
    text = json.dumps({"version": BASELINE_CACHE_VERSION, "songs": cache}, indent=1)
    atomic_write_text(path, text + "\n")
    logging.info("baseline scores of %d song(s) cached in %s", len(new), path)


# ------------------------------------------------------------------------ folders
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


def score_songs(
    ref_dir: Path,
    est_dir: Path,
    songs: Sequence[str],
    stems: Sequence[str],
    nj: int = 1,
    baseline_cache: Optional[Path] = None,
) -> List[SongResult]:
    """Score ``songs`` (from :func:`find_songs`) with ``nj`` processes, sorted by track.

    Skipped songs are logged as warnings, notes as info. With ``baseline_cache``, cached
    baselines are reused and new ones written back.
    """
    stems = tuple(stems)
    cache = load_baseline_cache(baseline_cache)
    tasks, fingerprints = [], {}
    for song in songs:
        ref_song = ref_dir / song
        key = str(ref_song.resolve())
        fingerprints[song] = (key, reference_fingerprint(ref_song, stems))
        cached = cache.get(key)
        if cached is not None and cached.get("fingerprint") != fingerprints[song][1]:
            cached = None  # the references changed
        tasks.append(SongTask(song, str(ref_song), str(est_dir / song), stems, cached))
    logging.info(
        "scoring %d song(s) of %s against %s with %d job(s)",
        len(tasks),
        est_dir,
        ref_dir,
        nj,
    )
    results: List[SongResult] = []
    bar = tqdm(total=len(tasks), desc="scoring", unit="song")
    if nj == 1 or len(tasks) == 1:
        for task in tasks:
            results.append(_report(score_song(task)))
            bar.update()
    else:
        n_workers = min(nj, len(tasks))
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
    if baseline_cache is not None:
        update_baseline_cache(baseline_cache, cache, results, fingerprints)
    return results


def _report(result: SongResult) -> SongResult:
    if result.error is not None:
        logging.warning("skipping song %r: %s", result.track, result.error)
    for note in result.notes:
        logging.info("song %r: %s", result.track, note)
    return result
