"""Separating songs given as files and folders into stem files (the library behind
``espnet2-ext-separate``).

Each input ``<track>`` gives ``<out>/<track>/<stem>.<ext>``; a file inside a folder
argument keeps its path relative to that folder as its track name. The stems of a track
are written under temporary names and renamed only when all are complete, so an
interrupted run never leaves a truncated file under a stem's name.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

#: Extensions searched for in folder arguments.
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aif", ".aiff")

#: ``--bits`` → soundfile subtype.
SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}
FORMATS = ("wav", "flac")

logger = logging.getLogger("espnet2_ext.separate")


@dataclass
class Track:
    """One input: its file and the folder its stems go to."""

    path: Path
    name: str
    out_dir: Path


@dataclass
class Outcome:
    """What happened to one track (for the summary)."""

    track: Track
    status: str  # "ok", "skipped" or "failed"
    message: str = ""
    audio_seconds: float = 0.0
    seconds: float = 0.0


# --------------------------------------------------------------------------- inputs
def collect_tracks(
    inputs: Sequence[str], out: Path
) -> Tuple[List[Track], List[Tuple[Path, str]]]:
    """Expand files and folders into tracks; returns (tracks, [(path, problem)]).

    A missing path is a problem (reported, the others still run). Two inputs whose
    stems would go to the same folder are an error.
    """
    tracks: List[Track] = []
    problems: List[Tuple[Path, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
            )
            if not found:
                problems.append(
                    (path, f"no audio files ({', '.join(AUDIO_EXTENSIONS)})")
                )
            for p in found:
                name = p.relative_to(path).with_suffix("").as_posix()
                tracks.append(Track(p, name, out / name))
        elif path.is_file():
            tracks.append(Track(path, path.stem, out / path.stem))
        else:
            problems.append((path, "no such file or folder"))
    seen: Dict[Path, Track] = {}
    clashes = []
    for track in tracks:
        other = seen.setdefault(track.out_dir, track)
        if other is not track:
            clashes.append(f"{other.path} and {track.path} -> {track.out_dir}")
    if clashes:
        raise ValueError(
            "several inputs would write the same stems (same track name):\n  "
            + "\n  ".join(clashes)
            + "\nrename them, or give their parent folder so that the relative paths "
            "tell them apart"
        )
    return tracks, problems


# --------------------------------------------------------------------------- outputs
def stem_paths(track: Track, stems: Sequence[str], fmt: str) -> Dict[str, Path]:
    return {stem: track.out_dir / f"{stem}.{fmt}" for stem in stems}


def _to_frames(wave: torch.Tensor, bits: str, where: str) -> np.ndarray:
    """[C, T] float → [T, C] numpy for soundfile; PCM outputs clipped to [-1, 1]."""
    data = wave.detach().cpu().float().numpy().T
    if bits != "float":
        over = int(np.count_nonzero(np.abs(data) > 1.0))
        if over:
            logger.warning(
                "%s: %d samples beyond full scale clipped (%s-bit output; use --bits "
                "float to keep them)",
                where,
                over,
                bits,
            )
            data = np.clip(data, -1.0, 1.0)
    return np.ascontiguousarray(data)


def write_stems(
    stems: Dict[str, torch.Tensor],
    paths: Dict[str, Path],
    sample_rate: int,
    *,
    fmt: str,
    bits: str,
) -> None:
    """Write all stems of a track: temporary files first, renamed when all exist.

    An exception (or Ctrl-C) on the way removes the temporary files; no stem path ever
    holds a partly written file.
    """
    import soundfile as sf

    temps: List[Tuple[Path, Path]] = []
    try:
        for stem, wave in stems.items():
            final = paths[stem]
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".{final.name}.{os.getpid()}.partial")
            temps.append((tmp, final))
            sf.write(
                str(tmp),
                _to_frames(wave, bits, str(final)),
                sample_rate,
                format=fmt.upper(),
                subtype=SUBTYPES[bits],
            )
        for tmp, final in temps:
            os.replace(tmp, final)
    finally:
        for tmp, _ in temps:
            if tmp.exists():
                tmp.unlink()


def summarize(outcomes: List[Outcome], load_seconds: float) -> str:
    done = [o for o in outcomes if o.status == "ok"]
    skipped = [o for o in outcomes if o.status == "skipped"]
    failed = [o for o in outcomes if o.status == "failed"]
    lines = [
        f"Summary: {len(done)} separated, {len(skipped)} skipped, {len(failed)} failed "
        f"(model loaded in {load_seconds:.1f} s)"
    ]
    for o in outcomes:
        if o.status == "ok":
            speed = o.seconds / o.audio_seconds if o.audio_seconds else float("nan")
            detail = (
                f"{o.audio_seconds:.1f} s of audio in {o.seconds:.1f} s "
                f"({speed:.2f} s per second of audio) -> {o.track.out_dir}"
            )
        else:
            detail = o.message
        lines.append(f"  {o.status:<8} {o.track.name}: {detail}")
    if done:
        audio = sum(o.audio_seconds for o in done)
        spent = sum(o.seconds for o in done)
        lines.append(f"Total: {audio:.1f} s of audio separated in {spent:.1f} s")
    return "\n".join(lines)


def separate_tracks(
    separator,
    tracks: Sequence[Track],
    *,
    fmt: str,
    bits: str,
    overwrite: bool,
    progress: bool,
) -> List[Outcome]:
    """Separate every track with a :class:`~espnet2_ext.separation.Separator` and
    write its stems; one :class:`Outcome` per track (failures are reported, not
    raised, so the other tracks still run; Ctrl-C stops at once)."""
    outcomes: List[Outcome] = []
    for index, track in enumerate(tracks):
        paths = stem_paths(track, separator.stems, fmt)
        existing = [p for p in paths.values() if p.exists()]
        if existing and not overwrite:
            message = (
                f"{len(existing)} stem file(s) exist (e.g. {existing[0]}); "
                "--overwrite replaces them"
            )
            logger.warning(
                "[%d/%d] %s: skipped, %s", index + 1, len(tracks), track.name, message
            )
            outcomes.append(Outcome(track, "skipped", message))
            continue
        logger.info("[%d/%d] %s (%s)", index + 1, len(tracks), track.name, track.path)
        begin = time.perf_counter()
        try:
            stems = separator.separate_file(track.path, progress=progress)
            write_stems(stems, paths, separator.sample_rate, fmt=fmt, bits=bits)
        except KeyboardInterrupt:
            logger.error(
                "interrupted while separating %s; no partial file kept", track.path
            )
            raise
        except Exception as e:  # report, go on with the other files
            logger.error(
                "[%d/%d] %s: failed: %s", index + 1, len(tracks), track.name, e
            )
            outcomes.append(Outcome(track, "failed", f"{type(e).__name__}: {e}"))
            continue
        audio_seconds = next(iter(stems.values())).shape[-1] / separator.sample_rate
        outcomes.append(
            Outcome(
                track,
                "ok",
                audio_seconds=audio_seconds,
                seconds=time.perf_counter() - begin,
            )
        )
    return outcomes
