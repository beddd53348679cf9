"""Audio rendering of composed songs: FluidSynth for instruments, espeak-ng for singing.

Instrument parts become one Standard MIDI File per stem and are rendered by the
``fluidsynth`` command line (stereo float, the song's own reverb room) from a General MIDI
soundfont of recorded instrument samples. The lead vocal is espeak-ng speech turned into
singing: every word is synthesised once on a flat pitch (SSML ``prosody range="0"``), then a
pitch-synchronous overlap-add (TD-PSOLA) puts it on the note's pitch and length with a
scoop and vibrato, keeping the voice's formants; the result is panned and sent to a stereo
reverb. Stem levels, fades and the final mix are set in numpy (:func:`balance_stems`).

Arrays here are audio in soundfile's layout: ``[T, C]`` (samples, channels).
"""

from __future__ import annotations

import functools
import io
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf
from scipy.signal import butter, fftconvolve, lfilter, resample_poly, sosfilt

from espnet2_ext.constants import MUSDB_STEMS, MUSIC_SAMPLE_RATE
from espnet2_ext.datagen.compose import Part, Song, SungNote
from espnet2_ext.datagen.midi import MidiFile

SOUNDFONT_DIR = Path("/usr/share/sounds/sf2")
#: Soundfont for train/valid songs and FMA-like tracks (Debian fluid-soundfont-gm).
DEFAULT_TRAIN_SOUNDFONT = SOUNDFONT_DIR / "FluidR3_GM.sf2"
#: A different soundfont for the test split (Debian timgm6mb-soundfont).
DEFAULT_TEST_SOUNDFONT = SOUNDFONT_DIR / "TimGM6mb.sf2"

#: Debian packages that provide the tools and soundfonts.
DEBIAN_PACKAGES = {
    "fluidsynth": "fluidsynth",
    "espeak-ng": "espeak-ng",
    "FluidR3_GM.sf2": "fluid-soundfont-gm",
    "TimGM6mb.sf2": "timgm6mb-soundfont",
}

#: espeak-ng writes 22.05 kHz mono.
ESPEAK_RATE = 22050


class MissingDependencyError(RuntimeError):
    """A program or soundfont the generator needs is not installed."""


def _install_hint(name: str) -> str:
    package = DEBIAN_PACKAGES.get(name)
    if package is None:
        return ""
    return (
        f" Install it with: sudo apt-get install -y --no-install-recommends {package}"
    )


def require_tool(name: str) -> str:
    """Absolute path of the program ``name``, or an error naming its Debian package."""
    path = shutil.which(name)
    if path is None:
        raise MissingDependencyError(
            f"'{name}' is not on PATH; the data generator needs it."
            + _install_hint(name)
        )
    return path


def require_soundfont(path: Union[str, Path]) -> Path:
    """Check that ``path`` is a readable SoundFont 2 file; say which package has it."""
    path = Path(path)
    if not path.is_file():
        raise MissingDependencyError(
            f"soundfont {path} does not exist." + _install_hint(path.name)
        )
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise MissingDependencyError(
            f"{path} is not a SoundFont 2 file (no RIFF/sfbk header)."
            + _install_hint(path.name)
        )
    return path


@functools.lru_cache(maxsize=8)
def soundfont_presets(path: Union[str, Path]) -> FrozenSet[Tuple[int, int]]:
    """The (bank, program) pairs a SoundFont 2 file defines (read from its ``phdr``).

    Walks the RIFF chunks and skips the sample data, so it is fast on large files.
    """
    path = require_soundfont(path)
    presets = set()
    with open(path, "rb") as f:
        _, riff_size, _ = struct.unpack("<4sI4s", f.read(12))
        end = 8 + riff_size
        while f.tell() < end:
            header = f.read(8)
            if len(header) < 8:
                break
            chunk, size = struct.unpack("<4sI", header)
            if chunk == b"LIST" and f.read(4) == b"pdta":
                stop = f.tell() + size - 4
                while f.tell() < stop:
                    sub, sub_size = struct.unpack("<4sI", f.read(8))
                    body = f.read(sub_size + (sub_size & 1))
                    if sub == b"phdr":
                        # 38-byte records; the last one is the terminal "EOP" record.
                        for i in range(0, sub_size - 38, 38):
                            program, bank = struct.unpack("<HH", body[i + 20 : i + 24])
                            presets.add((bank, program))
                break
            f.seek(size - 4 + (size & 1) if chunk == b"LIST" else size + (size & 1), 1)
    if not presets:
        raise ValueError(f"{path}: no presets found; the soundfont looks damaged")
    return frozenset(presets)


