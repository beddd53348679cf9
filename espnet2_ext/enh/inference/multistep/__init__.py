"""Training-free multi-step inference for any separator (seeds/000, DESIGN.md §5).

One module per concern:

* :mod:`.search`: the candidate grids and :class:`MultiStepSeparator` (the search with
  an oracle or non-intrusive metric, and the deployable mode applying a schedule);
* :mod:`.schedule`: :class:`RatioSchedule` and its file format;
* :mod:`.calibration`: choosing a schedule on validation items
  (:func:`calibrate_schedule`), replaying it, its cost and its report;
* :mod:`.song_calibration`: all of that for a trained model on song folders (the
  library side of ``espnet2_ext.bin.multistep_calibrate``; not imported here, it
  loads models).

The ESPnet model adapter is :mod:`espnet2_ext.enh.inference.espnet_adapter`, the metrics
are in :mod:`espnet2_ext.enh.inference.metrics_registry`.
"""

from espnet2_ext.enh.inference.multistep.calibration import calibrate_schedule
from espnet2_ext.enh.inference.multistep.schedule import (
    SCHEDULE_FORMAT,
    SCHEDULE_VERSION,
    RatioSchedule,
)
from espnet2_ext.enh.inference.multistep.search import (
    DEFAULT_CANDIDATES,
    DEFAULT_STEPS,
    GRIDS,
    MultiStepSeparator,
    apply_schedule_step,
    candidate_ratios,
)

__all__ = [
    "DEFAULT_CANDIDATES",
    "DEFAULT_STEPS",
    "GRIDS",
    "SCHEDULE_FORMAT",
    "SCHEDULE_VERSION",
    "MultiStepSeparator",
    "RatioSchedule",
    "apply_schedule_step",
    "calibrate_schedule",
    "candidate_ratios",
]
