"""Unsupervised separation by guided reverse diffusion with one prior per source.

seeds/001 (Shi et al., "Unsupervised single-channel audio separation with diffusion
source priors"); the formulation below was read from the authors' inference code
(RunwuShi/unasdiff), the code is ours. Given an observed mixture y and N priors, every
reverse step does, for all sources at once:

1. x̂0_n = clamp((x_n − √(1 − ᾱ) ε̂_n(x_n)) / √ᾱ, −1, 1) with each source's prior;
2. the ancestral step x'_n = μ̃(x̂0_n, x_n) + σ z (σ² the posterior variance);
3. the reconstruction loss L(Σ_n x̂0_n, y)
   (:class:`~espnet2_ext.diffusion.sampling.loss.ReconstructionLoss`) and its gradient
   g_n = ∂L/∂x_n *through the denoisers*;
4. a guidance step on x'_n chosen by the step rule
   (:mod:`~espnet2_ext.diffusion.sampling.steps`).

The reverse process starts from an initialisation
(:mod:`~espnet2_ext.diffusion.sampling.init`): the augmented mixture, or Gaussian noise.

Respaced runs and the guidance path. The ``hybrid`` and ``dsg`` rules move every source
by a distance set by the schedule alone, ρ(σ) (∝ σ, the ancestral standard deviation,
above the hybrid rule's floor), so the guidance path of a run — the summed distance
guidance moves each source — is P = Σ_i ρ(σ_i). Visiting every step τ = start_t … 0
gives P_full = Σ_τ ρ(σ_τ). A respaced run of K steps τ_{K−1} > … > τ_0 = 0 has larger
σ'_i (each step spans several training steps) but fewer of them, and its path
P_K = Σ_i ρ(σ'_i) is shorter: for the paper's schedule and K = 20 over [0, 199],
P_full / P_K = 3.65 (the ratio of the σ sums; the floor changes the third digit).

Path scaling gives each respaced step the path of the training steps it stands for:
step i moves ρ'_i = Σ_{τ_{i−1} < τ ≤ τ_i} ρ(σ_τ) (σ_τ of the full schedule, τ_{−1} =
−1), i.e. its step length times s_i = ρ'_i / ρ(σ'_i). The spans partition the full
schedule, so the run travels exactly P_full, and a step that stands for one training
step keeps its length (the last one, τ = 0, whose hybrid floor would otherwise be
inflated: one uniform factor P_full / P_K on every step moves the final estimate by
3.65 × the floor). It is on by default for the rules that have a schedule-set step
(s_i = 1 when every step is visited); :attr:`DiffusionPriorSampler.path_scaling_label`
names the setting for results tables. ``dps``, ``dsg_yang`` and ``none`` have no such
step (their move depends on the gradient's size or on the ancestral noise), so nothing
is scaled for them.

The sampler sees the observed mixture only: :meth:`DiffusionPriorSampler.separate` takes
no references. (The authors' script builds its measurement from the true sources; that
is not reproduced.) The mixture must be at the level the priors were trained on
(sources at −25 … −20 dBFS in the paper's data); ``mixture_rms_db`` rescales it and
undoes the scaling on the estimates.

Shape legend: b mixtures, n sources, t samples.
"""

from __future__ import annotations

import inspect
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from einops import rearrange

from espnet2_ext.diffusion.prior_model import PriorDenoiser
from espnet2_ext.diffusion.sampling.init import (
    INITIALISATIONS,
    Initialisation,
    gaussian_noise,
)
from espnet2_ext.diffusion.sampling.loss import ReconstructionLoss
from espnet2_ext.diffusion.sampling.steps import STEP_RULES, StepContext, StepRule
from espnet2_ext.diffusion.schedule import ReverseSchedule


