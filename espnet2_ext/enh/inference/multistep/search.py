"""Training-free multi-step inference: the candidate search (seeds/000, DESIGN.md §5).

A pretrained one-step separator ``f`` is applied again to blends of the mixture ``x0``
and its own previous estimate, keeping at each step the blend whose output scores best::

    y0 = f(x0)
    for t in 1 .. T:
        candidates  y_t(k) = f(r_k · x0 + (1 − r_k) · y_{t−1}),   k = 1 .. K
        y_t = the best of {y_{t−1}, y_t(1), …, y_t(K)} under a metric R

``r`` is the weight on the **mixture** (``r = 1``: the plain one-step input).

What this module does, and why:

* **Per-source blends.** For separation, source ``n`` gets its own blended input
  ``r · x0 + (1 − r) · y_{t−1, n}``, and the separator's output ``n`` for that input is
  the candidate for source ``n`` (the other outputs of that pass are dropped). That is
  what the authors' music code does with one model per stem (DTT-Net: each stem's model
  is fed the mixture blended with that stem's previous estimate); for a model that
  outputs all stems at once it costs ``N`` passes per candidate. With ``N = 1`` (speech
  enhancement) it is exactly the authors' speech scripts.
* **Selection** is per item, per source and, by default, per channel (the authors' music
  code picks per chunk and channel); composed with the chunked overlap-add inference
  (:func:`~espnet2_ext.enh.inference.chunking.apply_chunked`) it is also per chunk.
* **The previous estimate is always a candidate** (first, so ties keep it), so the
  selected metric never decreases from one step to the next. The authors' speech scripts
  keep it; their music script has it commented out.
* **Candidate grids** (``grid``): ``"uniform"``, mixture weights {1.0, 0.9, …} spaced 0.1
  for any K ≤ 10 at every step (the authors' music script: weights {0, 0.1, …} on the
  estimate); ``"narrowing"``,
  ``(1 − (t − 1)/T) · {1.0, …, 1/K}`` at step ``t`` (their speech scripts: the weight on
  the estimate starts at ``(t − 1)/T``), so later steps stay closer to the estimate.
  Or an explicit list of weights (``ratios``).
* **Batching.** The ``K`` candidates of a step go through the separator as one batch of
  ``K · B · N`` blended inputs (``candidate_batch`` caps how many candidates share a call).
  A candidate with ``r = 1`` is ``y0`` itself and is reused, not recomputed.
* **Not copied from the speech scripts:** they divide a blended input by its peak when
  it exceeds 1 and never scale the output back, which changes the estimate's level; a
  convex blend of the mixture and the estimates stays within their own range anyway.
* **Joint metrics** (such as the built-in reference-free ``mixture_consistency``) score
  a source's candidate together with the other sources' current estimates. The sources
  are then updated one after another within a step (Gauss–Seidel: source ``n`` is
  scored with sources ``< n`` already updated), so the metric of the whole set still
  never decreases. The candidates themselves are the same as for any metric.
* **Converged stems are not recomputed** (``skip_converged``, on by default; uniform
  grid or explicit ratios, whose weights are the same at every step). If every channel
  of source ``n`` of an item kept its previous estimate at step ``t``, its blends at
  step ``t + 1`` are those of step ``t``, so are its candidates and their scores: it
  keeps again, at every later step. With a per-source metric such a source is left out
  of the separator calls; with a joint metric an item is left out once no source
  changed. The estimates are those of the full search (up to the float rounding of a
  separator batch of another size); the pass counts show what was run.
* **Measurement traces** (``trace_metrics``): more metrics scored after every step on
  the selected estimate when references are given, never used to select; and
  (``probe_metrics``) every candidate of step 1 scored under more metrics (how the
  candidates rank under other criteria, e.g. whether ``mixture_consistency`` prefers
  the candidates that SNR prefers), at no extra separator pass.
* **Three modes.** An oracle metric (SNR, SI-SDR against the references) — every result is
  labelled *oracle*; a non-intrusive metric (blind, deployable: the built-in
  ``mixture_consistency`` or one registered by the user);
  or a fixed schedule of ratios per step and source
  (:class:`~espnet2_ext.enh.inference.multistep.schedule.RatioSchedule`) chosen on a
  validation set by
  :func:`~espnet2_ext.enh.inference.multistep.calibration.calibrate_schedule`
  (deployable: no reference, no metric, one pass per source and step).

Shapes (einops legend): ``B`` items, ``N`` sources, ``C`` audio channels, ``L`` samples,
``G`` candidates run together, ``S`` sources blended in one call, ``M`` separator outputs
(= ``N``), ``T`` steps.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from einops import rearrange

from espnet2_ext.constants import MULTISTEP_GRIDS
from espnet2_ext.enh.inference.espnet_adapter import SeparateFn
from espnet2_ext.enh.inference.metrics_registry import Metric, get_metric
from espnet2_ext.enh.inference.multistep.schedule import RatioSchedule, check_ratio

#: Defaults of the paper and of the authors' scripts: T = 20 steps, K = 10 candidates.
DEFAULT_STEPS = 20
DEFAULT_CANDIDATES = 10
#: The uniform grid (the authors'): estimate weights 0, 0.1, 0.2, … (at most 10).
UNIFORM_SPACING = 0.1
UNIFORM_MAX_CANDIDATES = 10
GRIDS = MULTISTEP_GRIDS


def candidate_ratios(
    step: int, *, steps: int, candidates: int, grid: str
) -> List[float]:
    """Mixture weights ``r_k`` tried at ``step`` (1-based) of ``steps``.

    ``uniform`` (the authors' music script): ``{1.0, 0.9, …, 1 − 0.1 (K − 1)}`` at every
    step — estimate weights ``0.1 · k`` for ``k < K``, spaced 0.1 whatever ``K`` is (so
    ``K ≤ 10``). ``narrowing`` (their speech scripts): ``{K/K, (K−1)/K, …, 1/K}`` scaled by
    ``1 − (step − 1)/steps``.

    Raises:
        ValueError: unknown grid, ``K > 10`` on the uniform grid, or a step outside
            ``1 .. steps``.
    """
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}: choose one of {GRIDS} or pass ratios")
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    if not 1 <= step <= steps:
        raise ValueError(f"step must be in 1 .. {steps}, got {step}")
    if grid == "uniform":
        if candidates > UNIFORM_MAX_CANDIDATES:
            raise ValueError(
                f"the uniform grid spaces the estimate weight by {UNIFORM_SPACING} "
                f"(the authors' grid), so it has at most {UNIFORM_MAX_CANDIDATES} "
                f"candidates; got {candidates}. Use the narrowing grid or explicit "
                "ratios for more"
            )
        return [round(1.0 - UNIFORM_SPACING * k, 10) for k in range(candidates)]
    scale = 1.0 - (step - 1) / steps
    return [scale * (candidates - j) / candidates for j in range(candidates)]


class MultiStepSeparator:
    """Multi-step inference around any separation function.

    Call :meth:`separate` for estimates and an info dict, or the object itself as
    ``separate_fn(chunk, *aligned_chunks)`` of
    :func:`~espnet2_ext.enh.inference.chunking.apply_chunked` (the references, for an
    oracle metric, go in ``aligned``); the info of every call is then kept in
    :attr:`records` and summed by :meth:`summary`.

    Args:
        separate_fn: ``f(mixture [b, C, L]) -> [b, N, C, L]``, fixed source order
            (:func:`~espnet2_ext.enh.inference.espnet_adapter.espnet_model_separate_fn`
            adapts an ESPnet enh model).
        steps: T (default 20; with a schedule, the schedule's own length).
        candidates: K mixture weights per step (default 10, or ``len(ratios)``).
        grid: ``"uniform"`` or ``"narrowing"`` (see the module docstring).
        ratios: explicit mixture weights in [0, 1] tried at every step (replaces grid).
        metric: registry name of the metric to maximise (``"snr"``, ``"si_sdr"`` or a
            registered non-intrusive one). With a schedule it only traces the result, if
            it can be computed (references given, or non-intrusive).
        schedule: a :class:`RatioSchedule` or the path of a schedule file; selects the
            deployable mode (no candidates, no references needed).
        per_channel: select each channel separately (metrics that score per channel).
        candidate_batch: candidates per separator call (None: all K at once; 1: the naive
            loop, one call per candidate).
        reuse_mixture_pass: reuse ``y0`` for a weight of exactly 1 instead of running the
            separator on the unchanged mixture again.
        skip_converged: do not recompute the candidates of a source (per-source
            metric) or an item (joint metric) that kept its estimate at the previous
            step, when the weights do not change with the step (module docstring).
        trace_metrics: registry names of metrics scored after every step when
            references are given (measurement only; ``info["traces"]``).
        probe_metrics: registry names of metrics scored on every candidate of step 1
            and on the estimate it starts from, when they can be computed (a joint
            metric with the one-step estimates as the other sources'; measurement
            only; ``info["probe"]``).
    """

    def __init__(
        self,
        separate_fn: SeparateFn,
        *,
        steps: Optional[int] = None,
        candidates: Optional[int] = None,
        grid: str = "uniform",
        ratios: Optional[Sequence[float]] = None,
        metric: str = "snr",
        schedule: Union[None, str, Path, RatioSchedule] = None,
        per_channel: bool = True,
        candidate_batch: Optional[int] = None,
        reuse_mixture_pass: bool = True,
        skip_converged: bool = True,
        trace_metrics: Sequence[str] = (),
        probe_metrics: Sequence[str] = (),
    ):
        if not callable(separate_fn):
            raise TypeError(f"separate_fn must be callable, got {separate_fn!r}")
        if grid not in GRIDS:
            raise ValueError(f"unknown grid {grid!r}: choose one of {GRIDS}")
        if candidate_batch is not None and candidate_batch < 1:
            raise ValueError(
                f"candidate_batch must be >= 1 or None, got {candidate_batch}"
            )
        self.separate_fn = separate_fn
        self.metric: Metric = get_metric(metric)
        self.grid = grid
        self.per_channel = bool(per_channel)
        self.candidate_batch = candidate_batch
        self.reuse_mixture_pass = bool(reuse_mixture_pass)
        self.skip_converged = bool(skip_converged)
        self.trace_metrics: List[Metric] = [get_metric(m) for m in trace_metrics]
        for m in self.trace_metrics:
            if m.joint:
                raise ValueError(
                    f"trace metric {m.name!r} is a joint metric; trace per-source "
                    "metrics (snr, si_sdr) — the selection metric is traced anyway"
                )

        self.probe_metrics: List[Metric] = [get_metric(m) for m in probe_metrics]

        if isinstance(schedule, (str, Path)):
            schedule = RatioSchedule.load(schedule)
        if schedule is not None and not isinstance(schedule, RatioSchedule):
            raise ValueError(
                f"schedule must be a RatioSchedule or a file path, got {schedule!r}"
            )
        self.schedule = schedule
        if schedule is not None:
            if candidates is not None or ratios is not None:
                raise ValueError(
                    "a schedule fixes the weight of every step: candidates and ratios "
                    "cannot be given with it"
                )
            if steps is not None and steps != schedule.steps:
                raise ValueError(
                    f"steps = {steps} but the schedule has {schedule.steps} steps; leave "
                    "steps unset to use the schedule's"
                )
            self.steps = schedule.steps
            self.ratios = None
            self.candidates = 0
        else:
            self.steps = DEFAULT_STEPS if steps is None else int(steps)
            if self.steps < 0:
                raise ValueError(f"steps must be >= 0, got {steps}")
            if ratios is not None:
                self.ratios = [check_ratio(r, "ratios") for r in ratios]
                if not self.ratios:
                    raise ValueError(
                        "ratios is empty: give at least one mixture weight"
                    )
                if candidates is not None and candidates != len(self.ratios):
                    raise ValueError(
                        f"candidates = {candidates} but {len(self.ratios)} ratios were "
                        "given; leave candidates unset"
                    )
                self.candidates = len(self.ratios)
            else:
                self.ratios = None
                self.candidates = (
                    DEFAULT_CANDIDATES if candidates is None else int(candidates)
                )
                if self.candidates < 1:
                    raise ValueError(f"candidates must be >= 1, got {candidates}")
        self.records: List[Dict[str, Any]] = []
        self._calls = 0
        self._rows = 0

    # ------------------------------------------------------------------ description
    @property
    def mode(self) -> str:
        """``"schedule"`` (deployable), ``"oracle"`` or ``"blind"`` (non-intrusive)."""
        if self.schedule is not None:
            return "schedule"
        return "oracle" if self.metric.requires_reference else "blind"

    @property
    def label(self) -> str:
        """How results of this object must be labelled when printed or written."""
        if self.mode == "schedule":
            return f"multi-step {self.schedule.label}"
        return f"multi-step {self.metric.label} (T={self.steps}, K={self.candidates})"

    def step_ratios(self, step: int) -> List[float]:
        """Mixture weights tried at ``step`` (1-based) in search mode."""
        if self.ratios is not None:
            return list(self.ratios)
        return candidate_ratios(
            step, steps=self.steps, candidates=self.candidates, grid=self.grid
        )

    # ------------------------------------------------------------------ building blocks
    # Public: calibration and trace replays are built from them
    # (espnet2_ext.enh.inference.multistep.calibration); every separator pass goes
    # through run_separator, so the pass counts of separate() include them.
    def run_separator(
        self, inputs: torch.Tensor, num_sources: Optional[int] = None
    ) -> torch.Tensor:
        """Run ``separate_fn`` once, counted, and check what it returns.

        Args:
            inputs: [R, C, L] rows (mixtures or blends).
            num_sources: the N the output must have (``None``: any).

        Returns:
            estimates [R, N, C, L].

        Raises:
            ValueError: the output is not a tensor of that shape.
        """
        est = self.separate_fn(inputs)
        rows, n_chan, length = inputs.shape
        if (
            not isinstance(est, torch.Tensor)
            or est.dim() != 4
            or est.shape[0] != rows
            or est.shape[2] != n_chan
            or est.shape[3] != length
            or (num_sources is not None and est.shape[1] != num_sources)
        ):
            got = (
                tuple(est.shape)
                if isinstance(est, torch.Tensor)
                else type(est).__name__
            )
            raise ValueError(
                f"separate_fn returned {got} for input {tuple(inputs.shape)}; it must "
                f"return [{rows}, N, {n_chan}, {length}] (rows, sources, channels, "
                "samples) with the same N every call"
            )
        self._calls += 1
        self._rows += rows
        return est

    def separate_blends(
        self,
        mixture: torch.Tensor,
        previous: torch.Tensor,
        weights: torch.Tensor,
        sources: torch.Tensor,
    ) -> torch.Tensor:
        """Separate per-source blends of the mixture and the previous estimate.

        All ``G · B · S`` blends go through the separator in one call.

        Args:
            mixture: x0 [B, C, L].
            previous: y_{t−1} [B, N, C, L].
            weights: mixture weights [G, S].
            sources: which source each column blends, long [S].

        Returns:
            [G, B, S, C, L]: output ``sources[s]`` of
            ``f(weights[g, s] · x0[b] + (1 − weights[g, s]) · y_{t−1}[b, sources[s]])``.
        """
        n_groups, n_sel = weights.shape
        r = rearrange(weights.to(previous), "g s -> g 1 s 1 1")
        # r · x0 + (1 − r) · y_{t−1, s} in one op (exactly x0 at r = 1)
        start = previous[None, :, sources.to(previous.device)]
        blend = torch.lerp(start, mixture[None, :, None].to(start), r)
        out = self.run_separator(
            rearrange(blend, "g b s c l -> (g b s) c l"), previous.shape[1]
        )
        out = rearrange(out, "(g b s) m c l -> g b s m c l", g=n_groups, s=n_sel)
        # keep output m = sources[s] of the pass that blended source sources[s]
        return out[:, :, torch.arange(n_sel, device=out.device), sources.to(out.device)]

    def iter_candidates(
        self,
        mixture: torch.Tensor,
        previous: torch.Tensor,
        y0: torch.Tensor,
        ratios: Sequence[float],
        sources: Optional[torch.Tensor] = None,
    ) -> Iterator[Tuple[int, float, torch.Tensor]]:
        """The candidates of one step, every source blended with the same weight.

        Weights of exactly 1 come first, as ``y0`` (when ``reuse_mixture_pass``); the
        rest are separated ``candidate_batch`` at a time (all at once by default), in
        order.

        Args:
            mixture: x0 [B, C, L].
            previous: y_{t−1} [B, N, C, L].
            y0: the one-step estimate f(x0) [B, N, C, L].
            ratios: the K mixture weights of the step.
            sources: bool [N], the sources whose blends are separated (default: all);
                the candidate of any other source is ``y_{t−1}`` itself (it never
                wins: ties keep the previous estimate).

        Yields:
            ``(k, ratios[k], candidate [B, N, C, L])`` for every weight.
        """
        n_src = previous.shape[1]
        if sources is None:
            index = torch.arange(n_src, device=previous.device)
        else:
            index = torch.nonzero(sources.to(previous.device)).flatten()
        to_run = []
        for k, r in enumerate(ratios):
            if self.reuse_mixture_pass and r == 1.0:
                yield k, r, y0  # f(1 · x0 + 0 · y_{t−1}) is y0
            elif index.numel() == 0:
                yield k, r, previous  # nothing to recompute: every source converged
            else:
                to_run.append((k, r))
        group = self.candidate_batch or max(len(to_run), 1)
        for i in range(0, len(to_run), group):
            part = to_run[i : i + group]
            weights = torch.tensor(
                [r for _, r in part], dtype=mixture.dtype, device=mixture.device
            )
            outs = self.separate_blends(
                mixture, previous, weights[:, None].expand(-1, index.numel()), index
            )
            for g, (k, r) in enumerate(part):
                if index.numel() == n_src:
                    yield k, r, outs[g]
                else:
                    candidate = previous.clone()
                    candidate[:, index] = outs[g]
                    yield k, r, candidate
            del outs

    def score(
        self,
        estimate: torch.Tensor,
        reference: Optional[torch.Tensor],
        mixture: torch.Tensor,
        current: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The selection scores of ``estimate`` under this object's metric.

        Args:
            estimate: [B, N, C, L].
            reference: [B, N, C, L], or ``None`` for a non-intrusive metric.
            mixture: x0 [B, C, L].
            current: for a joint metric, the current estimates [B, N, C, L] each
                source's candidate is scored with (default: ``estimate`` itself).

        Returns:
            [B, N, C] with per-channel selection, else [B, N, 1] (the channel mean, or
            the metric's own [B, N]); NaN counts as −inf.
        """
        scores = self.metric(estimate, reference, mixture, current)
        if scores.dim() == 2:
            scores = scores[..., None]
        elif not self.per_channel:
            scores = scores.mean(dim=-1, keepdim=True)
        return torch.nan_to_num(scores, nan=-math.inf)

    def check_reference(
        self, reference: Optional[torch.Tensor], estimate: torch.Tensor
    ) -> Optional[torch.Tensor]:
        """``reference`` [B, N, C, L] moved to the estimate's device (or ``None``).

        Raises:
            ValueError: its shape differs from ``estimate`` [B, N, C, L].
        """
        if reference is None:
            return None
        if reference.shape != estimate.shape:
            raise ValueError(
                f"reference shape {tuple(reference.shape)} must equal the estimate "
                f"shape {tuple(estimate.shape)} ([B, N, C, L], the separator's source "
                "order)"
            )
        return reference.to(device=estimate.device)

    def _can_score(self, reference: Optional[torch.Tensor]) -> bool:
        return reference is not None or not self.metric.requires_reference

    def _measure(
        self,
        estimate: torch.Tensor,
        reference: Optional[torch.Tensor],
        mixture: torch.Tensor,
        traces: Dict[str, List[torch.Tensor]],
    ) -> None:
        """Append the trace metrics of ``estimate`` ([B, N, C] each) to ``traces``."""
        if reference is None:
            return
        for metric in self.trace_metrics:
            value = metric(estimate, reference, mixture)
            traces.setdefault(metric.name, []).append(
                value if value.dim() == 3 else value[..., None]
            )

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def separate(
        self, mixture: torch.Tensor, reference: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, Dict[str, Any]]:
        """Multi-step separation of ``mixture``.

        Args:
            mixture: x0 [B, C, L].
            reference: true sources [B, N, C, L]; required by an oracle metric in search
                mode, optional otherwise (then only used for the traces: a schedule or
                a non-intrusive metric never sees it).

        Returns:
            estimates [B, N, C, L] and an info dict:

            * ``mode``, ``label`` (``oracle`` in it for reference-selected results),
              ``metric`` (its name; ``None`` if nothing was scored);
            * ``steps``; ``candidate_ratios`` [T][K] (search) or the schedule [T][N];
            * ``chosen_ratio`` [T, B, N, C'] float, NaN where the previous estimate was
              kept (C' = C with per-channel selection, else 1);
            * ``trace`` [T + 1, B, N, C'] metric of the estimate after each step (step 0:
              one-step inference), or ``None`` if the metric cannot be computed;
            * ``traces``: ``{name: [T + 1, B, N, C]}`` of the ``trace_metrics`` (empty
              without references);
            * ``probe`` (search mode, ``probe_metrics``): ``ratios`` of step 1,
              ``keep`` ``{name: [B, N, C']}`` of the one-step estimate and
              ``candidates`` ``{name: [K, B, N, C']}`` of step 1's candidates;
            * ``forward_passes`` (separator input signals in total, all items),
              ``passes_per_item``, ``separator_calls``, ``seconds``.
        """
        if mixture.dim() != 3:
            raise ValueError(
                f"mixture must be [B, C, L] (batch, channels, samples), got shape "
                f"{tuple(mixture.shape)}"
            )
        if self.mode == "oracle" and reference is None:
            raise ValueError(
                f"{self.label} needs the reference sources [B, N, C, L] (an oracle "
                "metric); without references use a schedule (calibrate_schedule) or a "
                "non-intrusive metric"
            )
        start = time.perf_counter()
        calls0, rows0 = self._calls, self._rows
        y0 = self.run_separator(mixture, None)
        reference = self.check_reference(reference, y0)
        traces: Dict[str, List[torch.Tensor]] = {}
        probe: Dict[str, Any] = {}
        if self.mode == "schedule":
            estimate, chosen, trace, ratio_lists = self._run_schedule(
                mixture, y0, reference, traces
            )
        else:
            estimate, chosen, trace, ratio_lists = self._run_search(
                mixture, y0, reference, traces, probe
            )
        rows = self._rows - rows0
        info = {
            "mode": self.mode,
            "label": self.label,
            "metric": self.metric.name if trace is not None else None,
            "metric_label": self.metric.label if trace is not None else None,
            "steps": self.steps,
            "candidate_ratios": ratio_lists,
            "chosen_ratio": chosen,
            "trace": trace,
            "traces": {name: torch.stack(values) for name, values in traces.items()},
            "probe": probe,
            "forward_passes": rows,
            "passes_per_item": rows / mixture.shape[0],
            "separator_calls": self._calls - calls0,
            "seconds": time.perf_counter() - start,
        }
        return estimate, info

    def _run_search(
        self,
        mixture: torch.Tensor,
        y0: torch.Tensor,
        reference: Optional[torch.Tensor],
        traces: Dict[str, List[torch.Tensor]],
        probe: Dict[str, Any],
    ):
        previous = y0
        best_score = self.score(previous, reference, mixture)  # [B, N, C']
        trace = [best_score]
        self._measure(previous, reference, mixture, traces)
        chosen_all, ratio_lists = [], []
        # [B, N]: the (item, source) pairs whose candidates may still change
        active = torch.ones(y0.shape[:2], dtype=torch.bool, device=y0.device)
        for step in range(1, self.steps + 1):
            ratios = self.step_ratios(step)
            if not (self.skip_converged and ratio_lists and ratios == ratio_lists[-1]):
                active[:] = True  # new weights: every candidate is new
            ratio_lists.append(ratios)
            probing = step == 1 and self._start_probe(
                probe, previous, reference, mixture, ratios
            )
            step_probe = probe if probing else None
            if self.metric.joint:
                best, best_score, chosen = self._joint_step(
                    mixture,
                    previous,
                    y0,
                    reference,
                    ratios,
                    best_score,
                    active,
                    step_probe,
                )
                # an item converges when none of its sources changed
                kept_all = torch.isnan(chosen).all(dim=2).all(dim=1, keepdim=True)
                active = ~kept_all.expand_as(active)
            else:
                best, best_score, chosen = self._source_step(
                    mixture,
                    previous,
                    y0,
                    reference,
                    ratios,
                    best_score,
                    active,
                    step_probe,
                )
                active = ~torch.isnan(chosen).all(
                    dim=2
                )  # a source kept in every channel
            previous = best
            trace.append(best_score)
            chosen_all.append(chosen)
            self._measure(previous, reference, mixture, traces)
        chosen_t = (
            torch.stack(chosen_all)
            if chosen_all
            else best_score.new_zeros((0,) + tuple(best_score.shape))
        )
        return previous, chosen_t, torch.stack(trace), ratio_lists

    def _start_probe(self, probe, previous, reference, mixture, ratios) -> bool:
        """Score the estimate step 1 starts from under the probe metrics; False if
        none of them can be computed (an oracle one without references)."""
        usable = [
            m
            for m in self.probe_metrics
            if reference is not None or not m.requires_reference
        ]
        if not usable:
            return False
        probe.update(ratios=list(ratios), keep={}, candidates={})
        for m in usable:
            probe["keep"][m.name] = self._probe_score(
                m, previous, reference, mixture, previous
            )
            probe["candidates"][m.name] = []
        return True

    def _probe_score(self, metric, candidate, reference, mixture, previous):
        value = metric(candidate, reference, mixture, previous)
        value = value if value.dim() == 3 else value[..., None]
        if not self.per_channel:
            value = value.mean(dim=-1, keepdim=True)
        return value

    def _record_probe(self, probe, candidate, reference, mixture, previous) -> None:
        if probe is None:
            return
        for m in self.probe_metrics:
            if m.name in probe["candidates"]:
                probe["candidates"][m.name].append(
                    self._probe_score(m, candidate, reference, mixture, previous)
                )

    @staticmethod
    def _finish_probe(probe) -> None:
        if probe is not None:
            probe["candidates"] = {
                name: torch.stack(values)
                for name, values in probe["candidates"].items()
            }

    def _source_step(
        self, mixture, previous, y0, reference, ratios, best_score, active, probe=None
    ):
        """One search step with a per-source metric: the best candidate per source.

        Returns (y_t [B, N, C, L], its scores [B, N, C'], chosen weight [B, N, C'] with
        NaN where the previous estimate was kept).
        """
        best = previous
        chosen = torch.full_like(best_score, math.nan)
        run = active.any(dim=0)  # [N]: a source converged in every item is left out
        for _, r, candidate in self.iter_candidates(
            mixture, previous, y0, ratios, sources=run
        ):
            self._record_probe(probe, candidate, reference, mixture, previous)
            score = self.score(candidate, reference, mixture)
            better = score > best_score  # strict: ties keep the earlier candidate
            best = torch.where(better[..., None], candidate, best)
            best_score = torch.where(better, score, best_score)
            chosen = torch.where(better, torch.full_like(chosen, r), chosen)
        self._finish_probe(probe)
        return best, best_score, chosen

    def _joint_step(
        self, mixture, previous, y0, reference, ratios, best_score, active, probe=None
    ):
        """One search step with a joint metric: sources updated one after another.

        Source ``n`` takes its best candidate scored with the current estimates of the
        others (sources ``< n`` already updated in this step); every source's
        candidates are those of :meth:`iter_candidates` (blends of ``y_{t−1}``).
        Returns as :meth:`_source_step`; the scores are those of the whole new set.
        """
        chosen = torch.full_like(best_score, math.nan)
        if not bool(active.any()):  # every item converged: nothing changes
            return previous, best_score, chosen
        candidates = [
            (r, candidate)
            for _, r, candidate in self.iter_candidates(mixture, previous, y0, ratios)
        ]
        for _, candidate in candidates:
            self._record_probe(probe, candidate, reference, mixture, previous)
        self._finish_probe(probe)
        best = previous.clone()
        for n in range(previous.shape[1]):
            keep = self.score(best, reference, mixture, best)[:, n]  # [B, C']
            for r, candidate in candidates:
                score = self.score(candidate, reference, mixture, best)[:, n]
                better = score > keep
                best[:, n] = torch.where(better[..., None], candidate[:, n], best[:, n])
                keep = torch.where(better, score, keep)
                chosen[:, n] = torch.where(
                    better, torch.full_like(keep, r), chosen[:, n]
                )
        return best, self.score(best, reference, mixture), chosen

    def _run_schedule(
        self,
        mixture: torch.Tensor,
        y0: torch.Tensor,
        reference: Optional[torch.Tensor],
        traces: Dict[str, List[torch.Tensor]],
    ):
        n_batch, n_src = y0.shape[:2]
        if n_src != self.schedule.num_sources:
            raise ValueError(
                f"the schedule has weights for {self.schedule.num_sources} sources but "
                f"the separator returns {n_src}"
            )
        traced = self._can_score(reference)
        previous = y0
        trace = [self.score(previous, reference, mixture)] if traced else None
        self._measure(previous, reference, mixture, traces)
        for ratios in self.schedule.ratios:
            previous = apply_schedule_step(self, mixture, previous, y0, ratios)
            if traced:
                trace.append(self.score(previous, reference, mixture))
            self._measure(previous, reference, mixture, traces)
        chosen = torch.tensor(
            [
                [math.nan if r is None else r for r in row]
                for row in self.schedule.ratios
            ],
            dtype=torch.float32,
        ).reshape(self.steps, 1, n_src, 1)
        chosen = chosen.expand(-1, n_batch, -1, -1).to(y0.device)
        ratio_lists = [list(row) for row in self.schedule.ratios]
        return previous, chosen, torch.stack(trace) if traced else None, ratio_lists

    # ------------------------------------------------------------------ chunking
    def __call__(self, mixture: torch.Tensor, *aligned: torch.Tensor) -> torch.Tensor:
        """``separate_fn(chunk [b, C, L], *aligned_chunks) -> [b, N, C, L]`` for chunking.

        ``aligned`` is empty or holds the references [b, N, C, L]. The info dict of the
        call is appended to :attr:`records`.
        """
        if len(aligned) > 1:
            raise ValueError(
                f"got {len(aligned)} aligned tensors; multi-step takes at most one, the "
                "references [B, N, C, L]"
            )
        estimate, info = self.separate(mixture, aligned[0] if aligned else None)
        self.records.append(info)
        return estimate

    def reset(self) -> None:
        """Forget the recorded calls."""
        self.records = []

    def summary(self) -> Dict[str, Any]:
        """Totals over :attr:`records` (e.g. all chunks of the songs of one run).

        Returns ``label``, ``calls``, ``forward_passes``, ``separator_calls``,
        ``seconds``, ``mean_trace`` [T + 1] (metric after each step, mean over all
        items, sources and channels of all calls; ``None`` if not traced),
        ``mean_trace_per_source`` [T + 1, N] and ``mean_traces_per_source``
        ``{name: [T + 1, N]}`` of the trace metrics (those every call traced).
        """
        if not self.records:
            raise ValueError("no calls recorded yet")

        def per_source(traces):  # [T+1, b, N, C'] each → mean over items, channels
            stacked = torch.cat([t.cpu() for t in traces], dim=1)  # [T+1, ΣB, N, C']
            return stacked.mean(dim=(1, 3))

        traces = [r["trace"] for r in self.records if r["trace"] is not None]
        selected = (
            per_source(traces) if traces and len(traces) == len(self.records) else None
        )
        names = set.intersection(*(set(r.get("traces", {})) for r in self.records))
        return {
            "label": self.label,
            "metric_label": self.records[0]["metric_label"],
            "calls": len(self.records),
            "forward_passes": sum(r["forward_passes"] for r in self.records),
            "separator_calls": sum(r["separator_calls"] for r in self.records),
            "seconds": sum(r["seconds"] for r in self.records),
            "mean_trace": None if selected is None else selected.mean(dim=1),
            "mean_trace_per_source": selected,
            "mean_traces_per_source": {
                name: per_source([r["traces"][name] for r in self.records])
                for name in sorted(names)
            },
        }


def apply_schedule_step(
    runner: MultiStepSeparator,
    mixture: torch.Tensor,
    previous: torch.Tensor,
    y0: torch.Tensor,
    ratios: Sequence[Optional[float]],
) -> torch.Tensor:
    """One fixed step: source ``n`` becomes ``f(r_n x0 + (1 − r_n) y_{t−1,n})[n]``.

    The step of the deployable (schedule) mode, also replayed by calibration.
    ``r_n = None`` keeps ``y_{t−1,n}``; ``r_n = 1`` reuses ``y0`` when the runner allows.
    All sources that need a pass share one separator call (counted by ``runner``).

    Args:
        runner: the separator whose ``separate_fn`` and ``reuse_mixture_pass`` are used.
        mixture: x0 [B, C, L].
        previous: y_{t−1} [B, N, C, L].
        y0: the one-step estimate f(x0) [B, N, C, L].
        ratios: the step's weight per source, length N (``None``: keep).

    Returns:
        y_t [B, N, C, L].
    """
    run = [
        n
        for n, r in enumerate(ratios)
        if r is not None and not (runner.reuse_mixture_pass and r == 1.0)
    ]
    current = previous.clone()
    for n, r in enumerate(ratios):
        if r is not None and runner.reuse_mixture_pass and r == 1.0:
            current[:, n] = y0[:, n]
    if run:
        weights = torch.tensor(
            [[ratios[n] for n in run]], dtype=mixture.dtype, device=mixture.device
        )
        index = torch.tensor(run, device=previous.device)
        current[:, index] = runner.separate_blends(mixture, previous, weights, index)[0]
    return current
