"""Evaluation metrics (music: uSDR and museval's cSDR, :mod:`.music`; BSSEval v4 for
arrays, :mod:`.bsseval`) and the scoring of separated song folders against references
(:mod:`.scoring`)."""

from espnet2_ext.metrics.music import (
    SCORERS,
    aggregate_csdr,
    aggregate_usdr,
    bss_eval_framewise,
    count_defined,
    csdr,
    csdr_framewise,
    mixture_estimates,
    summarize,
    usdr,
    window_sdr,
)

__all__ = [
    "SCORERS",
    "aggregate_csdr",
    "aggregate_usdr",
    "bss_eval_framewise",
    "count_defined",
    "csdr",
    "csdr_framewise",
    "mixture_estimates",
    "summarize",
    "usdr",
    "window_sdr",
]
