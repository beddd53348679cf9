"""Unlabeled music (FMA, or a folder of one's own) → ``segment_sound`` items for MixIT.

Two sources, one set of rules:

* FMA, the real layout ``ROOT/fma_{small,medium,large,full}/NNN/NNNNNN.mp3`` (and
  ``ROOT/fma_metadata/tracks.csv`` when present): ``--root ROOT --subset large``;
* a plain folder of mixtures in any format the project reads (WAV, FLAC, MP3, OGG/Opus,
  M4A/AAC, AIFF …; sub-folders are searched too): ``--unlabeled-dir DIR``. Files that
  libsndfile cannot read (M4A, AAC …) are decoded by the separation command's decoder,
  :func:`espnet2_ext.separation.audio.read_audio` (ffmpeg), into the decoded cache.

Per file (seeds/002 §3.1 and the authors' ``recipes/fma/scripts/chunking_sad.py``):

* tracks sampled below 44.1 kHz and mono tracks are dropped (and more than two
  channels, which FMA does not have); tracks above 44.1 kHz are resampled
  (``scipy.signal.resample_poly``, a polyphase filter);
* the track is cut into ``segment_seconds`` (10 s) segments every ``hop_seconds`` (5 s);
  tracks shorter than one segment are dropped;
* a segment is split into ``num_chunks`` (20) chunks and is *silent* when at least
  ``num_chunks // 2`` of them are silent chunks.

How the last segment, a silent chunk and a silent segment are handled is chosen by three
options; the defaults are the authors' released code, which produced the published
models (DESIGN.md §3), and ours (the earlier default here) is one option away:

=====================  =====================================  ==========================
option                 authors (default)                      ours
=====================  =====================================  ==========================
``last_segment``       ``end_aligned``: one segment per hop   ``complete``: only hop
                       position ``t`` < track length; a       positions whose whole
                       segment that runs past the end is      segment fits; the rest of
                       moved back to end at the track's end   the track is not used
                       (so it can appear twice: a 30 s track
                       gives starts 0, 5, 10, 15, 20, 20 s)
``silence``            ``zero``: a chunk is silent only when  ``below_db``: a chunk is
                       its energy (sum of squares, both       silent when its mean
                       channels) is exactly 0                 square is below
                                                              ``silence_db`` (−60 dBFS)
``silent_segment``     ``drop_track``: one silent segment     ``drop_segment``: only
                       drops the whole track                  that segment is dropped
=====================  =====================================  ==========================

With ``end_aligned`` the silence test of a hop position looks at the samples from ``t``
to the end of the track when the segment would run past it (as the authors' code does).

Reading: 44.1 kHz files libsndfile reads (MP3, WAV, FLAC …) are read in place unless
``cache_all``; resampled files and files libsndfile cannot read always go into the
decoded cache ``--cache`` (``CACHE/<file's relative path>.flac``: 16-bit FLAC, or 32-bit
float WAV ``….wav`` when the decoded track exceeds full scale; reused when newer than
the source). ``cache_all`` decodes every readable file into the cache: FLAC seeks
sample-exactly, so a training read decodes only the samples it needs, while an MP3 read
decodes from the file's start (:mod:`espnet2_ext.train.dataset`). Measured
(``benchmarks/bench_data_throughput.py``, docs/benchmarks.md): mixture of mixtures from
30 s MP3s runs at 2.3× fewer examples per second per loader worker than from the cache,
and the estimated appetite of one H100 training the medium model still fits in 8
workers with MP3 read in place, so that stays the default; the small model needs
``--cache-all`` to be fed by 8 workers. The rules below are applied to the samples
training will read: the file read in place by libsndfile, or the cache file as written
(16-bit). The cache keeps the files of dropped tracks too (a rerun with other rules
reuses them).

Unreadable, corrupt and empty files are reported (a count per reason on the log, the list
in ``OUT/skipped.tsv``) and skipped; they are never fatal on their own.

Split: for FMA with ``tracks.csv``, FMA's own ``set/split`` column: ``training`` → train,
``validation`` → valid (``test`` unused). Files without such a split (every file of an
unlabeled folder) go to valid in SHA-1 order of their id, ``valid_percent`` (5 %) of them
rounded. Mixture of mixtures pairs segments of two *different* files in training and in
validation, so the split keeps at least two files on each side: a small set gets two
validation files whatever the percentage, and a set of fewer than four usable files, or a
``valid_percent`` that leaves fewer than two training files, is an error that says so
before anything is written. Validation stays small: one segment (the first kept) per
valid file, at most ``max_valid_segments`` files (in SHA-1 order). Deterministic.

Writes ``OUT/{train,valid}/`` with ``mix_segments.scp`` (``uid path start end``; uid
``<file id>-<hop position>``), ``utt2spk`` / ``spk2utt`` (segment → file),
``utt2num_samples``, ``speech_ref1_shape`` (``uid T,C``), plus ``OUT/skipped.tsv`` and
``OUT/prep_report.txt``; written to a temporary folder and moved into place at the end.

Usage::

    python -m espnet2_ext.datasets.fma --root /data/fma --subset large --out data/fma \\
        --cache dump/fma_decoded --nj 8
    python -m espnet2_ext.datasets.fma --unlabeled-dir ~/my_mixtures --out data/fma
"""

