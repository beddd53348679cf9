"""Calibration of a fixed multi-step schedule on validation items, and its report.

Multi-step inference with a reference metric is an **oracle**; the deployable mode fixes
the blend of every step and source beforehand, on a validation set:
:func:`calibrate_schedule` chooses the :class:`~.schedule.RatioSchedule`, either greedily
along the trajectory it produces (``form="greedy"``: a weight per step and source) or
as one weight per source held for a chosen number of steps (``form="constant"``, fewer
free values: 2 per source), :func:`trace_schedule` replays a schedule and scores every
step under several metrics (measurement only), :class:`CountingSeparateFn` counts what
it costs, and :func:`write_report` / :func:`format_table` write and print the result.
Running all of it for a trained model on song folders is
:func:`~espnet2_ext.enh.inference.multistep.song_calibration.run_calibration`.

Shapes: ``b`` items, ``N`` sources, ``C`` channels, ``L`` samples, ``T`` steps.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from espnet2_ext.enh.inference.espnet_adapter import SeparateFn
from espnet2_ext.enh.inference.metrics_registry import get_metric
from espnet2_ext.enh.inference.multistep.schedule import RatioSchedule
from espnet2_ext.enh.inference.multistep.search import (
    MultiStepSeparator,
    apply_schedule_step,
)
from espnet2_ext.utils.atomic import atomic_write_json

#: ``(mixture [b, C, L], references [b, N, C, L])``: one validation item.
Item = Tuple[torch.Tensor, torch.Tensor]

#: Schedule forms of :func:`calibrate_schedule`.
FORMS = ("greedy", "constant")


# ---------------------------------------------------------------------- calibration
@torch.no_grad()
def calibrate_schedule(
    separate_fn: SeparateFn,
    validation: Sequence[Tuple[torch.Tensor, Optional[torch.Tensor]]],
    *,
    steps: Optional[int] = None,
    candidates: Optional[int] = None,
    grid: str = "uniform",
    ratios: Optional[Sequence[float]] = None,
    metric: str = "snr",
    per_source: bool = True,
    candidate_batch: Optional[int] = None,
    reuse_mixture_pass: bool = True,
    sources: Optional[Sequence[str]] = None,
    form: str = "greedy",
    skip_converged: bool = True,
) -> RatioSchedule:
    """Choose a fixed schedule of mixture weights on a validation set.

    ``form="greedy"``: greedy over steps, along the trajectory the schedule itself
    produces: at step ``t`` every validation item is at ``y_{t−1}`` of the schedule so
    far; each candidate weight (and keeping ``y_{t−1}``) is scored on every item, and the
    weight with the highest mean score (over items and channels; per source unless
    ``per_source`` is False) is fixed for step ``t``. The validation mean therefore never
    decreases with the step. With ``skip_converged`` (and weights that do not change
    with the step), a source that keeps its estimate at step ``t`` keeps it at every
    later step (its candidates and their mean scores repeat), so it is not recomputed;
    once every source keeps, the remaining steps are "keep" without a pass.

    ``form="constant"``: :func:`calibrate_constant` (one weight per source, held for
    the first ``t_n`` steps; both chosen on the validation mean).

    Args:
        separate_fn: as for :class:`MultiStepSeparator`.
        validation: re-iterable ``(mixture [b, C, L], reference [b, N, C, L] | None)``
            pairs, e.g. fixed-length chunks of the validation songs. The estimates of
            all of them are held in memory (on their device) during calibration.
        steps, candidates, grid, ratios, candidate_batch, reuse_mixture_pass: as for
            :class:`MultiStepSeparator` (the search space).
        metric: registry name of the metric to maximise (an oracle one is usual).
        per_source: a weight per source (True) or one shared by all sources.
        sources: optional source names stored in the schedule.
        form: ``"greedy"`` or ``"constant"`` (:data:`FORMS`).
        skip_converged: leave out sources that can no longer change (greedy form).

    Returns:
        the :class:`RatioSchedule`, with the validation mean after every step.
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if form == "constant":
        return calibrate_constant(
            separate_fn,
            validation,
            steps=steps,
            candidates=candidates,
            grid=grid,
            ratios=ratios,
            metric=metric,
            per_source=per_source,
            reuse_mixture_pass=reuse_mixture_pass,
            sources=sources,
        )
    runner = MultiStepSeparator(
        separate_fn,
        steps=steps,
        candidates=candidates,
        grid=grid,
        ratios=ratios,
        metric=metric,
        per_channel=True,
        candidate_batch=candidate_batch,
        reuse_mixture_pass=reuse_mixture_pass,
    )
    items = list(validation)
    if not items:
        raise ValueError("the validation set is empty")
    states = []  # per item: (mixture, reference, y0, y_{t−1})
    for i, (mix, ref) in enumerate(items):
        if mix.dim() != 3:
            raise ValueError(
                f"validation[{i}]: mixture must be [b, C, L], got {tuple(mix.shape)}"
            )
        y0 = runner.run_separator(mix, None)
        ref = runner.check_reference(ref, y0)
        if runner.metric.requires_reference and ref is None:
            raise ValueError(
                f"validation[{i}] has no reference but metric {metric!r} needs one"
            )
        states.append([mix, ref, y0, y0])
    n_src = states[0][2].shape[1]
    if sources is not None and len(sources) != n_src:
        raise ValueError(f"{len(sources)} source names for {n_src} separator outputs")

    schedule_rows: List[List[Optional[float]]] = []
    totals = torch.zeros(n_src, dtype=torch.float64)
    count = 0
    for mix, ref, y0, prev in states:
        s = runner.score(prev, ref, mix)  # [b, N, C']
        totals += s.double().sum(dim=(0, 2)).cpu()
        count += s.shape[0] * s.shape[2]
    validation_scores = [(totals / count).tolist()]
    converged = torch.zeros(n_src, dtype=torch.bool)  # sources that can only keep
    previous_ratios: Optional[List[float]] = None
    for step in range(1, runner.steps + 1):
        step_ratios = runner.step_ratios(step)
        if not (skip_converged and step_ratios == previous_ratios):
            converged[:] = False  # new weights: every candidate is new
        previous_ratios = step_ratios
        if bool(converged.all()):  # nothing can change any more
            schedule_rows.append([None] * n_src)
            validation_scores.append(list(validation_scores[-1]))
            continue
        # row 0: keep y_{t−1}; row k + 1: weight step_ratios[k]; summed over items
        sums = torch.zeros(len(step_ratios) + 1, n_src, dtype=torch.float64)
        count = 0
        for mix, ref, y0, prev in states:
            keep = runner.score(prev, ref, mix)  # [b, N, C']
            sums[0] += keep.double().sum(dim=(0, 2)).cpu()
            count += keep.shape[0] * keep.shape[2]
            # a converged source's candidate is y_{t−1} itself: its means tie "keep"
            for k, _, candidate in runner.iter_candidates(
                mix, prev, y0, step_ratios, sources=~converged
            ):
                score = runner.score(candidate, ref, mix)
                sums[k + 1] += score.double().sum(dim=(0, 2)).cpu()
        means = sums / count  # [K + 1, N]
        if per_source:
            best = torch.argmax(means, dim=0)  # first maximum: keeping wins ties
        else:
            best = torch.argmax(means.mean(dim=1)).expand(n_src)
        row = [None if int(k) == 0 else step_ratios[int(k) - 1] for k in best]
        schedule_rows.append(row)
        validation_scores.append([float(means[int(k), n]) for n, k in enumerate(best)])
        for state in states:
            mix, ref, y0, prev = state
            state[3] = apply_schedule_step(runner, mix, prev, y0, row)
        kept = torch.tensor([r is None for r in row])
        # a per-source metric: a source that kept repeats its step; a joint one
        # depends on the others, so only "every source kept" repeats
        converged = kept if not runner.metric.joint else kept.all().expand(n_src)
    search = {
        "form": "greedy",
        "grid": grid if ratios is None else "explicit",
        "candidates": runner.candidates,
        "per_source": bool(per_source),
        "validation_items": sum(int(s[0].shape[0]) for s in states),
    }
    if ratios is not None:
        search["ratios"] = [float(r) for r in ratios]
    return RatioSchedule(
        ratios=schedule_rows,
        metric=runner.metric.name,
        oracle=runner.metric.requires_reference,
        sources=None if sources is None else list(sources),
        validation_scores=validation_scores,
        search=search,
    )


