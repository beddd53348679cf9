"""Audio in: decoding files and converting waveforms to a model's rate and channels.

Shared by the separators (:mod:`espnet2_ext.api`,
:mod:`espnet2_ext.separation.diffusion`): a file that cannot be decoded raises
:class:`AudioDecodeError`, and every conversion :func:`convert_audio` makes is returned
as a note for the caller to log.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple, Union

import numpy as np
import torch

#: A waveform as the separators take and return it.
AudioArray = Union[torch.Tensor, np.ndarray]


class AudioDecodeError(ValueError):
    """An audio file that cannot be read (missing, damaged, or an unknown format)."""


def read_audio(path: Union[str, Path]) -> Tuple[torch.Tensor, int]:
    """Decode an audio file (WAV, FLAC, OGG, MP3 … what libsndfile reads).

    Returns:
        (float32 waveform [C, T], sampling rate)

    Raises:
        AudioDecodeError: the file is missing, damaged, empty or not audio.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(f"{path}: no such file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile's errors differ between versions
        raise AudioDecodeError(
            f"{path}: cannot decode ({type(e).__name__}: {e})"
        ) from e
    if data.shape[0] == 0:
        raise AudioDecodeError(f"{path}: the file holds no samples")
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(rate)


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