class DiffusionPriorSampler:
    """Separate mixtures with N diffusion source priors (seeds/001).

    Args:
        priors: one :class:`PriorDenoiser` per source (the same object may serve several
            sources; those are evaluated in one batch). All must share the schedule.
        categories: per source, the class label (index or class name) for a
            class-conditional prior, or None ("no class"); None for all when omitted.
        num_steps: reverse steps (respaced evenly over [0, start_t]); None: every step.
        start_t: the step the reverse process starts from; None: T − 1 (the authors run
            all 200 steps, starting from the augmented mixture at t = 149).
        step_rule: "hybrid" (paper), "dsg" (the authors' DSG), "dsg_yang" (Yang et
            al.'s DSG), "dps" or "none"; see :data:`STEP_RULES`.
        step_rule_conf: keyword arguments of the step rule.
        path_scaling: give every respaced step the guidance path of the training
            steps it stands for, so that the run travels the full schedule's path
            (see the module's text).
            None (default): on for the rules that have a schedule-set step (``hybrid``,
            ``dsg``), off for the others; True with such a rule is an error.
        init: "augmented_mixture" (paper) or "gaussian"; see :data:`INITIALISATIONS`.
        init_conf: keyword arguments of the initialisation.
        loss_conf: keyword arguments of :class:`ReconstructionLoss`.
        clamp_x0: clamp x̂0 to [−1, 1].
        mixture_rms_db: if set, the mixture is scaled to this RMS level (dBFS) before
            sampling and the estimates are scaled back; None uses the mixture as given.
    """

    def __init__(
        self,
        priors: Sequence[PriorDenoiser],
        categories: Optional[Sequence[Optional[Union[int, str]]]] = None,
        num_steps: Optional[int] = None,
        start_t: Optional[int] = None,
        step_rule: str = "hybrid",
        step_rule_conf: Optional[dict] = None,
        path_scaling: Optional[bool] = None,
        init: str = "augmented_mixture",
        init_conf: Optional[dict] = None,
        loss_conf: Optional[dict] = None,
        clamp_x0: bool = True,
        mixture_rms_db: Optional[float] = None,
    ):
        priors = list(priors)
        if len(priors) < 1:
            raise ValueError("give at least one prior (one per source)")
        schedule = priors[0].schedule
        for prior in priors[1:]:
            if not prior.schedule.same_as(schedule):
                raise ValueError(
                    f"all priors must share one noise schedule: {schedule} vs "
                    f"{prior.schedule}; train them with the same model_conf"
                )
        categories = [None] * len(priors) if categories is None else list(categories)
        self.priors = priors
        self.categories = self._check_categories(categories)
        self.schedule = schedule
        try:
            self.reverse = schedule.sampling_steps(num_steps, start_t)
        except ValueError as error:
            raise ValueError(
                f"sampler num_steps={num_steps}, start_t={start_t}: {error}"
            ) from None
        # Names are matched in any case (a config may say "DSG").
        rule_class = STEP_RULES.get(step_rule.lower())
        try:
            self.step_rule: StepRule = rule_class(**(step_rule_conf or {}))
        except TypeError as error:
            accepted = list(inspect.signature(rule_class).parameters)
            raise ValueError(
                f"step_rule_conf {step_rule_conf} does not fit step_rule "
                f"{step_rule!r} (its options: {accepted}): {error}. Yang et al.'s "
                "guidance_rate belongs to 'dsg_yang'; 'dsg' is the authors' DSG."
            ) from None
        self.full_reverse = schedule.sampling_steps(None, start_t)
        full_lengths = self._step_lengths(self.full_reverse)
        if path_scaling and full_lengths is None:
            raise ValueError(
                f"path_scaling=True with step_rule={step_rule!r}: that rule has no "
                "schedule-set step length to scale (use hybrid or dsg, or leave "
                "path_scaling unset)"
            )
        self.path_scaling = (
            full_lengths is not None if path_scaling is None else bool(path_scaling)
        )
        #: per position i, the factor on the step length (all 1 without scaling)
        self.path_scales = [1.0] * len(self.reverse)
        #: P_full / P_K, the ratio of the unscaled guidance paths (1 without a path)
        self.path_ratio = 1.0
        if full_lengths is not None:
            lengths = self._step_lengths(self.reverse)
            self.path_ratio = sum(full_lengths) / sum(lengths)
        if self.path_scaling:
            steps = [int(s) for s in self.reverse.steps]
            full_steps = [int(s) for s in self.full_reverse.steps]
            for i, length in enumerate(lengths):
                # the full-schedule steps that respaced step i stands for
                low = steps[i - 1] if i > 0 else -1
                span = sum(
                    full_lengths[j]
                    for j, tau in enumerate(full_steps)
                    if low < tau <= steps[i]
                )
                self.path_scales[i] = span / length if length > 0 else 1.0
        self.init: Initialisation = INITIALISATIONS.build(init.lower(), init_conf)
        self.loss = ReconstructionLoss(**(loss_conf or {}))
        self.clamp_x0 = bool(clamp_x0)
        self.mixture_rms_db = mixture_rms_db
        # Sources that share a prior object are denoised in one batch.
        self._groups: Dict[int, List[int]] = {}
        for index, prior in enumerate(priors):
            self._groups.setdefault(id(prior), []).append(index)

    @property
    def num_sources(self) -> int:
        return len(self.priors)

    def _step_lengths(self, reverse: ReverseSchedule) -> Optional[List[float]]:
        """ρ(σ_i) / √L of the step rule at every position of a reverse schedule (None:
        the rule has no schedule-set step)."""
        lengths = []
        for i in range(len(reverse)):
            ctx = StepContext(
                index=i,
                step=int(reverse.steps[i]),
                sigma=reverse.posterior_std(i),
                num_samples=1,
            )
            length = self.step_rule.schedule_length(ctx)
            if length is None:
                return None
            lengths.append(length)
        return lengths

    @property
    def path_scaling_label(self) -> str:
        """The path-scaling setting for a results table: ``×r`` when on, with r =
        P_full / P_K the factor by which the unscaled run would fall short (``×1.00``
        when every step is visited), ``off``, or ``n/a`` (the rule has no schedule-set
        step)."""
        if self.path_scaling:
            return f"×{self.path_ratio:.2f}"
        if self._step_lengths(self.full_reverse) is None:
            return "n/a"
        return "off"

    def _check_categories(
        self, categories: Sequence[Optional[Union[int, str]]]
    ) -> List[Optional[int]]:
        """Per-source labels: an index, a class name of that prior, or None / "none"."""
        if len(categories) != len(self.priors):
            raise ValueError(
                f"{len(categories)} categories for {len(self.priors)} priors: give one "
                "per source (None for an unconditional one)"
            )
        labels = []
        for index, (prior, category) in enumerate(zip(self.priors, categories)):
            if isinstance(category, str):
                if category.lower() in ("none", "null", ""):
                    category = None
                elif category in prior.class_names:
                    category = prior.class_names.index(category)
                elif category.lstrip("-").isdigit():
                    category = int(category)
                else:
                    raise ValueError(
                        f"source {index}: category {category!r} is not a class of its "
                        f"prior (classes: {prior.class_names})"
                    )
            labels.append(category)
            if category is None:
                continue
            if prior.num_classes == 0:
                raise ValueError(
                    f"source {index}: category {category} given to an unconditional "
                    "prior"
                )
            if not 0 <= int(category) < prior.num_classes:
                raise ValueError(
                    f"source {index}: category {category} outside "
                    f"[0, {prior.num_classes - 1}]"
                )
        return [None if c is None else int(c) for c in labels]

    def _predict_eps(
        self, x: torch.Tensor, step: int, categories: List[Optional[int]]
    ) -> Tuple[torch.Tensor, int]:
        """ε̂ for every source: x [b, n, t] → ([b, n, t], network evaluations)."""
        batch = x.shape[0]
        eps = torch.empty_like(x)
        evaluations = 0
        for indices in self._groups.values():
            prior = self.priors[indices[0]]
            x_group = rearrange(x[:, indices], "b n t -> (n b) t")
            t = torch.full((x_group.shape[0],), step, dtype=torch.long, device=x.device)
            labels = [categories[i] for i in indices]
            category = None
            if any(label is not None for label in labels):
                null = prior.num_classes
                category = torch.tensor(
                    [null if label is None else label for label in labels],
                    dtype=torch.long,
                    device=x.device,
                ).repeat_interleave(batch)
            out = prior(x_group, t, category)
            eps[:, indices] = rearrange(out, "(n b) t -> b n t", b=batch).to(x.dtype)
            evaluations += len(indices) * prior.evaluations_per_call(category)
        return eps, evaluations

    def _scale(self, mixture: torch.Tensor) -> torch.Tensor:
        """Per-mixture gain [b, 1] that brings it to ``mixture_rms_db``."""
        if self.mixture_rms_db is None:
            return torch.ones_like(mixture[:, :1])
        rms = mixture.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp(min=1e-8)
        return 10.0 ** (self.mixture_rms_db / 20.0) / rms

    def step(
        self,
        x: torch.Tensor,
        i: int,
        y: torch.Tensor,
        labels: List[Optional[int]],
        generator: Optional[torch.Generator] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
        """One guided reverse step at position ``i`` of the reverse schedule.

        Args:
            x: current state [b, n, t].
            i: position (``len(self.reverse) − 1`` first, 0 last).
            y: the (level-scaled) mixtures [b, t].
            labels: per-source class labels (checked, as :meth:`separate` does).
            generator: random generator of the ancestral noise.
        Returns:
            next state [b, n, t], reconstruction loss before the step [b], network
            evaluations, and the distance guidance moved every source ‖x_next − x'‖
            [b, n].
        """
        rev: ReverseSchedule = self.reverse
        step = int(rev.steps[i])
        ctx = StepContext(
            index=i,
            step=step,
            sigma=rev.posterior_std(i),
            num_samples=y.shape[-1],
            path_scale=self.path_scales[i],
        )
        needs_grad = self.step_rule.needs_gradient
        x = x.detach().requires_grad_(needs_grad)
        with torch.set_grad_enabled(needs_grad):
            eps, evaluations = self._predict_eps(x, step, labels)
            abar = float(rev.alphas_cumprod[i])
            x0 = (x - math.sqrt(1.0 - abar) * eps) / math.sqrt(abar)
            if self.clamp_x0:
                x0 = x0.clamp(-1.0, 1.0)
            loss = self.loss(x0.sum(dim=1), y)
        # The guidance gradient flows through the denoisers' x̂0 estimates to x_t.
        grad = torch.autograd.grad(loss.sum(), x)[0] if needs_grad else None
        with torch.no_grad():
            x = x.detach()
            x0 = x0.detach()
            mean = (
                float(rev.posterior_mean_coef_x0[i]) * x0
                + float(rev.posterior_mean_coef_xt[i]) * x
            )
            x_prime = mean
            if i > 0:
                x_prime = mean + ctx.sigma * gaussian_noise(x.shape, x, generator)
            x = self.step_rule(x_prime, mean, grad, ctx)
            moved = (x - x_prime).norm(dim=-1)
        return x, loss.detach(), evaluations, moved

    def separate(
        self,
        mixture: torch.Tensor,
        generator: Optional[torch.Generator] = None,
        progress: bool = False,
        categories: Optional[Sequence[Optional[Union[int, str]]]] = None,
    ) -> Tuple[torch.Tensor, Dict]:
        """Separate observed mixtures.

        Args:
            mixture: the observed mixtures [b, t] (or one mixture [t]).
            generator: random generator for the initial state and the ancestral noise.
            progress: show a progress bar.
            categories: per-source class labels for this call (e.g. the known event
                classes of a mixture, as the paper conditions its sound prior); None
                uses the sampler's ``categories``.
        Returns:
            estimates [b, n, t] (or [n, t] for a 1-D input), and info: ``nfe`` (network
            evaluations per mixture, all sources together), ``steps`` (the training
            steps visited, descending), ``loss`` (the reconstruction loss per mixture at
            each step, [K, b]), ``guidance_path`` (the summed distance guidance
            moved each source, Σ_i ‖x_i − x'_i‖, [b, n] or [n]),
            ``path_scaling`` (:attr:`path_scaling_label`).
        """
        labels = self.categories
        if categories is not None:
            labels = self._check_categories(categories)
        squeeze = mixture.dim() == 1
        if squeeze:
            mixture = mixture[None]
        if mixture.dim() != 2:
            raise ValueError(
                "mixture must be [batch, samples] or [samples], got "
                f"{tuple(mixture.shape)}"
            )
        mixture = mixture.float()
        gain = self._scale(mixture)
        y = mixture * gain
        x = self.init(y, self.num_sources, self.schedule, generator)
        nfe = 0
        losses = []
        path = torch.zeros(x.shape[:2], dtype=torch.float64, device=x.device)
        positions = range(len(self.reverse) - 1, -1, -1)
        if progress:
            from tqdm import tqdm

            positions = tqdm(positions, desc="diffusion separation", leave=False)
        for i in positions:
            x, loss, evaluations, moved = self.step(x, i, y, labels, generator)
            nfe += evaluations
            losses.append(loss)
            path += moved.double()
        estimates = x / gain[:, :, None]
        info = {
            "nfe": nfe,
            "steps": [int(s) for s in self.reverse.steps.flip(0)],
            "loss": torch.stack(losses),
            "guidance_path": path[0] if squeeze else path,
            "path_scaling": self.path_scaling_label,
        }
        return (estimates[0] if squeeze else estimates), info
