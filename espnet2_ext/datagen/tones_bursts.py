"""Two synthetic source classes that overlap in frequency and differ in structure.

The evidence data of the diffusion-prior separation (seeds/001, issue 13): a prior per
class is trained on single clips and test mixtures of one clip of each class are
separated. The classes share the whole band, so no fixed filter separates them; what
tells them apart is their structure in time and frequency:

* ``tones``: harmonic tones — 1 to 3 notes per clip, f0 log-uniform in
  [``f0_low``, ``f0_high``], harmonics up to 0.9 × Nyquist with a random spectral tilt,
  slow vibrato, attack/release envelopes (horizontal lines in a spectrogram);
* ``bursts``: noise bursts and clicks — 3 to 8 decaying bursts of coloured white noise
  at random onsets, decay 2 … 40 ms (vertical lines in a spectrogram).

Every clip is a deterministic function of (class, seed, index): :func:`make_clip` draws
it from ``numpy.random.default_rng([seed, class id, index])``, so any split can be
regenerated bit-exactly. Each clip is scaled to a random RMS in −25 … −20 dBFS (the
source level of the paper's data).

``python -m espnet2_ext.datagen.tones_bursts --out DIR`` writes the recipe layout of
``egs2/synth2/diffsep1``: ``DIR/<class>_{train,valid}/`` (wav.scp, speech_ref1_shape,
16-bit WAV clips), and ``DIR/{valid_mix,test}/`` (wav.scp of the mixtures, spk1.scp =
tones, spk2.scp = bursts, 32-bit float WAV; the mixture is exactly their sum).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

#: The classes in output order (spk1, spk2 of the mixtures).
CLASSES = ("tones", "bursts")

#: RMS range of every clip in dBFS (seeds/001: sources at −25 … −20 dBFS).
RMS_DB_RANGE = (-25.0, -20.0)

#: Seed offsets of the splits: the same clip index in two splits is a different clip.
_SPLIT_SEEDS = {"train": 0, "valid": 1, "valid_mix": 2, "test": 3}


def _set_rms(x: np.ndarray, rms_db: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    if rms <= 0.0:
        raise ValueError("cannot set the level of a silent clip")
    return (x * (10.0 ** (rms_db / 20.0) / rms)).astype(np.float32)


def harmonic_tones(
    rng: np.random.Generator,
    length: int,
    fs: int,
    f0_low: float = 100.0,
    f0_high: float = 500.0,
) -> np.ndarray:
    """1–3 harmonic notes (possibly overlapping) in a clip of ``length`` samples → [T]."""
    t = np.arange(length) / fs
    out = np.zeros(length)
    num_notes = int(rng.integers(1, 4))
    # note boundaries: a random partition of the clip, notes may ring over the next one
    cuts = np.sort(rng.uniform(0.0, 1.0, num_notes - 1)) * length
    starts = np.concatenate([[0.0], cuts]).astype(int)
    ends = np.concatenate([cuts, [length]]).astype(int)
    for start, end in zip(starts, ends):
        start = int(start + rng.uniform(0.0, 0.15) * (end - start))
        end = int(min(length, end + rng.uniform(0.0, 0.3) * fs))
        if end - start < 0.05 * fs:
            continue
        f0 = float(np.exp(rng.uniform(np.log(f0_low), np.log(f0_high))))
        vib_rate, vib_depth = rng.uniform(3.0, 7.0), rng.uniform(0.0, 0.012)
        seg = t[start:end] - t[start]
        phase = (
            2
            * np.pi
            * f0
            * (
                seg
                - vib_depth
                * np.cos(2 * np.pi * vib_rate * seg)
                / (2 * np.pi * vib_rate)
            )
        )
        tilt = rng.uniform(0.2, 1.0)
        num_harmonics = int(0.9 * (fs / 2) // f0)
        note = np.zeros(end - start)
        for k in range(1, num_harmonics + 1):
            amp = k**-tilt * rng.uniform(0.5, 1.0)
            note += amp * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
        attack = int(rng.uniform(0.005, 0.05) * fs)
        release = int(rng.uniform(0.03, 0.2) * fs)
        env = np.ones(end - start)
        env[: min(attack, len(env))] = np.linspace(0.0, 1.0, min(attack, len(env)))
        tail = min(release, len(env))
        env[len(env) - tail :] *= np.linspace(1.0, 0.0, tail)
        env *= np.exp(-seg * rng.uniform(0.0, 2.0))  # slow decay
        out[start:end] += rng.uniform(0.4, 1.0) * note * env
    if not out.any():  # every note too short: one note over the whole clip
        return harmonic_tones(rng, length, fs, f0_low, f0_high)
    return out.astype(np.float32)


def noise_bursts(rng: np.random.Generator, length: int, fs: int) -> np.ndarray:
    """3–8 exponentially decaying bursts of coloured noise → [T]."""
    out = np.zeros(length)
    for _ in range(int(rng.integers(3, 9))):
        onset = int(rng.integers(0, length - int(0.01 * fs)))
        decay = rng.uniform(0.002, 0.04)  # seconds
        span = min(length - onset, int(6 * decay * fs) + 1)
        burst = rng.standard_normal(span) * np.exp(-np.arange(span) / (decay * fs))
        # colour: a one-pole low- or high-pass of random strength (still broadband)
        pole = rng.uniform(-0.7, 0.7)
        burst = lfilter([1.0 - abs(pole)], [1.0, -pole], burst)
        out[onset : onset + span] += rng.uniform(0.3, 1.0) * burst
    return out.astype(np.float32)


def make_clip(
    name: str, seed: int, index: int, length: int, fs: int
) -> Tuple[np.ndarray, float]:
    """Clip ``index`` of class ``name`` under ``seed`` → (waveform [T], its RMS dBFS)."""
    if name not in CLASSES:
        raise ValueError(f"unknown class {name!r}; choose from {CLASSES}")
    rng = np.random.default_rng([seed, CLASSES.index(name), index])
    audio = (
        harmonic_tones(rng, length, fs)
        if name == "tones"
        else noise_bursts(rng, length, fs)
    )
    level = float(rng.uniform(*RMS_DB_RANGE))
    return _set_rms(audio, level), level


def _write_list(folder: Path, entries: Dict[str, Path]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wav.scp").write_text("".join(f"{k} {p}\n" for k, p in entries.items()))


def write_single_sources(
    out: Path, name: str, split: str, count: int, seconds: float, fs: int, seed: int
) -> None:
    """``out/<name>_<split>/``: ``count`` clips (16-bit WAV), wav.scp, shape file."""
    folder = out / f"{name}_{split}"
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    length = int(round(seconds * fs))
    entries, shapes = {}, []
    for index in range(count):
        audio, _ = make_clip(name, seed + 100 * _SPLIT_SEEDS[split], index, length, fs)
        key = f"{name}_{split}_{index:05d}"
        path = (folder / "wav" / f"{key}.wav").resolve()
        sf.write(path, audio, fs, subtype="PCM_16")
        entries[key] = path
        shapes.append(f"{key} {length}\n")
    _write_list(folder, entries)
    (folder / "speech_ref1_shape").write_text("".join(shapes))


def write_mixtures(
    out: Path, split: str, count: int, seconds: float, fs: int, seed: int
) -> None:
    """``out/<split>/``: mixtures of one clip per class (32-bit float WAV).

    wav.scp lists the mixtures, spk<n>.scp the sources in :data:`CLASSES` order.
    """
    folder = out / split
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    length = int(round(seconds * fs))
    lists: List[Dict[str, Path]] = [{} for _ in range(len(CLASSES) + 1)]
    for index in range(count):
        key = f"{split}_{index:04d}"
        sources = [
            make_clip(name, seed + 100 * _SPLIT_SEEDS[split], index, length, fs)[0]
            for name in CLASSES
        ]
        mixture = np.sum(sources, axis=0, dtype=np.float32)
        for n, audio in enumerate([mixture, *sources]):
            tag = "mix" if n == 0 else f"spk{n}"
            path = (folder / "wav" / f"{key}_{tag}.wav").resolve()
            sf.write(path, audio, fs, subtype="FLOAT")
            lists[n][key] = path
    _write_list(folder, lists[0])
    for n in range(1, len(CLASSES) + 1):
        (folder / f"spk{n}.scp").write_text(
            "".join(f"{k} {p}\n" for k, p in lists[n].items())
        )


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--fs", type=int, default=8000)
    p.add_argument("--seconds", type=float, default=1.0, help="clip length")
    p.add_argument("--num_train", type=int, default=3000, help="clips per class")
    p.add_argument("--num_valid", type=int, default=64, help="clips per class")
    p.add_argument("--num_valid_mix", type=int, default=4, help="validation mixtures")
    p.add_argument("--num_test", type=int, default=10, help="test mixtures")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.fs <= 0 or args.seconds <= 0:
        p.error("--fs and --seconds must be positive")
    for name in CLASSES:
        for split, count in (("train", args.num_train), ("valid", args.num_valid)):
            write_single_sources(
                args.out, name, split, count, args.seconds, args.fs, args.seed
            )
    for split, count in (("valid_mix", args.num_valid_mix), ("test", args.num_test)):
        write_mixtures(args.out, split, count, args.seconds, args.fs, args.seed)
    print(
        f"{args.out}: {args.num_train} + {args.num_valid} clips per class "
        f"({', '.join(CLASSES)}), {args.num_valid_mix} validation and {args.num_test} "
        f"test mixtures of {args.seconds} s at {args.fs} Hz"
    )


if __name__ == "__main__":
    main()
