"""Source-activity filtering of stems (BSRNN style) and fixed crops of songs.

Input: a data folder from :mod:`espnet2_ext.datasets.musdb18hq` (``wav.scp`` for the
mixture, ``spk{n}.scp`` for stem ``n`` of ``--stems``; by default the stems are those
the folder's ``stems`` file names, else the four MUSDB18 stems).

Activity index (what :class:`espnet2_ext.train.preprocessor.MusicDynamicMixing` draws
from; Luo & Yu, BSRNN, §IV-A; seeds/002 §3.2). Per stem and song:

1. cut the stem into ``--segment-seconds`` (8 s) segments with ``--overlap`` (50 %);
2. cut each segment into ``--num-chunks`` (10) chunks; a chunk's energy is the sum of
   its squared samples over all channels (as in the BSRNN reference code, so the
   floor below is an absolute silence floor: 1e-3 over 0.8 s of stereo 44.1 kHz is a
   mean square of 1.4e-8, −78 dBFS);
3. threshold = max(``--percentile`` (15th) percentile of the energies of all chunks of
   all segments of that stem in that song, ``--min-threshold`` (1e-3)); a chunk of
   energy exactly 0 counts as ``--zero-energy`` (1e-5) in the percentile, as in the
   authors' ``recipes/musdb18hq/scripts/chunking_sad_inst.py`` (0 gives the plain
   percentile);
4. keep the segment when at least ``--min-active-fraction`` (half) of its chunks have
   an energy above the threshold.

Writes ``OUT/active_{stem}.tsv`` (``song path start end``, samples, tab separated) and
``OUT/activity_summary.tsv``.

Fixed crops (``--crop-seconds``, default 6 s, hop ``--crop-hop-seconds``, default the
crop length): ``segment_sound`` scps ``OUT/mix_segments.scp`` and
``OUT/spk{n}_segments.scp`` of every complete crop whose mixture is not silent (mean
square of the crop at or above ``--crop-min-db``, −60 dBFS), with ``utt2spk`` (crop →
song) and ESPnet shape files ``speech_mix_shape``, ``speech_ref{n}_shape`` (``uid T,C``).
For the validation songs they are the fixed validation set; for the training songs they
are the item list a training epoch walks through (dynamic mixing replaces their audio).

Everything is written into a temporary folder and moved to ``OUT`` at the end.

Usage::

    python -m espnet2_ext.datasets.activity --data data/train --out dump/train_segments
    python -m espnet2_ext.datasets.activity --data data/valid --out dump/valid_segments \\
        --no-index
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from tqdm import tqdm

from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.datasets.songs import STEMS_FILE, read_stems
from espnet2_ext.train.dataset import (
    EXACT_SEEK_FORMATS,
    SoundSegment,
    active_index_path,
    format_segment_line,
    read_sound_segment,
    segment_shape_line,
    write_active_index,
)


@dataclass(frozen=True)
class ActivityConfig:
    """Parameters of the activity filter (defaults: BSRNN / seeds/002)."""

    segment_seconds: float = 8.0
    overlap: float = 0.5
    num_chunks: int = 10
    percentile: float = 15.0
    min_threshold: float = 1e-3
    min_active_fraction: float = 0.5
    zero_energy: float = 1e-5

    def __post_init__(self):
        if self.segment_seconds <= 0 or self.num_chunks < 1:
            raise ValueError("segment_seconds and num_chunks must be positive")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if not 0.0 <= self.percentile <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {self.percentile}")
        if self.zero_energy < 0.0:
            raise ValueError(f"zero_energy must be >= 0, got {self.zero_energy}")
        if not 0.0 < self.min_active_fraction <= 1.0:
            raise ValueError(
                f"min_active_fraction must be in (0, 1], got {self.min_active_fraction}"
            )

    def grid(self, sample_rate: int) -> Tuple[int, int]:
        """(chunk length in samples, segment hop in chunks) at ``sample_rate``."""
        segment = int(round(self.segment_seconds * sample_rate))
        hop = int(round(segment * (1.0 - self.overlap)))
        if segment % self.num_chunks or hop % (segment // self.num_chunks):
            raise ValueError(
                f"at {sample_rate} Hz a {self.segment_seconds} s segment "
                f"({segment} samples) with {self.overlap:.0%} overlap does not split "
                f"into {self.num_chunks} equal chunks with a hop of whole chunks; "
                "choose segment_seconds/overlap/num_chunks that do"
            )
        chunk = segment // self.num_chunks
        return chunk, hop // chunk


def chunk_energies(path: str, chunk_samples: int) -> np.ndarray:
    """Sum of squared samples (all channels) of every complete chunk of ``path``.

    Streams WAV/FLAC-like files block by block; other formats (MP3) are decoded in one
    read, since libsndfile's block reads of MP3 are not exact
    (:mod:`espnet2_ext.train.dataset`). Returns ``[num_chunks]`` float64.
    """
    if sf.info(path).format in EXACT_SEEK_FORMATS:
        blocks = sf.blocks(
            path, blocksize=chunk_samples, dtype="float32", always_2d=True
        )
    else:
        audio, _ = sf.read(path, dtype="float32", always_2d=True)
        blocks = (
            audio[i : i + chunk_samples] for i in range(0, len(audio), chunk_samples)
        )
    energies = []
    for block in blocks:
        if block.shape[0] == chunk_samples:
            energies.append(float(np.sum(np.square(block, dtype=np.float64))))
    return np.asarray(energies, dtype=np.float64)


def select_active_segments(
    energies: np.ndarray, config: ActivityConfig, hop_chunks: int
) -> Tuple[np.ndarray, float]:
    """Apply the filter to one stem of one song.

    Args:
        energies: ``[num_chunks_in_song]`` chunk energies (:func:`chunk_energies`).
        config: the filter parameters.
        hop_chunks: segment hop in chunks.

    Returns:
        (``[num_segments]`` bool, True = keep; the threshold used). Segment ``i``
        covers chunks ``[i·hop_chunks, i·hop_chunks + num_chunks)``.
    """
    n = config.num_chunks
    if len(energies) < n:
        return np.zeros(0, dtype=bool), float(config.min_threshold)
    num_segments = (len(energies) - n) // hop_chunks + 1
    index = np.arange(num_segments)[:, None] * hop_chunks + np.arange(n)[None, :]
    per_segment = energies[index]  # [segments, chunks]
    per_segment = np.where(per_segment == 0.0, config.zero_energy, per_segment)
    threshold = max(
        float(np.percentile(per_segment, config.percentile)), config.min_threshold
    )
    active = np.sum(per_segment > threshold, axis=1)
    keep = active >= config.min_active_fraction * n - 1e-9
    return keep, threshold


@dataclass
class SongActivity:
    """Result of the analysis of one song."""

    uid: str
    sample_rate: int
    num_channels: int
    # stem -> (kept segments, number of segments, threshold)
    stems: Dict[str, Tuple[List[SoundSegment], int, float]]
    crops: List[int]  # start samples of the kept crops


def read_two_columns(path: str) -> Dict[str, str]:
    """``uid value`` lines (the value may contain spaces) into an ordered dict."""
    table: Dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split(maxsplit=1)
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected 'uid value'")
            table[parts[0]] = parts[1]
    return table


def analyse_song(
    uid: str,
    mixture: str,
    stem_paths: Dict[str, str],
    config: Optional[ActivityConfig],
    crop_seconds: float,
    crop_hop_seconds: float,
    crop_min_db: float,
) -> SongActivity:
    """Activity of every stem (``config`` None: skip) and the kept crops of one song."""
    info = sf.info(mixture)
    rate = info.samplerate
    stems = {}
    if config is not None:
        chunk, hop_chunks = config.grid(rate)
        for stem, path in stem_paths.items():
            keep, threshold = select_active_segments(
                chunk_energies(path, chunk), config, hop_chunks
            )
            kept = [
                SoundSegment(
                    path,
                    i * hop_chunks * chunk,
                    i * hop_chunks * chunk + config.num_chunks * chunk,
                )
                for i in np.flatnonzero(keep)
            ]
            stems[stem] = (kept, int(len(keep)), threshold)
    crops = []
    if crop_seconds > 0:
        length = int(round(crop_seconds * rate))
        hop = int(round(crop_hop_seconds * rate))
        floor = 10.0 ** (crop_min_db / 10.0)
        for start in range(0, info.frames - length + 1, hop):
            crop, _ = read_sound_segment(mixture, start, start + length)
            if np.mean(np.square(crop, dtype=np.float64)) >= floor:
                crops.append(start)
    return SongActivity(uid, rate, info.channels, stems, crops)


def _analyse_star(args) -> SongActivity:
    return analyse_song(*args)


def run_activity(
    data: str,
    out: str,
    stems: Optional[Sequence[str]] = None,
    config: Optional[ActivityConfig] = ActivityConfig(),
    crop_seconds: float = 6.0,
    crop_hop_seconds: Optional[float] = None,
    crop_min_db: float = -60.0,
    nj: int = 1,
) -> Dict[str, Dict[str, int]]:
    """Write the activity index (``config`` not None) and the crops of ``data`` to ``out``.

    Returns:
        ``{stem: {"segments": n, "kept": k, "songs_without": m}}`` and, under
        ``"crops"``, ``{"kept": number of crops}``.

    Raises:
        FileNotFoundError: ``data`` lacks ``wav.scp`` or a ``spk{n}.scp``.
        ValueError: inconsistent scps, a stem without any active segment, or no
            crop at all.
        (Nothing is written in either case.)
    """
    if stems is None:
        stems = (
            read_stems(data)
            if os.path.isfile(os.path.join(data, STEMS_FILE))
            else MUSDB_STEMS
        )
    stems = tuple(stems)
    if config is None and crop_seconds <= 0:
        raise ValueError("nothing to do: --no-index and --crop-seconds 0")
    crop_hop_seconds = crop_seconds if crop_hop_seconds is None else crop_hop_seconds
    if crop_seconds > 0 and crop_hop_seconds <= 0:
        raise ValueError(f"crop_hop_seconds must be positive, got {crop_hop_seconds}")
    scps = {"mixture": os.path.join(data, "wav.scp")}
    scps.update(
        {stem: os.path.join(data, f"spk{i}.scp") for i, stem in enumerate(stems, 1)}
    )
    for name, path in scps.items():
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} ({name}) is missing: run the data preparation stage "
                "(python -m espnet2_ext.datasets.musdb18hq) first"
            )
    tables = {name: read_two_columns(path) for name, path in scps.items()}
    uids = list(tables["mixture"])
    for name, table in tables.items():
        if set(table) != set(uids):
            raise ValueError(f"{scps[name]} and {scps['mixture']} list different uids")

    jobs = [
        (
            uid,
            tables["mixture"][uid],
            {stem: tables[stem][uid] for stem in stems},
            config,
            crop_seconds,
            crop_hop_seconds,
            crop_min_db,
        )
        for uid in sorted(uids)
    ]
    if nj > 1:
        with multiprocessing.Pool(nj) as pool:
            songs = list(
                tqdm(pool.imap(_analyse_star, jobs), total=len(jobs), desc="songs")
            )
    else:
        songs = [_analyse_star(job) for job in tqdm(jobs, desc="songs")]

    summary: Dict[str, Dict[str, int]] = {}
    if config is not None:
        for stem in stems:
            segments = sum(song.stems[stem][1] for song in songs)
            kept = sum(len(song.stems[stem][0]) for song in songs)
            without = [song.uid for song in songs if not song.stems[stem][0]]
            summary[stem] = dict(
                segments=segments, kept=kept, songs_without=len(without)
            )
            if without:
                logging.warning(
                    f"{stem}: no active segment in {len(without)} song(s): {without}"
                )
            if kept == 0:
                raise ValueError(
                    f"stem {stem!r}: no active segment in any song of {data} "
                    f"({segments} segments tested); dynamic mixing would have nothing "
                    "to draw from: check the data or lower --min-threshold"
                )
    summary["crops"] = dict(kept=sum(len(song.crops) for song in songs))
    if crop_seconds > 0 and summary["crops"]["kept"] == 0:
        raise ValueError(
            f"no non-silent {crop_seconds} s crop fits in the songs of {data}: "
            "choose a shorter --crop-seconds (or 0 for no crops)"
        )

    out = os.path.normpath(out)
    parent = os.path.dirname(out) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp_", dir=parent)
    try:
        if config is not None:
            for stem in stems:
                write_active_index(
                    active_index_path(tmp, stem),
                    ((song.uid, seg) for song in songs for seg in song.stems[stem][0]),
                )
            with open(os.path.join(tmp, "activity_summary.tsv"), "w") as f:
                f.write("stem\tsegments\tkept\tsongs_without_active_segment\n")
                for stem in stems:
                    s = summary[stem]
                    f.write(
                        f"{stem}\t{s['segments']}\t{s['kept']}\t{s['songs_without']}\n"
                    )
        if crop_seconds > 0:
            _write_crops(tmp, songs, tables, stems, crop_seconds)
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for stem in stems if config is not None else ():
        s = summary[stem]
        logging.info(f"{stem}: kept {s['kept']} of {s['segments']} segments")
    logging.info(f"{summary['crops']['kept']} crops of {crop_seconds} s; wrote {out}")
    return summary


def _write_crops(
    folder: str,
    songs: List[SongActivity],
    tables: Dict[str, Dict[str, str]],
    stems: Sequence[str],
    crop_seconds: float,
) -> None:
    names = {"mixture": "mix_segments.scp"}
    names.update({stem: f"spk{i}_segments.scp" for i, stem in enumerate(stems, 1)})
    shapes = {"mixture": "speech_mix_shape"}
    shapes.update({stem: f"speech_ref{i}_shape" for i, stem in enumerate(stems, 1)})
    files = {name: open(os.path.join(folder, names[name]), "w") for name in names}
    shape_files = {
        name: open(os.path.join(folder, shapes[name]), "w") for name in shapes
    }
    try:
        with open(os.path.join(folder, "utt2spk"), "w") as utt2spk:
            for song in songs:
                length = int(round(crop_seconds * song.sample_rate))
                for start in song.crops:
                    crop_uid = f"{song.uid}-{start:010d}"
                    utt2spk.write(f"{crop_uid} {song.uid}\n")
                    for name in names:
                        segment = SoundSegment(
                            tables[name][song.uid], start, start + length
                        )
                        files[name].write(format_segment_line(crop_uid, segment))
                        shape_files[name].write(
                            segment_shape_line(crop_uid, length, song.num_channels)
                        )
    finally:
        for f in list(files.values()) + list(shape_files.values()):
            f.close()


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Source-activity index of stems and fixed crops of songs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="data folder (wav.scp, spk*.scp)")
    parser.add_argument("--out", required=True, help="output folder (replaced)")
    parser.add_argument(
        "--stems",
        nargs="+",
        default=None,
        help="stems of spk1.scp … (default: DATA/stems, else the four MUSDB18 stems)",
    )
    parser.add_argument("--no-index", action="store_true", help="crops only")
    defaults = ActivityConfig()
    parser.add_argument(
        "--segment-seconds", type=float, default=defaults.segment_seconds
    )
    parser.add_argument("--overlap", type=float, default=defaults.overlap)
    parser.add_argument("--num-chunks", type=int, default=defaults.num_chunks)
    parser.add_argument("--percentile", type=float, default=defaults.percentile)
    parser.add_argument("--min-threshold", type=float, default=defaults.min_threshold)
    parser.add_argument(
        "--min-active-fraction", type=float, default=defaults.min_active_fraction
    )
    parser.add_argument(
        "--zero-energy",
        type=float,
        default=defaults.zero_energy,
        help="energy a silent (all-zero) chunk counts as in the percentile",
    )
    parser.add_argument(
        "--crop-seconds", type=float, default=6.0, help="0: write no crops"
    )
    parser.add_argument(
        "--crop-hop-seconds", type=float, default=None, help="default: --crop-seconds"
    )
    parser.add_argument("--crop-min-db", type=float, default=-60.0)
    parser.add_argument("--nj", type=int, default=1, help="parallel jobs")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        config = None
        if not args.no_index:
            config = ActivityConfig(
                segment_seconds=args.segment_seconds,
                overlap=args.overlap,
                num_chunks=args.num_chunks,
                percentile=args.percentile,
                min_threshold=args.min_threshold,
                min_active_fraction=args.min_active_fraction,
                zero_energy=args.zero_energy,
            )
        run_activity(
            args.data,
            args.out,
            stems=args.stems,
            config=config,
            crop_seconds=args.crop_seconds,
            crop_hop_seconds=args.crop_hop_seconds,
            crop_min_db=args.crop_min_db,
            nj=args.nj,
        )
    except (ValueError, OSError) as err:
        logging.error(str(err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
