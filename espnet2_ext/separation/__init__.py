"""Separating audio with a trained model: the one facade behind the CLI, the Python
API, ``enh_inference`` and the recipes.

* :mod:`~espnet2_ext.separation.separator` — :class:`Separator` (strict loading, rate
  and channel checks, chunking, multi-step) and :func:`load_model` (pack, folder or
  hub id);
* :mod:`~espnet2_ext.separation.config` — :class:`ChunkingConfig`,
  :class:`MultiStepConfig` (typed options, validated once);
* :mod:`~espnet2_ext.separation.audio` — decoding files, converting rate and channels;
* :mod:`~espnet2_ext.separation.tracks` — songs given as files and folders → stem
  files (the separation command);
* :mod:`~espnet2_ext.separation.scp` — ESPnet-style ``wav.scp`` → ``wavs/<n>/*.wav``
  (``enh_inference``);
* :mod:`~espnet2_ext.separation.diffusion` — separation with one diffusion prior per
  source (seeds/001), beside the trained-separator route.
"""

from espnet2_ext.zoo.quiet import import_espnet_quietly

import_espnet_quietly()

# isort: split

from espnet2_ext.separation.audio import (
    AudioArray,
    AudioDecodeError,
    convert_audio,
    read_audio,
)
from espnet2_ext.separation.config import (
    DEFAULT_OVERLAP,
    DEFAULT_SEGMENT,
    ChunkingConfig,
    MultiStepConfig,
)
from espnet2_ext.separation.separator import Separator, load_model

__all__ = [
    "AudioArray",
    "AudioDecodeError",
    "ChunkingConfig",
    "DEFAULT_OVERLAP",
    "DEFAULT_SEGMENT",
    "MultiStepConfig",
    "Separator",
    "convert_audio",
    "load_model",
    "read_audio",
]
