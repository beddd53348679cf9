"""Python API: load a trained separation model and separate songs.

::

    from espnet2_ext.api import load_model

    separator = load_model("exp/enh_x/packed.zip")   # or a folder, or "user/name"
    stems = separator.separate_file("song.m4a")      # {"vocals": [C, T], ...}
    stems = separator.separate(waveform, 48000)      # [C, T] or [B, C, T] in, same out

``load_model`` accepts a pack (:func:`espnet2_ext.zoo.pack`), a folder (an unpacked
pack, or ``config.yaml`` with one ``.pth``) or a Hugging Face hub id (fetched into the
hub client's cache; a second load reads the cache, also offline); see
:mod:`espnet2_ext.zoo` for the rules (safety, plugin version; a damaged pack raises
``DamagedPackError``, "damaged pack: …"; a source that looks like a local path is never
looked up on the hub). Chunked inference defaults to what the pack records (the setting
its recipe evaluated with), else 12 s chunks every 6 s. Separation runs the one
facade :class:`espnet2_ext.separation.Separator`, the same as the command
``espnet2-ext-separate`` and ``python -m espnet2_ext.bin.enh_inference``, so all give
the same stems.

Inputs the model does not take natively are converted, and each conversion is logged
(level INFO): other sampling rates are resampled (``torchaudio.functional.resample``)
to the model's, mono input for a stereo model is duplicated to both channels,
multi-channel input for a mono model is averaged, more channels than a stereo model
takes are cut to the first two. Integer PCM arrays are scaled by their type's full
scale (int16 by 2^15); complex, boolean and int64 arrays are refused. Files are decoded
by libsndfile or ffmpeg (M4A/AAC, MP3 …); a truncated file is an error naming both
lengths. Stems come back at the model's sampling rate with the model's number of
channels.

This module only re-exports the public names of :mod:`espnet2_ext.separation`.
"""

from espnet2_ext.separation import (
    DEFAULT_OVERLAP,
    DEFAULT_SEGMENT,
    AudioDecodeError,
    ChunkingConfig,
    MultiStepConfig,
    Separator,
    convert_audio,
    load_model,
    read_audio,
)
from espnet2_ext.separation.diffusion import (
    DiffusionSeparator,
    load_diffusion_separator,
)

__all__ = [
    "AudioDecodeError",
    "ChunkingConfig",
    "DEFAULT_OVERLAP",
    "DEFAULT_SEGMENT",
    "DiffusionSeparator",
    "MultiStepConfig",
    "Separator",
    "convert_audio",
    "load_diffusion_separator",
    "load_model",
    "read_audio",
]
