"""Generate a researcher's "own data" in seconds: songs with other stems, unlabeled mixtures.

Usage::

    python -m espnet2_ext.datagen.own_data --out ROOT [--num-train 5 --num-test 2
        --num-unlabeled 10 --duration 10 --unlabeled-duration 12 --seed 0]

writes::

    ROOT/songs/{train,test}/<Artist - Title>/{mixture,melody,chords,rhythm}.wav
    ROOT/unlabeled/mix_NN.{wav,flac,mp3,ogg,m4a}   # formats in turn; one file at 48 kHz
    ROOT/my_valid_songs.txt                         # 2 train songs (for --valid_list)
    ROOT/generation_manifest.json

What it is for: the recipes' own-data end-to-end test (issue 17), the cases a real user
brings that MUSDB18-HQ and FMA do not: stem names that are not MUSDB's (``melody`` =
the vocals, ``chords`` = the other instruments, ``rhythm`` = bass and drums), one train
song and one test song without vocals (their ``melody.wav`` exists and holds zeros),
a validation list outside the tree (``valid_songs.txt`` would be picked up by itself),
and a plain folder of mixtures in mixed formats (M4A needs ffmpeg; without it those
files are written as OGG and the manifest says so).

Songs are composed with :mod:`espnet2_ext.datagen.compose` (the scores of the MUSDB18-HQ-
and FMA-like sets) and rendered by a small additive synthesiser in numpy instead of
FluidSynth and espeak-ng, so that a whole set takes a few seconds: harmonic tones with
an attack/decay envelope for pitched parts and the sung melody (with vibrato), noise and
pitch-swept sines for drums. Stems are PCM_16 and the mixture is their exact integer sum
(:func:`espnet2_ext.datagen.musdb_like.quantise_stems`). Deterministic for a seed. The
output folder is written under a temporary name and renamed into place; an existing
folder made by this generator with the same parameters is kept as it is, any other is
refused unless ``--overwrite`` (which replaces only a folder this generator made).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from espnet2_ext.constants import MUSDB_STEMS, MUSIC_SAMPLE_RATE
from espnet2_ext.datagen.compose import PROGRAM_SETS, Part, Song, compose_song
from espnet2_ext.datagen.musdb_like import quantise_stems, write_json_atomic

MANIFEST = "generation_manifest.json"
VALID_LIST = "my_valid_songs.txt"
GENERATOR = "espnet2_ext.datagen.own_data"

#: Our stem → the MUSDB stems of the composer that it gathers.
STEM_SOURCES = {
    "melody": ("vocals",),
    "chords": ("other",),
    "rhythm": ("bass", "drums"),
}
STEMS = tuple(STEM_SOURCES)
#: Formats of the unlabeled mixtures, in turn.
UNLABELED_FORMATS = ("wav", "flac", "mp3", "ogg", "m4a")
#: The unlabeled file written at this rate (the preparation resamples it).
HIGH_RATE_INDEX, HIGH_RATE = 5, 48000


# ---------------------------------------------------------------------- synthesis


def _hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def _envelope(n: int, rate: int, sustain: bool) -> np.ndarray:
    """Attack 5 ms, decay (slow when ``sustain``), release over the last 20 ms."""
    t = np.arange(n, dtype=np.float32) / np.float32(rate)
    env = np.minimum(1.0, t / 0.005) * np.exp(-t / (2.0 if sustain else 0.35))
    release = min(n, int(0.02 * rate))
    if release:
        env[-release:] *= np.linspace(1.0, 0.0, release, dtype=np.float32)
    return env


#: Samples of one cycle of the wavetables.
TABLE_SIZE = 4096


@functools.lru_cache(maxsize=None)
def _wavetable(partials: int) -> np.ndarray:
    """One cycle of ``sum_k sin(k·x) / k``, k = 1 … partials ([TABLE_SIZE] float32)."""
    x = 2 * np.pi * np.arange(TABLE_SIZE) / TABLE_SIZE
    return sum(np.sin(k * x) / k for k in range(1, partials + 1)).astype(np.float32)


def _tone(
    pitch: float, n: int, rate: int, partials: int, sustain: bool, vibrato: float = 0.0
) -> np.ndarray:
    """A harmonic tone of ``n`` samples ([n]), partial k at amplitude 1/k (wavetable)."""
    t = np.arange(n, dtype=np.float64) / rate
    cycles = _hz(pitch) * t
    if vibrato:
        cycles += vibrato / (2 * np.pi) * np.sin(2 * np.pi * 5.5 * t)  # ≈ 5.5 Hz
    index = (cycles * TABLE_SIZE).astype(np.int64) % TABLE_SIZE
    return _wavetable(partials)[index] * _envelope(n, rate, sustain)


def _drum(pitch: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A drum hit ([n]) by GM percussion key: kick, snare, hats/cymbals, toms."""
    if pitch in (35, 36):  # kick: a falling sine
        n = int(0.25 * rate)
        t = np.arange(n) / rate
        return np.sin(2 * np.pi * (45 * t + 40 * (1 - np.exp(-t / 0.03)))) * np.exp(
            -t / 0.08
        )
    if pitch in (38, 40):  # snare: noise and a 180 Hz body
        n = int(0.2 * rate)
        t = np.arange(n) / rate
        body = 0.5 * np.sin(2 * np.pi * 180 * t)
        return (rng.standard_normal(n) * 0.6 + body) * np.exp(-t / 0.06)
    if pitch in (42, 44, 46, 49, 51, 52, 55, 57, 59):  # hats and cymbals
        n = int((0.08 if pitch in (42, 44) else 0.6) * rate)
        t = np.arange(n) / rate
        noise = np.diff(rng.standard_normal(n + 1))  # tilted to the highs
        return 0.4 * noise * np.exp(-t / (0.03 if pitch in (42, 44) else 0.25))
    n = int(0.3 * rate)  # toms and the rest: a pitched thump
    t = np.arange(n) / rate
    return np.sin(2 * np.pi * _hz(pitch - 24) * t) * np.exp(-t / 0.12)


