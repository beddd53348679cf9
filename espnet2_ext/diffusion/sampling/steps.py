"""Guidance step rules of the separation sampler (seeds/001) and their registry.

A step rule turns the ancestral sample x' and the guidance gradient g into the next
state. Rules are chosen by name from :data:`STEP_RULES` with a ``step_rule_conf`` dict,
as sgmse's samplers:

* ``hybrid`` (the paper's): every source moves by the same distance ρ_t along
  −g_n/‖g_n‖ (the remedy for gradient conflict between sources), ρ_t ∝ a smooth maximum
  of 0.09 σ_t and a floor;
* ``dsg``: the DSG branch of the authors' code, the same normalised step from x' with
  ρ_t = √L · 0.09 · σ_t and no floor (guidance rate 1: the direction is the steepest
  descent alone);
* ``dsg_yang``: DSG as Yang et al. (2024) define it, the next state on the sphere of
  radius √L σ_t around the posterior mean, the direction a mix (rate 0.2) of the
  ancestral noise and the steepest descent;
* ``dps``: a constant step ζ on g (the authors' DPS baseline, ζ = 1.5);
* ``none``: plain ancestral sampling.

The step lengths of ``hybrid`` and ``dsg`` are set by the noise schedule alone
(:meth:`StepRule.schedule_length`); the sampler can scale them so that a respaced run
travels the guidance path of the full schedule (``path_scale`` of :class:`StepContext`,
see :class:`~espnet2_ext.diffusion.sampling.sampler.DiffusionPriorSampler`).

Shape legend: b mixtures, n sources, t samples.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional

import torch

from espnet2_ext.utils.registry import Registry

_EPS = 1e-12


@dataclass
class StepContext:
    """What a step rule may use about the current reverse step.

    Attributes:
        index: position i in the reverse schedule (K − 1 … 0).
        step: the training step τ_i.
        sigma: σ_i = √β̃_i, the standard deviation of the ancestral step.
        num_samples: L_src, the samples of one source.
        path_scale: factor on schedule-set step lengths (1: as the rule defines them);
            the sampler sets it for respaced runs.
    """

    index: int
    step: int
    sigma: float
    num_samples: int
    path_scale: float = 1.0


def _per_source_norm(x: torch.Tensor) -> torch.Tensor:
    """‖x_{b,n}‖ over samples: [b, n, t] → [b, n, 1]."""
    return x.norm(dim=-1, keepdim=True)


class StepRule(ABC):
    """Turns the ancestral sample x' and the guidance gradient g into the next state."""

    #: False for rules that ignore g (the sampler then skips the backward pass).
    needs_gradient: bool = True

    def schedule_length(self, ctx: StepContext) -> Optional[float]:
        """The distance every source moves at this step when it depends on the noise
        schedule only (before ``ctx.path_scale``); None for rules whose move depends on
        the gradient's size or on the ancestral noise (no schedule-set path)."""
        return None

    @abstractmethod
    def __call__(
        self,
        x_prime: torch.Tensor,
        mean: torch.Tensor,
        grad: Optional[torch.Tensor],
        ctx: StepContext,
    ) -> torch.Tensor:
        """x_prime, mean, grad [b, n, t] → next state [b, n, t]."""
        raise NotImplementedError


#: The step rules by name; register a new one with ``@STEP_RULES.register("name")``.
STEP_RULES: Registry[type] = Registry("step rule", base=StepRule)


def smoothmax(a: float, b: float, sharpness: float) -> float:
    """log(e^{k a} + e^{k b}) / k: a smooth, never smaller, version of max(a, b)."""
    ka, kb = sharpness * a, sharpness * b
    top = max(ka, kb)
    return (top + math.log(math.exp(ka - top) + math.exp(kb - top))) / sharpness


class NormalisedGradientStep(StepRule):
    """``x_n ← x'_n − s · ρ_t g_n / ‖g_n‖``: every source moves by s · ρ_t.

    s is ``ctx.path_scale``; a subclass defines ρ_t (:meth:`step_length`).
    """

    @abstractmethod
    def step_length(self, ctx: StepContext) -> float:
        """ρ_t, before the path scale."""
        raise NotImplementedError

    def schedule_length(self, ctx: StepContext) -> float:
        return self.step_length(ctx)

    def __call__(self, x_prime, mean, grad, ctx):
        length = ctx.path_scale * self.step_length(ctx)
        if length == 0.0:
            return x_prime
        return x_prime - length * grad / (_per_source_norm(grad) + _EPS)