from __future__ import annotations

import argparse
import collections
import csv
import hashlib
import logging
import math
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly
from tqdm import tqdm

from espnet2_ext.constants import MUSIC_SAMPLE_RATE
from espnet2_ext.train.dataset import (
    SoundSegment,
    format_segment_line,
    segment_shape_line,
)
from espnet2_ext.utils.atomic import atomic_write_bytes
from espnet2_ext.utils.audio_io import encode_audio

FMA_SUBSETS = ("small", "medium", "large", "full")

LAST_SEGMENT_CHOICES = ("end_aligned", "complete")
SILENCE_CHOICES = ("zero", "below_db")
SILENT_SEGMENT_CHOICES = ("drop_track", "drop_segment")

#: Mixture of mixtures needs two different files in training and in validation.
MIN_FILES_PER_SPLIT = 2

# statuses of a file
KEPT = "kept"
DROPPED = "dropped"  # by a rule (rate, channels, length, silence)
UNREADABLE = "unreadable"  # empty, corrupt, not audio


@dataclass(frozen=True)
class FmaConfig:
    """Segmenting and filtering rules (defaults: the authors' released code).

    Args:
        sample_rate: the rate segments are cut at; lower rates are dropped.
        segment_seconds: segment length (10 s, seeds/002 §3.1).
        hop_seconds: segment hop (5 s).
        num_chunks: chunks per segment for the silence test (20, ``chunking_sad.py``).
        last_segment: ``end_aligned`` (authors) or ``complete`` (ours), see the module
            docstring.
        silence: ``zero`` (authors: a chunk is silent only at energy exactly 0) or
            ``below_db`` (ours: mean square below ``silence_db``).
        silence_db: the threshold of ``below_db`` (dBFS of the mean square).
        silent_segment: ``drop_track`` (authors) or ``drop_segment`` (ours).
        cache_all: decode every kept file into the cache (not only resampled ones and
            those libsndfile cannot read).
    """

    sample_rate: int = MUSIC_SAMPLE_RATE
    segment_seconds: float = 10.0
    hop_seconds: float = 5.0
    num_chunks: int = 20
    last_segment: str = "end_aligned"
    silence: str = "zero"
    silence_db: float = -60.0
    silent_segment: str = "drop_track"
    cache_all: bool = False

    def __post_init__(self):
        if self.segment_seconds <= 0 or self.hop_seconds <= 0 or self.num_chunks < 1:
            raise ValueError(
                "segment_seconds, hop_seconds and num_chunks must be positive"
            )
        for name, choices in (
            ("last_segment", LAST_SEGMENT_CHOICES),
            ("silence", SILENCE_CHOICES),
            ("silent_segment", SILENT_SEGMENT_CHOICES),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"{name} must be one of {choices}, got {getattr(self, name)!r}"
                )

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_seconds * self.sample_rate))


@dataclass
class TrackResult:
    """What happened to one file."""

    track: str  # the file's id: FMA track id, or a uid made from its path
    source: str
    status: str
    reason: str = ""
    audio: str = ""  # the file the segments point into (the source or its cache)
    channels: int = 0
    resampled: bool = False
    cached: bool = False
    segments: List[Tuple[int, int]] = field(default_factory=list)  # (position, start)


# ---------------------------------------------------------------------- segmenting


