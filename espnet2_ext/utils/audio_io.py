"""Encoding audio and writing it atomically, with the Kaldi-style lists that point to it.

A separation run writes ``<out>/wavs/<n>/<key>.<fmt>`` per source n and then
``<out>/spk<n>.scp``. Audio is encoded in memory (:func:`encode_audio`) and written
through :mod:`espnet2_ext.utils.atomic`: each file goes to a hidden temporary name in
its folder first and is renamed into place when complete, so an interrupted run never
leaves a truncated WAV or a list that names files that do not exist, and a full disk is
reported as such (libsndfile reports it as "System error").

Formats: WAV (16/24-bit PCM or 32-bit float), FLAC (16/24-bit), MP3 (320 kbit/s CBR,
libsndfile's encoder, or ffmpeg's libmp3lame where libsndfile has no MP3 writer).
"""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf

from espnet2_ext.utils.atomic import atomic_write_bytes, atomic_write_text

PathLike = Union[str, os.PathLike]

#: Output formats of :func:`encode_audio`.
AUDIO_FORMATS = ("wav", "flac", "mp3")
#: Sample formats (``bits``) → libsndfile subtype, and which formats take each.
SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}
FORMAT_BITS = {"wav": ("16", "24", "float"), "flac": ("16", "24"), "mp3": ()}
#: MP3 bit rate (kbit/s, constant): demucs' default, the highest MPEG-1 layer III rate.
MP3_KBPS = 320


def mp3_encoder() -> str:
    """``"libsndfile"`` when its MP3 writer is available, else ``"ffmpeg"``."""
    return "libsndfile" if "MP3" in sf.available_formats() else "ffmpeg"


def encode_audio(
    wav: np.ndarray, fs: int, fmt: str = "wav", bits: Optional[str] = "float"
) -> Tuple[bytes, int]:
    """Encode ``wav`` ([T] or [T, C] float) as a file's bytes.

    Integer and MP3 outputs are clipped to full scale (a wrap-around would be a loud
    click); the number of clipped samples is returned so the caller can say so.

    Args:
        fmt: ``wav``, ``flac`` or ``mp3``.
        bits: ``16``, ``24`` or ``float`` (:data:`FORMAT_BITS` says which a format
            takes; ``None`` for MP3).

    Returns:
        (the file's bytes, samples clipped)
    """
    fmt = fmt.lower()
    if fmt not in AUDIO_FORMATS:
        raise ValueError(f"format must be one of {AUDIO_FORMATS}, got {fmt!r}")
    if fmt == "mp3":
        if bits is not None:
            raise ValueError("MP3 has no sample format: give bits=None")
    elif bits not in FORMAT_BITS[fmt]:
        raise ValueError(
            f"{fmt.upper()} takes bits {', '.join(FORMAT_BITS[fmt])}, got {bits!r}"
        )
    data = np.ascontiguousarray(wav, dtype=np.float32)
    clipped = 0
    if bits != "float":
        clipped = int(np.count_nonzero(np.abs(data) > 1.0))
        if clipped:
            data = np.clip(data, -1.0, 1.0)
    if fmt == "mp3" and mp3_encoder() == "ffmpeg":
        return _mp3_with_ffmpeg(data, fs), clipped
    buffer = io.BytesIO()
    if fmt == "mp3":
        # compression level 0 with a constant bit rate is libsndfile's 320 kbit/s
        sf.write(buffer, data, int(fs), format="MP3", subtype="MPEG_LAYER_III",
                 compression_level=0.0, bitrate_mode="CONSTANT")  # fmt: skip
    else:
        sf.write(buffer, data, int(fs), format=fmt.upper(), subtype=SUBTYPES[bits])
    return buffer.getvalue(), clipped


def _mp3_with_ffmpeg(data: np.ndarray, fs: int) -> bytes:
    """MP3 through ffmpeg's libmp3lame. It writes to a (seekable) temporary file, not
    a pipe: the LAME header with the encoder delay, which decoders need to give back
    the exact length, is written last, at the start of the file."""
    channels = 1 if data.ndim == 1 else data.shape[1]
    with tempfile.TemporaryDirectory(prefix="espnet2_ext_mp3_") as tmp:
        out = Path(tmp) / "out.mp3"
        proc = subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-f", "f32le", "-ar", str(int(fs)),
             "-ac", str(channels), "-i", "pipe:0", "-c:a", "libmp3lame",
             "-b:a", f"{MP3_KBPS}k", str(out)],
            input=data.tobytes(), capture_output=True,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(
                "ffmpeg could not encode MP3: "
                + proc.stderr.decode(errors="replace").strip()[-500:]
            )
        return out.read_bytes()


def write_audio_atomic(
    path: PathLike,
    wav: np.ndarray,
    fs: int,
    fmt: str = "wav",
    subtype: Optional[str] = "FLOAT",
) -> Path:
    """Write ``wav`` ([T] or [T, C]) to ``path`` through a temporary file.

    Args:
        subtype: soundfile subtype of a WAV file; the default 32-bit float keeps
            estimates unclipped and unquantised for scoring. FLAC is written 24-bit.

    Raises:
        DiskFullError: no space left (``path`` unchanged).
    """
    bits = {v: k for k, v in SUBTYPES.items()}.get(subtype or "FLOAT", "float")
    if fmt.lower() == "flac":
        bits = "24"
    elif fmt.lower() == "mp3":
        bits = None
    data, _ = encode_audio(wav, fs, fmt, bits)
    return atomic_write_bytes(path, data)


def write_scp_atomic(path: PathLike, entries: Iterable[Tuple[str, PathLike]]) -> Path:
    """Write ``<key> <path>`` lines, in the given order, through a temporary file."""
    return atomic_write_text(
        path, "".join(f"{key} {value}\n" for key, value in entries)
    )


def check_sound_scps(
    scps: Sequence[PathLike],
    rate: Optional[int],
    max_channels: Optional[int] = None,
    keys: Optional[Sequence[str]] = None,
) -> None:
    """Fail before any output is written when an input file does not fit the model.

    Reads the header of every file the ``wav.scp`` lists name (only the ``keys`` given,
    if any): one that cannot be read, is not at ``rate`` Hz (None: any rate) or has more
    than ``max_channels`` channels is reported, up to 20 in one message. Pipe commands
    (``... |``) cannot be checked before they run and are left to the reader.
    """
    wanted = None if keys is None else set(keys)
    bad: List[str] = []
    for scp in scps:
        for line in Path(scp).read_text(encoding="utf-8").splitlines():
            uid, _, wav = line.strip().partition(" ")
            wav = wav.strip()
            if (
                not wav
                or wav.endswith("|")
                or (wanted is not None and uid not in wanted)
            ):
                continue
            try:
                info = sf.info(wav)
            except Exception as e:
                bad.append(f"{uid}: cannot read {wav} ({e})")
                continue
            if rate is not None and info.samplerate != rate:
                bad.append(
                    f"{uid}: {wav} is {info.samplerate} Hz, the model needs {rate} Hz "
                    f"(resample with e.g. 'sox in.wav -r {rate} out.wav')"
                )
            if max_channels is not None and info.channels > max_channels:
                bad.append(
                    f"{uid}: {wav} has {info.channels} channels, the model takes "
                    f"{max_channels} (down-mix with e.g. 'sox in.wav out.wav remix -')"
                )
    if bad:
        raise ValueError(
            "input audio does not fit the model:\n  " + "\n  ".join(bad[:20])
        )