def _place(out: np.ndarray, start: int, mono: np.ndarray, gain: float, pan: float):
    """Add ``mono`` at ``start`` into stereo ``out`` ([T, 2]) with a constant-power pan."""
    end = min(out.shape[0], start + mono.shape[0])
    if end <= start or start < 0:
        return
    angle = (pan + 1.0) * np.pi / 4.0
    segment = gain * mono[: end - start]
    out[start:end, 0] += np.cos(angle) * segment
    out[start:end, 1] += np.sin(angle) * segment


def render_part(
    song: Song, part: Part, rate: int, rng: np.random.Generator
) -> np.ndarray:
    """One instrument part as stereo ``[T, 2]`` float64."""
    out = np.zeros((int(round(song.duration * rate)), 2), np.float32)
    sustain = part.name in ("pad", "backing")
    partials = 2 if part.stem == "bass" else 4
    for note in part.notes:
        start = int(round(song.beats_to_seconds(note.start) * rate))
        gain = (note.velocity / 127.0) * (part.volume / 127.0)
        if part.is_drums:
            hit = _drum(note.pitch, rate, rng)
        else:
            n = max(1, int(round(song.beats_to_seconds(note.duration) * rate)))
            hit = _tone(note.pitch, n, rate, partials, sustain)
        _place(out, start, hit, gain, part.pan)
    return out


def render_musdb_stems(
    song: Song, rate: int, rng: np.random.Generator
) -> Dict[str, np.ndarray]:
    """The composer's four stems (vocals, bass, drums, other), ``[T, 2]`` float32,
    unscaled (a stem without notes is all zeros)."""
    length = int(round(song.duration * rate))
    stems = {s: np.zeros((length, 2), np.float32) for s in MUSDB_STEMS}
    for part in song.parts:
        stems[part.stem] += render_part(song, part, rate, rng)
    for note in song.lead_vocal:  # the sung melody: a bright tone with vibrato
        start = int(round(song.beats_to_seconds(note.start) * rate))
        n = max(1, int(round(song.beats_to_seconds(note.duration) * rate)))
        tone = _tone(note.pitch, n, rate, partials=6, sustain=True, vibrato=0.3)
        _place(stems["vocals"], start, tone, note.velocity / 127.0, song.vocal_pan)
    return stems