def silent_chunks(window: np.ndarray, config: FmaConfig) -> int:
    """Number of silent chunks among the ``num_chunks`` of ``window`` ([T, C]).

    Chunk ``i`` is samples ``[i·c, (i+1)·c)``, ``c = T // num_chunks`` (the last
    ``T mod num_chunks`` samples are not tested, as in the authors' code); a window
    shorter than ``num_chunks`` samples has empty chunks, all silent.
    """
    n = config.num_chunks
    chunk = window.shape[0] // n
    if chunk == 0:
        return n
    blocks = window[: chunk * n].reshape(n, chunk * window.shape[1])
    energy = np.sum(np.square(blocks, dtype=np.float64), axis=1)  # [num_chunks]
    if config.silence == "zero":
        return int(np.sum(energy == 0.0))
    floor = 10.0 ** (config.silence_db / 10.0)
    return int(np.sum(energy / (chunk * window.shape[1]) < floor))


def segment_starts(
    audio: np.ndarray, config: FmaConfig
) -> Tuple[List[Tuple[int, int]], str]:
    """The segments of a track under ``config``'s rules.

    Args:
        audio: the track, ``[T, C]`` at ``config.sample_rate``.

    Returns:
        (``[(hop position, start sample)]``, reason): the list is empty when the track
        is dropped, and ``reason`` says why.
    """
    length, hop = config.segment_samples, config.hop_samples
    total = audio.shape[0]
    if total < length:
        return [], f"shorter than a segment ({total / config.sample_rate:.1f} s)"
    segments = []
    for position, t in enumerate(range(0, total, hop)):
        if t + length > total and config.last_segment == "complete":
            break
        window = audio[t : t + length]  # runs to the end of the track past it
        if silent_chunks(window, config) >= config.num_chunks // 2:
            if config.silent_segment == "drop_track":
                return [], (
                    f"segment at {t / config.sample_rate:.1f} s is silent "
                    "(the authors' rule drops the track)"
                )
            continue
        segments.append((position, min(t, total - length)))
    if not segments:
        return [], "every segment is mostly silent"
    return segments, ""


# ---------------------------------------------------------------------- decoding


def decode_file(path: str) -> Tuple[np.ndarray, int]:
    """Decode a whole file with the project's decoder: (float32 ``[T, C]``, rate).

    :func:`espnet2_ext.separation.audio.read_audio`: libsndfile, or ffmpeg for the
    formats libsndfile does not read (and for MP3 where ffmpeg is installed: libsndfile
    stops early in some VBR MP3s); raises for what it cannot decode. Used for files that
    go into the decoded cache; files read in place are decoded with libsndfile, as the
    training loader will read them.
    """
    from espnet2_ext.separation.audio import read_audio

    wave, rate = read_audio(path)  # [C, T]
    return np.ascontiguousarray(wave.numpy().T), int(rate)


def _exact_with_libsndfile(path: str) -> bool:
    """Whether libsndfile reads ``path``'s format with its full length (WAV, FLAC,
    OGG …: :data:`espnet2_ext.separation.audio.LIBSNDFILE_EXTENSIONS`)."""
    from espnet2_ext.separation.audio import LIBSNDFILE_EXTENSIONS

    return os.path.splitext(path)[1].lower() in LIBSNDFILE_EXTENSIONS


def probe_file(path: str) -> Tuple[int, int, Optional[np.ndarray]]:
    """(rate, channels, decoded audio or None) of a file; raises when nothing reads it.

    libsndfile's header read when it knows the format (audio None); otherwise the whole
    file is decoded (:func:`decode_file`) and returned, so it is decoded once.
    """
    try:
        info = sf.info(path)
        return int(info.samplerate), int(info.channels), None
    except Exception:  # libsndfile raises several error types
        audio, rate = decode_file(path)
        return rate, int(audio.shape[1]), audio


def cache_candidates(cache_dir: str, rel: str) -> Tuple[str, str]:
    """(FLAC, float WAV) cache paths of the file at ``rel`` (relative to its root)."""
    base = os.path.join(cache_dir, rel)
    return base + ".flac", base + ".wav"


def _read_cache(cache_dir: str, rel: str, source: str, rate: int):
    """(path, audio) of a usable cache entry, or None."""
    for path in cache_candidates(cache_dir, rel):
        try:
            if os.path.getmtime(path) < os.path.getmtime(source):
                continue  # the source changed after the cache was written
            audio, file_rate = sf.read(path, dtype="float32", always_2d=True)
        except Exception:
            continue
        if file_rate == rate:
            return path, audio
    return None


