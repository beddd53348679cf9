"""Audio in: decoding files, checking arrays, converting to a model's rate and channels.

Shared by the separators (:mod:`espnet2_ext.api`,
:mod:`espnet2_ext.separation.diffusion`) and the separation command.

Decoding (:func:`read_audio`) goes through libsndfile for the formats it reads exactly
(WAV, FLAC, AIFF, OGG …) and through an ``ffmpeg`` subprocess (float32 PCM on a pipe)
for everything else ffmpeg decodes (M4A/AAC, MP4, Opus, WMA …). MP3 goes to ffmpeg
first: libsndfile reads a VBR MP3 without a Xing header only up to the length it
estimates from the first frame (measured: 21,348 of 44,100 frames), silently. A file
whose header declares more samples than it holds is an error that names both lengths,
never a shorter separation. Whatever cannot be decoded raises :class:`AudioDecodeError`
with what each decoder said.

Arrays (:func:`to_float_tensor`): integer PCM is scaled by its type's full scale
(int16 by 2^15 …); complex, boolean and 64-bit integer arrays are refused.

Every conversion :func:`convert_audio` makes is returned as a note for the caller to
log.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np
import torch

#: A waveform as the separators take and return it.
AudioArray = Union[torch.Tensor, np.ndarray]

#: Extensions libsndfile reads with an exact length; tried with libsndfile first.
LIBSNDFILE_EXTENSIONS = (
    ".wav",
    ".wave",
    ".flac",
    ".aif",
    ".aiff",
    ".aifc",
    ".ogg",
    ".oga",
    ".w64",
    ".rf64",
    ".caf",
    ".au",
    ".snd",
)
#: Extensions of folder members taken as songs (libsndfile's above, and what ffmpeg
#: decodes). A file given by name is tried whatever its extension.
AUDIO_EXTENSIONS = LIBSNDFILE_EXTENSIONS + (
    ".mp3",
    ".m4a",
    ".aac",
    ".mp4",
    ".opus",
    ".wma",
    ".webm",
    ".mka",
    ".mp2",
    ".ac3",
    ".wv",
    ".ape",
    ".tta",
)

#: Samples a compressed stream may lack against its container's declared duration
#: (encoder priming and padding) before a short read is reported.
_DECLARED_LENGTH_SLACK = 4096


class AudioDecodeError(ValueError):
    """An audio file that cannot be read (missing, damaged, truncated, or a format no
    available decoder reads)."""


# --------------------------------------------------------------------------- files
def read_audio(path: Union[str, Path]) -> Tuple[torch.Tensor, int]:
    """Decode an audio file.

    Returns:
        (float32 waveform [C, T], sampling rate)

    Raises:
        AudioDecodeError: the file is missing, a folder, damaged, truncated (its header
            declares more samples than it holds), empty, or no decoder reads it.
    """
    path = Path(path)
    if path.is_dir():
        raise AudioDecodeError(
            f"{path} is a folder; give one audio file (the command "
            "espnet2-ext-separate takes folders)"
        )
    if not path.is_file():
        raise AudioDecodeError(f"{path}: no such file")
    suffix = path.suffix.lower()
    ffmpeg = ffmpeg_available()
    problems: List[str] = []
    if suffix != ".mp3" or not ffmpeg:
        decoded = _read_with_libsndfile(path, problems)
        if decoded is not None:
            return decoded
    if ffmpeg:
        return _read_with_ffmpeg(path, problems)
    problems.append(
        "ffmpeg: not installed (it decodes M4A/AAC, MP4, Opus, WMA and more: install "
        "it, e.g. apt install ffmpeg)"
    )
    raise AudioDecodeError(f"{path}: cannot decode; " + "; ".join(problems))


def ffmpeg_available() -> bool:
    """True when both ``ffmpeg`` and ``ffprobe`` are on the ``PATH``."""
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def _frames(count: int, rate: int) -> str:
    return f"{count} samples ({count / rate:.2f} s)"


def _short_read(path: Path, declared: int, actual: int, rate: int) -> AudioDecodeError:
    return AudioDecodeError(
        f"{path}: the file is truncated or damaged: its header declares "
        f"{_frames(declared, rate)} but it holds {_frames(actual, rate)}; "
        "nothing was separated (re-copy or re-export the file)"
    )


def _read_with_libsndfile(
    path: Path, problems: List[str]
) -> Optional[Tuple[torch.Tensor, int]]:
    """Decode with libsndfile; ``None`` (and a note in ``problems``) when libsndfile
    cannot open the file; an error when it opens it but the content is damaged."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as e:  # libsndfile's errors differ between versions
        problems.append(f"libsndfile: {e}")
        return None
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioDecodeError(
            f"{path}: cannot decode ({type(e).__name__}: {e}); the file is damaged"
        ) from e
    declared = _declared_frames(path)
    if declared is not None and declared > data.shape[0]:
        raise _short_read(path, declared, data.shape[0], int(rate))
    if data.shape[0] < info.frames:
        raise _short_read(path, info.frames, data.shape[0], int(rate))
    if data.shape[0] == 0:
        raise AudioDecodeError(f"{path}: the file holds no samples")
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(rate)


