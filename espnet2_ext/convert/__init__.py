"""Converters of other projects' checkpoints into espnet2_ext models.

* :mod:`espnet2_ext.convert.mixit_mss`: the BS-Locoformer weights published with the
  MixIT-MSS paper (b-sigpro/mixit-mss: 12-output MixIT models and 4-stem fine-tuned
  models) → ``config.yaml`` + ``model.pth`` of our ``bs_locoformer`` separator.
"""
