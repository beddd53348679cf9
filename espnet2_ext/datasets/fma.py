"""FMA (Free Music Archive) → ``segment_sound`` items for MixIT pre-training.

Reads the real layout ``ROOT/fma_{small,medium,large,full}/NNN/NNNNNN.mp3`` (and
``ROOT/fma_metadata/tracks.csv`` when present) and, following seeds/002 §3.1:

* drops tracks sampled below 44.1 kHz and mono tracks (and tracks with more than two
  channels, which FMA does not have);
* resamples tracks above 44.1 kHz (``scipy.signal.resample_poly``, a polyphase filter)
  into a cache folder ``--cache`` as float WAV (``CACHE/NNN/NNNNNN.wav``; reused when
  present); 44.1 kHz tracks are read from their MP3 directly (``--cache-all`` decodes
  them into the cache as well, faster to read for long tracks);
* cuts ``--segment-seconds`` (10 s) segments every ``--hop-seconds`` (5 s), complete
  segments only (a track shorter than one segment is dropped);
* drops mostly silent segments. Rule: a segment is split into ``--num-chunks`` (20)
  chunks; a chunk is silent when its mean square is below ``--silence-db`` (−60 dBFS);
  the segment is dropped when at least half of its chunks are silent;
* reports unreadable, corrupt and empty files (a count per reason on the log, the
  list in ``OUT/skipped.tsv``) and goes on: never fatal.

Split: with ``tracks.csv``, FMA's own ``set/split`` column: ``training`` → train,
``validation`` → valid (``test`` unused); tracks absent from it, or every track when
there is no metadata, go to valid when the SHA-1 of their id falls in the first
``--valid-percent`` (5 %). Validation stays small: one segment (the first kept) per
valid track, at most ``--max-valid-segments`` tracks (in SHA-1 order). Deterministic.

Writes ``OUT/{train,valid}/`` with ``mix_segments.scp`` (``uid path start end``),
``utt2spk`` / ``spk2utt`` (segment → track), ``utt2num_samples``, ``speech_ref1_shape``
(``uid T,C``), plus ``OUT/skipped.tsv`` and ``OUT/prep_report.txt``; written to a
temporary folder and moved into place at the end.

Usage::

    python -m espnet2_ext.datasets.fma --root /data/fma --subset small --out data/fma \\
        --cache dump/fma_resampled --nj 2
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
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
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

FMA_SUBSETS = ("small", "medium", "large", "full")

# statuses of a track
KEPT = "kept"
DROPPED = "dropped"  # by a filter (rate, channels, length, silence)
UNREADABLE = "unreadable"  # empty, corrupt, not audio


@dataclass(frozen=True)
class FmaConfig:
    """Segmenting and filtering parameters (defaults: seeds/002)."""

    sample_rate: int = MUSIC_SAMPLE_RATE
    segment_seconds: float = 10.0
    hop_seconds: float = 5.0
    num_chunks: int = 20
    silence_db: float = -60.0
    cache_all: bool = False

    def __post_init__(self):
        if self.segment_seconds <= 0 or self.hop_seconds <= 0 or self.num_chunks < 1:
            raise ValueError(
                "segment_seconds, hop_seconds and num_chunks must be positive"
            )


@dataclass
class TrackResult:
    """What happened to one file."""

    track: str
    source: str
    status: str
    reason: str = ""
    audio: str = ""  # the file the segments point into (MP3 or cached WAV)
    channels: int = 0
    resampled: bool = False
    starts: List[int] = field(default_factory=list)


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


def _silent_chunks(segment: np.ndarray, num_chunks: int, floor: float) -> int:
    """Number of chunks of ``segment`` ([T, C]) whose mean square is below ``floor``."""
    chunk = segment.shape[0] // num_chunks
    blocks = segment[: chunk * num_chunks].reshape(num_chunks, chunk * segment.shape[1])
    power = np.mean(np.square(blocks, dtype=np.float64), axis=1)
    return int(np.sum(power < floor))


def process_track(
    track: str, source: str, cache_dir: str, config: FmaConfig, rel: str
) -> TrackResult:
    """Filter, resample if needed, and segment one file (never raises for bad files)."""
    result = TrackResult(track=track, source=source, status=UNREADABLE)
    try:
        if os.path.getsize(source) == 0:
            result.reason = "empty file (0 bytes)"
            return result
        info = sf.info(source)
    except Exception as err:  # libsndfile raises several error types
        result.reason = f"not readable as audio ({type(err).__name__}: {err})"
        return result
    result.status = DROPPED
    if info.samplerate < config.sample_rate:
        result.reason = f"sample rate {info.samplerate} Hz < {config.sample_rate}"
        return result
    if info.channels != 2:
        result.reason = "mono" if info.channels == 1 else f"{info.channels} channels"
        return result
    cached = os.path.join(cache_dir, os.path.splitext(rel)[0] + ".wav")
    use_cache = info.samplerate != config.sample_rate or config.cache_all
    try:
        if use_cache and _valid_cache(cached, config.sample_rate):
            audio, _ = sf.read(cached, dtype="float32", always_2d=True)
        else:
            audio, rate = sf.read(source, dtype="float32", always_2d=True)
            if rate != config.sample_rate:
                g = math.gcd(rate, config.sample_rate)
                audio = resample_poly(
                    audio, config.sample_rate // g, rate // g, axis=0
                ).astype(np.float32)
            if use_cache:
                _write_cache(cached, audio, config.sample_rate)
    except Exception as err:
        result.status = UNREADABLE
        result.reason = f"decoding failed ({type(err).__name__}: {err})"
        return result
    result.audio = os.path.abspath(cached if use_cache else source)
    result.resampled = info.samplerate != config.sample_rate
    result.channels = audio.shape[1]
    length = int(round(config.segment_seconds * config.sample_rate))
    hop = int(round(config.hop_seconds * config.sample_rate))
    if audio.shape[0] < length:
        result.reason = (
            f"shorter than a segment ({audio.shape[0] / config.sample_rate:.1f} s)"
        )
        return result
    floor = 10.0 ** (config.silence_db / 10.0)
    for start in range(0, audio.shape[0] - length + 1, hop):
        silent = _silent_chunks(audio[start : start + length], config.num_chunks, floor)
        if silent < config.num_chunks / 2:
            result.starts.append(start)
    if not result.starts:
        result.reason = "every segment is mostly silent"
        return result
    result.status = KEPT
    return result


def _valid_cache(path: str, rate: int) -> bool:
    try:
        return sf.info(path).samplerate == rate
    except Exception:
        return False


def _write_cache(path: str, audio: np.ndarray, rate: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.wav"
    sf.write(tmp, audio, rate, subtype="FLOAT")
    os.replace(tmp, path)


def _process_star(args) -> TrackResult:
    return process_track(*args)


def _hash_fraction(track: str) -> float:
    return int(hashlib.sha1(track.encode("utf-8")).hexdigest()[:12], 16) / 16.0**12


def assign_splits(
    tracks: Sequence[str],
    metadata: Dict[str, str],
    valid_percent: float,
) -> Dict[str, str]:
    """``{track: "train" | "valid" | "unused"}`` (see the module docstring)."""
    fma_to_ours = {"training": "train", "validation": "valid", "test": "unused"}
    splits = {}
    for track in tracks:
        if track in metadata and metadata[track] in fma_to_ours:
            splits[track] = fma_to_ours[metadata[track]]
        else:
            splits[track] = (
                "valid" if _hash_fraction(track) < valid_percent / 100.0 else "train"
            )
    if len(tracks) >= 2 and "valid" not in splits.values():
        first = min(tracks, key=_hash_fraction)  # keep a validation set, however small
        splits[first] = "valid"
    if "train" not in splits.values() and len(tracks) >= 2:
        last = max((t for t in tracks if splits[t] == "valid"), key=_hash_fraction)
        splits[last] = "train"
    return splits


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
    """Write ``out/{train,valid}`` (see the module docstring); returns counts.

    Raises:
        ValueError: bad root/subset, or no usable training segment (nothing written).
    """
    tracks = find_tracks(root, subset)
    subset_dir = os.path.join(root, f"fma_{subset}")
    if metadata is None:
        default = os.path.join(root, "fma_metadata", "tracks.csv")
        metadata = default if os.path.isfile(default) else None
    fma_splits = read_fma_splits(metadata) if metadata else {}

    jobs = [
        (track, path, cache_dir, config, os.path.relpath(path, subset_dir))
        for track, path in tracks
    ]
    if nj > 1:
        with multiprocessing.Pool(nj) as pool:
            results = list(
                tqdm(
                    pool.imap(_process_star, jobs, chunksize=4),
                    total=len(jobs),
                    desc="tracks",
                )
            )
    else:
        results = [_process_star(job) for job in tqdm(jobs, desc="tracks")]

    kept = [r for r in results if r.status == KEPT]
    problems = [r for r in results if r.status != KEPT]
    by_reason = collections.Counter(
        (r.status, r.reason.split(" (")[0]) for r in problems
    )
    for (status, reason), count in sorted(by_reason.items()):
        logging.warning(f"{count} file(s) {status}: {reason}")

    splits = assign_splits([r.track for r in kept], fma_splits, valid_percent)
    train = [r for r in kept if splits[r.track] == "train"]
    valid = sorted(
        (r for r in kept if splits[r.track] == "valid"),
        key=lambda r: _hash_fraction(r.track),
    )[:max_valid_segments]
    if not train:
        raise ValueError(
            f"no usable training segment in {subset_dir} ({len(problems)} of "
            f"{len(results)} files dropped or unreadable, see the log); nothing written"
        )
    length = int(round(config.segment_seconds * config.sample_rate))
    items = {
        "train": [
            (r, s) for r in sorted(train, key=lambda r: r.track) for s in r.starts
        ],
        "valid": [(r, r.starts[0]) for r in sorted(valid, key=lambda r: r.track)],
    }

    out = os.path.normpath(out)
    parent = os.path.dirname(out) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp_", dir=parent)
    try:
        for split, entries in items.items():
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
            "train_segments": len(items["train"]),
            "valid_segments": len(items["valid"]),
        }
        with open(os.path.join(tmp, "prep_report.txt"), "w", encoding="utf-8") as f:
            f.write(f"root: {os.path.abspath(root)}\nsubset: {subset}\n")
            f.write(f"metadata: {metadata or 'none (hash split)'}\n")
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
        f"{counts['kept_files']} of {counts['files']} files kept; "
        f"{counts['train_segments']} train / {counts['valid_segments']} valid segments "
        f"in {out}"
    )
    return counts


def _write_split(
    folder: str, entries: List[Tuple[TrackResult, int]], length: int
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
        for result, start in entries:
            uid = f"fma{result.track}-{start:010d}"
            speaker = f"fma{result.track}"
            scp.write(
                format_segment_line(
                    uid, SoundSegment(result.audio, start, start + length)
                )
            )
            utt2spk.write(f"{uid} {speaker}\n")
            nums.write(f"{uid} {length}\n")
            shapes.write(segment_shape_line(uid, length, result.channels))
            spk2utt.setdefault(speaker, []).append(uid)
    with open(os.path.join(folder, "spk2utt"), "w", encoding="utf-8") as f:
        for speaker, uids in spk2utt.items():
            f.write(f"{speaker} {' '.join(uids)}\n")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Cut FMA tracks into filtered segment_sound items for MixIT.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--root", required=True, help="folder with fma_<subset>/")
    parser.add_argument("--subset", default="small", choices=FMA_SUBSETS)
    parser.add_argument("--out", required=True, help="writes OUT/{train,valid}")
    parser.add_argument(
        "--cache", default="dump/fma_resampled", help="folder for resampled WAVs"
    )
    parser.add_argument(
        "--metadata", default=None, help="tracks.csv (default: ROOT/fma_metadata/…)"
    )
    defaults = FmaConfig()
    parser.add_argument(
        "--segment-seconds", type=float, default=defaults.segment_seconds
    )
    parser.add_argument("--hop-seconds", type=float, default=defaults.hop_seconds)
    parser.add_argument("--num-chunks", type=int, default=defaults.num_chunks)
    parser.add_argument("--silence-db", type=float, default=defaults.silence_db)
    parser.add_argument(
        "--cache-all",
        action="store_true",
        help="decode 44.1 kHz MP3s into the cache too",
    )
    parser.add_argument("--valid-percent", type=float, default=5.0)
    parser.add_argument("--max-valid-segments", type=int, default=512)
    parser.add_argument("--nj", type=int, default=1, help="parallel jobs")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        prepare_fma(
            args.root,
            args.subset,
            args.out,
            args.cache,
            config=FmaConfig(
                segment_seconds=args.segment_seconds,
                hop_seconds=args.hop_seconds,
                num_chunks=args.num_chunks,
                silence_db=args.silence_db,
                cache_all=args.cache_all,
            ),
            metadata=args.metadata,
            valid_percent=args.valid_percent,
            max_valid_segments=args.max_valid_segments,
            nj=args.nj,
        )
    except (ValueError, OSError) as err:
        logging.error(str(err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
