#!/usr/bin/env python3
"""Calibrate a ratio schedule for deployable multi-step inference (seeds/000).

Multi-step inference (:mod:`espnet2_ext.enh.inference.multistep`, DESIGN.md §5) picks,
at every step, the blend of the mixture and the previous estimate whose output scores
best. With a reference metric that is an **oracle**; without references, the blend of
each step and stem is fixed beforehand, on a validation set: this command cuts the
validation songs into chunks, runs
:func:`~espnet2_ext.enh.inference.multistep.calibrate_schedule` with the model's
:func:`~espnet2_ext.enh.inference.multistep.espnet_model_separate_fn`, and writes the
schedule that ``enh_inference --multistep_schedule FILE`` applies to new songs::

    python -m espnet2_ext.bin.multistep_calibrate \\
        --train_config exp/enh_demo/config.yaml \\
        --model_file exp/enh_demo/valid.loss.ave.pth \\
        --data_dir data/valid --chunk_seconds 6 --steps 20 --candidates 10 \\
        --output exp/enh_demo/multistep_schedule.yaml

``--data_dir`` is a folder of ``python -m espnet2_ext.datasets.musdb18hq``: ``wav.scp``
and ``spk1.scp`` … ``spkN.scp`` in the model's stem order.

Chunks: complete non-overlapping chunks of ``--chunk_seconds`` from each song's start
(use the inference ``--segment_size``: the schedule is applied per chunk there). A
chunk in which a stem is inactive (its level relative to the chunk's mixture below
``--inactive_threshold_db``) is left out, because the SNR of a silent reference is
meaningless and would dominate the mean.

Writes:

* ``--output`` (``.yaml``, ``.yml`` or ``.json``): the
  :class:`~espnet2_ext.enh.inference.multistep.RatioSchedule`, with the validation mean
  of the metric after every step and the search settings;
* ``--report`` (default: ``multistep_calibration.json`` beside it): the chunk counts,
  the cost (separator forward passes and seconds), and the per-step traces of the
  schedule's trajectory under every ``--trace_metrics`` metric on the validation chunks
  (unless ``--trace_validation false``) and on every ``--eval_data`` set (measurement
  only: the schedule stays fixed, the references are used to score, never to select).

The per-step validation metric is also printed as a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from espnet2_ext.bin.enh_inference import load_model
from espnet2_ext.datasets.songs import read_songs, song_chunks
from espnet2_ext.constants import MUSDB_STEMS, MUSIC_SAMPLE_RATE
from espnet2_ext.enh.inference.metrics_registry import available_metrics, get_metric
from espnet2_ext.enh.inference.espnet_adapter import espnet_model_separate_fn
from espnet2_ext.enh.inference.multistep import (
    GRIDS,
    MultiStepSeparator,
    RatioSchedule,
    SeparateFn,
    apply_schedule_step,
    calibrate_schedule,
)
from espnet2_ext.utils.cli import run_command
from espnet2_ext.utils.results import atomic_write_json

#: ``(mixture [b, C, L], references [b, N, C, L])``: one item of the chunk set.
Item = Tuple[torch.Tensor, torch.Tensor]

REPORT_NAME = "multistep_calibration.json"


# --------------------------------------------------------------------------- chunks
def stem_levels_db(mixture: np.ndarray, stems: np.ndarray) -> np.ndarray:
    """Level of every stem relative to the mixture, over all channels, in dB.

    Args:
        mixture: [C, L]
        stems: [N, C, L]

    Returns:
        [N] ``10 log10(|s_n|² / |x|²)``; ``-inf`` for a silent stem (``+inf`` if only
        the mixture is silent).
    """
    mix_energy = float(np.sum(mixture.astype(np.float64) ** 2))
    stem_energy = np.sum(stems.astype(np.float64) ** 2, axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 * np.log10(stem_energy / mix_energy)


class SongChunks:
    """The chunks of a data folder's songs in which every stem is active.

    Re-iterable; yields ``(mixture [b, C, L], references [b, N, C, L])`` float32
    batches of up to ``batch_chunks`` chunks of equal length. The songs are read once
    when the object is made (to find the active chunks, and pick ``max_chunks`` of
    them) and again, one at a time, on every iteration: only a batch is held in
    memory, whatever the size of the set.

    Args:
        data_dir: folder with ``wav.scp`` and ``spk1.scp`` … ``spk<num_stems>.scp``.
        num_stems: N, the model's outputs (the scp files in its order).
        chunk_seconds: chunk length; complete non-overlapping chunks from each song's
            start (a song shorter than one chunk is one chunk of its own length).
        sample_rate: the model's rate (files at another rate are an error).
        batch_chunks: chunks per batch.
        max_chunks: keep at most this many active chunks, evenly spaced over the set.
        inactive_threshold_db: leave out chunks where a stem is below this level
            relative to the mixture; ``None`` keeps every chunk.

    Raises:
        ValueError: invalid sizes, or no chunk is left.
    """

    def __init__(
        self,
        data_dir: Union[str, Path],
        *,
        num_stems: int,
        chunk_seconds: float,
        sample_rate: int = MUSIC_SAMPLE_RATE,
        batch_chunks: int = 1,
        max_chunks: Optional[int] = None,
        inactive_threshold_db: Optional[float] = -60.0,
    ):
        if chunk_seconds <= 0:
            raise ValueError(f"chunk_seconds must be > 0, got {chunk_seconds}")
        if batch_chunks < 1:
            raise ValueError(f"batch_chunks must be >= 1, got {batch_chunks}")
        if max_chunks is not None and max_chunks < 1:
            raise ValueError(f"max_chunks must be >= 1 or None, got {max_chunks}")
        self.data_dir = Path(data_dir)
        self.chunk_seconds = chunk_seconds
        self.chunk_samples = int(round(chunk_seconds * sample_rate))
        self.sample_rate = sample_rate
        self.batch_chunks = batch_chunks
        self.songs = read_songs(data_dir, num_stems)
        active: List[Tuple[int, int]] = []  # (song, chunk) with every stem active
        self.total_chunks = 0
        for i, song in enumerate(self.songs):
            for j, (mix, ref) in enumerate(
                song_chunks(song, self.chunk_samples, sample_rate)
            ):
                self.total_chunks += 1
                levels = stem_levels_db(mix, ref)
                if inactive_threshold_db is None or np.all(
                    levels >= inactive_threshold_db
                ):
                    active.append((i, j))
        self.inactive_chunks = self.total_chunks - len(active)
        self.skipped_chunks = 0
        if max_chunks is not None and len(active) > max_chunks:
            pick = np.linspace(0, len(active) - 1, max_chunks).round().astype(int)
            self.skipped_chunks = len(active) - max_chunks
            active = [active[k] for k in pick]
        if not active:
            raise ValueError(
                f"{data_dir}: none of the {self.total_chunks} chunks of "
                f"{chunk_seconds} s has every stem active (threshold "
                f"{inactive_threshold_db} dB re the mixture); lower "
                "--inactive_threshold_db or give more songs"
            )
        self.selected = active

    @property
    def num_chunks(self) -> int:
        """Chunks yielded by an iteration."""
        return len(self.selected)

    def describe(self) -> Dict[str, int]:
        return {
            "songs": len(self.songs),
            "chunks": self.num_chunks,
            "total_chunks": self.total_chunks,
            "inactive_chunks": self.inactive_chunks,
            "skipped_chunks": self.skipped_chunks,
        }

    def __iter__(self) -> Iterator[Item]:
        wanted: Dict[int, set] = {}
        for i, j in self.selected:
            wanted.setdefault(i, set()).add(j)
        batch: List[Tuple[np.ndarray, np.ndarray]] = []

        def flush() -> Item:
            mix = torch.from_numpy(np.stack([m for m, _ in batch]))  # [b, C, L]
            ref = torch.from_numpy(np.stack([r for _, r in batch]))  # [b, N, C, L]
            batch.clear()
            return mix, ref

        for i in sorted(wanted):
            chunks = song_chunks(self.songs[i], self.chunk_samples, self.sample_rate)
            for j, (mix, ref) in enumerate(chunks):
                if j not in wanted[i]:
                    continue
                if batch and mix.shape != batch[0][0].shape:
                    yield flush()  # a shorter song: a batch of its own
                batch.append((mix, ref))
                if len(batch) == self.batch_chunks:
                    yield flush()
        if batch:
            yield flush()


# --------------------------------------------------------------------------- cost
class CountingSeparateFn:
    """A ``separate_fn`` that counts its forward passes (input signals) and seconds.

    Args:
        separate_fn: the function counted.
        log_every: log the running totals every this many seconds of separation
            (calibration of a real model runs for a long time); None: never.
    """

    def __init__(self, separate_fn: SeparateFn, log_every: Optional[float] = 60.0):
        self.separate_fn = separate_fn
        self.log_every = log_every
        self.forward_passes = 0
        self.calls = 0
        self.seconds = 0.0
        self._logged_at = 0.0

    def __call__(self, mixture: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = self.separate_fn(mixture)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.forward_passes += int(mixture.shape[0])
        if self.log_every is not None and (
            self.seconds - self._logged_at >= self.log_every
        ):
            self._logged_at = self.seconds
            logging.info(
                f"{self.forward_passes} forward passes so far, "
                f"{self.seconds:.0f} s in the separator"
            )
        return out

    def cost(self) -> Dict[str, Union[int, float]]:
        return {
            "forward_passes": self.forward_passes,
            "separator_calls": self.calls,
            "seconds": round(self.seconds, 3),
        }


# --------------------------------------------------------------------------- traces
@torch.no_grad()
def trace_schedule(
    separate_fn: SeparateFn,
    schedule: RatioSchedule,
    items: Iterable[Item],
    metrics: Sequence[str],
) -> Dict[str, List[List[float]]]:
    """Score the schedule's trajectory after every step under several metrics.

    One replay of the fixed schedule on every item; after each step the estimates are
    scored with every metric against the references (measurement only).

    Args:
        separate_fn: as for :class:`MultiStepSeparator`.
        schedule: the fixed ratios.
        items: ``(mixture [b, C, L], references [b, N, C, L])`` pairs.
        metrics: registry names.

    Returns:
        ``{metric: [T + 1][N]}``: the mean over chunks and channels after each step
        (step 0: one-step inference). Non-finite scores (e.g. SI-SDR of a silent
        estimate) make that mean non-finite: it is not hidden.
    """
    scorers = [get_metric(name) for name in metrics]
    runner = MultiStepSeparator(separate_fn, schedule=schedule)
    n_src = schedule.num_sources
    sums = torch.zeros(len(scorers), schedule.steps + 1, n_src, dtype=torch.float64)
    count = 0
    for mix, ref in items:
        y0 = runner._separate(mix, n_src)
        ref = ref.to(y0)
        estimate = y0
        for step in range(schedule.steps + 1):
            if step > 0:
                estimate = apply_schedule_step(
                    runner, mix, estimate, y0, schedule.ratios[step - 1]
                )
            for m, metric in enumerate(scorers):
                score = metric(estimate, ref, mix.to(y0))  # [b, N, C] or [b, N]
                if score.dim() == 2:
                    score = score[..., None]
                sums[m, step] += score.double().mean(dim=2).sum(dim=0).cpu()
        count += int(mix.shape[0])
    return {name: (sums[m] / count).tolist() for m, name in enumerate(metrics)}


# --------------------------------------------------------------------------- command
@dataclass
class Calibration:
    """What the command computed (written to the report file)."""

    schedule: RatioSchedule
    validation: Dict[str, int]
    cost: Dict[str, Union[int, float]]
    traces: Dict[str, Dict[str, List[List[float]]]] = field(default_factory=dict)
    trace_data: Dict[str, Dict[str, int]] = field(default_factory=dict)
    trace_cost: Dict[str, Union[int, float]] = field(default_factory=dict)


def format_table(schedule: RatioSchedule) -> str:
    """The per-step table: chosen mixture weight and validation mean per stem."""
    names = schedule.sources or [f"spk{n + 1}" for n in range(schedule.num_sources)]
    scores = schedule.validation_scores or []
    metric = f"oracle {schedule.metric}" if schedule.oracle else schedule.metric
    header = ["step"] + [f"r[{n}]" for n in names] + [f"{n}" for n in names] + ["mean"]
    lines = [
        f"validation {metric} (dB) after each step; r = weight on the mixture "
        "('keep' = previous estimate kept)",
        " ".join(f"{h:>10}" for h in header),
    ]
    for t, row in enumerate(scores):
        ratios = (
            ["-"] * len(names)
            if t == 0
            else ["keep" if r is None else f"{r:.3f}" for r in schedule.ratios[t - 1]]
        )
        cells = [str(t)] + ratios + [f"{v:.3f}" for v in row] + [f"{np.mean(row):.3f}"]
        lines.append(" ".join(f"{c:>10}" for c in cells))
    return "\n".join(lines)


def run(
    train_config: Union[str, Path],
    model_file: Optional[Union[str, Path]],
    data_dir: Union[str, Path],
    output: Union[str, Path],
    *,
    report: Optional[Union[str, Path]] = None,
    stems: Optional[Sequence[str]] = None,
    steps: Optional[int] = None,
    candidates: Optional[int] = None,
    grid: str = "uniform",
    ratios: Optional[Sequence[float]] = None,
    metric: str = "snr",
    per_source: bool = True,
    candidate_batch: Optional[int] = None,
    chunk_seconds: float = 6.0,
    batch_chunks: int = 1,
    max_chunks: Optional[int] = None,
    inactive_threshold_db: Optional[float] = -60.0,
    trace_metrics: Sequence[str] = ("snr", "si_sdr"),
    eval_data: Sequence[Union[str, Path]] = (),
    trace_validation: bool = True,
    device: str = "cpu",
) -> Calibration:
    """The command as a function; writes the schedule and the report."""
    output = Path(output)
    if output.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise ValueError(f"--output must end in .yaml, .yml or .json, got {output}")
    report = Path(report) if report is not None else output.parent / REPORT_NAME
    metric_obj = get_metric(metric)
    for name in trace_metrics:
        get_metric(name)  # an unknown name fails before the model is loaded
    model, args = load_model(train_config, model_file, device)
    num_spk = int(model.num_spk)
    if stems is None:
        stems = list(MUSDB_STEMS) if num_spk == len(MUSDB_STEMS) else None
    if stems is not None and len(stems) != num_spk:
        raise ValueError(
            f"{len(stems)} stem names ({list(stems)}) for a model with {num_spk} "
            "outputs; give --stems with one name per output, in its order"
        )
    sample_rate = int(getattr(args, "sample_rate", None) or MUSIC_SAMPLE_RATE)
    chunk_options = dict(
        num_stems=num_spk,
        chunk_seconds=chunk_seconds,
        sample_rate=sample_rate,
        batch_chunks=batch_chunks,
        max_chunks=max_chunks,
        inactive_threshold_db=inactive_threshold_db,
    )
    valid = SongChunks(data_dir, **chunk_options)
    logging.info(
        f"{data_dir}: {valid.num_chunks} chunks of {chunk_seconds} s from "
        f"{len(valid.songs)} songs ({valid.inactive_chunks} with an inactive stem and "
        f"{valid.skipped_chunks} beyond --max_chunks left out)"
    )
    separate_fn = CountingSeparateFn(espnet_model_separate_fn(model))
    start = time.perf_counter()
    schedule = calibrate_schedule(
        separate_fn,
        list(valid),  # calibration holds every chunk and its estimates anyway
        steps=steps,
        candidates=candidates,
        grid=grid,
        ratios=ratios,
        metric=metric_obj.name,
        per_source=per_source,
        candidate_batch=candidate_batch,
        sources=stems,
    )
    wall = time.perf_counter() - start
    cost = {**separate_fn.cost(), "wall_seconds": round(wall, 3)}
    cost["passes_per_chunk"] = cost["forward_passes"] / valid.num_chunks
    search = {
        **schedule.search,
        "chunk_seconds": chunk_seconds,
        "inactive_threshold_db": inactive_threshold_db,
        "data": str(data_dir),
        "train_config": str(train_config),
        "model_file": None if model_file is None else str(model_file),
    }
    schedule = dataclasses.replace(schedule, search=search)
    schedule.save(output)
    logging.info(f"wrote {output}")
    print(format_table(schedule))
    print(
        f"calibration cost: {cost['forward_passes']} forward passes "
        f"({cost['passes_per_chunk']:.1f} per chunk), {cost['seconds']:.1f} s in the "
        f"separator, {cost['wall_seconds']:.1f} s in all"
    )

    result = Calibration(schedule=schedule, validation=valid.describe(), cost=cost)
    if trace_metrics:
        tracer = CountingSeparateFn(espnet_model_separate_fn(model))
        sets = [(str(data_dir), valid)] if trace_validation else []
        sets += [
            (str(d), SongChunks(d, **{**chunk_options, "max_chunks": None}))
            for d in eval_data
        ]
        for name, chunks in sets:
            result.traces[name] = trace_schedule(
                tracer, schedule, chunks, trace_metrics
            )
            result.trace_data[name] = chunks.describe()
            for metric_name, trace in result.traces[name].items():
                means = ", ".join(f"{np.mean(row):.3f}" for row in trace)
                print(f"{name}: {metric_name} (mean over stems) by step: {means}")
        result.trace_cost = tracer.cost()
    write_report(report, result)
    logging.info(f"wrote {report}")
    return result


def write_report(path: Union[str, Path], result: Calibration) -> Path:
    """Write the report JSON (strict: a non-finite mean is written as null)."""
    path = Path(path)
    data = {
        "schedule": result.schedule.to_dict(),
        "validation": result.validation,
        "cost": result.cost,
        "traces": result.traces,
        "trace_data": result.trace_data,
        "trace_cost": result.trace_cost,
        "note": (
            "traces: mean over chunks and channels after each step (step 0: one-step) "
            "of the fixed schedule; references only score, never select"
        ),
    }
    return atomic_write_json(path, data)


def _ratio_list(text: str) -> List[float]:
    return [float(v) for v in text.replace(",", " ").split()]


def _none_or_float(text: str) -> Optional[float]:
    return None if text.lower() == "none" else float(text)


def _none_or_int(text: str) -> Optional[int]:
    return None if text.lower() == "none" else int(text)


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet2_ext.bin.multistep_calibrate",
        description="Choose the mixture weights of deployable multi-step inference "
        "on validation songs and write the schedule file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--train_config", required=True, help="config.yaml of the model"
    )
    parser.add_argument("--model_file", required=True, help="its .pth")
    parser.add_argument(
        "--data_dir", required=True, help="validation folder: wav.scp, spk<n>.scp"
    )
    parser.add_argument(
        "--output", required=True, help="schedule file (.yaml, .yml or .json)"
    )
    parser.add_argument(
        "--report",
        default=None,
        help=f"report JSON (default: {REPORT_NAME} beside --output)",
    )
    parser.add_argument(
        "--stems", nargs="+", default=None, help="output names (default: MUSDB stems)"
    )
    parser.add_argument(
        "--steps", type=_none_or_int, default=None, help="T (default 20)"
    )
    parser.add_argument(
        "--candidates", type=_none_or_int, default=None, help="K (default 10)"
    )
    parser.add_argument("--grid", default="uniform", choices=GRIDS)
    parser.add_argument(
        "--ratios",
        type=_ratio_list,
        default=None,
        help="explicit mixture weights tried at every step, e.g. '1.0 0.8 0.6'",
    )
    parser.add_argument(
        "--metric",
        default="snr",
        help="metric maximised on the validation chunks: "
        + ", ".join(available_metrics()),
    )
    parser.add_argument(
        "--per_source", type=_bool, default=True, help="a weight per stem (else shared)"
    )
    parser.add_argument(
        "--candidate_batch",
        type=_none_or_int,
        default=None,
        help="candidates per separator call (None: all K; bounds memory)",
    )
    parser.add_argument("--chunk_seconds", type=float, default=6.0)
    parser.add_argument("--batch_chunks", type=int, default=1, help="chunks per item")
    parser.add_argument(
        "--max_chunks",
        type=_none_or_int,
        default=None,
        help="at most this many validation chunks, evenly spaced (memory bound)",
    )
    parser.add_argument(
        "--inactive_threshold_db",
        type=_none_or_float,
        default=-60.0,
        help="leave out chunks where a stem is below this level re the mixture "
        "(none: keep all)",
    )
    parser.add_argument(
        "--trace_metrics",
        nargs="*",
        default=["snr", "si_sdr"],
        help="metrics traced along the schedule's steps (nothing: no traces)",
    )
    parser.add_argument(
        "--eval_data",
        nargs="*",
        default=[],
        help="more data folders on which to trace the fixed schedule (e.g. data/test)",
    )
    parser.add_argument(
        "--trace_validation",
        type=_bool,
        default=True,
        help="trace the schedule on the validation chunks too (a replay: T*N passes "
        "per chunk at most)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_command("multistep_calibrate", get_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