@torch.no_grad()
def calibrate_constant(
    separate_fn: SeparateFn,
    validation: Sequence[Tuple[torch.Tensor, Optional[torch.Tensor]]],
    *,
    steps: Optional[int] = None,
    candidates: Optional[int] = None,
    grid: str = "uniform",
    ratios: Optional[Sequence[float]] = None,
    metric: str = "snr",
    per_source: bool = True,
    reuse_mixture_pass: bool = True,
    sources: Optional[Sequence[str]] = None,
) -> RatioSchedule:
    """A schedule of one weight per source, held for a chosen number of steps.

    Every weight ``r`` of the grid is applied at every step, to every source, for
    ``T`` steps (the schedule mode's trajectory: source ``n`` becomes
    ``f(r x0 + (1 − r) y_{t−1,n})[n]``), and the metric is averaged over the
    validation items after each step. Source ``n`` then gets the pair ``(r_n, t_n)``
    with the highest mean (``t_n = 0``: one-step inference, "keep" throughout); the
    schedule applies ``r_n`` at steps ``1 … t_n`` and keeps afterwards. Two values per
    source instead of the greedy form's ``T``, chosen on whole trajectories: less room to
    fit the validation items' noise. Costs ``1 + T (K − 1) N`` passes per item (one
    trajectory per weight below 1: a weight of 1 gives ``y0`` at every step).

    Args: as for :func:`calibrate_schedule`; the weights must be the same at every step
    (uniform grid or explicit ratios); ``per_source`` False chooses one pair for all
    sources.

    Returns:
        the :class:`RatioSchedule`, with the validation mean after every step.
    """
    runner = MultiStepSeparator(
        separate_fn,
        steps=steps,
        candidates=candidates,
        grid=grid,
        ratios=ratios,
        metric=metric,
        per_channel=True,
        reuse_mixture_pass=reuse_mixture_pass,
    )
    weights = runner.step_ratios(1)
    if any(runner.step_ratios(t) != weights for t in range(2, runner.steps + 1)):
        raise ValueError(
            "the constant form holds one weight for many steps: use the uniform grid "
            "or explicit ratios (the narrowing grid changes the weights every step)"
        )
    tried = [r for r in weights if not (reuse_mixture_pass and r == 1.0)]
    items = list(validation)
    if not items:
        raise ValueError("the validation set is empty")
    n_steps = runner.steps
    sums: Optional[torch.Tensor] = None  # [R, T + 1, N]
    count = 0
    for i, (mix, ref) in enumerate(items):
        if mix.dim() != 3:
            raise ValueError(
                f"validation[{i}]: mixture must be [b, C, L], got {tuple(mix.shape)}"
            )
        y0 = runner.run_separator(mix, None)
        ref = runner.check_reference(ref, y0)
        if runner.metric.requires_reference and ref is None:
            raise ValueError(
                f"validation[{i}] has no reference but metric {metric!r} needs one"
            )
        n_src = y0.shape[1]
        if sums is None:
            sums = torch.zeros(len(tried) + 1, n_steps + 1, n_src, dtype=torch.float64)
        first = runner.score(y0, ref, mix)  # [b, N, C']
        count += first.shape[0] * first.shape[2]
        # row 0: "keep" (y0 at every step); row j + 1: weight tried[j]
        sums[:, 0] += first.double().sum(dim=(0, 2)).cpu()
        sums[0, 1:] += first.double().sum(dim=(0, 2)).cpu()
        for j, r in enumerate(tried):
            estimate = y0
            for t in range(1, n_steps + 1):
                estimate = apply_schedule_step(runner, mix, estimate, y0, [r] * n_src)
                score = runner.score(estimate, ref, mix)
                sums[j + 1, t] += score.double().sum(dim=(0, 2)).cpu()
    means = sums / count  # [R, T + 1, N]
    n_src = means.shape[2]
    if sources is not None and len(sources) != n_src:
        raise ValueError(f"{len(sources)} source names for {n_src} separator outputs")
    flat = means.reshape(-1, n_src)  # (weight, steps) pairs; the first is "keep"
    if per_source:
        best = torch.argmax(flat, dim=0)  # first maximum: keeping wins ties
    else:
        best = torch.argmax(flat.mean(dim=1)).expand(n_src)
    pairs = [divmod(int(b), n_steps + 1) for b in best]  # (row, t_n)
    held = [
        (None, 0) if j == 0 or t == 0 else (tried[j - 1], t) for j, t in pairs
    ]  # (r_n, t_n)
    rows = [
        [r if r is not None and step <= t else None for r, t in held]
        for step in range(1, n_steps + 1)
    ]
    validation_scores = [
        [float(means[j, min(step, t), n]) for n, (j, t) in enumerate(pairs)]
        for step in range(n_steps + 1)
    ]
    search = {
        "form": "constant",
        "grid": grid if ratios is None else "explicit",
        "candidates": runner.candidates,
        "per_source": bool(per_source),
        "validation_items": count // max(1, first.shape[2]),
        "held_steps": [t for _, t in held],
        "mean_by_weight": {
            f"{r:g}": means[j + 1].tolist() for j, r in enumerate(tried)
        },
    }
    if ratios is not None:
        search["ratios"] = [float(r) for r in ratios]
    return RatioSchedule(
        ratios=rows,
        metric=runner.metric.name,
        oracle=runner.metric.requires_reference,
        sources=None if sources is None else list(sources),
        validation_scores=validation_scores,
        search=search,
    )


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
        y0 = runner.run_separator(mix, n_src)
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


# --------------------------------------------------------------------------- report
@dataclass
class Calibration:
    """What a calibration run computed, as :func:`write_report` writes it.

    Args:
        schedule: the calibrated schedule.
        validation: the validation chunk counts (``SongChunks.describe()``).
        cost: separator passes and seconds of the calibration.
        traces: ``{data set: {metric: [T + 1][N]}}`` from :func:`trace_schedule`.
        trace_data: ``{data set: chunk counts}`` of the traced sets.
        trace_cost: separator passes and seconds of the replays.
    """

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
