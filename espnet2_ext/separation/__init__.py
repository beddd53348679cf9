"""Separating audio with a loaded model: the library behind the CLI and the Python API.

* :mod:`~espnet2_ext.separation.audio` — decoding audio files and converting waveforms
  to a model's rate and channels;
* :mod:`~espnet2_ext.separation.diffusion` — separation with one diffusion prior per
  source (seeds/001).
"""
