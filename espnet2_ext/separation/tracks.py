"""Separating songs given as files and folders into stem files (the library behind
``espnet2-ext-separate``).

Each input ``<track>`` gives ``<out>/<model name>/<track>/<stem>.<ext>`` (demucs'
layout, so two models never write into each other's folders); a file inside a folder
argument keeps its path relative to that folder as its track name. Every file found in
a folder is accounted for: audio files are separated, anything else is listed as
skipped with the reason.

The stems of a track are written as one set (:func:`espnet2_ext.utils.atomic.
atomic_write_set`): all to temporary files, then renamed together with the signals
held, so an interrupted or failed run leaves either the complete new set or the old
one, never a mix and never a truncated file under a stem's name. A full disk stops the
run with "disk full" and the path.
"""

from __future__ import annotations

import errno
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from espnet2_ext.separation.audio import AUDIO_EXTENSIONS, read_audio
from espnet2_ext.utils.atomic import DiskFullError, atomic_write_set
from espnet2_ext.utils.audio_io import AUDIO_FORMATS, FORMAT_BITS, encode_audio

#: The default sample format of PCM outputs.
DEFAULT_BITS = "24"

logger = logging.getLogger("espnet2_ext.separate")


@dataclass(frozen=True)
class OutputConfig:
    """How stems are written (the command's output options, validated once).

    Args:
        format: ``wav``, ``flac`` or ``mp3`` (320 kbit/s).
        bits: ``16``, ``24`` or ``float`` (WAV), ``16`` or ``24`` (FLAC); ``None``:
            24 for WAV and FLAC, nothing for MP3.
        two_stems: write only this stem and the rest (``no_<stem>`` = the mixture
            minus the stem, the mixture as the model saw it).
        overwrite: replace the stems of a track that has some already (else the
            track is skipped).
    """

    format: str = "wav"
    bits: Optional[str] = None
    two_stems: Optional[str] = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.format not in AUDIO_FORMATS:
            raise ValueError(
                f"format must be one of {', '.join(AUDIO_FORMATS)}, got "
                f"{self.format!r}"
            )
        allowed = FORMAT_BITS[self.format]
        if self.bits is None:
            object.__setattr__(self, "bits", DEFAULT_BITS if allowed else None)
        elif self.bits not in allowed:
            if not allowed:
                raise ValueError(
                    f"--bits {self.bits}: {self.format.upper()} has no sample format "
                    "(MP3 is written at 320 kbit/s); drop --bits"
                )
            raise ValueError(
                f"--bits {self.bits}: {self.format.upper()} stores "
                f"{' or '.join(allowed)}"
                + (
                    " (FLAC stores integers only: use --format wav for float)"
                    if self.format == "flac" and self.bits == "float"
                    else ""
                )
            )

    def stem_names(self, model_stems: Sequence[str]) -> Tuple[str, ...]:
        """The file stems a track gets from a model with ``model_stems``."""
        if self.two_stems is None:
            return tuple(model_stems)
        if self.two_stems not in model_stems:
            raise ValueError(
                f"--two-stems {self.two_stems}: the model has no such stem; its stems "
                f"are {', '.join(model_stems)}"
            )
        return (self.two_stems, f"no_{self.two_stems}")


@dataclass
class Track:
    """One input: its file and its name (its stems go to ``<out>/<model>/<name>/``)."""

    path: Path
    name: str


@dataclass
class Outcome:
    """What happened to one input (for the summary)."""

    track: Track
    status: str  # "ok", "skipped" or "failed"
    message: str = ""
    audio_seconds: float = 0.0
    seconds: float = 0.0
    out_dir: Optional[Path] = None


# --------------------------------------------------------------------------- inputs
def collect_tracks(
    inputs: Sequence[str], out: Optional[Path] = None
) -> Tuple[List[Track], List[Outcome]]:
    """Expand files and folders into tracks.

    Returns:
        (tracks, outcomes of inputs that will not be separated: a missing path is
        "failed"; a folder member that is not an audio file, or lies inside ``out``,
        is "skipped" with the reason)

    Raises:
        ValueError: two inputs would write the same stems (the same track name).
    """
    tracks: List[Track] = []
    others: List[Outcome] = []
    out_abs = None if out is None else Path(out).resolve()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            members = sorted(p for p in path.rglob("*") if p.is_file())
            found = 0
            for p in members:
                name = p.relative_to(path).with_suffix("").as_posix()
                shown = Track(p, p.relative_to(path).as_posix())
                if out_abs is not None and out_abs in p.resolve().parents:
                    others.append(Outcome(shown, "skipped", "inside the output folder"))
                elif p.suffix.lower() not in AUDIO_EXTENSIONS:
                    kind = p.suffix.lower() or "no extension"
                    others.append(
                        Outcome(
                            shown,
                            "skipped",
                            f"not an audio file name ({kind}); give it by name to "
                            "try it anyway",
                        )
                    )
                else:
                    tracks.append(Track(p, name))
                    found += 1
            if not found:
                others.append(
                    Outcome(
                        Track(path, str(path)),
                        "failed",
                        "no audio files in the folder"
                        + ("" if members else " (it is empty)"),
                    )
                )
        elif path.is_file():
            tracks.append(Track(path, path.stem))
        else:
            others.append(
                Outcome(Track(path, str(path)), "failed", "no such file or folder")
            )
    seen: Dict[str, Track] = {}
    clashes = []
    for track in tracks:
        other = seen.setdefault(track.name, track)
        if other is not track:
            clashes.append(f"{other.path} and {track.path} -> {track.name}")
    if clashes:
        raise ValueError(
            "several inputs would write the same stems (same track name):\n  "
            + "\n  ".join(clashes)
            + "\nrename them, or give their parent folder so that the relative paths "
            "tell them apart"
        )
    return tracks, others


