#!/usr/bin/env python3
"""Data of the speech + sound-event recipe (seeds/001): prior training sets and test
mixtures.

Two sources of audio:

* ``--mode real``: VCTK (speech) and FSDKaggle2018 (41 sound-event classes), resampled
  to 16 kHz. Speakers are split as the authors do (a first group for training, the rest
  for testing); events use the official train / test clips.
* ``--mode embedded`` (default, no download): speech spoken by espeak-ng voices
  (held-out voices for the test), sound events rendered from real recorded samples of
  the GM soundfont with FluidSynth: percussion hits and the sound-effect programs
  (FluidR3_GM for training, TimGM6mb's different recordings for the test by default).

Writes, under ``--out``:
    speech_{train,valid}/   wav.scp  speech_ref1_shape  utt2category
    sfx_{train,valid}/      wav.scp  speech_ref1_shape  utt2category
    sfx_categories.txt      one class name per line (label order of a conditional prior)
    test/                   wav.scp (mixtures)  spk1.scp (speech)  spk2.scp … (events)
                            utt2category ("speech <event classes>" per mixture)

Test mixtures follow the authors' protocol: each source on a ``--seconds`` canvas
(speech cropped or placed at random, each event placed to overlap the previous
source), every canvas scaled to an RMS drawn in −25 … −20 dBFS, then summed.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import subprocess
import sys
import tempfile
from math import gcd
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from espnet2_ext.datagen.midi import MidiFile

FLUIDR3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
TIMGM = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
ESPEAK_RATE = 22050

#: Embedded event classes: GM percussion notes (channel 10) or a GM program (0-based).
EVENT_CLASSES: Dict[str, Tuple[str, Sequence[int]]] = {
    "kick": ("drum", (35, 36)),
    "snare": ("drum", (38, 40)),
    "clap": ("drum", (39,)),
    "hihat": ("drum", (42, 44, 46)),
    "tom": ("drum", (41, 43, 45, 47, 48, 50)),
    "crash": ("drum", (49, 57)),
    "ride": ("drum", (51, 59)),
    "tambourine": ("drum", (54,)),
    "cowbell": ("drum", (56,)),
    "conga": ("drum", (62, 63, 64)),
    "woodblock": ("drum", (76, 77)),
    "triangle": ("drum", (80, 81)),
    "tinkle_bell": ("program", (112,)),
    "steel_drum": ("program", (114,)),
    "taiko": ("program", (116,)),
    "reverse_cymbal": ("program", (119,)),
    "fret_noise": ("program", (120,)),
    "breath": ("program", (121,)),
    "seashore": ("program", (122,)),
    "bird": ("program", (123,)),
    "telephone": ("program", (124,)),
    "helicopter": ("program", (125,)),
    "applause": ("program", (126,)),
    "gunshot": ("program", (127,)),
}

#: espeak-ng voices: (language voice, variant). Train and test speakers are disjoint.
TRAIN_VOICES = [
    (lang, var)
    for lang in ("en-us", "en", "en-gb-scotland", "en-gb-x-rp")
    for var in ("m1", "m2", "m3", "m4", "f1", "f2", "f3", "klatt")
]
TEST_VOICES = [
    (lang, var)
    for lang in ("en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
    for var in ("m5", "m6", "f4", "f5")
]

_WORDS = {
    "det": "the a one this that every some".split(),
    "adj": "small bright quiet heavy yellow ancient gentle rapid silver hollow "
    "narrow distant crooked frozen golden".split(),
    "noun": "river window garden teacher engine letter mountain basket candle "
    "harbour pencil blanket station village orchard".split(),
    "verb": "carried painted followed opened measured covered gathered watched "
    "visited answered".split(),
    "adv": [
        "slowly",
        "today",
        "again",
        "quickly",
        "carefully",
        "before noon",
        "after dark",
        "at last",
        "by the road",
    ],
}


def _sentence(rng: random.Random) -> str:
    w = _WORDS
    parts = [
        rng.choice(w["det"]),
        rng.choice(w["adj"]),
        rng.choice(w["noun"]),
        rng.choice(w["verb"]),
        rng.choice(w["det"]),
        rng.choice(w["noun"]),
    ]
    if rng.random() < 0.6:
        parts.append(rng.choice(w["adv"]))
    return " ".join(parts)


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return x.astype(np.float32)
    g = gcd(rate, target)
    return resample_poly(x, target // g, rate // g).astype(np.float32)


def _mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1) if x.ndim == 2 else x


def _trim(x: np.ndarray, threshold: float = 1e-4) -> np.ndarray:
    idx = np.flatnonzero(np.abs(x) > threshold)
    return x[idx[0] : idx[-1] + 1] if len(idx) else x[:0]


class SetWriter:
    """wav.scp / speech_ref1_shape / utt2category of one training set."""

    def __init__(self, folder: Path, fs: int):
        self.folder = folder
        self.fs = fs
        (folder / "wav").mkdir(parents=True, exist_ok=True)
        self.rows: List[Tuple[str, str, int, str]] = []

    def add(self, key: str, audio: np.ndarray, category: str) -> None:
        path = (self.folder / "wav" / f"{key}.wav").resolve()
        sf.write(path, audio.astype(np.float32), self.fs, subtype="FLOAT")
        self.rows.append((key, str(path), len(audio), category))

    def close(self) -> None:
        rows = sorted(self.rows)
        (self.folder / "wav.scp").write_text("".join(f"{r[0]} {r[1]}\n" for r in rows))
        (self.folder / "speech_ref1_shape").write_text(
            "".join(f"{k} {n}\n" for k, _, n, _ in rows)
        )
        (self.folder / "utt2category").write_text(
            "".join(f"{r[0]} {r[3]}\n" for r in rows)
        )


# ------------------------------------------------------------------ embedded audio
def espeak_utterances(
    voices: Sequence[Tuple[str, str]], count: int, fs: int, seed: int
) -> List[Tuple[str, np.ndarray]]:
    """``count`` utterances spread over ``voices``: [(speaker, audio at fs)]."""
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    rng = random.Random(seed)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(count):
            lang, var = voices[i % len(voices)]
            text = _sentence(rng)
            if rng.random() < 0.5:
                text += ", and " + _sentence(rng)
            wav = Path(tmp) / "u.wav"
            subprocess.run(
                [
                    "espeak-ng",
                    "-v",
                    f"{lang}+{var}",
                    "-s",
                    str(rng.randint(130, 190)),
                    "-p",
                    str(rng.randint(25, 75)),
                    "-w",
                    str(wav),
                    text,
                ],
                check=True,
                capture_output=True,
            )
            audio, rate = sf.read(wav, dtype="float32")
            out.append((f"{lang}_{var}", _resample(_mono(audio), rate, fs)))
    return out


def render_events(
    counts: Dict[str, int], fs: int, soundfont: Path, seed: int, slot: float = 5.0
) -> Dict[str, List[np.ndarray]]:
    """Clips (0.05 … 4 s of sound) of event classes, ``counts[name]`` each, in one pass.

    Every clip gets a ``slot``-second slot of one MIDI file (percussion on channel 10,
    the sound-effect programs on channel 1 with a program change per slot), so the
    soundfont is loaded once; the slots are cut apart and their silence trimmed.
    """
    if shutil.which("fluidsynth") is None:
        sys.exit("fluidsynth is not installed (Debian: apt-get install fluidsynth)")
    if not soundfont.exists():
        sys.exit(f"soundfont {soundfont} not found (Debian: fluid-soundfont-gm)")
    rng = random.Random(seed)
    midi = MidiFile(ticks_per_beat=480)
    track = midi.add_track("events")
    track.tempo(60.0)  # one beat per second: ticks = seconds × 480
    sec = lambda s: int(round(s * 480))  # noqa: E731
    slots: List[str] = []
    for name in sorted(counts):
        kind, notes = EVENT_CLASSES[name]
        for _ in range(counts[name]):
            start = len(slots) * slot
            slots.append(name)
            if kind == "drum":
                t = start + rng.uniform(0.0, 0.3)
                for _ in range(rng.randint(1, 6)):
                    velocity = rng.randint(60, 127)
                    track.note(9, rng.choice(notes), velocity, sec(t), sec(0.1))
                    t += rng.choice((0.125, 0.25, 0.375, 0.5))
                    if t > start + 2.5:
                        break
            else:
                track.program_change(0, notes[0], tick=sec(start))
                length = rng.uniform(0.4, 2.5)
                pitch, velocity = rng.randint(48, 76), rng.randint(70, 127)
                track.note(0, pitch, velocity, sec(start + 0.01), sec(length))
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "e.mid", Path(tmp) / "e.wav"
        midi.write(mid)
        subprocess.run(
            [
                "fluidsynth",
                "-ni",
                "-R",
                "0",
                "-C",
                "0",
                "-g",
                "1.0",
                "-r",
                str(fs),
                "-F",
                str(wav),
                "-T",
                "wav",
                str(soundfont),
                str(mid),
            ],
            check=True,
            capture_output=True,
        )
        audio, _ = sf.read(wav, dtype="float32")
    audio = _mono(audio)
    clips: Dict[str, List[np.ndarray]] = {name: [] for name in counts}
    for i, name in enumerate(slots):
        piece = _trim(audio[int(i * slot * fs) : int(((i + 1) * slot - 0.5) * fs)])
        if len(piece) > 0.05 * fs:
            clips[name].append(piece[: int(4.0 * fs)])
    return clips


# ---------------------------------------------------------------------- real audio
def vctk_speakers(root: Path) -> Dict[str, List[Path]]:
    for sub, pattern in (("wav48_silence_trimmed", "*_mic1.flac"), ("wav48", "*.wav")):
        if (root / sub).is_dir():
            folders = sorted(d for d in (root / sub).iterdir() if d.is_dir())
            speakers = {d.name: sorted(d.glob(pattern)) for d in folders}
            return {k: v for k, v in speakers.items() if v}
    sys.exit(f"{root}: no VCTK wav48_silence_trimmed/ (or wav48/) folder")


def fsd_clips(root: Path, split: str) -> List[Tuple[Path, str]]:
    meta = root / "FSDKaggle2018.meta"
    if split == "train":
        table = meta / "train_post_competition.csv"
        audio = root / "FSDKaggle2018.audio_train"
    else:
        table = meta / "test_post_competition_scoring_clips.csv"
        audio = root / "FSDKaggle2018.audio_test"
    if not table.exists():
        sys.exit(f"{table} not found: is --fsd_root the FSDKaggle2018 folder?")
    with table.open(newline="") as f:
        return [(audio / row["fname"], row["label"]) for row in csv.DictReader(f)]


def _load(path: Path, fs: int, max_seconds: Optional[float] = None) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32", always_2d=False)
    audio = _resample(_mono(audio), rate, fs)
    return audio if max_seconds is None else audio[: int(max_seconds * fs)]


# ----------------------------------------------------------------------- mixtures
def place_and_mix(
    speech: np.ndarray,
    events: Sequence[np.ndarray],
    length: int,
    rng: np.random.Generator,
) -> Tuple[np.ndarray, List[np.ndarray]]:
    """The authors' canvas protocol: (mixture, [speech, event1, …]), ``length`` each."""
    canvases = []
    prev = None
    for i, audio in enumerate([speech, *events]):
        if len(audio) > length:
            start = int(rng.integers(0, len(audio) - length + 1))
            audio = audio[start : start + length]
        n = len(audio)
        if prev is None:
            start = int(rng.integers(0, length - n + 1))
        else:
            low, high = prev[0], min(prev[1], length - n)
            if low >= high:
                start = min(prev[0], length - n)
            else:
                start = int(rng.integers(low, high + 1))
        canvas = np.zeros(length, dtype=np.float64)
        canvas[start : start + n] = audio
        prev = (start, start + n)
        rms = np.sqrt(np.mean(canvas**2))
        canvas *= 10 ** (rng.uniform(-25.0, -20.0) / 20.0) / max(rms, 1e-12)
        canvases.append(canvas.astype(np.float32))
    return np.sum(canvases, axis=0).astype(np.float32), canvases


