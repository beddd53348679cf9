"""Generate a small FMA-like set of unlabeled music mixtures as MP3.

Usage::

    python -m espnet2_ext.datagen.fma_like --out ROOT --subset small --num-tracks 40 \\
        --duration 30 --seed 0 --jobs 2

writes the real FMA layout::

    ROOT/fma_small/NNN/NNNNNN.mp3    # track id zero-padded to 6 digits, folder = first 3
    ROOT/fma_metadata/tracks.csv     # FMA's two-level header (album/artist/set/track)
    ROOT/generation_manifest.json    # parameters and what every file is

Tracks are songs from :mod:`compose` rendered as one mix (no stems kept), stereo 44.1 kHz,
some of them instrumental. Unless ``--no-faulty``, eight tracks are planted for the data
preparation's filters, and the manifest lists them under ``"by_kind"`` with the action the
preparation should take (``"expected"``):

==============  =====  =======================================================
kind            count  expected
==============  =====  =======================================================
low_rate        2      ``drop``: 22.05 kHz stereo (under 44.1 kHz)
mono            2      ``drop``: mono 44.1 kHz
high_rate       1      ``resample``: 48 kHz stereo, kept after resampling
corrupt         1      ``unreadable``: an MP3 frame header followed by garbage
empty           1      ``unreadable``: a zero-byte file
mostly_silent   1      ``drop_silent``: music only in the first ~15 %, then
                       digital silence: the whole track is dropped under the
                       authors' rule (the default), its silent segments under ours
==============  =====  =======================================================

All other tracks are ``normal`` (``keep``). MP3 encoding uses ffmpeg's libmp3lame when
ffmpeg is installed (fast), otherwise libsndfile through soundfile.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf

from espnet2_ext.constants import MUSIC_SAMPLE_RATE
from espnet2_ext.datagen.compose import TRAIN_PROGRAMS, compose_song
from espnet2_ext.datagen.musdb_like import (
    MANIFEST,
    PARTIAL,
    check_existing_output,
    output_lock,
    remove_partial,
    run_jobs,
    tool_versions,
    write_json_atomic,
)
from espnet2_ext.datagen.render import (
    DEFAULT_TRAIN_SOUNDFONT,
    render_mixture,
    require_soundfont,
    require_tool,
)

SUBSETS = ("small", "medium", "large", "full")

#: Planted files for the preparation's filters: kind → (count, expected action).
FAULTY_KINDS = {
    "low_rate": (2, "drop"),
    "mono": (2, "drop"),
    "high_rate": (1, "resample"),
    "corrupt": (1, "unreadable"),
    "empty": (1, "unreadable"),
    "mostly_silent": (1, "drop_silent"),
}
EXPECTED = {"normal": "keep", **{k: v for k, (_, v) in FAULTY_KINDS.items()}}
RATE_OF_KIND = {"low_rate": 22050, "high_rate": 48000}

#: FMA's eight balanced genres of fma_small with their genre ids.
GENRES = {
    "Electronic": 15,
    "Experimental": 38,
    "Folk": 17,
    "Hip-Hop": 21,
    "Instrumental": 1235,
    "International": 2,
    "Pop": 10,
    "Rock": 12,
}

#: The 52 columns of FMA's tracks.csv as (top level, field).
TRACKS_COLUMNS = (
    [
        ("album", f)
        for f in (
            "comments",
            "date_created",
            "date_released",
            "engineer",
            "favorites",
            "id",
            "information",
            "listens",
            "producer",
            "tags",
            "title",
            "tracks",
            "type",
        )
    ]
    + [
        ("artist", f)
        for f in (
            "active_year_begin",
            "active_year_end",
            "associated_labels",
            "bio",
            "comments",
            "date_created",
            "favorites",
            "id",
            "latitude",
            "location",
            "longitude",
            "members",
            "name",
            "related_projects",
            "tags",
            "website",
            "wikipedia_page",
        )
    ]
    + [("set", "split"), ("set", "subset")]
    + [
        ("track", f)
        for f in (
            "bit_rate",
            "comments",
            "composer",
            "date_created",
            "date_recorded",
            "duration",
            "favorites",
            "genre_top",
            "genres",
            "genres_all",
            "information",
            "interest",
            "language_code",
            "license",
            "listens",
            "lyricist",
            "number",
            "publisher",
            "tags",
            "title",
        )
    ]
)


def track_path(subset: str, track_id: int) -> str:
    """``fma_<subset>/NNN/NNNNNN.mp3`` relative to the root, as in the real archive."""
    tid = f"{track_id:06d}"
    return f"fma_{subset}/{tid[:3]}/{tid}.mp3"


def encode_mp3(audio: np.ndarray, sample_rate: int, path: Path) -> str:
    """Write ``audio`` ([T] or [T, C] float) as MP3; returns the encoder used."""
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is not None:
        bitrate = (
            "128k" if sample_rate < 32000 else "256k"
        )  # MPEG-2 layer III tops at 160k
        cmd = [
            ffmpeg,
            "-loglevel",
            "error",
            "-y",
            "-f",
            "f32le",
            "-ar",
            str(sample_rate),
            "-ac",
            str(channels),
            "-i",
            "pipe:0",
            "-c:a",
            "libmp3lame",
            "-b:a",
            bitrate,
            "-compression_level",
            "5",
            "-map_metadata",
            "-1",
            "-fflags",
            "+bitexact",
            "-flags:a",
            "+bitexact",
            "-f",
            "mp3",
            str(path),
        ]
        proc = subprocess.run(cmd, input=audio.tobytes(), capture_output=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"ffmpeg failed encoding {path}: {proc.stderr.decode()[-500:]}"
            )
        return "ffmpeg-libmp3lame"
    sf.write(path, audio, sample_rate, format="MP3")
    return "libsndfile"


@dataclass(frozen=True)
class TrackJob:
    root: str
    subset: str
    index: int
    track_id: int
    kind: str
    seed: int
    duration: float
    soundfont: str
    instrumental: bool

    def __str__(self) -> str:
        return f"track {self.track_id:06d} ({self.kind})"


def mp3_encoder() -> str:
    return "ffmpeg-libmp3lame" if shutil.which("ffmpeg") else "libsndfile"


def track_record(
    job: TrackJob,
) -> Tuple[Dict[str, object], object, np.random.Generator]:
    """The manifest record of a track, with its composed song and generator (composing
    is cheap, so a skipped track's record is rebuilt the same way)."""
    rng = np.random.default_rng([job.seed, 2, job.index])
    song = compose_song(
        rng, job.duration, TRAIN_PROGRAMS, instrumental=job.instrumental
    )
    rate = RATE_OF_KIND.get(job.kind, MUSIC_SAMPLE_RATE)
    readable = job.kind not in ("corrupt", "empty")
    record: Dict[str, object] = {
        "track_id": job.track_id,
        "path": track_path(job.subset, job.track_id),
        "kind": job.kind,
        "expected": EXPECTED[job.kind],
        "title": song.title,
        "artist": song.artist,
        "instrumental": job.instrumental,
        "sample_rate": rate if readable else None,
        "channels": (1 if job.kind == "mono" else 2) if readable else None,
        "duration": job.duration,
        "encoder": mp3_encoder() if job.kind != "empty" else None,
    }
    if job.kind == "mostly_silent":
        num = int(round(job.duration * rate))
        record["music_seconds"] = round(max(int(0.15 * num), 1) / rate, 3)
    return record, song, rng


def render_track_job(job: TrackJob) -> Dict[str, object]:
    """Render one track and write it atomically; returns its manifest record."""
    root = Path(job.root)
    record, song, rng = track_record(job)
    final = root / str(record["path"])
    tmp = root / PARTIAL / str(record["path"])
    tmp.parent.mkdir(parents=True, exist_ok=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    if job.kind == "empty":
        tmp.write_bytes(b"")
        os.replace(tmp, final)
        return record
    rate = RATE_OF_KIND.get(job.kind, MUSIC_SAMPLE_RATE)
    audio = render_mixture(song, job.soundfont, rng, sample_rate=rate)  # [T, 2]
    if job.kind == "mono":
        audio = audio.mean(axis=1)
    if job.kind == "mostly_silent":
        keep = max(int(0.15 * audio.shape[0]), 1)
        fade = min(int(0.2 * rate), keep)
        audio[keep - fade : keep] *= np.linspace(1.0, 0.0, fade)[:, None]
        audio[keep:] = 0.0
    encode_mp3(audio, rate, tmp)
    if job.kind == "corrupt":
        # Keep the first frame header, replace the rest with noise of the same length:
        # decoders find no valid stream and refuse the file.
        data = tmp.read_bytes()
        garbage = rng.integers(0, 256, size=max(len(data) - 100, 1000), dtype=np.uint8)
        tmp.write_bytes(data[:100] + garbage.tobytes())
    os.replace(tmp, final)
    return record


def write_tracks_csv(
    path: Path,
    records: Sequence[Dict[str, object]],
    subset: str,
    rng: np.random.Generator,
) -> None:
    """FMA-style tracks.csv: two header rows (top level, field), a ``track_id`` row, then
    one row per track; list columns hold Python literals as in the real file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([""] + [top for top, _ in TRACKS_COLUMNS])
    writer.writerow([""] + [field for _, field in TRACKS_COLUMNS])
    writer.writerow(["track_id"] + [""] * len(TRACKS_COLUMNS))
    set_subset = "large" if subset == "full" else subset
    for i, rec in enumerate(records):
        genre = (
            "Instrumental"
            if rec["instrumental"]
            else str(rng.choice([g for g in GENRES if g != "Instrumental"]))
        )
        day = f"2016-{1 + i % 12:02d}-{1 + i % 28:02d} 12:{i % 60:02d}:00"
        split = ("training",) * 8 + ("validation", "test")
        values = {
            ("album", "comments"): 0,
            ("album", "date_created"): day,
            ("album", "date_released"): day,
            ("album", "favorites"): 0,
            ("album", "id"): 1000 + i // 4,
            ("album", "listens"): int(rng.integers(100, 9999)),
            ("album", "tags"): "[]",
            ("album", "title"): f"{rec['title']} EP",
            ("album", "tracks"): 4,
            ("album", "type"): "Album",
            ("artist", "comments"): 0,
            ("artist", "date_created"): day,
            ("artist", "favorites"): 0,
            ("artist", "id"): 500 + i // 4,
            ("artist", "name"): rec["artist"],
            ("artist", "tags"): "[]",
            ("set", "split"): split[i % len(split)],
            ("set", "subset"): set_subset,
            ("track", "bit_rate"): 256000,
            ("track", "comments"): 0,
            ("track", "date_created"): day,
            ("track", "duration"): int(round(rec["duration"])),
            ("track", "favorites"): 0,
            ("track", "genre_top"): genre,
            ("track", "genres"): f"[{GENRES[genre]}]",
            ("track", "genres_all"): f"[{GENRES[genre]}]",
            ("track", "interest"): int(rng.integers(100, 5000)),
            ("track", "language_code"): "en",
            (
                "track",
                "license",
            ): "Attribution-NonCommercial-ShareAlike 3.0 International",
            ("track", "listens"): int(rng.integers(50, 5000)),
            ("track", "number"): 1 + i % 4,
            ("track", "tags"): "[]",
            ("track", "title"): rec["title"],
        }
        writer.writerow([rec["track_id"]] + [values.get(c, "") for c in TRACKS_COLUMNS])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buffer.getvalue())
    os.replace(tmp, path)


def plan_tracks(
    num_tracks: int, seed: int, faulty: bool
) -> List[Tuple[int, str, bool]]:
    """(track id, kind, instrumental) per track, deterministic in the seed."""
    n_faulty = sum(n for n, _ in FAULTY_KINDS.values()) if faulty else 0
    if num_tracks < n_faulty + 1:
        raise ValueError(
            f"num_tracks={num_tracks} is too small: {n_faulty} planted faulty files "
            f"need at least {n_faulty + 1} tracks (or pass --no-faulty)"
        )
    rng = np.random.default_rng([seed, 3])
    ids = 2 + np.concatenate([[0], np.cumsum(rng.integers(1, 40, size=num_tracks - 1))])
    kinds = ["normal"] * num_tracks
    if faulty:
        slots = rng.permutation(num_tracks)
        k = 0
        for kind, (count, _) in FAULTY_KINDS.items():
            for _ in range(count):
                kinds[int(slots[k])] = kind
                k += 1
    instrumental = rng.random(num_tracks) < 0.25
    return [(int(i), kind, bool(ins)) for i, kind, ins in zip(ids, kinds, instrumental)]


def generate_fma_like(
    out: Union[str, Path],
    subset: str = "small",
    num_tracks: int = 40,
    duration: float = 30.0,
    seed: int = 0,
    jobs: int = 1,
    faulty: bool = True,
    soundfont: Union[str, Path] = DEFAULT_TRAIN_SOUNDFONT,
    overwrite: bool = False,
    progress: bool = True,
) -> Dict[str, object]:
    """Generate (or complete) an FMA-like tree under ``out``; returns the manifest.

    Args:
        out: root folder (``fma_<subset>/``, ``fma_metadata/``, manifest).
        subset: which FMA subset folder to write (small, medium, large, full).
        num_tracks: number of MP3 files, planted faulty ones included.
        duration: seconds per track (FMA clips are 30 s).
        seed: master seed.
        jobs: worker processes.
        faulty: plant the files that the preparation must drop or resample.
        soundfont: SoundFont 2 file (default: the train soundfont).
        overwrite: replace output made with other parameters.
        progress: show a tqdm bar.
    """
    if subset not in SUBSETS:
        raise ValueError(f"subset={subset!r} is not one of {SUBSETS}")
    if not duration > 0:
        raise ValueError(f"duration={duration} must be positive seconds, e.g. 30")
    if jobs < 1:
        raise ValueError(f"jobs={jobs} must be >= 1")
    plan = plan_tracks(num_tracks, seed, faulty)
    require_tool("fluidsynth")
    require_tool("espeak-ng")
    soundfont = str(require_soundfont(soundfont))
    root = Path(out)
    params = {
        "subset": subset,
        "num_tracks": int(num_tracks),
        "duration": float(duration),
        "seed": int(seed),
        "faulty": bool(faulty),
        "soundfont": Path(soundfont).name,
        "format_version": 1,
    }
    generator = "espnet2_ext.datagen.fma_like"
    with output_lock(root):
        previous = check_existing_output(
            root, generator, params, overwrite, (f"fma_{subset}", "fma_metadata")
        )
        remove_partial(root)
        same_params = previous is not None and previous.get("params") == params
        if previous is not None and not same_params:
            for rec in previous.get("items", {}).values():
                (root / rec["path"]).unlink(missing_ok=True)
        old_items = previous.get("items", {}) if same_params else {}
        todo, records = [], {}
        for index, (track_id, kind, instrumental) in enumerate(plan):
            key = f"{track_id:06d}"
            path = root / track_path(subset, track_id)
            job = TrackJob(
                str(root),
                subset,
                index,
                track_id,
                kind,
                seed,
                float(duration),
                soundfont,
                instrumental,
            )
            if not overwrite and path.exists():
                records[key] = old_items.get(key) or track_record(job)[0]
                continue
            todo.append(job)
        manifest: Dict[str, object] = {
            "generator": generator,
            "params": params,
            "complete": False,
            "tools": tool_versions(),
            "items": records,
        }
        write_json_atomic(root / MANIFEST, manifest)
        for rec in run_jobs(render_track_job, todo, jobs, "fma-like tracks", progress):
            records[f"{rec['track_id']:06d}"] = rec
        manifest["items"] = dict(sorted(records.items()))
        by_kind: Dict[str, List[int]] = {}
        for rec in manifest["items"].values():
            by_kind.setdefault(rec["kind"], []).append(rec["track_id"])
        manifest["by_kind"] = by_kind
        manifest["expected"] = EXPECTED
        write_tracks_csv(
            root / "fma_metadata" / "tracks.csv",
            list(manifest["items"].values()),
            subset,
            np.random.default_rng([seed, 4]),
        )
        manifest["complete"] = True
        write_json_atomic(root / MANIFEST, manifest)
        remove_partial(root)
    return manifest


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet2_ext.datagen.fma_like",
        description="Generate an FMA-like set of unlabeled music mixtures (MP3, real FMA "
        "layout, tracks.csv) with planted files for the preparation's filters.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output root folder")
    parser.add_argument("--subset", default="small", choices=SUBSETS)
    parser.add_argument("--num-tracks", type=int, default=40, help="MP3 files in all")
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds per track"
    )
    parser.add_argument("--seed", type=int, default=0, help="master seed")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--no-faulty",
        action="store_true",
        help="do not plant low-rate/mono/48 kHz/corrupt/empty/silent files",
    )
    parser.add_argument("--soundfont", default=str(DEFAULT_TRAIN_SOUNDFONT))
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing tree made with other parameters",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        manifest = generate_fma_like(
            args.out,
            subset=args.subset,
            num_tracks=args.num_tracks,
            duration=args.duration,
            seed=args.seed,
            jobs=args.jobs,
            faulty=not args.no_faulty,
            soundfont=args.soundfont,
            overwrite=args.overwrite,
        )
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kinds = {k: len(v) for k, v in manifest["by_kind"].items()}
    print(f"{len(manifest['items'])} tracks in {args.out}: {kinds}")
    return 0


if __name__ == "__main__":
    # Run the importable module rather than __main__, so that worker processes can
    # unpickle the jobs and functions it sends them.
    from espnet2_ext.datagen.fma_like import main as _main

    sys.exit(_main())