def check_programs(parts: Sequence[Part], soundfont: Union[str, Path]) -> None:
    """Raise if the soundfont lacks a program (or drum kit) that ``parts`` use."""
    presets = soundfont_presets(str(soundfont))
    missing = sorted(
        {
            (128 if p.is_drums else 0, p.program)
            for p in parts
            if (128 if p.is_drums else 0, p.program) not in presets
        }
    )
    if missing:
        raise ValueError(
            f"soundfont {soundfont} lacks the (bank, program) presets {missing}; use a "
            "complete General MIDI soundfont or drop those programs from the ProgramSet"
        )


# ------------------------------------------------------------------------ FluidSynth


@dataclass(frozen=True)
class Room:
    """FluidSynth reverb settings shared by all stems of a song (one room)."""

    room_size: float = 0.3
    damp: float = 0.3
    width: float = 0.8
    level: float = 0.7

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Room":
        return cls(
            room_size=float(rng.uniform(0.15, 0.75)),
            damp=float(rng.uniform(0.1, 0.7)),
            width=float(rng.uniform(0.5, 1.0)),
            level=float(rng.uniform(0.4, 0.9)),
        )


def parts_to_midi(
    parts: Sequence[Part],
    bpm: float,
    gains_db: Optional[Dict[str, float]] = None,
    ticks_per_beat: int = 480,
) -> MidiFile:
    """One track per part: program, volume (CC7), pan (CC10), reverb (CC91), chorus
    (CC93) and the notes. ``gains_db`` scales the CC7 volume per stem (GM volume is
    40·log10(v/127) dB, so a gain of g dB multiplies v by 10**(g/40))."""
    midi = MidiFile(ticks_per_beat=ticks_per_beat)
    conductor = midi.add_track("conductor")
    conductor.tempo(bpm)
    conductor.time_signature(4, 4)
    for part in parts:
        track = midi.add_track(part.name)
        ch = part.channel
        volume = part.volume
        if gains_db is not None:
            volume = volume * 10.0 ** (gains_db.get(part.stem, 0.0) / 40.0)
        track.program_change(ch, part.program)
        track.control_change(ch, 7, int(np.clip(round(volume), 1, 127)))
        track.control_change(ch, 10, int(np.clip(round(64 + 63 * part.pan), 0, 127)))
        track.control_change(ch, 91, part.reverb)
        track.control_change(ch, 93, part.chorus)
        for note in part.notes:
            start = midi.beats_to_ticks(note.start)
            length = max(midi.beats_to_ticks(note.start + note.duration) - start, 1)
            track.note(ch, note.pitch, note.velocity, start, length)
    return midi


