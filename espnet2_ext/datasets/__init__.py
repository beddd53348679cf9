"""Data preparation for the recipes (each module is also a command line tool).

* ``python -m espnet2_ext.datasets.musdb18hq``: a tree in the MUSDB18-HQ layout (any
  songs, any stem names) → Kaldi-style ``data/{train,valid,test}`` (one utterance per
  song, ``spk{n}.scp`` per stem, ``stems`` naming them).
* ``python -m espnet2_ext.datasets.activity``: source-activity filtering of training
  stems (the index that dynamic mixing draws from) and fixed crops for validation.
* ``python -m espnet2_ext.datasets.fma``: FMA MP3 tree, or a plain folder of unlabeled
  mixtures in any format, → 10 s ``segment_sound`` items for MixIT pre-training (the
  authors' segmenting rules by default).
"""