def _write_cache(cache_dir: str, rel: str, audio: np.ndarray, rate: int) -> str:
    """Write the decoded track: 16-bit FLAC, or float WAV if it exceeds full scale."""
    flac, wav = cache_candidates(cache_dir, rel)
    exceeds = bool(np.max(np.abs(audio), initial=0.0) > 1.0)
    path, other = (wav, flac) if exceeds else (flac, wav)
    if exceeds:
        data, _ = encode_audio(audio, rate, "wav", "float")
    else:
        data, _ = encode_audio(audio, rate, "flac", "16")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_bytes(path, data)
    if os.path.exists(other):  # an older entry in the other format
        os.remove(other)
    return path


def process_track(
    track: str, source: str, cache_dir: str, config: FmaConfig, rel: str
) -> TrackResult:
    """Filter, resample if needed, and segment one file (never raises for bad files)."""
    result = TrackResult(track=track, source=source, status=UNREADABLE)
    try:
        if os.path.getsize(source) == 0:
            result.reason = "empty file (0 bytes)"
            return result
        rate, channels, audio = probe_file(source)
    except Exception as err:
        result.reason = f"not readable as audio ({type(err).__name__}: {err})"
        return result
    result.status = DROPPED
    if rate < config.sample_rate:
        result.reason = f"sample rate {rate} Hz < {config.sample_rate}"
        return result
    if channels != 2:
        result.reason = "mono" if channels == 1 else f"{channels} channels"
        return result
    result.resampled = rate != config.sample_rate
    result.cached = result.resampled or audio is not None or config.cache_all
    try:
        found = (
            _read_cache(cache_dir, rel, source, config.sample_rate)
            if result.cached
            else None
        )
        if found is not None:
            cache_path, audio = found
        else:
            cache_path = ""
            if audio is None and result.cached and not _exact_with_libsndfile(source):
                audio, rate = decode_file(source)
            elif audio is None:  # as the training loader reads it: libsndfile
                audio, rate = sf.read(source, dtype="float32", always_2d=True)
            if rate != config.sample_rate:
                g = math.gcd(rate, config.sample_rate)
                audio = resample_poly(
                    audio, config.sample_rate // g, rate // g, axis=0
                ).astype(np.float32)
            if result.cached and audio.shape[0] > 0:
                # segment what training will read: the cache as written (16-bit)
                cache_path = _write_cache(cache_dir, rel, audio, config.sample_rate)
                audio, _ = sf.read(cache_path, dtype="float32", always_2d=True)
    except Exception as err:
        result.status = UNREADABLE
        result.reason = f"decoding failed ({type(err).__name__}: {err})"
        return result
    if audio.shape[0] == 0:
        result.status = UNREADABLE
        result.reason = "the file holds no samples"
        return result
    result.channels = audio.shape[1]
    result.segments, result.reason = segment_starts(audio, config)
    if not result.segments:
        return result
    result.audio = os.path.abspath(cache_path if result.cached else source)
    result.status = KEPT
    return result


def _process_star(args) -> TrackResult:
    return process_track(*args)


# ---------------------------------------------------------------------- inputs


def find_tracks(root: str, subset: str) -> List[Tuple[str, str]]:
    """``(track id, path)`` of every ``NNN/NNNNNN.mp3`` of ``ROOT/fma_{subset}``.

    Raises:
        ValueError: unknown subset, missing folder, or no MP3 in it.
    """
    if subset not in FMA_SUBSETS:
        raise ValueError(f"--subset must be one of {FMA_SUBSETS}, got {subset!r}")
    if not os.path.isdir(root):
        raise ValueError(f"FMA root {root!r} does not exist or is not a folder")
    folder = os.path.join(root, f"fma_{subset}")
    if not os.path.isdir(folder):
        raise ValueError(
            f"{folder} does not exist: the layout is ROOT/fma_{subset}/NNN/NNNNNN.mp3 "
            f"(found: {sorted(os.listdir(root))})"
        )
    tracks = []
    for sub in sorted(os.listdir(folder)):
        sub_path = os.path.join(folder, sub)
        if not os.path.isdir(sub_path):
            continue
        for name in sorted(os.listdir(sub_path)):
            if name.lower().endswith(".mp3"):
                tracks.append((os.path.splitext(name)[0], os.path.join(sub_path, name)))
    if not tracks:
        raise ValueError(f"no NNN/*.mp3 file under {folder}")
    return tracks


