"""Typed options of separation, validated once: chunking and multi-step inference.

Both are frozen dataclasses whose field names are the options' names, so the
separation command, ``enh_inference``, the recipes and the Python API build them the
same way. Seconds are used at the surface (options, YAML, the API); samples only inside
(:meth:`ChunkingConfig.samples`), at the model's rate.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple, Union

from espnet2_ext.constants import MULTISTEP_GRIDS, WINDOWS

if TYPE_CHECKING:  # pragma: no cover
    from espnet2_ext.enh.inference.multistep import RatioSchedule

#: Chunk length (seconds) and overlap (fraction of a chunk) of whole-song inference:
#: 12 s chunks every 6 s, the setting of the MUSDB18-HQ recipe (seeds/002).
DEFAULT_SEGMENT = 12.0
DEFAULT_OVERLAP = 0.5

#: An option left to the model: the setting its pack records, else the default.
AUTO = "auto"


@dataclass(frozen=True)
class ChunkingConfig:
    """Whole-song inference as a fixed-order, cross-faded overlap-add of chunks.

    Args:
        segment: chunk length in seconds; ``None`` separates the whole input at once.
        hop: hop between chunk starts in seconds (default: half a chunk); at most
            ``segment``.
        window: cross-fade window (:data:`espnet2_ext.constants.WINDOWS`).
    """

    segment: Optional[float] = DEFAULT_SEGMENT
    hop: Optional[float] = None
    window: str = WINDOWS[0]

    def __post_init__(self) -> None:
        if self.window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, got {self.window!r}")
        if self.segment is None:
            if self.hop is not None:
                raise ValueError(
                    "a hop needs a chunk length: give the segment too (or neither to "
                    "separate the whole input at once)"
                )
            return
        if not self.segment > 0:
            raise ValueError(
                f"segment must be > 0 seconds (or None for no chunking), got "
                f"{self.segment}"
            )
        if self.hop is None:
            object.__setattr__(self, "hop", self.segment / 2)
        elif not 0 < self.hop <= self.segment:
            raise ValueError(
                f"hop must be in (0, segment = {self.segment:g}] seconds, got {self.hop}"
            )

    @classmethod
    def from_overlap(
        cls, segment: Optional[float], overlap: float, window: str = WINDOWS[0]
    ) -> "ChunkingConfig":
        """From a chunk length and the overlap as a fraction of it (demucs' style).

        ``segment`` of ``None`` or 0 means the whole input at once.
        """
        if not 0.0 <= overlap < 1.0:
            raise ValueError(
                f"overlap must be a fraction of the chunk in [0, 1), got {overlap}"
            )
        if not segment:
            if segment is not None and segment < 0:
                raise ValueError(f"segment must be >= 0 seconds, got {segment}")
            return cls(segment=None, window=window)
        return cls(segment=segment, hop=segment * (1.0 - overlap), window=window)

    @classmethod
    def resolve(
        cls,
        recorded: Optional[Mapping[str, Any]] = None,
        *,
        segment: Union[None, float, str] = AUTO,
        overlap: Union[float, str] = AUTO,
        window: str = AUTO,
    ) -> "ChunkingConfig":
        """The chunking to run: each option given wins, else the model's recorded
        setting (``recorded``, as :meth:`to_dict` wrote it into a pack), else the
        default (12 s chunks, half overlap, Hann).

        Args:
            recorded: the pack's setting (``None``: it records none).
            segment: seconds; ``None`` or 0: the whole input at once; ``"auto"``.
            overlap: fraction of a chunk; ``"auto"``.
            window: a window name; ``"auto"``.
        """
        model = cls.from_dict(recorded) if recorded else None
        if segment == AUTO:
            segment = DEFAULT_SEGMENT if model is None else model.segment
        if overlap == AUTO:
            overlap = (
                DEFAULT_OVERLAP
                if model is None or model.overlap is None
                else round(model.overlap, 6)
            )
        if window == AUTO:
            window = WINDOWS[0] if model is None else model.window
        return cls.from_overlap(segment, overlap, window)

    def to_dict(self) -> Dict[str, Any]:
        """The setting as a pack records it (``segment``/``hop`` in seconds)."""
        return {"segment": self.segment, "hop": self.hop, "window": self.window}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ChunkingConfig":
        """From :meth:`to_dict`'s mapping; unknown keys are an error."""
        unknown = sorted(set(data) - {"segment", "hop", "window"})
        if unknown:
            raise ValueError(
                f"unknown chunking keys {unknown}; expected segment, hop, window"
            )
        return cls(**dict(data))

    @property
    def overlap(self) -> Optional[float]:
        """Overlap as a fraction of a chunk (``None`` without chunking)."""
        return None if self.segment is None else 1.0 - self.hop / self.segment

    def samples(self, sample_rate: int) -> Optional[Tuple[int, int]]:
        """``(chunk, hop)`` in samples at ``sample_rate``; ``None`` without chunking."""
        if self.segment is None:
            return None
        chunk = int(round(self.segment * sample_rate))
        hop = max(1, int(round(self.hop * sample_rate)))
        return chunk, hop

    def describe(self) -> str:
        if self.segment is None:
            return "whole input"
        return f"{self.segment:g} s chunks, {self.hop:g} s hop, {self.window}"


@dataclass(frozen=True)
class MultiStepConfig:
    """Training-free multi-step refinement (seeds/000) of every chunk.

    Field names are the suffixes of the ``--multistep_*`` options
    (:meth:`add_arguments`).

    Args:
        enable: refine with multi-step inference; ``None`` (default): on exactly when a
            ``schedule`` or a ``metric`` is given.
        steps: T (default 20; with a schedule: the schedule's length).
        candidates: K mixture weights per step (default 10).
        grid: candidate grid (:data:`espnet2_ext.constants.MULTISTEP_GRIDS`).
        metric: registered metric that selects candidates (default ``snr``;
            ``snr``/``si_sdr`` are oracle metrics that need the references).
        schedule: a ratio schedule (file, or a loaded
            :class:`~espnet2_ext.enh.inference.multistep.RatioSchedule`): the deployable
            mode, no metric, no references.
        candidate_batch: candidates per separator call (None: all K at once).
    """

    enable: Optional[bool] = None
    steps: Optional[int] = None
    candidates: Optional[int] = None
    grid: str = MULTISTEP_GRIDS[0]
    metric: Optional[str] = None
    schedule: Union[None, str, Path, "RatioSchedule"] = None
    candidate_batch: Optional[int] = None

    PREFIX = "multistep_"

    def __post_init__(self) -> None:
        if self.grid not in MULTISTEP_GRIDS:
            raise ValueError(
                f"grid must be one of {MULTISTEP_GRIDS}, got {self.grid!r}"
            )
        for name, low in (("steps", 0), ("candidates", 1), ("candidate_batch", 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < low):
                raise ValueError(
                    f"{self.PREFIX}{name} must be an integer >= {low}, got {value!r}"
                )
        if self.schedule is not None and (
            self.steps is not None or self.candidates is not None
        ):
            raise ValueError(
                "a multi-step schedule fixes the weight of every step: drop "
                f"{self.PREFIX}steps and {self.PREFIX}candidates (the schedule's own "
                "length is used)"
            )
        if self.enable is False and self.schedule is not None:
            raise ValueError(
                f"{self.PREFIX}schedule given with {self.PREFIX}enable false: drop one"
            )

    @property
    def enabled(self) -> bool:
        if self.enable is None:
            return self.schedule is not None or self.metric is not None
        return bool(self.enable)

    @property
    def selection_metric(self) -> str:
        """The metric that selects candidates (``snr`` unless another is named)."""
        return "snr" if self.metric is None else self.metric

    @property
    def needs_reference(self) -> bool:
        """True for search with an oracle metric (results labelled *oracle*)."""
        if not self.enabled or self.schedule is not None:
            return False
        from espnet2_ext.enh.inference.metrics_registry import get_metric

        return get_metric(self.selection_metric).requires_reference

    def build(self, separate_fn):
        """The :class:`~espnet2_ext.enh.inference.multistep.MultiStepSeparator` around
        ``separate_fn`` (the schedule file is read here, once)."""
        from espnet2_ext.enh.inference.multistep import MultiStepSeparator

        options: Dict[str, Any] = dict(
            grid=self.grid,
            metric=self.selection_metric,
            candidate_batch=self.candidate_batch,
        )
        if self.schedule is not None:
            options["schedule"] = self.schedule
        else:
            options.update(steps=self.steps, candidates=self.candidates)
        return MultiStepSeparator(separate_fn, **options)

    # ------------------------------------------------------------------ options
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add the ``--multistep_*`` options (one group) to ``parser``."""
        from espnet2_ext.utils.cli import int_or_none, str2bool_or_none, str_or_none

        group = parser.add_argument_group("multi-step inference (seeds/000)")
        p = cls.PREFIX
        group.add_argument(
            f"--{p}enable",
            type=str2bool_or_none,
            default=None,
            help="refine every chunk with training-free multi-step inference "
            "(default: on when --multistep_schedule or --multistep_metric is given)",
        )
        group.add_argument(
            f"--{p}steps", type=int_or_none, default=None, help="T steps (default 20)"
        )
        group.add_argument(
            f"--{p}candidates",
            type=int_or_none,
            default=None,
            help="K mixture weights per step (default 10)",
        )
        group.add_argument(
            f"--{p}grid",
            default=MULTISTEP_GRIDS[0],
            choices=MULTISTEP_GRIDS,
            help="candidate grid",
        )
        group.add_argument(
            f"--{p}metric",
            type=str_or_none,
            default=None,
            help="metric to maximise (default snr): snr and si_sdr are oracle metrics "
            "(they need the references, speech_ref<n>); a registered non-intrusive "
            "metric runs blind",
        )
        group.add_argument(
            f"--{p}schedule",
            type=str_or_none,
            default=None,
            help="ratio schedule calibrated on validation songs (deployable mode)",
        )
        group.add_argument(
            f"--{p}candidate_batch",
            type=int_or_none,
            default=None,
            help="candidates per forward call (default: all K at once; 1: one by one)",
        )

    @classmethod
    def pop_arguments(cls, options: Dict[str, Any]) -> "MultiStepConfig":
        """Build from parsed options (``vars(args)``), removing the ``multistep_*``
        keys from ``options``."""
        values = {
            f.name: options.pop(cls.PREFIX + f.name)
            for f in fields(cls)
            if cls.PREFIX + f.name in options
        }
        return cls(**values)

    @classmethod
    def from_dict(
        cls, data: Optional[Mapping[str, Any]]
    ) -> Optional["MultiStepConfig"]:
        return None if data is None else cls(**dict(data))
