"""Scoring separated songs against MUSDB-style references: uSDR, cSDR, mixture baseline.

Layout: references ``<ref_dir>/<song>/<stem>.wav`` (+ ``mixture.wav``), estimates
``<est_dir>/<song>/<stem>.wav``. For every song of ``ref_dir`` the model's estimates
and the "mixture as estimate" baseline go through the same path
(:func:`score_system`): museval's BSSEval v4 window values (SDR, ISR, SIR, SAR) with
the chosen scorer, uSDR, and the window SDR on the windows where each stem is active
(:mod:`espnet2_ext.metrics.music`).

Scoring is two steps, so that a job runner can spread the songs over jobs:

1. **score** (:func:`score_songs`): each song's scores go to
   ``<out_dir>/songs/<song>.json`` (:data:`SONGS_DIR`), written atomically as the song
   is done; the file also records the options and the size and modification time of
   every input file, so that the merge can refuse results of other options or of files
   changed since.
2. **merge** (:func:`read_song_results`): the song files of every song of ``ref_dir``,
   checked, for :func:`espnet2_ext.reports.scores.write_score_report`.

A song whose references or estimates are missing, unreadable or inconsistent (sampling
rate, channels, length, non-finite samples) is recorded with a reason that names the
file, and counted as skipped; the other songs are scored (:func:`score_song` never
raises).

The baseline does not depend on the model: a baseline cache (a JSON file shared by all
systems) keeps its scores keyed by the *content* of the references (a hash of the
decoded stems and mixture, the stem names and the scorer, :func:`baseline_key`), not by
their folder, so every system scored on the same songs reuses them wherever its
``refs/`` folder is. Jobs only read the cache; the merge adds the new entries, under a
lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from tqdm import tqdm

from espnet2_ext.metrics.music import (
    BSS_METRICS,
    SCORERS,
    bss_eval_framewise,
    median_over_windows,
    mixture_estimates,
    silent_sources,
    usdr,
    window_sdr,
)
from espnet2_ext.utils.atomic import atomic_write_text, json_finite

#: The system name of the "mixture as every stem" baseline.
MIXTURE_SYSTEM = "mixture"
MIXTURE_FILE = "mixture.wav"
#: Where the score step writes one JSON file per song, inside ``out_dir``.
SONGS_DIR = "songs"
SONG_FILE_VERSION = 1
#: Version 1 caches were keyed by the reference folder; their entries are not used.
BASELINE_CACHE_VERSION = 2

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class SongError(Exception):
    """A song cannot be scored; the message says why (shown to the user)."""


@dataclass(frozen=True)
class ScoringSetup:
    """The options every song file of one scoring run shares (checked by the merge).

    Attributes:
        ref_dir: the reference folder, resolved.
        est_dir: the estimate folder, resolved.
        stems: the stems scored, in column order.
        scorer: ``"fast"`` or ``"museval"``.
    """

    ref_dir: str
    est_dir: str
    stems: Tuple[str, ...]
    scorer: str

    @classmethod
    def make(
        cls, ref_dir: Path, est_dir: Path, stems: Sequence[str], scorer: str
    ) -> "ScoringSetup":
        if scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {SCORERS}, got {scorer!r}")
        return cls(
            str(Path(ref_dir).resolve()),
            str(Path(est_dir).resolve()),
            tuple(stems),
            scorer,
        )

    def to_json(self) -> dict:
        return {
            "ref_dir": self.ref_dir,
            "est_dir": self.est_dir,
            "stems": list(self.stems),
            "scorer": self.scorer,
        }


@dataclass
class SystemScores:
    """One system's scores on one song.

    Attributes:
        bss: ``{"SDR", "ISR", "SIR", "SAR": [nstems, nwin]}``, museval's window values
            as its ``TrackStore`` keeps them; NaN in every window where a reference or
            an estimate is silent.
        usdr: [nstems]; NaN for a stem whose reference is silent in the whole song.
        active_sdr: [nstems, nwin] the window SDR of each stem where its reference is
            active, whatever the other stems do; NaN where it is silent.
    """

    bss: Dict[str, np.ndarray]
    usdr: np.ndarray
    active_sdr: np.ndarray

    @property
    def csdr(self) -> np.ndarray:
        """[nstems] museval's cSDR of the song: median of the SDR windows."""
        return median_over_windows(self.bss["SDR"])

    @property
    def active_csdr(self) -> np.ndarray:
        """[nstems] median of the window SDR over the windows where a stem is active."""
        return median_over_windows(self.active_sdr)

    def to_json(self) -> dict:
        return json_finite(
            {
                "bss": {metric: self.bss[metric].tolist() for metric in BSS_METRICS},
                "uSDR": self.usdr.tolist(),
                "active_SDR": self.active_sdr.tolist(),
            }
        )

    @classmethod
    def from_json(cls, data: dict, nstems: int) -> "SystemScores":
        def array(values, ndim: int) -> np.ndarray:
            out = np.array(values, dtype=np.float64)  # null (None) -> NaN
            if out.ndim != ndim or out.shape[0] != nstems:
                raise ValueError(f"expected {nstems} stems, got shape {out.shape}")
            return out

        return cls(
            bss={metric: array(data["bss"][metric], 2) for metric in BSS_METRICS},
            usdr=array(data["uSDR"], 1),
            active_sdr=array(data["active_SDR"], 2),
        )