def file_uid(rel: str) -> str:
    """A whitespace-free id of a file from its relative path (extension kept)."""
    uid = re.sub(r"[^A-Za-z0-9._-]+", "_", rel).strip("_")
    return uid or "file"


def find_unlabeled(folder: str) -> List[Tuple[str, str]]:
    """``(file id, path)`` of every audio file under ``folder`` (sorted by path).

    Audio files are those with an extension of
    :data:`espnet2_ext.separation.audio.AUDIO_EXTENSIONS` (what the separation command
    reads: libsndfile's formats and ffmpeg's M4A/AAC, Opus, WMA …); others are ignored.

    Raises:
        ValueError: the folder does not exist or holds no audio file.
    """
    from espnet2_ext.separation.audio import AUDIO_EXTENSIONS

    if not os.path.isdir(folder):
        raise ValueError(
            f"unlabeled folder {folder!r} does not exist or is not a folder"
        )
    files, ignored = [], []
    for dirpath, dirnames, names in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(names):
            path = os.path.join(dirpath, name)
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS:
                files.append(path)
            else:
                ignored.append(os.path.relpath(path, folder))
    if ignored:
        logging.info(
            f"{len(ignored)} file(s) in {folder} are not audio by their extension and "
            f"were ignored (e.g. {ignored[0]})"
        )
    if not files:
        raise ValueError(
            f"no audio file ({', '.join(e[1:] for e in AUDIO_EXTENSIONS)}) in {folder}"
        )
    tracks, used = [], set()
    for path in files:
        uid = base = file_uid(os.path.relpath(path, folder))
        suffix = 2
        while uid in used:
            uid, suffix = f"{base}_{suffix}", suffix + 1
        used.add(uid)
        tracks.append((uid, path))
    return tracks