@STEP_RULES.register("hybrid", builtin=True)
class HybridStep(NormalisedGradientStep):
    """The paper's rule: every source moves by ρ_t along its own normalised gradient.

    ``x_n ← x'_n − ρ_t g_n / ‖g_n‖``, ``ρ_t = √L_src · smoothmax(scale · σ_t, floor)``
    with the smooth maximum of sharpness k (authors' code: scale 0.09, floor 0.002,
    k 1000). Large noise levels follow the DSG-like σ-proportional radius, small ones
    keep a floor so that guidance does not vanish at the end of sampling.
    """

    def __init__(
        self, scale: float = 0.09, floor: float = 0.002, sharpness: float = 1000.0
    ):
        if scale < 0 or floor < 0 or sharpness <= 0:
            raise ValueError(
                f"hybrid step needs scale >= 0, floor >= 0, sharpness > 0; got "
                f"{scale}, {floor}, {sharpness}"
            )
        self.scale = float(scale)
        self.floor = float(floor)
        self.sharpness = float(sharpness)

    def step_length(self, ctx: StepContext) -> float:
        """ρ_t = √L_src · smoothmax(scale · σ_t, floor)."""
        return math.sqrt(ctx.num_samples) * smoothmax(
            self.scale * ctx.sigma, self.floor, self.sharpness
        )


@STEP_RULES.register("dsg", builtin=True)
class DSGStep(NormalisedGradientStep):
    """The DSG baseline as the authors' code runs it (their ``schedule == 'DSG'``).

    From the ancestral sample x' (not the posterior mean), every source moves by
    ``r_t = √L_src · scale · σ_t`` along −g_n/‖g_n‖ (authors: scale 0.09, the same
    0.09 σ_t as the hybrid rule but without its floor, so r_0 = 0). The authors'
    guidance rate is 1 (their mixing with the ancestral noise is commented out), so the
    direction is the steepest descent alone; Yang et al.'s rule is ``dsg_yang``.
    """

    def __init__(self, scale: float = 0.09):
        if scale < 0:
            raise ValueError(f"dsg needs scale >= 0, got {scale}")
        self.scale = float(scale)

    def step_length(self, ctx: StepContext) -> float:
        """r_t = √L_src · scale · σ_t."""
        return math.sqrt(ctx.num_samples) * self.scale * ctx.sigma


@STEP_RULES.register("dps", builtin=True)
class DPSStep(StepRule):
    """DPS (Chung et al. 2023): ``x_n ← x'_n − ζ g_n`` with a constant ζ.

    The loss is a (non-squared) norm, so this equals DPS's step ζ'/‖y − A x̂0‖ on the
    squared norm. Default ζ = 1.5, the authors' DPS baseline. The move is ζ ‖g_n‖: it
    depends on the gradient, so there is no schedule-set path to keep when respacing.
    """

    def __init__(self, step_size: float = 1.5):
        if step_size < 0:
            raise ValueError(f"step_size={step_size} must be >= 0")
        self.step_size = float(step_size)

    def __call__(self, x_prime, mean, grad, ctx):
        return x_prime - self.step_size * grad


@STEP_RULES.register("dsg_yang", builtin=True)
class YangDSGStep(StepRule):
    """DSG as Yang et al. (2024) define it: a spherical Gaussian constraint, per source.

    The next state stays on the sphere of radius r = √L_src σ_t around the posterior
    mean μ: ``d = d_sample + γ (d* − d_sample)`` with d_sample = x' − μ (the ancestral
    noise) and d* = −r g/‖g‖, then ``x_n ← μ_n + r d / ‖d‖``. γ is the guidance rate
    (Yang et al.'s default 0.2; 1 replaces the noise by the steepest-descent
    direction). At the last step (σ = 0) it returns μ. The radius is the ancestral
    noise's own size, so it is not rescaled when respacing.
    """

    def __init__(self, guidance_rate: float = 0.2):
        if not 0.0 <= guidance_rate <= 1.0:
            raise ValueError(f"guidance_rate={guidance_rate} must lie in [0, 1]")
        self.guidance_rate = float(guidance_rate)

    def radius(self, ctx: StepContext) -> float:
        return math.sqrt(ctx.num_samples) * ctx.sigma

    def __call__(self, x_prime, mean, grad, ctx):
        radius = self.radius(ctx)
        if radius == 0.0:
            return mean
        d_sample = x_prime - mean
        d_star = -radius * grad / (_per_source_norm(grad) + _EPS)
        d = d_sample + self.guidance_rate * (d_star - d_sample)
        return mean + radius * d / (_per_source_norm(d) + _EPS)


@STEP_RULES.register("none", builtin=True)
class NoGuidance(StepRule):
    """Plain ancestral sampling with each prior (the mixture is used at the start)."""

    needs_gradient = False

    def __call__(self, x_prime, mean, grad, ctx):
        return x_prime