def level_stems(
    stems: Dict[str, np.ndarray], rng: np.random.Generator
) -> Dict[str, np.ndarray]:
    """Each non-silent stem scaled to an RMS of −20 dBFS ± 3 dB (random), clipped to
    ±0.99; a silent stem stays all zeros."""
    out = {}
    for name, audio in stems.items():
        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
        if rms > 0:
            audio = audio * (10 ** ((-20.0 + rng.uniform(-3, 3)) / 20.0) / rms)
        out[name] = np.clip(audio, -0.99, 0.99)
    return out


def render_own_stems(
    song: Song, rate: int, rng: np.random.Generator
) -> Dict[str, np.ndarray]:
    """``{melody, chords, rhythm}`` of ``song`` (:data:`STEM_SOURCES`), ``[T, 2]``,
    levelled by :func:`level_stems`."""
    musdb = render_musdb_stems(song, rate, rng)
    gathered = {
        stem: sum(musdb[s] for s in sources) for stem, sources in STEM_SOURCES.items()
    }
    return level_stems(gathered, rng)


# ---------------------------------------------------------------------- writing


def _write_m4a(path: Path, audio: np.ndarray, rate: int) -> None:
    """AAC in an MP4 container (what phones and music stores hand out), via ffmpeg."""
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar", str(rate),
         "-ac", str(audio.shape[1]), "-i", "pipe:0", "-c:a", "aac", "-b:a", "160k",
         "-map_metadata", "-1", "-fflags", "+bitexact", str(path)],
        input=np.ascontiguousarray(audio, dtype=np.float32).tobytes(),
        capture_output=True,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(
            f"ffmpeg could not write {path}: {proc.stderr.decode()[-300:]}"
        )


def write_unlabeled(path: Path, audio: np.ndarray, rate: int, fmt: str) -> None:
    """Write a mixture ``[T, 2]`` in ``fmt`` (wav, flac, mp3, ogg or m4a)."""
    if fmt == "m4a":
        _write_m4a(path, audio, rate)
    elif fmt == "mp3":
        sf.write(path, audio, rate, format="MP3")
    elif fmt == "ogg":
        sf.write(path, audio, rate, format="OGG", subtype="VORBIS")
    else:
        sf.write(path, audio, rate, subtype="PCM_16")


def _song(seed: int, split: str, index: int, duration: float, instrumental: bool):
    rng = np.random.default_rng(
        [seed, 7, {"train": 0, "test": 1, "unl": 2}[split], index]
    )
    programs = PROGRAM_SETS["test" if split == "test" else "train"]
    return compose_song(rng, duration, programs, instrumental=instrumental), rng


def generate_own_data(
    out: Union[str, Path],
    num_train: int = 5,
    num_test: int = 2,
    num_unlabeled: int = 10,
    duration: float = 10.0,
    unlabeled_duration: float = 12.0,
    seed: int = 0,
    overwrite: bool = False,
) -> Dict[str, object]:
    """Write the set under ``out`` (see the module docstring); returns the manifest.

    Raises:
        ValueError: bad counts or durations, or ``out`` exists and was not made by this
            generator with these parameters (and ``overwrite`` is false, or it was not
            made by this generator at all).
    """
    if num_train < 3 or num_test < 1 or num_unlabeled < 0:
        raise ValueError(
            "num_train must be at least 3 (two validation songs and a training song), "
            f"num_test at least 1, num_unlabeled at least 0; got {num_train}, "
            f"{num_test}, {num_unlabeled}"
        )
    if not (duration > 0 and unlabeled_duration > 0):
        raise ValueError("durations must be positive seconds")
    params = dict(
        num_train=num_train,
        num_test=num_test,
        num_unlabeled=num_unlabeled,
        duration=float(duration),
        unlabeled_duration=float(unlabeled_duration),
        seed=int(seed),
        stems=list(STEMS),
    )
    root = Path(out)
    previous = _read_manifest(root)
    if root.exists() and any(root.iterdir()):
        if previous is None:
            raise ValueError(
                f"{root} exists and was not made by {GENERATOR}: choose another --out"
            )
        if previous.get("params") == params and previous.get("complete"):
            return previous
        if not overwrite:
            raise ValueError(
                f"{root} holds a set made with other parameters "
                f"({previous.get('params')}); pass --overwrite to replace it"
            )
    rate = MUSIC_SAMPLE_RATE
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp_", dir=root.parent))
    try:
        manifest = _generate(tmp, params, rate)
        write_json_atomic(tmp / MANIFEST, manifest)
        if root.exists():  # ours (checked above): replaced
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _read_manifest(root: Path) -> Optional[Dict[str, object]]:
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("generator") == GENERATOR else None