@dataclass
class SongTask:
    """One song to score (the unit of work of the parallel workers)."""

    track: str
    ref_song: str
    est_song: str
    stems: Tuple[str, ...]
    scorer: str = "fast"
    device: Optional[str] = None
    #: baseline keys present in the cache: the baseline is then not computed; None:
    #: no cache (the key is not computed either)
    cached_keys: Optional[FrozenSet[str]] = None


@dataclass
class SongResult:
    """Scores of one song, or the reason it was skipped.

    Attributes:
        track: the song folder's name.
        error: why the song was skipped (names the file), or None.
        notes: remarks for the report (no mixture file, silent stems).
        rate: sampling rate; windows are 1 s (``rate`` samples), hop 1 s.
        model: the estimates' scores.
        mixture: the baseline's scores (from the cache when ``baseline_cached``).
        silent_stems: stems whose reference is silent in the whole song.
        baseline_key: the content key of the references (:func:`baseline_key`).
        baseline_cached: the baseline came from the cache.
        inputs: ``{"ref/<name>" or "est/<name>": [size, mtime_ns] or None}`` of the
            input files when the song was scored.
    """

    track: str
    error: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    rate: Optional[int] = None
    model: Optional[SystemScores] = None
    mixture: Optional[SystemScores] = None
    silent_stems: List[str] = field(default_factory=list)
    baseline_key: Optional[str] = None
    baseline_cached: bool = False
    inputs: Dict[str, Optional[List[int]]] = field(default_factory=dict)

    @property
    def num_windows(self) -> int:
        return 0 if self.model is None else self.model.bss["SDR"].shape[1]

    def systems(self, tag: str) -> Dict[str, SystemScores]:
        """``{tag: model, "mixture": baseline}`` of a scored song."""
        return {tag: self.model, MIXTURE_SYSTEM: self.mixture}


# ------------------------------------------------------------------------ one song
def _info(path: Path, what: str):
    """The header of an audio file (rate, frames, channels); a missing or unreadable
    file is a SongError that names it."""
    if not path.is_file():
        raise SongError(f"{what} {path} is missing")
    try:
        info = sf.info(str(path))
    except Exception as error:  # libsndfile's errors differ between versions
        raise SongError(f"{what} {path} is not readable audio ({error})") from None
    if info.frames <= 0:
        raise SongError(f"{what} {path} has no samples")
    return info


def _check_like(info, path: Path, reference: Tuple[Path, object]) -> None:
    """``info`` (of ``path``) has the reference's rate, channels and length."""
    ref_path, ref = reference
    problems = []
    if info.samplerate != ref.samplerate:
        problems.append(
            f"sampling rate {info.samplerate} Hz where {ref_path} has "
            f"{ref.samplerate} Hz"
        )
    if info.channels != ref.channels:
        problems.append(
            f"{info.channels} channel(s) where {ref_path} has {ref.channels}"
        )
    if info.frames != ref.frames:
        problems.append(f"{info.frames} samples where {ref_path} has {ref.frames}")
    if problems:
        raise SongError(f"{path}: " + "; ".join(problems))