def read_fma_splits(tracks_csv: str) -> Dict[str, str]:
    """``{track id (6 digits): "training" | "validation" | "test"}`` from tracks.csv.

    The file has two header rows (column groups, then names: ``set``/``split``) and a
    third row starting with ``track_id``. Returns ``{}`` with a warning when the column
    is not found.
    """
    with open(tracks_csv, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            top, sub = next(reader), next(reader)
        except StopIteration:
            top, sub = [], []
        column = next(
            (
                i
                for i, (a, b) in enumerate(zip(top, sub))
                if a.strip() == "set" and b.strip() == "split"
            ),
            None,
        )
        if column is None:
            logging.warning(f"{tracks_csv}: no set/split column; splitting by hash")
            return {}
        splits = {}
        for row in reader:
            if len(row) <= column or not row[0].strip().isdigit():
                continue  # the "track_id" row, blank lines
            splits[f"{int(row[0]):06d}"] = row[column].strip()
    return splits


# ---------------------------------------------------------------------- split


def _hash_fraction(track: str) -> float:
    return int(hashlib.sha1(track.encode("utf-8")).hexdigest()[:12], 16) / 16.0**12


def assign_splits(
    tracks: Sequence[str],
    metadata: Dict[str, str],
    valid_percent: float,
) -> Dict[str, str]:
    """``{track: "train" | "valid" | "unused"}`` (see the module docstring).

    Raises:
        ValueError: fewer than four tracks, or a ``valid_percent`` that leaves fewer
            than two training tracks (the message names ``--valid_percent``).
    """
    if not 0.0 <= valid_percent < 100.0:
        raise ValueError(f"--valid_percent must be in [0, 100), got {valid_percent}")
    need = 2 * MIN_FILES_PER_SPLIT
    if len(tracks) < need:
        raise ValueError(
            f"{len(tracks)} usable file(s): MixIT pairs segments of two different files "
            f"in training and in validation, so it needs at least {need} usable files "
            f"({MIN_FILES_PER_SPLIT} for training, {MIN_FILES_PER_SPLIT} for "
            "validation); --valid_percent cannot help with fewer. Add files (see "
            "skipped.tsv reasons on the log for the files that were not usable)"
        )
    fma_to_ours = {"training": "train", "validation": "valid", "test": "unused"}
    splits, free = {}, []
    for track in tracks:
        if metadata.get(track) in fma_to_ours:
            splits[track] = fma_to_ours[metadata[track]]
        else:
            free.append(track)
    free.sort(key=_hash_fraction)
    count = int(round(valid_percent / 100.0 * len(free)))
    for i, track in enumerate(free):
        splits[track] = "valid" if i < count else "train"
    valid = [t for t in tracks if splits[t] == "valid"]
    # files without a split of their own first, then FMA's training files; each in
    # SHA-1 order (deterministic)
    train = sorted(
        (t for t in tracks if splits[t] == "train"),
        key=lambda t: (t in metadata, _hash_fraction(t)),
    )
    while len(valid) < MIN_FILES_PER_SPLIT and len(train) > MIN_FILES_PER_SPLIT:
        moved = train.pop(0)
        splits[moved] = "valid"
        valid.append(moved)
    if len(valid) < MIN_FILES_PER_SPLIT or len(train) < MIN_FILES_PER_SPLIT:
        raise ValueError(
            f"{len(tracks)} usable files give {len(train)} training and {len(valid)} "
            f"validation file(s) with --valid_percent {valid_percent:g}; MixIT needs "
            f"at least {MIN_FILES_PER_SPLIT} of each (two different files to pair): "
            "choose another --valid_percent"
        )
    return splits


# ---------------------------------------------------------------------- writing


def describe_rules(config: FmaConfig) -> str:
    """One line naming the segmenting rules in use (for reports and logs)."""
    silence = config.silence
    if silence == "below_db":
        silence += f" ({config.silence_db:g} dBFS)"
    return (
        f"segment {config.segment_seconds:g} s, hop {config.hop_seconds:g} s, "
        f"{config.num_chunks} chunks; last_segment {config.last_segment}, silence "
        f"{silence}, silent_segment {config.silent_segment}; cache_all "
        f"{config.cache_all}"
    )


def _prepare(
    items: List[Tuple[str, str, str]],
    source: str,
    out: str,
    cache_dir: str,
    config: FmaConfig,
    metadata_splits: Dict[str, str],
    valid_percent: float,
    max_valid_segments: int,
    nj: int,
    report_header: str,
) -> Dict[str, int]:
    """Process ``(file id, path, path relative to its root)`` items and write ``out``."""
    if max_valid_segments < MIN_FILES_PER_SPLIT:
        raise ValueError(
            f"max_valid_segments must be at least {MIN_FILES_PER_SPLIT}, got "
            f"{max_valid_segments}"
        )
    jobs = [(uid, path, cache_dir, config, rel) for uid, path, rel in items]
    if nj > 1:  # the decoder's module, imported once here rather than in each worker
        import espnet2_ext.separation.audio  # noqa: F401
    if nj > 1:
        with multiprocessing.Pool(nj) as pool:
            results = list(
                tqdm(
                    pool.imap(_process_star, jobs, chunksize=4),
                    total=len(jobs),
                    desc="files",
                )
            )
    else:
        results = [_process_star(job) for job in tqdm(jobs, desc="files")]

    kept = [r for r in results if r.status == KEPT]
    problems = [r for r in results if r.status != KEPT]
    by_reason = collections.Counter(
        (r.status, r.reason.split(" (")[0]) for r in problems
    )
    for (status, reason), count in sorted(by_reason.items()):
        logging.warning(f"{count} file(s) {status}: {reason}")
    readable = sum(r.status != UNREADABLE for r in results)
    if readable < 2:
        raise ValueError(
            f"{readable} readable audio file(s) of {len(results)} in {source}: MixIT "
            "needs at least two (it mixes two different files); nothing was written"
        )
    try:
        splits = assign_splits([r.track for r in kept], metadata_splits, valid_percent)
    except ValueError as err:
        raise ValueError(
            f"{source}: {len(kept)} of {len(results)} files usable ("
            + ", ".join(f"{c} {s}: {r}" for (s, r), c in sorted(by_reason.items()))
            + f"). {err}; nothing was written"
        ) from None
    train = [r for r in kept if splits[r.track] == "train"]
    valid = sorted(
        (r for r in kept if splits[r.track] == "valid"),
        key=lambda r: _hash_fraction(r.track),
    )[:max_valid_segments]
    length = config.segment_samples
    items_by_split = {
        "train": [
            (r, p, s)
            for r in sorted(train, key=lambda r: r.track)
            for p, s in r.segments
        ],
        "valid": [(r,) + r.segments[0] for r in sorted(valid, key=lambda r: r.track)],
    }

    out = os.path.normpath(out)
    parent = os.path.dirname(out) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp_", dir=parent)
    try:
        for split, entries in items_by_split.items():
            _write_split(os.path.join(tmp, split), entries, length)
        with open(os.path.join(tmp, "skipped.tsv"), "w", encoding="utf-8") as f:
            f.write("path\tstatus\treason\n")
            for r in problems:
                f.write(f"{r.source}\t{r.status}\t{r.reason}\n")
        counts = {
            "files": len(results),
            "kept_files": len(kept),
            "dropped_files": sum(r.status == DROPPED for r in problems),
            "unreadable_files": sum(r.status == UNREADABLE for r in problems),
            "resampled_files": sum(r.resampled for r in kept),
            "cached_files": sum(r.cached for r in kept),
            "train_files": len(train),
            "valid_files": len(valid),
            "train_segments": len(items_by_split["train"]),
            "valid_segments": len(items_by_split["valid"]),
        }
        with open(os.path.join(tmp, "prep_report.txt"), "w", encoding="utf-8") as f:
            f.write(report_header)
            f.write(f"rules: {describe_rules(config)}\n")
            for key, value in counts.items():
                f.write(f"{key}: {value}\n")
            for (status, reason), count in sorted(by_reason.items()):
                f.write(f"{status}: {reason}: {count}\n")
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logging.info(
        f"{counts['kept_files']} of {counts['files']} files kept "
        f"({counts['train_files']} train, {counts['valid_files']} valid); "
        f"{counts['train_segments']} train / {counts['valid_segments']} valid segments "
        f"in {out}"
    )
    return counts


def prepare_fma(
    root: str,
    subset: str,
    out: str,
    cache_dir: str,
    config: FmaConfig = FmaConfig(),
    metadata: Optional[str] = None,
    valid_percent: float = 5.0,
    max_valid_segments: int = 512,
    nj: int = 1,
) -> Dict[str, int]:
    """Write ``out/{train,valid}`` from an FMA tree (see the module docstring).

    Raises:
        ValueError: bad root/subset, or too few usable files (nothing written).
    """
    tracks = find_tracks(root, subset)
    subset_dir = os.path.join(root, f"fma_{subset}")
    if metadata is None:
        default = os.path.join(root, "fma_metadata", "tracks.csv")
        metadata = default if os.path.isfile(default) else None
    fma_splits = read_fma_splits(metadata) if metadata else {}
    return _prepare(
        [
            (f"fma{track}", path, os.path.relpath(path, subset_dir))
            for track, path in tracks
        ],
        subset_dir,
        out,
        cache_dir,
        config,
        {f"fma{t}": s for t, s in fma_splits.items()},
        valid_percent,
        max_valid_segments,
        nj,
        f"root: {os.path.abspath(root)}\nsubset: {subset}\n"
        f"metadata: {metadata or 'none (hash split)'}\n",
    )


def check_readable(files: Sequence[Tuple[str, str]], folder: str) -> None:
    """Raise before anything is written when fewer than two files can be read.

    Reads each file's header (libsndfile) or decodes it (other formats) until two
    readable files are found.
    """
    readable, problems = 0, []
    for _, path in files:
        try:
            if os.path.getsize(path) == 0:
                raise ValueError("empty file (0 bytes)")
            probe_file(path)
        except Exception as err:
            problems.append(f"{os.path.relpath(path, folder)}: {err}")
            continue
        readable += 1
        if readable >= 2:
            return
    raise ValueError(
        f"{readable} readable audio file(s) of {len(files)} in {folder}: MixIT needs at "
        "least two different files to mix (four for a training and a validation "
        f"split); nothing was written. Unreadable: {'; '.join(problems[:5])}"
    )


def prepare_unlabeled(
    folder: str,
    out: str,
    cache_dir: str,
    config: FmaConfig = FmaConfig(),
    valid_percent: float = 5.0,
    max_valid_segments: int = 512,
    nj: int = 1,
) -> Dict[str, int]:
    """Write ``out/{train,valid}`` from a plain folder of mixtures (any format).

    Raises:
        ValueError: no such folder, no audio in it, or too few usable files
            (nothing written).
    """
    files = find_unlabeled(folder)
    check_readable(files, folder)
    return _prepare(
        [(uid, path, os.path.relpath(path, folder)) for uid, path in files],
        folder,
        out,
        cache_dir,
        config,
        {},
        valid_percent,
        max_valid_segments,
        nj,
        f"unlabeled folder: {os.path.abspath(folder)}\n",
    )


def _write_split(
    folder: str, entries: List[Tuple[TrackResult, int, int]], length: int
) -> None:
    os.makedirs(folder)
    spk2utt: Dict[str, List[str]] = {}
    with (
        open(os.path.join(folder, "mix_segments.scp"), "w", encoding="utf-8") as scp,
        open(os.path.join(folder, "utt2spk"), "w", encoding="utf-8") as utt2spk,
        open(os.path.join(folder, "utt2num_samples"), "w", encoding="utf-8") as nums,
        open(
            os.path.join(folder, "speech_ref1_shape"), "w", encoding="utf-8"
        ) as shapes,
    ):
        for result, position, start in entries:
            uid = f"{result.track}-{position:04d}"
            scp.write(
                format_segment_line(
                    uid, SoundSegment(result.audio, start, start + length)
                )
            )
            utt2spk.write(f"{uid} {result.track}\n")
            nums.write(f"{uid} {length}\n")
            shapes.write(segment_shape_line(uid, length, result.channels))
            spk2utt.setdefault(result.track, []).append(uid)
    with open(os.path.join(folder, "spk2utt"), "w", encoding="utf-8") as f:
        for speaker, uids in spk2utt.items():
            f.write(f"{speaker} {' '.join(uids)}\n")


# ---------------------------------------------------------------------- command line


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Cut unlabeled music (FMA or a folder) into filtered segment_sound "
        "items for MixIT.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--root", help="FMA: the folder with fma_<subset>/")
    source.add_argument(
        "--unlabeled-dir",
        help="a plain folder of mixtures (wav, flac, mp3, ogg, m4a …) instead of FMA",
    )
    parser.add_argument("--subset", default="large", choices=FMA_SUBSETS)
    parser.add_argument("--out", required=True, help="writes OUT/{train,valid}")
    parser.add_argument(
        "--cache", default="dump/fma_decoded", help="folder of the decoded cache"
    )
    parser.add_argument(
        "--metadata", default=None, help="FMA tracks.csv (default: ROOT/fma_metadata/…)"
    )
    defaults = FmaConfig()
    parser.add_argument(
        "--segment-seconds", type=float, default=defaults.segment_seconds
    )
    parser.add_argument("--hop-seconds", type=float, default=defaults.hop_seconds)
    parser.add_argument("--num-chunks", type=int, default=defaults.num_chunks)
    parser.add_argument(
        "--last-segment",
        default=defaults.last_segment,
        choices=LAST_SEGMENT_CHOICES,
        help="end_aligned: the authors' rule; complete: ours",
    )
    parser.add_argument(
        "--silence",
        default=defaults.silence,
        choices=SILENCE_CHOICES,
        help="zero: a chunk is silent at energy exactly 0 (authors); below_db: mean "
        "square below --silence-db (ours)",
    )
    parser.add_argument("--silence-db", type=float, default=defaults.silence_db)
    parser.add_argument(
        "--silent-segment",
        default=defaults.silent_segment,
        choices=SILENT_SEGMENT_CHOICES,
        help="drop_track: the authors' rule; drop_segment: ours",
    )
    parser.add_argument(
        "--cache-all",
        action=argparse.BooleanOptionalAction,
        default=defaults.cache_all,
        help="decode every kept file into the cache (FLAC), not only resampled ones "
        "and formats libsndfile cannot read",
    )
    parser.add_argument("--valid-percent", type=float, default=5.0)
    parser.add_argument("--max-valid-segments", type=int, default=512)
    parser.add_argument("--nj", type=int, default=1, help="parallel jobs")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        config = FmaConfig(
            segment_seconds=args.segment_seconds,
            hop_seconds=args.hop_seconds,
            num_chunks=args.num_chunks,
            last_segment=args.last_segment,
            silence=args.silence,
            silence_db=args.silence_db,
            silent_segment=args.silent_segment,
            cache_all=args.cache_all,
        )
        common = dict(
            out=args.out,
            cache_dir=args.cache,
            config=config,
            valid_percent=args.valid_percent,
            max_valid_segments=args.max_valid_segments,
            nj=args.nj,
        )
        if args.unlabeled_dir is not None:
            prepare_unlabeled(args.unlabeled_dir, **common)
        else:
            prepare_fma(args.root, args.subset, metadata=args.metadata, **common)
    except (ValueError, OSError) as err:
        logging.error(str(err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
