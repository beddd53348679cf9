"""Data path of the plugin: the ``segment_sound`` data type and music preprocessors.

* :mod:`espnet2_ext.train.dataset`: scp lines ``uid path start end`` loaded as the
  slice ``[start, end)`` of the file (partial reads), for ESPnet's ``DATA_TYPES``.
* :mod:`espnet2_ext.train.preprocessor`: :class:`MusicDynamicMixing` (MUSDB18-HQ
  fine-tuning) and :class:`MixtureOfMixtures` (MixIT pre-training on FMA).
"""