def _read_into(path: Path, what: str, out: np.ndarray) -> None:
    """Decode ``path`` into ``out`` [T, C] float64 (no intermediate copy); a short read
    or a NaN/Inf sample is a SongError that names the file."""
    try:
        data, _ = sf.read(str(path), out=out)
    except Exception as error:
        raise SongError(f"{what} {path} is not readable audio ({error})") from None
    if data.shape[0] != out.shape[0]:
        raise SongError(
            f"{what} {path} holds {data.shape[0]} of the {out.shape[0]} samples its "
            "header declares (truncated?)"
        )
    bad = int(np.count_nonzero(~np.isfinite(out)))
    if bad:
        raise SongError(f"{what} {path} has {bad} NaN or infinite sample(s)")


def load_song(
    ref_song: Path, est_song: Path, stems: Sequence[str]
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int, List[str]]:
    """Read and check one song: every header first, then the samples.

    Returns:
        references [nstems, T, C], estimates [nstems, T, C], mixture [T, C], the
        sampling rate, and notes (e.g. that the mixture was made from the stems).

    Raises:
        SongError: a file is missing, unreadable or inconsistent (the message names it).
    """
    notes: List[str] = []
    ref_paths = [ref_song / f"{stem}.wav" for stem in stems]
    est_paths = [est_song / f"{stem}.wav" for stem in stems]
    mixture_path = ref_song / MIXTURE_FILE
    first = None  # (path, info) of the first reference: the other files must match
    for stem, path in zip(stems, ref_paths):
        info = _info(path, f"reference {stem!r}")
        if first is None:
            first = (path, info)
        else:
            _check_like(info, path, first)
    has_mixture = mixture_path.exists()
    if has_mixture:
        _check_like(_info(mixture_path, "reference mixture"), mixture_path, first)
    if not est_song.is_dir():
        raise SongError(f"no estimates: folder {est_song} is missing")
    for stem, path in zip(stems, est_paths):
        _check_like(_info(path, f"estimate {stem!r}"), path, first)

    shape = (len(stems), first[1].frames, first[1].channels)
    references, estimates = np.empty(shape), np.empty(shape)
    for j, stem in enumerate(stems):
        _read_into(ref_paths[j], f"reference {stem!r}", references[j])
    for j, stem in enumerate(stems):
        _read_into(est_paths[j], f"estimate {stem!r}", estimates[j])
    if has_mixture:
        mixture = np.empty(shape[1:])
        _read_into(mixture_path, "reference mixture", mixture)
    else:
        mixture = references.sum(axis=0)
        notes.append(f"no {MIXTURE_FILE}: the baseline uses the sum of the stems")
    return references, estimates, mixture, int(first[1].samplerate), notes


def score_system(
    references: np.ndarray,
    estimates: np.ndarray,
    rate: int,
    scorer: str,
    device: Optional[str] = None,
) -> SystemScores:
    """All the scores of one system on one song (1 s windows, 1 s hop).

    Args:
        references: [nstems, T, C]
        estimates: [nstems, T, C]
    """
    return SystemScores(
        bss=bss_eval_framewise(
            references, estimates, win=rate, hop=rate, scorer=scorer, device=device
        ),
        usdr=usdr(references, estimates),
        active_sdr=window_sdr(references, estimates, win=rate, hop=rate),
    )


