"""Data preparation for the recipes (each module is also a command line tool).

* ``python -m espnet2_ext.datasets.musdb18hq``: MUSDB18-HQ folder tree → Kaldi-style
  ``data/{train,valid,test}`` (one utterance per song, ``spk{n}.scp`` per stem).
* ``python -m espnet2_ext.datasets.activity``: source-activity filtering of training
  stems (the index that dynamic mixing draws from) and fixed crops for validation.
* ``python -m espnet2_ext.datasets.fma``: FMA MP3 tree → 10 s ``segment_sound`` items
  for MixIT pre-training.
"""