def _generate(tmp: Path, params: Dict[str, object], rate: int) -> Dict[str, object]:
    seed, duration = params["seed"], params["duration"]
    songs: Dict[str, List[Dict[str, object]]] = {"train": [], "test": []}
    taken = set()
    for split, count in (("train", params["num_train"]), ("test", params["num_test"])):
        for index in range(count):
            instrumental = index == 1  # the second song of each split: no vocals
            song, rng = _song(seed, split, index, duration, instrumental)
            base, n = song.title, 2
            while song.name.lower() in taken:
                song.title, n = f"{base} {n}", n + 1
            taken.add(song.name.lower())
            stems = render_own_stems(song, rate, rng)
            quantised, mixture = quantise_stems(stems)
            folder = tmp / "songs" / split / song.name
            folder.mkdir(parents=True)
            sf.write(folder / "mixture.wav", mixture, rate, subtype="PCM_16")
            for stem, audio in quantised.items():
                sf.write(folder / f"{stem}.wav", audio, rate, subtype="PCM_16")
            silent = [s for s, a in quantised.items() if not np.any(a)]
            songs[split].append(dict(name=song.name, silent_stems=silent))
    valid = [songs["train"][0]["name"], songs["train"][2]["name"]]
    (tmp / VALID_LIST).write_text("".join(f"{name}\n" for name in valid))

    unlabeled = []
    folder = tmp / "unlabeled"
    folder.mkdir()
    have_ffmpeg = shutil.which("ffmpeg") is not None
    for index in range(params["num_unlabeled"]):
        song, rng = _song(seed, "unl", index, params["unlabeled_duration"], False)
        mix = sum(render_own_stems(song, rate, rng).values())
        mix = 0.9 * mix / max(1.0, float(np.max(np.abs(mix))) / 0.9)
        fmt = UNLABELED_FORMATS[index % len(UNLABELED_FORMATS)]
        if fmt == "m4a" and not have_ffmpeg:
            fmt = "ogg"  # recorded below: M4A needs ffmpeg
        file_rate = rate
        if index == HIGH_RATE_INDEX:
            file_rate = HIGH_RATE
            mix = resample_poly(mix, HIGH_RATE // 300, rate // 300, axis=0)
        name = f"mix_{index:02d}.{fmt}"
        write_unlabeled(folder / name, mix.astype(np.float32), file_rate, fmt)
        unlabeled.append(dict(file=name, sample_rate=file_rate, format=fmt))
    return dict(
        generator=GENERATOR,
        complete=True,
        params=params,
        stems=list(STEMS),
        songs=songs,
        valid_list=VALID_LIST,
        valid_songs=valid,
        unlabeled=unlabeled,
        m4a="ffmpeg" if have_ffmpeg else "not written: ffmpeg is not installed",
    )


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Generate songs with other stems and unlabeled mixtures in mixed "
        "formats, for the recipes' own-data test.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--num-train", type=int, default=5)
    parser.add_argument("--num-test", type=int, default=2)
    parser.add_argument("--num-unlabeled", type=int, default=10)
    parser.add_argument("--duration", type=float, default=10.0, help="song seconds")
    parser.add_argument("--unlabeled-duration", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a set made by this generator"
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        manifest = generate_own_data(
            args.out,
            num_train=args.num_train,
            num_test=args.num_test,
            num_unlabeled=args.num_unlabeled,
            duration=args.duration,
            unlabeled_duration=args.unlabeled_duration,
            seed=args.seed,
            overwrite=args.overwrite,
        )
    except (ValueError, OSError, RuntimeError) as err:
        print(f"own_data: {err}", file=sys.stderr)
        return 1
    print(
        f"{args.out}: {len(manifest['songs']['train'])} train and "
        f"{len(manifest['songs']['test'])} test songs (stems {' '.join(STEMS)}), "
        f"{len(manifest['unlabeled'])} unlabeled files; validation list "
        f"{os.path.join(args.out, VALID_LIST)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