def _declared_frames(path: Path) -> Optional[int]:
    """Sample frames a WAV or AIFF header declares (``None``: not such a file, or the
    header leaves the length open, as streaming writers do)."""
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12:
            return None
        if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
            order = "<" if head[:4] == b"RIFF" else ">"
            block_align = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                name, size = chunk[:4], struct.unpack(order + "I", chunk[4:])[0]
                if name == b"fmt ":
                    fmt = f.read(size)
                    if len(fmt) < 14:
                        return None
                    block_align = struct.unpack(order + "H", fmt[12:14])[0]
                    f.seek(size % 2, 1)
                elif name == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                else:
                    f.seek(size + size % 2, 1)
        if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                name, size = chunk[:4], struct.unpack(">I", chunk[4:])[0]
                if name == b"COMM":
                    comm = f.read(6)
                    return None if len(comm) < 6 else struct.unpack(">I", comm[2:6])[0]
                f.seek(size + size % 2, 1)
    return None


def _read_with_ffmpeg(path: Path, problems: List[str]) -> Tuple[torch.Tensor, int]:
    """Decode the first audio stream with ffmpeg to float32 PCM at its own rate and
    channel count; the length is checked against the container's declaration."""
    probe = subprocess.run(
        ["ffprobe", "-v", "warning", "-print_format", "json", "-show_streams",
         "-select_streams", "a:0", str(path)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    streams = []
    if probe.returncode == 0:
        try:
            streams = json.loads(probe.stdout).get("streams") or []
        except json.JSONDecodeError:
            streams = []
    if probe.returncode != 0 or not streams:
        said = _last_line(probe.stderr) or "no audio stream in the file"
        problems.append(f"ffmpeg: {said}")
        raise AudioDecodeError(f"{path}: cannot decode; " + "; ".join(problems))
    stream = streams[0]
    channels, rate = int(stream.get("channels") or 0), int(stream.get("sample_rate", 0))
    if channels < 1 or rate < 1:
        raise AudioDecodeError(
            f"{path}: ffprobe reports {channels} channel(s) at {rate} Hz; not audio "
            "that can be separated"
        )
    decode = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0",
         "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(channels), "-ar", str(rate),
         "pipe:1"],
        capture_output=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if decode.returncode != 0:
        said = _last_line(decode.stderr.decode(errors="replace"))
        raise AudioDecodeError(f"{path}: cannot decode (ffmpeg: {said})")
    data = np.frombuffer(decode.stdout, dtype="<f4")
    frames = data.size // channels
    if frames == 0:
        raise AudioDecodeError(f"{path}: the file holds no samples")
    declared = _probe_declared_frames(stream, rate, probe.stderr)
    if declared is not None and frames < declared - max(
        _DECLARED_LENGTH_SLACK, declared // 200
    ):
        raise _short_read(path, declared, frames, rate)
    wave = data[: frames * channels].reshape(frames, channels).T  # [C, T]
    return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), rate