# --------------------------------------------------------------------------- outputs
def stem_paths(out_dir: Path, stems: Sequence[str], fmt: str) -> Dict[str, Path]:
    return {stem: out_dir / f"{stem}.{fmt}" for stem in stems}


def write_stems(
    stems: Dict[str, torch.Tensor],
    paths: Dict[str, Path],
    sample_rate: int,
    *,
    fmt: str,
    bits: Optional[str],
) -> None:
    """Write all stems ([C, T] float each) of a track as one set.

    Encoded in memory, then :func:`~espnet2_ext.utils.atomic.atomic_write_set`:
    either every stem file is new or none changed; no temporary file is left.

    Raises:
        DiskFullError: no space left (nothing of the set changed).
    """
    files = {}
    for stem, wave in stems.items():
        data = wave.detach().cpu().float().numpy().T  # [T, C]
        encoded, clipped = encode_audio(data, sample_rate, fmt, bits)
        if clipped:
            logger.warning(
                "%s: %d samples beyond full scale clipped (%s output; use --format "
                "wav --bits float to keep them)",
                paths[stem],
                clipped,
                fmt if bits is None else f"{bits}-bit",
            )
        files[paths[stem]] = encoded
    try:
        atomic_write_set(files)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT) and not isinstance(e, DiskFullError):
            raise DiskFullError(e.filename or next(iter(files)), e.errno) from e
        raise


def separate_one(separator, track: Track, names: Sequence[str], *, progress: bool):
    """Decode ``track`` and separate it; returns ``{file stem: [C, T]}``.

    With ``names = (stem, "no_" + stem)`` (``--two-stems``) the second is the mixture,
    as converted for the model, minus the stem.
    """
    mix, rate = read_audio(track.path)
    prepared, notes = separator.prepare(mix[None], rate)
    for note in notes:
        logger.info("%s: %s", track.name, note)
    stems = separator.separate(prepared[0], separator.sample_rate, progress=progress)
    if tuple(names) == tuple(separator.stems):
        return stems
    stem = names[0]
    return {stem: stems[stem], names[1]: prepared[0] - stems[stem]}


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
                f"({speed:.2f} s per second of audio) -> {o.out_dir}"
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
    out: Path,
    options: OutputConfig,
    *,
    progress: bool,
) -> List[Outcome]:
    """Separate every track with a :class:`~espnet2_ext.separation.Separator` and
    write its stems under ``<out>/<separator.name>/<track>/``.

    One :class:`Outcome` per track: a failure is reported and the other tracks still
    run; a full disk stops the run (the tracks not started are reported); Ctrl-C (and
    SIGTERM under :func:`~espnet2_ext.utils.atomic.terminate_raises`) stops at once,
    with no temporary file left.
    """
    names = options.stem_names(separator.stems)
    outcomes: List[Outcome] = []
    for index, track in enumerate(tracks):
        out_dir = Path(out) / separator.name / track.name
        paths = stem_paths(out_dir, names, options.format)
        where = f"[{index + 1}/{len(tracks)}] {track.name}"
        existing = [p for p in paths.values() if p.exists()]
        if existing and not options.overwrite:
            message = (
                f"{len(existing)} stem file(s) exist (e.g. {existing[0]}); "
                "--overwrite replaces them"
            )
            logger.warning("%s: skipped, %s", where, message)
            outcomes.append(Outcome(track, "skipped", message, out_dir=out_dir))
            continue
        logger.info("%s (%s)", where, track.path)
        begin = time.perf_counter()
        try:
            stems = separate_one(separator, track, names, progress=progress)
            write_stems(
                stems,
                paths,
                separator.sample_rate,
                fmt=options.format,
                bits=options.bits,
            )
        except KeyboardInterrupt:
            logger.error(
                "interrupted while separating %s; no partial file kept", track.path
            )
            raise
        except DiskFullError as e:
            logger.error("%s: %s; stopping", where, e)
            outcomes.append(Outcome(track, "failed", str(e), out_dir=out_dir))
            outcomes += [
                Outcome(t, "failed", "not started: the disk is full")
                for t in tracks[index + 1 :]
            ]
            break
        except Exception as e:  # report, go on with the other files
            logger.error("%s: failed: %s", where, e)
            outcomes.append(
                Outcome(track, "failed", f"{type(e).__name__}: {e}", out_dir=out_dir)
            )
            continue
        audio_seconds = next(iter(stems.values())).shape[-1] / separator.sample_rate
        outcomes.append(
            Outcome(
                track,
                "ok",
                audio_seconds=audio_seconds,
                seconds=time.perf_counter() - begin,
                out_dir=out_dir,
            )
        )
    return outcomes
