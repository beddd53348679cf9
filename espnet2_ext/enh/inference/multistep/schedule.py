"""The multi-step schedule file: fixed mixture weights per step and source.

A :class:`RatioSchedule` is what
:func:`~espnet2_ext.enh.inference.multistep.calibration.calibrate_schedule` chooses on a
validation set and what
:class:`~espnet2_ext.enh.inference.multistep.search.MultiStepSeparator` applies to new
songs without references (the deployable mode). It is stored as JSON or YAML with a
``format`` tag and a ``version`` (:data:`SCHEDULE_FORMAT`, :data:`SCHEDULE_VERSION`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import yaml

SCHEDULE_FORMAT = "espnet2_ext.multistep_schedule"
SCHEDULE_VERSION = 1


def check_ratio(r: float, where: str) -> float:
    """``r`` as a float if it is a mixture weight in [0, 1].

    Args:
        r: the weight on the mixture (1: the mixture alone, 0: the previous estimate).
        where: what the value is, for the message (``"ratios[2][0]"``).

    Raises:
        ValueError: not a number (booleans included) or outside [0, 1].
    """
    if not isinstance(r, (int, float)) or isinstance(r, bool) or not 0.0 <= r <= 1.0:
        raise ValueError(
            f"{where}: mixture weights must be numbers in [0, 1] (1 = the mixture "
            f"alone, 0 = the previous estimate alone), got {r!r}"
        )
    return float(r)


@dataclass
class RatioSchedule:
    """Fixed mixture weights per step and source, for reference-free multi-step inference.

    Chosen on a validation set by
    :func:`~espnet2_ext.enh.inference.multistep.calibration.calibrate_schedule`: at
    step ``t`` and for source ``n``, the weight whose output maximised the metric on
    average over the validation items (all following the schedule of the earlier
    steps), or ``None`` where keeping the previous estimate was best.

    Args:
        ratios: [T][N] mixture weights in [0, 1]; ``None`` keeps the previous estimate.
        metric: the metric the weights were selected with.
        oracle: whether that metric needed references (the validation results stored
            here are then oracle numbers; applying the schedule needs none).
        sources: optional source names (e.g. the MUSDB stems), length N.
        validation_scores: optional [T + 1][N] mean metric on the validation set after
            each step (step 0: one-step inference).
        search: how the weights were searched (grid, candidates, per_source, …).
    """

    ratios: List[List[Optional[float]]]
    metric: str
    oracle: bool
    sources: Optional[List[str]] = None
    validation_scores: Optional[List[List[float]]] = None
    search: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.ratios, list) or not all(
            isinstance(row, list) for row in self.ratios
        ):
            raise ValueError("ratios must be a list (steps) of lists (sources)")
        if not self.ratios:
            raise ValueError("a schedule needs at least one step")
        widths = {len(row) for row in self.ratios}
        if len(widths) > 1 or widths == {0}:
            raise ValueError(
                f"every step needs one weight per source; got rows of lengths "
                f"{sorted(widths)}"
            )
        self.ratios = [
            [
                None if r is None else check_ratio(r, f"ratios[{t}][{n}]")
                for n, r in enumerate(row)
            ]
            for t, row in enumerate(self.ratios)
        ]
        n_src = self.num_sources
        if self.sources is not None:
            self.sources = [str(s) for s in self.sources]
            if len(self.sources) != n_src:
                raise ValueError(
                    f"{len(self.sources)} source names for {n_src} sources per step"
                )
        if self.validation_scores is not None:
            scores = [[float(v) for v in row] for row in self.validation_scores]
            if len(scores) != self.steps + 1 or any(
                len(row) != n_src for row in scores
            ):
                raise ValueError(
                    "validation_scores must be [steps + 1][sources] = "
                    f"[{self.steps + 1}][{n_src}]"
                )
            self.validation_scores = scores
        self.oracle = bool(self.oracle)
        self.search = dict(self.search)

    @property
    def steps(self) -> int:
        return len(self.ratios)

    @property
    def num_sources(self) -> int:
        return len(self.ratios[0])

    @property
    def label(self) -> str:
        how = f"oracle {self.metric}" if self.oracle else self.metric
        return f"deployable (schedule selected with {how} on a validation set)"

    def to_dict(self) -> Dict[str, Any]:
        return {"format": SCHEDULE_FORMAT, "version": SCHEDULE_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "RatioSchedule":
        data = dict(data)
        if data.pop("format", None) != SCHEDULE_FORMAT:
            raise ValueError(
                f"not a multi-step schedule (format is not {SCHEDULE_FORMAT!r})"
            )
        version = data.pop("version", None)
        if version != SCHEDULE_VERSION:
            raise ValueError(
                f"schedule version {version!r} is not supported (expected "
                f"{SCHEDULE_VERSION})"
            )
        return cls(**data)

    def save(self, path: Union[str, Path]) -> Path:
        """Write as JSON (``.json``) or YAML (``.yaml``/``.yml``); returns the path."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".json", ".yaml", ".yml"):
            raise ValueError(f"schedule files end in .json, .yaml or .yml, got {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            if suffix == ".json":
                json.dump(self.to_dict(), f, indent=2)
                f.write("\n")
            else:
                yaml.safe_dump(self.to_dict(), f, sort_keys=False)
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "RatioSchedule":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"schedule file not found: {path}")
        with path.open(encoding="utf-8") as f:
            data = json.load(f) if path.suffix.lower() == ".json" else yaml.safe_load(f)
        if not isinstance(data, dict):
            raise ValueError(f"{path} does not hold a schedule mapping")
        return cls.from_dict(data)
