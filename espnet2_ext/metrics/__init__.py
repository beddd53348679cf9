"""Evaluation metrics (music: uSDR and museval's cSDR)."""

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