def _probe_declared_frames(stream: dict, rate: int, warnings: str) -> Optional[int]:
    """Frames the container declares for the stream (``None``: it declares none, or
    ffprobe only estimated the duration from the bit rate)."""
    if "Estimating duration" in warnings:
        return None
    try:
        num, den = (int(v) for v in str(stream["time_base"]).split("/"))
        return int(round(int(stream["duration_ts"]) * num / den * rate))
    except (KeyError, ValueError, ZeroDivisionError):
        return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------- arrays
def to_float_tensor(audio: AudioArray) -> torch.Tensor:
    """A waveform array as a float32 CPU tensor (same shape).

    Integer PCM is scaled by its type's full scale: signed ``intN`` by 2^(N-1),
    unsigned ``uintN`` centred on 2^(N-1) first (8-bit WAV).

    Raises:
        TypeError: complex or boolean samples, 64-bit integers (no audio full scale)
            or anything that is not numbers.
    """
    if isinstance(audio, np.ndarray):
        kind, bits, name = audio.dtype.kind, audio.dtype.itemsize * 8, str(audio.dtype)
    else:
        audio = torch.as_tensor(audio).detach()
        dtype = audio.dtype
        name = str(dtype).replace("torch.", "")
        kind = (
            "c"
            if dtype.is_complex
            else "b" if dtype == torch.bool else "f" if dtype.is_floating_point else ""
        )
        if not kind:
            kind = "u" if dtype == torch.uint8 else "i"
        bits = torch.empty((), dtype=dtype).element_size() * 8
    if kind == "c":
        raise TypeError(
            f"the audio is complex ({name}); give real samples (e.g. the real part, "
            "audio.real, if the imaginary part is known to be zero)"
        )
    if kind == "b":
        raise TypeError("the audio is boolean; give float or integer PCM samples")
    if kind in "iu" and bits > 32:
        raise TypeError(
            f"the audio is {name}, which has no audio full scale; convert it, e.g. "
            "audio.astype('float32') / 32768 for 16-bit sample values"
        )
    if kind not in "iuf":
        raise TypeError(f"the audio has dtype {name}; give float or integer PCM")
    if kind == "f":
        if isinstance(audio, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        return audio.cpu().to(torch.float32)
    scale = float(2 ** (bits - 1))
    if isinstance(audio, np.ndarray):
        values = torch.from_numpy(audio.astype(np.float64))
    else:
        values = audio.cpu().to(torch.float64)
    if kind == "u":
        values = values - scale
    return (values / scale).to(torch.float32)


# --------------------------------------------------------------------------- conversion
def convert_audio(
    mix: torch.Tensor, sample_rate: int, num_channels: int, model_rate: int
) -> Tuple[torch.Tensor, List[str]]:
    """Convert [B, C, T] audio to a model's rate and number of channels.

    Returns:
        (float32 [B, num_channels, T'] at ``model_rate``, one note per conversion)
    """
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate:
        raise ValueError(f"sample_rate must be an integer, got {sample_rate!r}")
    sample_rate = int(sample_rate)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if mix.shape[-1] == 0:
        raise ValueError("the audio is empty (0 samples)")
    mix = mix.to(torch.float32)
    if not bool(torch.isfinite(mix).all()):
        raise ValueError("the audio contains NaN or infinite samples")
    notes = []
    channels, wanted = mix.shape[1], num_channels
    if channels != wanted:
        if wanted == 1:
            mix = mix.mean(dim=1, keepdim=True)
            notes.append(f"averaged {channels} channels to mono (the model is mono)")
        elif channels == 1:
            mix = mix.expand(-1, wanted, -1)
            notes.append(
                f"copied the mono input to {wanted} channels (the model takes "
                f"{wanted})"
            )
        elif channels > wanted:
            mix = mix[:, :wanted]
            notes.append(
                f"kept the first {wanted} of {channels} channels (the model takes "
                f"{wanted})"
            )
        else:
            raise ValueError(
                f"cannot convert {channels}-channel audio for a {wanted}-channel "
                "model"
            )
    if sample_rate != model_rate:
        import torchaudio.functional as AF

        mix = AF.resample(mix.contiguous(), sample_rate, model_rate)
        notes.append(
            f"resampled {sample_rate} Hz to {model_rate} Hz (the model's rate)"
        )
    return mix.contiguous(), notes