def baseline_key(
    references: np.ndarray,
    mixture: np.ndarray,
    rate: int,
    stems: Sequence[str],
    scorer: str,
) -> str:
    """What the mixture baseline's scores depend on, as a SHA-256 hex digest: the
    decoded references and mixture (float64 samples), their shapes, the rate, the stem
    names and the scorer; not where the files are."""
    digest = hashlib.sha256()
    header = {
        "cache_version": BASELINE_CACHE_VERSION,
        "stems": list(stems),
        "scorer": scorer,
        "rate": int(rate),
        "shape": list(references.shape),
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    for audio in (*references, mixture):
        digest.update(np.ascontiguousarray(audio, dtype="<f8").tobytes())
    return digest.hexdigest()


def input_fingerprints(
    ref_song: Path, est_song: Path, stems: Sequence[str]
) -> Dict[str, Optional[List[int]]]:
    """``[size, mtime_ns]`` of every input file of a song (None if absent)."""
    files = {f"ref/{stem}.wav": ref_song / f"{stem}.wav" for stem in stems}
    files[f"ref/{MIXTURE_FILE}"] = ref_song / MIXTURE_FILE
    files.update({f"est/{stem}.wav": est_song / f"{stem}.wav" for stem in stems})
    out: Dict[str, Optional[List[int]]] = {}
    for name, path in files.items():
        try:
            stat = path.stat()
            out[name] = [stat.st_size, stat.st_mtime_ns]
        except OSError:
            out[name] = None
    return out


def score_song(task: SongTask) -> SongResult:
    """Score one song: the model's estimates and (unless cached) the mixture baseline.

    Never raises: a problem is the result's ``error``. With the baseline's key in
    ``task.cached_keys``, ``mixture`` is left None for the caller to fill from the
    cache.
    """
    stems = task.stems
    ref_song, est_song = Path(task.ref_song), Path(task.est_song)
    result = SongResult(track=task.track)
    result.inputs = input_fingerprints(ref_song, est_song, stems)
    try:
        references, estimates, mixture, rate, notes = load_song(
            ref_song, est_song, stems
        )
        result.rate = rate
        result.notes = notes
        silent = silent_sources(references)
        result.silent_stems = [s for s, quiet in zip(stems, silent) if quiet]
        if result.silent_stems:
            result.notes.append(
                "reference silent in the whole song: "
                + ", ".join(result.silent_stems)
                + " (its uSDR and cSDR are undefined; museval's cSDR is undefined "
                "for every stem of this song)"
            )
        quiet_estimates = [s for s, q in zip(stems, silent_sources(estimates)) if q]
        if quiet_estimates:
            result.notes.append(
                "estimate silent in the whole song: "
                + ", ".join(quiet_estimates)
                + " (museval's cSDR is undefined for every stem of this song)"
            )
        result.model = score_system(
            references, estimates, rate, task.scorer, task.device
        )
        if task.cached_keys is not None:
            result.baseline_key = baseline_key(
                references, mixture, rate, stems, task.scorer
            )
        if task.cached_keys and result.baseline_key in task.cached_keys:
            result.baseline_cached = True
        else:
            baseline = mixture_estimates(mixture, len(stems))
            result.mixture = score_system(
                references, baseline, rate, task.scorer, task.device
            )
    except SongError as error:
        result.error = str(error)
    except Exception as error:  # one broken song must not stop the evaluation
        result.error = f"scoring failed: {type(error).__name__}: {error}"
    return result


# -------------------------------------------------------------------- song files
def song_file(out_dir: Path, track: str) -> Path:
    return Path(out_dir) / SONGS_DIR / f"{track}.json"


def write_song_file(out_dir: Path, setup: ScoringSetup, result: SongResult) -> Path:
    """Write one song's result (strict JSON, undefined scores as null), atomically."""
    data = {
        "version": SONG_FILE_VERSION,
        "setup": setup.to_json(),
        "track": result.track,
        "error": result.error,
        "notes": result.notes,
        "rate": result.rate,
        "silent_stems": result.silent_stems,
        "baseline_key": result.baseline_key,
        "baseline_cached": result.baseline_cached,
        "inputs": result.inputs,
        "systems": None,
    }
    if result.error is None:
        data["systems"] = {
            "model": result.model.to_json(),
            MIXTURE_SYSTEM: result.mixture.to_json(),
        }
    path = song_file(out_dir, result.track)
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return atomic_write_text(path, text + "\n")


def _parse_song_file(
    path: Path, setup: ScoringSetup, ref_dir: Path, est_dir: Path
) -> SongResult:
    """One song file, checked against ``setup`` and the input files as they are now.

    Raises:
        ValueError: unreadable, of other options, or stale (names the file and why).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != SONG_FILE_VERSION:
            raise ValueError(f"version {data.get('version')!r}")
        theirs = data["setup"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path} is not a readable song result ({error})") from None
    different = [
        f"{key} {theirs.get(key)!r} (now {value!r})"
        for key, value in setup.to_json().items()
        if theirs.get(key) != value
    ]
    if different:
        raise ValueError(
            f"{path} was scored with other options: " + ", ".join(different)
        )
    track = data["track"]
    now = input_fingerprints(ref_dir / track, est_dir / track, setup.stems)
    changed = [name for name, stamp in now.items() if data["inputs"].get(name) != stamp]
    if changed:
        raise ValueError(
            f"{path} is stale: {', '.join(changed)} changed since it was scored"
        )
    result = SongResult(
        track=track,
        error=data["error"],
        notes=list(data["notes"]),
        rate=data["rate"],
        silent_stems=list(data["silent_stems"]),
        baseline_key=data["baseline_key"],
        baseline_cached=bool(data["baseline_cached"]),
        inputs=data["inputs"],
    )
    if result.error is None:
        try:
            systems = data["systems"]
            nstems = len(setup.stems)
            result.model = SystemScores.from_json(systems["model"], nstems)
            result.mixture = SystemScores.from_json(systems[MIXTURE_SYSTEM], nstems)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path} has no complete scores ({error})") from None
    return result


def read_song_results(
    out_dir: Path, songs: Sequence[str], setup: ScoringSetup
) -> List[SongResult]:
    """The score step's results for ``songs``, sorted by track.

    Raises:
        ValueError: a song file is missing, unreadable, of other options, or stale
            (every such file is named).
    """
    ref_dir, est_dir = Path(setup.ref_dir), Path(setup.est_dir)
    results, problems, missing = [], [], []
    for track in songs:
        path = song_file(out_dir, track)
        if not path.is_file():
            missing.append(track)
            continue
        try:
            results.append(_parse_song_file(path, setup, ref_dir, est_dir))
        except ValueError as error:
            problems.append(str(error))
    if missing:
        problems.insert(
            0,
            f"no result in {Path(out_dir) / SONGS_DIR} for {len(missing)} of "
            f"{len(songs)} song(s): {', '.join(missing[:5])}"
            + (" ..." if len(missing) > 5 else ""),
        )
    if problems:
        shown = problems[:5] + (
            [f"... {len(problems) - 5} more"] if len(problems) > 5 else []
        )
        raise ValueError(
            "cannot merge: "
            + "; ".join(shown)
            + ". Run the scoring jobs (--job J/N) with these options first."
        )
    return sorted(results, key=lambda r: r.track)


# ------------------------------------------------------------------ baseline cache
def _cache_lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def load_baseline_cache(path: Optional[Path]) -> Dict[str, dict]:
    """Cache entries ``{baseline key: {"stems", "scorer", "rate", "scores"}}``.

    A cache of an older version (keyed by folder) gives no entries. A file that is not
    a baseline cache is refused, so that it is never overwritten.

    Raises:
        ValueError: ``path`` exists and is not a baseline cache.
    """
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        version, entries = data["version"], data["songs"]
        if not isinstance(entries, dict):
            raise TypeError("'songs' is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"--baseline_cache {path} is not a baseline cache written by music_score "
            f"({error}); it is left as it is: give another file"
        ) from None
    if version != BASELINE_CACHE_VERSION:
        logging.info(
            "baseline cache %s is of version %s (keyed by folder): its entries are "
            "not used and will be replaced",
            path,
            version,
        )
        return {}
    return entries


def fill_cached_baselines(
    results: Sequence[SongResult], cache: Dict[str, dict], stems: Sequence[str]
) -> None:
    """Put the cached baseline scores into the results that skipped the baseline."""
    for result in results:
        if result.error is None and result.baseline_cached:
            entry = cache[result.baseline_key]
            result.mixture = SystemScores.from_json(entry["scores"], len(stems))


def update_baseline_cache(
    path: Path, results: Sequence[SongResult], stems: Sequence[str], scorer: str
) -> int:
    """Add the baselines computed in this run to the cache file at ``path``.

    Read-modify-write under an exclusive lock on ``<path>.lock``, so that systems
    merged at the same time do not lose each other's entries; the file is replaced
    atomically. Returns the number of entries added.
    """
    new = [
        r
        for r in results
        if r.error is None
        and not r.baseline_cached
        and r.mixture is not None
        and r.baseline_key is not None
    ]
    if not new:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(_cache_lock_path(path), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            cache = load_baseline_cache(path)
            for result in new:
                cache[result.baseline_key] = {
                    "stems": list(stems),
                    "scorer": scorer,
                    "rate": result.rate,
                    "scores": result.mixture.to_json(),
                }
            data = {"version": BASELINE_CACHE_VERSION, "songs": cache}
            text = json.dumps(data, allow_nan=False, separators=(",", ":"))
            atomic_write_text(path, text + "\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    logging.info("baseline scores of %d song(s) cached in %s", len(new), path)
    return len(new)


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


def job_songs(songs: Sequence[str], job: int, num_jobs: int) -> List[str]:
    """The songs of job ``job`` of ``num_jobs`` (1-based, as the job runner's JOB):
    every ``num_jobs``-th song starting at the ``job``-th."""
    if not 1 <= job <= num_jobs:
        raise ValueError(f"job {job} of {num_jobs}: need 1 <= J <= N")
    return list(songs[job - 1 :: num_jobs])


def score_songs(
    setup: ScoringSetup,
    songs: Sequence[str],
    out_dir: Path,
    *,
    nj: int = 1,
    device: Optional[str] = None,
    baseline_cache: Optional[Path] = None,
) -> List[SongResult]:
    """Score ``songs`` with ``nj`` processes into ``<out_dir>/songs/``; sorted results.

    Each song's file is written as soon as it is done. Skipped songs are logged as
    warnings, notes as info. Cached baselines (``baseline_cache``) are used, not
    written: :func:`update_baseline_cache` does that at the merge.
    """
    stems = setup.stems
    ref_dir, est_dir = Path(setup.ref_dir), Path(setup.est_dir)
    cache = load_baseline_cache(baseline_cache)
    tasks = [
        SongTask(
            song,
            str(ref_dir / song),
            str(est_dir / song),
            stems,
            setup.scorer,
            device,
            None if baseline_cache is None else frozenset(cache),
        )
        for song in songs
    ]
    logging.info(
        "scoring %d song(s) of %s against %s with %d process(es), %s scorer",
        len(tasks),
        est_dir,
        ref_dir,
        min(nj, max(len(tasks), 1)),
        setup.scorer,
    )
    results: List[SongResult] = []

    def done(result: SongResult) -> None:
        fill_cached_baselines([result], cache, stems)
        write_song_file(out_dir, setup, result)
        results.append(_report(result))
        bar.update()

    bar = tqdm(total=len(tasks), desc="scoring", unit="song")
    if nj == 1 or len(tasks) <= 1:
        for task in tasks:
            done(score_song(task))
    else:
        n_workers = min(nj, len(tasks))
        # spawn: workers start clean; they read the thread counts when they import
        # numpy and torch, so share the cores between them instead of oversubscribing
        threads = str(max(1, (os.cpu_count() or 1) // n_workers))
        saved = {var: os.environ.get(var) for var in _THREAD_VARIABLES}
        for var in _THREAD_VARIABLES:
            os.environ.setdefault(var, threads)
        try:
            context = multiprocessing.get_context("spawn")
            with context.Pool(n_workers) as pool:
                for result in pool.imap_unordered(score_song, tasks):
                    done(result)
        finally:
            for var, value in saved.items():
                if value is None:
                    os.environ.pop(var, None)
    bar.close()
    cached = sum(r.baseline_cached for r in results)
    if cached:
        logging.info(
            "mixture baseline of %d of %d song(s) taken from the cache %s",
            cached,
            len(results),
            baseline_cache,
        )
    return sorted(results, key=lambda r: r.track)


def _report(result: SongResult) -> SongResult:
    if result.error is not None:
        logging.warning("skipping song %r: %s", result.track, result.error)
    for note in result.notes:
        logging.info("song %r: %s", result.track, note)
    return result
