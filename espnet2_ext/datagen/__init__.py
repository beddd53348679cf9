"""Generated stand-ins for MUSDB18-HQ and FMA, from real recorded instrument samples.

The real data sets cannot be downloaded everywhere (and never in CI), so the recipes' embedded
defaults generate small look-alikes in the real folder layouts:

- :mod:`espnet2_ext.datagen.musdb_like` (``python -m espnet2_ext.datagen.musdb_like``):
  train/test song folders with ``mixture.wav`` and the four stems, PCM_16 stereo 44.1 kHz,
  the mixture exactly the sum of the stems; the test split uses another soundfont and
  program set; ``valid_songs.txt`` names the validation songs.
- :mod:`espnet2_ext.datagen.fma_like` (``python -m espnet2_ext.datagen.fma_like``):
  unlabeled MP3 mixtures in ``fma_<subset>/NNN/NNNNNN.mp3`` with ``fma_metadata/tracks.csv``
  and planted files the FMA preparation must drop (22.05 kHz, mono, corrupt, empty, mostly
  silent) or resample (48 kHz), listed in ``generation_manifest.json``.
- :mod:`espnet2_ext.datagen.own_data` (``python -m espnet2_ext.datagen.own_data``): in
  seconds, what a user brings of their own: songs in the MUSDB18-HQ layout with three
  other stems (one train and one test song without vocals), a validation list, and ten
  unlabeled mixtures in WAV, FLAC, MP3, OGG and M4A (numpy synthesis, no FluidSynth).

Songs are composed procedurally (:mod:`.compose`), written as Standard MIDI Files
(:mod:`.midi`) and rendered with the FluidSynth command line and General MIDI soundfonts, the
lead vocal sung by espeak-ng (:mod:`.render`). Needs the Debian packages fluidsynth,
fluid-soundfont-gm, timgm6mb-soundfont and espeak-ng (ffmpeg speeds up MP3 encoding).
"""