def render_midi(
    midi: MidiFile,
    soundfont: Union[str, Path],
    num_samples: int,
    sample_rate: int = MUSIC_SAMPLE_RATE,
    room: Room = Room(),
    gain: float = 0.2,
) -> np.ndarray:
    """Render ``midi`` with the fluidsynth command line.

    Returns:
        float32 array [num_samples, 2] (cut or zero-padded to the requested length).
    """
    fluidsynth = require_tool("fluidsynth")
    soundfont = require_soundfont(soundfont)
    with tempfile.TemporaryDirectory(prefix="datagen-fs-") as tmp:
        mid = Path(tmp) / "in.mid"
        raw = Path(tmp) / "out.raw"
        midi.write(mid)
        # Raw little-endian float output: no dither, no header, exact samples.
        cmd = [fluidsynth] + "-q -n -i -R 1 -C 1 -T raw -O float -E little".split()
        cmd += ["-g", f"{gain:.4f}", "-r", str(sample_rate)]
        settings = {
            "synth.polyphony": 512,
            "synth.reverb.room-size": f"{room.room_size:.4f}",
            "synth.reverb.damp": f"{room.damp:.4f}",
            "synth.reverb.width": f"{room.width:.4f}",
            "synth.reverb.level": f"{room.level:.4f}",
        }
        for key, value in settings.items():
            cmd += ["-o", f"{key}={value}"]
        cmd += ["-F", str(raw), str(soundfont), str(mid)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not raw.exists():
            raise RuntimeError(
                f"fluidsynth failed (exit {proc.returncode}) rendering with {soundfont}: "
                f"{proc.stderr.strip()[-2000:]}"
            )
        audio = np.fromfile(raw, dtype="<f4")
    audio = audio[: audio.size // 2 * 2].reshape(-1, 2)  # [T, 2], interleaved L/R
    out = np.zeros((num_samples, 2), dtype=np.float32)
    n = min(num_samples, audio.shape[0])
    out[:n] = audio[:n]
    return out


# ------------------------------------------------------------------------ espeak-ng


def frames_f0(
    frames: np.ndarray, fs: int, fmin: float, fmax: float
) -> Tuple[np.ndarray, np.ndarray]:
    """f0 and periodicity of each frame from its normalised autocorrelation.

    Args:
        frames: [F, N] (frames, samples).
    Returns:
        (f0 [F] in Hz, periodicity [F] in [0, 1]); both 0 where a frame is silent.
    """
    frames = frames - frames.mean(axis=1, keepdims=True)
    n = frames.shape[1]
    power = np.abs(np.fft.rfft(frames, 2 * n, axis=1)) ** 2
    ac = np.fft.irfft(power, axis=1)[:, :n]  # [F, lag]
    lo, hi = int(fs / fmax), min(int(fs / fmin), n - 1)
    lags = np.arange(lo, hi)
    energy = ac[:, :1]
    safe = np.where(energy > 0, energy, 1.0)
    # Normalise by the overlap length so long lags are not penalised.
    norm = ac[:, lo:hi] / (safe * (n - lags) / n)
    norm[energy[:, 0] <= 0] = 0.0
    best = norm.max(axis=1)
    # The shortest lag within 95 % of the best avoids octave-down errors.
    k = np.argmax(norm >= 0.95 * best[:, None], axis=1)
    periodicity = np.where(best > 0, norm[np.arange(len(k)), k], 0.0)
    f0 = np.where(best > 0, fs / (lo + k), 0.0)
    return f0, periodicity


def _frame_f0(
    frame: np.ndarray, fs: int, fmin: float, fmax: float
) -> Tuple[float, float]:
    """(f0, periodicity) of one frame [N]."""
    f0, periodicity = frames_f0(frame[None, :], fs, fmin, fmax)
    return float(f0[0]), float(periodicity[0])


def voiced_nucleus(x: np.ndarray, fs: int) -> Tuple[int, int, float]:
    """Locate the sung vowel of a word: (start, end, f0) of the longest run of loud,
    periodic 30 ms frames (hop 10 ms)."""
    win, hop = int(0.03 * fs), int(0.01 * fs)
    if x.size < win:
        return 0, x.size, 0.0
    starts = np.arange(0, x.size - win + 1, hop)
    frames = x[starts[:, None] + np.arange(win)]  # [F, win]
    energy = np.mean(frames**2, axis=1)
    f0, periodicity = frames_f0(frames, fs, 60.0, 600.0)
    voiced = (periodicity > 0.6) & (energy > 0.2 * energy.max())
    best, run_start, best_span = None, None, (0, 0)
    for i, v in enumerate(np.append(voiced, False)):
        if v and run_start is None:
            run_start = i
        elif not v and run_start is not None:
            if best is None or i - run_start > best:
                best, best_span = i - run_start, (run_start, i)
            run_start = None
    if best is None:
        return 0, x.size, 0.0
    a, b = best_span
    return int(starts[a]), int(starts[b - 1] + win), float(np.median(f0[a:b]))


@dataclass
class _Word:
    audio: np.ndarray  # [T] at ESPEAK_RATE, silence trimmed
    nucleus: Tuple[int, int]
    f0: float
    marks: np.ndarray  # pitch marks (sample positions)


class EspeakSinger:
    """Sings words on given pitches with an espeak-ng voice (TD-PSOLA on flat speech).

    Args:
        voice: espeak-ng voice, e.g. ``"en-us+f3"``.
        words_per_minute: espeak-ng speaking rate for the raw syllables.
    """

    def __init__(self, voice: str = "en-us+f3", words_per_minute: int = 130) -> None:
        self.voice = voice
        self.words_per_minute = words_per_minute
        self.espeak = require_tool("espeak-ng")
        self._cache: Dict[Tuple[str, int], _Word] = {}
        self._calibration: Optional[List[Tuple[int, float]]] = None

    def _speak(self, word: str, pitch_param: int) -> np.ndarray:
        if not word.replace("'", "").isalpha():
            raise ValueError(f"word {word!r} must be letters only (it goes into SSML)")
        ssml = f'<speak><prosody range="0">{word}</prosody></speak>'
        cmd = [self.espeak, "-v", self.voice, "-s", str(self.words_per_minute)]
        cmd += ["-p", str(pitch_param), "-m", "--stdout", ssml]
        proc = subprocess.run(cmd, capture_output=True)
        if proc.returncode != 0 or not proc.stdout:
            raise RuntimeError(
                f"espeak-ng failed for voice {self.voice!r}: "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
        audio, fs = sf.read(io.BytesIO(proc.stdout), dtype="float64")
        if fs != ESPEAK_RATE:
            audio = resample_poly(audio, ESPEAK_RATE, fs)
        return audio

    def calibration(self) -> List[Tuple[int, float]]:
        """(espeak pitch parameter, measured f0) pairs, ascending."""
        if self._calibration is None:
            table = []
            for p in (20, 50, 80, 99):
                audio = self._speak("la", p)
                _, _, f0 = voiced_nucleus(audio, ESPEAK_RATE)
                if f0 > 0:
                    table.append((p, f0))
            if not table:
                raise RuntimeError(
                    f"espeak-ng voice {self.voice!r} produced no voiced audio"
                )
            self._calibration = table
        return self._calibration

    def pitch_param_for(self, f0: float) -> int:
        """The espeak pitch parameter whose flat f0 is closest to ``f0`` (log scale)."""
        table = self.calibration()
        ps = np.array([p for p, _ in table], dtype=float)
        fs = np.log(np.array([f for _, f in table]))
        p = np.interp(np.log(f0), fs, ps)  # clamps outside the voice's range
        return int(round(float(p)))

    def word(self, word: str, pitch_param: int) -> _Word:
        key = (word, pitch_param)
        if key not in self._cache:
            audio = self._speak(word, pitch_param)
            level = np.abs(audio)
            loud = np.nonzero(level > 0.02 * max(level.max(), 1e-9))[0]
            if loud.size == 0:
                raise RuntimeError(f"espeak-ng produced silence for {word!r}")
            margin = int(0.005 * ESPEAK_RATE)
            audio = audio[max(loud[0] - margin, 0) : loud[-1] + margin]
            a, b, f0 = voiced_nucleus(audio, ESPEAK_RATE)
            if f0 <= 0:
                f0 = dict(self.calibration()).get(pitch_param, self.calibration()[0][1])
            self._cache[key] = _Word(audio, (a, b), f0, _pitch_marks(audio, a, b, f0))
        return self._cache[key]

    def sing(
        self,
        notes: Sequence[SungNote],
        bpm: float,
        num_samples: int,
        rng: np.random.Generator,
        sample_rate: int = MUSIC_SAMPLE_RATE,
    ) -> np.ndarray:
        """The lead-vocal track.

        Returns:
            float32 mono array [num_samples] at ``sample_rate``.
        """
        n_low = int(np.ceil(num_samples * ESPEAK_RATE / sample_rate)) + 1
        track = np.zeros(n_low + ESPEAK_RATE, dtype=np.float64)
        if notes:
            median_f0 = float(np.median([_midi_to_hz(n.pitch) for n in notes]))
            pitch_param = self.pitch_param_for(median_f0)
        vibrato_rate = float(rng.uniform(4.8, 6.2))
        vibrato_depth = float(rng.uniform(15.0, 45.0))  # cents
        sec_per_beat = 60.0 / bpm
        for note in notes:
            if note.start * sec_per_beat * ESPEAK_RATE >= n_low:
                continue  # after the end of the rendered excerpt
            word = self.word(note.word, pitch_param)
            dur = int(note.duration * sec_per_beat * ESPEAK_RATE)
            if dur < int(0.06 * ESPEAK_RATE):
                continue
            sung = _psola_note(
                word,
                _midi_to_hz(note.pitch),
                dur,
                vibrato_rate,
                vibrato_depth,
                float(rng.uniform(0, 2 * np.pi)),
            )
            rms = np.sqrt(np.mean(sung**2)) + 1e-12
            sung *= 0.1 / rms * (note.velocity / 127.0) ** 1.5
            # Sing the leading consonant before the beat so the vowel lands on it.
            lead_in = min(word.nucleus[0], int(0.08 * ESPEAK_RATE))
            start = int(note.start * sec_per_beat * ESPEAK_RATE) - lead_in
            if start < 0:
                sung, start = sung[-start:], 0
            stop = min(start + sung.size, track.size)
            track[start:stop] += sung[: stop - start]
        up = resample_poly(track, sample_rate, ESPEAK_RATE)[:num_samples]
        return add_air(up, sample_rate, float(rng.uniform(-34.0, -26.0))).astype(
            np.float32
        )


def add_air(x: np.ndarray, sample_rate: int, level_db: float) -> np.ndarray:
    """Restore the top octave that espeak-ng's 22.05 kHz output lacks.

    Real vocals carry sibilance and breath above 11 kHz; without it a separator could
    learn "nothing up there is voice". An exciter adds the high-passed even harmonics of
    the voice (full-wave rectification) ``level_db`` below the voice's RMS.

    Args:
        x: mono [T].
    """
    rms = np.sqrt(np.mean(x**2))
    if rms == 0 or sample_rate < 2 * ESPEAK_RATE:  # no room above espeak's band
        return x
    harmonics = np.abs(x)
    sos = butter(4, 0.45 * ESPEAK_RATE, btype="highpass", fs=sample_rate, output="sos")
    air = sosfilt(sos, harmonics)
    air_rms = np.sqrt(np.mean(air**2))
    if air_rms == 0:
        return x
    return x + air * (rms / air_rms) * 10 ** (level_db / 20)


def _midi_to_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69) / 12.0)


def _pitch_marks(x: np.ndarray, a: int, b: int, f0: float) -> np.ndarray:
    """Pitch marks every period, snapped to waveform peaks inside the vowel [a, b)."""
    period = ESPEAK_RATE / f0
    centre = (a + b) // 2
    half = int(period)
    seg = x[max(centre - half, 0) : centre + half]
    anchor = max(centre - half, 0) + int(np.argmax(seg)) if seg.size else centre
    marks = [float(anchor)]
    for direction in (1, -1):
        m = float(anchor)
        while True:
            m += direction * period
            if m < 0 or m >= x.size:
                break
            if a <= m < b:  # snap to the local peak only where the voice is periodic
                lo, hi = int(m - 0.2 * period), int(m + 0.2 * period) + 1
                lo, hi = max(lo, 0), min(hi, x.size)
                m = float(lo + int(np.argmax(x[lo:hi])))
            marks.append(m)
    return np.array(sorted(marks))


def _psola_note(
    word: _Word,
    f0: float,
    length: int,
    vibrato_rate: float,
    vibrato_depth: float,
    phase: float,
) -> np.ndarray:
    """Put ``word`` on pitch ``f0`` for ``length`` samples (at ESPEAK_RATE).

    The consonants before and after the vowel keep their natural length (compressed when
    the note is short); the vowel is stretched or shortened to fill the note. Pitch has a
    50-cent scoop into the note and, on notes over 0.3 s, delayed vibrato.
    """
    x, marks = word.audio, word.marks
    a, b = word.nucleus
    onset, coda = a, x.size - b
    room = 0.6 * length
    squeeze = min(1.0, room / max(onset + coda, 1))
    onset_out, coda_out = onset * squeeze, coda * squeeze
    vowel_out = max(length - onset_out - coda_out, 1.0)

    def source_time(t: float) -> float:
        if t < onset_out:
            return t / squeeze
        if t < onset_out + vowel_out:
            return a + (t - onset_out) * (b - a) / vowel_out
        return b + (t - onset_out - vowel_out) / squeeze

    src_period = ESPEAK_RATE / word.f0
    half = int(round(src_period))
    window = np.hanning(2 * half + 1)
    out = np.zeros(length + 2 * half + 1)
    t = 0.0
    seconds = length / ESPEAK_RATE
    while t < length:
        sec = t / ESPEAK_RATE
        cents = -50.0 * max(0.0, 1.0 - sec / 0.06)
        if seconds > 0.3:
            ramp = np.clip((sec - 0.15) / 0.2, 0.0, 1.0)
            cents += (
                vibrato_depth * ramp * np.sin(2 * np.pi * vibrato_rate * sec + phase)
            )
        period = ESPEAK_RATE / (f0 * 2.0 ** (cents / 1200.0))
        src = source_time(t)
        i = int(np.clip(np.searchsorted(marks, src), 0, marks.size - 1))
        if i > 0 and abs(marks[i - 1] - src) < abs(marks[i] - src):
            i -= 1  # the nearest pitch mark
        m = int(round(marks[i]))
        lo, hi = m - half, m + half + 1
        grain = np.zeros(2 * half + 1)
        s_lo, s_hi = max(lo, 0), min(hi, x.size)
        grain[s_lo - lo : s_hi - lo] = x[s_lo:s_hi]
        pos = int(round(t))
        out[pos : pos + 2 * half + 1] += grain * window
        t += period
    out = out[half : half + length]
    fade_in = min(int(0.008 * ESPEAK_RATE), length // 4)
    fade_out = min(int(0.03 * ESPEAK_RATE), length // 3)
    if fade_in > 0:
        out[:fade_in] *= np.linspace(0.0, 1.0, fade_in)
    if fade_out > 0:
        out[-fade_out:] *= np.linspace(1.0, 0.0, fade_out)
    return out


@functools.lru_cache(maxsize=32)
def _singer(voice: str) -> EspeakSinger:
    """One singer (with its calibration and word cache) per voice and process."""
    return EspeakSinger(voice)


# ------------------------------------------------------------------------ mixing


def pan_mono(x: np.ndarray, pan: float) -> np.ndarray:
    """Equal-power pan of mono [T] to stereo [T, 2]; pan -1 = left, 1 = right."""
    theta = (pan + 1.0) * np.pi / 4.0
    return np.stack([x * np.cos(theta), x * np.sin(theta)], axis=1) * np.sqrt(2.0)


def stereo_reverb(
    x: np.ndarray, rng: np.random.Generator, sample_rate: int, wet: float
) -> np.ndarray:
    """Add a synthetic stereo room (decaying filtered noise, 0.8–2 s RT60) to [T, 2]."""
    rt60 = float(rng.uniform(0.8, 2.0))
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    noise = rng.standard_normal((n, 2)) * np.exp(-6.9 * t / rt60)[:, None]
    alpha = float(rng.uniform(0.3, 0.7))  # one-pole low-pass: darker tails
    ir = lfilter([1.0 - alpha], [1.0, -alpha], noise, axis=0)
    pre = int(rng.uniform(0.01, 0.03) * sample_rate)
    ir = np.concatenate([np.zeros((pre, 2)), ir]) / np.sqrt(np.sum(ir**2) / 2)
    tail = np.stack([fftconvolve(x[:, c], ir[:, c])[: x.shape[0]] for c in range(2)], 1)
    return x + wet * tail


def active_rms(x: np.ndarray, sample_rate: int) -> float:
    """RMS over the 100 ms blocks within 40 dB of the loudest (ignores silent sections)."""
    block = int(0.1 * sample_rate)
    n = x.shape[0] // block
    if n == 0:
        return float(np.sqrt(np.mean(x**2)))
    power = np.mean(x[: n * block].reshape(n, block, -1) ** 2, axis=(1, 2))
    loud = power > power.max() * 1e-4
    return float(np.sqrt(power[loud].mean())) if power.max() > 0 else 0.0


#: Random stem levels in dB relative to equal active loudness (vocals on top, as in pop).
STEM_GAIN_DB = {
    "vocals": (-2.0, 2.0),
    "drums": (-3.0, 1.0),
    "bass": (-5.0, 0.0),
    "other": (-4.0, 1.0),
}


def bus_gain(
    mixture: np.ndarray,
    sample_rate: int,
    threshold_db: float,
    ratio: float,
    release: float = 0.15,
) -> np.ndarray:
    """Gain curve of a mix-bus compressor driven by ``mixture`` [T, C].

    Works on 5 ms blocks: instant attack with one block of look-ahead, exponential
    release, so no sample is louder than the static curve allows. Applying the same
    curve to every stem keeps the mixture the exact sum of the stems (a mastering "glue"
    that lowers the crest factor towards that of released music).

    Returns:
        gain [T] in (0, 1].
    """
    block = max(int(0.005 * sample_rate), 1)
    num = mixture.shape[0]
    n = -(-num // block)
    padded = np.zeros((n * block, mixture.shape[1]))
    padded[:num] = np.abs(mixture)
    peak = padded.reshape(n, block, -1).max(axis=(1, 2))
    level = 20 * np.log10(peak + 1e-9)
    want = -np.maximum(level - threshold_db, 0.0) * (1.0 - 1.0 / ratio)
    step = 20 * np.log10(np.e) * block / (release * sample_rate)  # dB back per block
    gain_db = np.empty(n)
    current = 0.0
    for i in range(n):
        current = min(want[i], current + step, 0.0)
        gain_db[i] = current
    # look-ahead: a block also takes the reductions its neighbours need
    padded_db = np.pad(gain_db, 1, mode="edge")
    neighbours = np.minimum(gain_db, np.minimum(padded_db[:-2], padded_db[2:]))
    per_sample = np.repeat(10 ** (neighbours / 20), block)
    # one-block moving average (edge-padded): smooth, and never above the block's need
    half = block // 2
    ext = np.pad(per_sample, (half, block - 1 - half), mode="edge")
    smooth = np.convolve(ext, np.ones(block) / block, mode="valid")
    return smooth[:num]


def master(
    signals: Dict[str, np.ndarray],
    rng: np.random.Generator,
    sample_rate: int = MUSIC_SAMPLE_RATE,
) -> Dict[str, np.ndarray]:
    """Fade-out, one mix-bus compressor curve and one scale for all ``signals`` (stems
    of a song, or just its mix), so their sum peaks at 0.6–0.95. Every step multiplies
    all signals by the same factor, so a mixture stays the sum of its stems.

    Args:
        signals: ``{name: float [T, C]}``, all of the same length.
    Returns:
        ``{name: float32 [T, C]}``.
    """
    out = {k: np.array(v, dtype=np.float64) for k, v in signals.items()}
    num = next(iter(out.values())).shape[0]
    fade = min(int(1.5 * sample_rate), num // 10)
    if fade > 0:
        ramp = np.linspace(1.0, 0.0, fade)[:, None]
        for x in out.values():
            x[-fade:] *= ramp
    mixture = sum(out.values())
    mix_rms = active_rms(mixture, sample_rate)
    if mix_rms > 0:
        threshold = 20 * np.log10(mix_rms) + float(rng.uniform(4.0, 9.0))
        curve = bus_gain(mixture, sample_rate, threshold, float(rng.uniform(2.0, 5.0)))
        for x in out.values():
            x *= curve[:, None]
    peak = max(
        np.abs(sum(out.values())).max(), max(np.abs(x).max() for x in out.values())
    )
    scale = float(rng.uniform(0.6, 0.95)) / peak if peak > 0 else 1.0
    return {k: (x * scale).astype(np.float32) for k, x in out.items()}


def balance_stems(
    stems: Dict[str, np.ndarray],
    rng: np.random.Generator,
    sample_rate: int = MUSIC_SAMPLE_RATE,
) -> Dict[str, np.ndarray]:
    """Mix the stems like a song: random stem levels (:data:`STEM_GAIN_DB`, relative to
    equal loudness over active passages), then :func:`master`.

    Args:
        stems: ``{stem: float [T, 2]}``.
    Returns:
        ``{stem: float32 [T, 2]}``; their sum is the mixture.
    """
    out = {}
    for stem, x in stems.items():
        rms = active_rms(x, sample_rate)
        low, high = STEM_GAIN_DB[stem]
        gain = (
            10 ** (float(rng.uniform(low, high)) / 20) * 0.1 / rms if rms > 0 else 0.0
        )
        out[stem] = np.asarray(x, dtype=np.float64) * gain
    return master(out, rng, sample_rate)


# ------------------------------------------------------------------------ songs


def sung_lead(
    song: Song,
    num_samples: int,
    rng: np.random.Generator,
    sample_rate: int = MUSIC_SAMPLE_RATE,
) -> np.ndarray:
    """The song's lead vocal, panned and in its own reverb.

    Returns:
        float64 [num_samples, 2].
    """
    lead = _singer(song.singer).sing(
        song.lead_vocal, song.bpm, num_samples, rng, sample_rate
    )
    wet = float(rng.uniform(0.15, 0.4))
    return stereo_reverb(
        pan_mono(lead.astype(np.float64), song.vocal_pan), rng, sample_rate, wet
    )


def render_stems(
    song: Song,
    soundfont: Union[str, Path],
    rng: np.random.Generator,
    sample_rate: int = MUSIC_SAMPLE_RATE,
) -> Dict[str, np.ndarray]:
    """Render the four stems of ``song`` (before level balancing).

    Returns:
        ``{stem: float32 [T, 2]}`` for every stem in MUSDB_STEMS, T = duration × rate.
    """
    check_programs(song.parts, soundfont)
    num = int(round(song.duration * sample_rate))
    room = Room.random(rng)
    stems: Dict[str, np.ndarray] = {}
    for stem in MUSDB_STEMS:
        parts = song.stem_parts(stem)
        audio = np.zeros((num, 2), dtype=np.float32)
        if parts:
            midi = parts_to_midi(parts, song.bpm)
            audio += render_midi(midi, soundfont, num, sample_rate, room)
        if stem == "vocals" and song.lead_vocal:
            lead = sung_lead(song, num, rng, sample_rate)
            if parts:  # backing voices sit 6–12 dB under the lead
                back_rms = active_rms(audio, sample_rate)
                lead_rms = active_rms(lead, sample_rate)
                if back_rms > 0:
                    audio *= lead_rms / back_rms * 10 ** (rng.uniform(-12, -6) / 20)
            audio = audio + lead.astype(np.float32)
        stems[stem] = audio
    return stems


def render_mixture(
    song: Song,
    soundfont: Union[str, Path],
    rng: np.random.Generator,
    sample_rate: int = MUSIC_SAMPLE_RATE,
) -> np.ndarray:
    """Render the mix of ``song`` in one FluidSynth pass (stem levels via CC7) plus the
    sung lead, then :func:`master`; for unlabeled mixtures, where stems are not kept.

    Returns:
        float32 [T, 2].
    """
    check_programs(song.parts, soundfont)
    num = int(round(song.duration * sample_rate))
    room = Room.random(rng)
    gains = {s: float(rng.uniform(*STEM_GAIN_DB[s])) for s in MUSDB_STEMS}
    midi = parts_to_midi(song.parts, song.bpm, gains_db=gains)
    mix = render_midi(midi, soundfont, num, sample_rate, room).astype(np.float64)
    if song.lead_vocal:
        lead = sung_lead(song, num, rng, sample_rate)
        band_rms, lead_rms = active_rms(mix, sample_rate), active_rms(lead, sample_rate)
        if lead_rms > 0 and band_rms > 0:
            lead *= band_rms / lead_rms * 10 ** (rng.uniform(-4.0, 2.0) / 20)
        mix = mix + lead
    return master({"mix": mix}, rng, sample_rate)["mix"]