def write_test(
    out: Path,
    speech: List[Tuple[str, np.ndarray]],
    events: List[Tuple[str, np.ndarray]],
    num_mixtures: int,
    num_events: int,
    fs: int,
    seconds: float,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    folder = out / "test"
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    length = int(seconds * fs)
    by_class: Dict[str, List[np.ndarray]] = {}
    for name, audio in events:
        by_class.setdefault(name, []).append(audio)
    classes = sorted(by_class)
    scps = [[] for _ in range(num_events + 2)]
    cats = []
    for i in range(num_mixtures):
        key = f"mix{i:04d}"
        _, sp = speech[int(rng.integers(len(speech)))]
        chosen = rng.choice(len(classes), size=num_events, replace=False)
        evs = []
        for c in chosen:
            pool = by_class[classes[c]]
            evs.append(pool[int(rng.integers(len(pool)))])
        mixture, sources = place_and_mix(sp, evs, length, rng)
        for j, audio in enumerate([mixture, *sources]):
            name = "mix" if j == 0 else f"spk{j}"
            path = (folder / "wav" / f"{key}_{name}.wav").resolve()
            sf.write(path, audio, fs, subtype="FLOAT")
            scps[j].append(f"{key} {path}\n")
        cats.append(f"{key} speech {' '.join(classes[c] for c in chosen)}\n")
    (folder / "wav.scp").write_text("".join(scps[0]))
    for j in range(1, num_events + 2):
        (folder / f"spk{j}.scp").write_text("".join(scps[j]))
    (folder / "utt2category").write_text("".join(cats))


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--mode", choices=("embedded", "real"), default="embedded")
    p.add_argument("--vctk_root", type=Path, default=None)
    p.add_argument("--fsd_root", type=Path, default=None)
    p.add_argument("--fs", type=int, default=16000)
    p.add_argument("--seconds", type=float, default=4.0, help="test mixture length")
    p.add_argument("--num_speech_train", type=int, default=400)
    p.add_argument("--num_speech_valid", type=int, default=20)
    p.add_argument("--num_events_per_class", type=int, default=24, help="train clips")
    p.add_argument("--num_valid_events_per_class", type=int, default=2)
    p.add_argument("--num_test_events_per_class", type=int, default=4)
    p.add_argument("--train_speakers", type=int, default=100, help="real: VCTK")
    p.add_argument("--num_test", type=int, default=100, help="test mixtures")
    p.add_argument("--num_test_events", type=int, default=1, help="events per mixture")
    p.add_argument("--train_soundfont", type=Path, default=FLUIDR3)
    p.add_argument("--test_soundfont", type=Path, default=TIMGM)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    out = args.out
    writers = {
        name: SetWriter(out / name, args.fs)
        for name in ("speech_train", "speech_valid", "sfx_train", "sfx_valid")
    }
    if args.mode == "embedded":
        num_speech = args.num_speech_train + args.num_speech_valid
        utts = espeak_utterances(TRAIN_VOICES, num_speech, args.fs, args.seed)
        num_test_speech = max(2 * args.num_test, 8)
        test_speech = espeak_utterances(
            TEST_VOICES, num_test_speech, args.fs, args.seed + 1
        )
        classes = sorted(EVENT_CLASSES)
        n_train = args.num_events_per_class + args.num_valid_events_per_class
        rendered = render_events(
            {c: n_train for c in classes}, args.fs, args.train_soundfont, args.seed
        )
        train_events = [(c, clip) for c in classes for clip in rendered[c]]
        rendered = render_events(
            {c: args.num_test_events_per_class for c in classes},
            args.fs,
            args.test_soundfont,
            args.seed + 1,
        )
        test_events = [(c, clip) for c in classes for clip in rendered[c]]
        valid_every = max(1, n_train // max(args.num_valid_events_per_class, 1))
    else:
        if args.vctk_root is None or args.fsd_root is None:
            sys.exit("--mode real needs --vctk_root and --fsd_root")
        speakers = vctk_speakers(args.vctk_root)
        names = sorted(speakers)
        random.Random(args.seed).shuffle(names)
        train_spk, test_spk = names[: args.train_speakers], names[args.train_speakers :]
        pool = [(s, f) for s in train_spk for f in speakers[s]]
        random.Random(args.seed).shuffle(pool)
        pool = pool[: args.num_speech_train + args.num_speech_valid]
        utts = [(s, _load(f, args.fs)) for s, f in pool]
        test_pool = [(s, f) for s in test_spk for f in speakers[s]]
        random.Random(args.seed + 1).shuffle(test_pool)
        test_pool = test_pool[: max(2 * args.num_test, 8)]
        test_speech = [(s, _load(f, args.fs)) for s, f in test_pool]
        train_events = [
            (label, _load(f, args.fs, 4.0))
            for f, label in fsd_clips(args.fsd_root, "train")
        ]
        test_events = [
            (label, _load(f, args.fs, 4.0))
            for f, label in fsd_clips(args.fsd_root, "test")
        ]
        classes = sorted({label for label, _ in train_events})
        valid_every = 20

    for i, (speaker, audio) in enumerate(utts):
        target = "speech_valid" if i < args.num_speech_valid else "speech_train"
        writers[target].add(f"{speaker}_{i:05d}", audio, "speech")
    for i, (name, audio) in enumerate(train_events):
        target = "sfx_valid" if i % valid_every == valid_every - 1 else "sfx_train"
        writers[target].add(f"{name}_{i:05d}", audio, name)
    for writer in writers.values():
        writer.close()
    (out / "sfx_categories.txt").write_text("".join(f"{c}\n" for c in classes))
    write_test(
        out,
        test_speech,
        test_events,
        args.num_test,
        args.num_test_events,
        args.fs,
        args.seconds,
        args.seed + 2,
    )
    print(
        f"{out}: {len(utts)} utterances, {len(train_events)} event clips, "
        f"{len(classes)} classes, {args.num_test} test mixtures"
    )


if __name__ == "__main__":
    main()
