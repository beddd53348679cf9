"""Evaluation metrics (music: uSDR and museval's cSDR, :mod:`.music`) and the scoring
of separated song folders against references (:mod:`.scoring`)."""

from espnet2_ext.metrics.music import (
    aggregate_csdr,
    aggregate_usdr,
    csdr,
    csdr_framewise,
    mixture_estimates,
    summarize,
    usdr,
)

__all__ = [
    "aggregate_csdr",
    "aggregate_usdr",
    "csdr",
    "csdr_framewise",
    "mixture_estimates",
    "summarize",
    "usdr",
]
