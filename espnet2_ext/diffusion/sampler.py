"""Unsupervised separation by guided reverse diffusion with one prior per source.

seeds/001 (Shi et al., "Unsupervised single-channel audio separation with diffusion
source priors"); the formulation below was read from the authors' inference code
(RunwuShi/unasdiff), the code is ours. Given an observed mixture y and N priors, every
reverse step does, for all sources at once:

1. x̂0_n = clamp((x_n − √(1 − ᾱ) ε̂_n(x_n)) / √ᾱ, −1, 1) with each source's prior;
2. the ancestral step x'_n = μ̃(x̂0_n, x_n) + σ z (σ² the posterior variance);
3. the reconstruction loss L(Σ_n x̂0_n, y) (:class:`ReconstructionLoss`) and its
   gradient g_n = ∂L/∂x_n *through the denoisers*;
4. a guidance step on x'_n chosen by the step rule: the paper's ``hybrid`` rule moves
   every source by the same distance ρ_t = √L_src · smoothmax(0.09 σ_t, 0.002) along
   −g_n/‖g_n‖ (each source moves equally: the remedy for gradient conflict between
   sources); ``dps`` (constant step on g) and ``dsg`` (spherical step) are baselines.

The reverse process starts from the ``augmented_mixture`` initialisation (every source
is the mixture diffused to t = 149) or, as a baseline, from Gaussian noise.

The sampler sees the observed mixture only: :meth:`DiffusionPriorSampler.separate` takes
no references. (The authors' script builds its measurement from the true sources; that
is not reproduced.) The mixture must be at the level the priors were trained on
(sources at −25 … −20 dBFS in the paper's data); ``mixture_rms_db`` rescales it and
undoes the scaling on the estimates.

Step rules and initialisations are small registries (:data:`STEP_RULES`,
:data:`INITIALISATIONS`), chosen by name with a ``*_conf`` dict, as sgmse's samplers.

Shape legend: b mixtures, n sources, t samples.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from espnet2_ext.diffusion.prior_model import PriorDenoiser
from espnet2_ext.diffusion.schedule import DDPMSchedule, ReverseSchedule

_EPS = 1e-12


class Registry:
    """Name → class table for interchangeable sampler parts (lower-case names)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._classes: Dict[str, type] = {}

    def register(self, name: str) -> Callable[[type], type]:
        if name != name.lower():
            raise ValueError(f"{self.kind} names are lower case: {name!r}")

        def add(cls: type) -> type:
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._classes[name] = cls
            return cls

        return add

    def names(self) -> List[str]:
        return sorted(self._classes)

    def get(self, name: str) -> type:
        try:
            return self._classes[name.lower()]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; choose one of {self.names()}"
            ) from None

    def build(self, name: str, conf: Optional[dict] = None):
        return self.get(name)(**(conf or {}))


# ----------------------------------------------------------------------------- loss
class ReconstructionLoss(nn.Module):
    """Composite distance between the sum of the estimates and the mixture (seeds/001).

    ``L = w_wav ‖r‖ + w_seg Σ_k ‖r_k‖ + w_spec ‖ |STFT(Σ x̂0)| − |STFT(y)| ‖`` with
    r = y − Σ x̂0 and r_k the k-th of ``num_segments`` equal consecutive segments of r
    (the authors split the residual into 512 segments whatever its length: 125 samples
    at 4 s / 16 kHz). Norms are Euclidean (not squared), per mixture; the STFT uses a
    periodic Hann window.

    Args:
        weight_waveform: w_wav.
        weight_segments: w_seg.
        num_segments: number of segments of the segmental term.
        weight_spectral: w_spec.
        n_fft: STFT size of the spectral term.
        hop_length: STFT hop of the spectral term.
    """

    def __init__(
        self,
        weight_waveform: float = 1.0,
        weight_segments: float = 0.05,
        num_segments: int = 512,
        weight_spectral: float = 0.1,
        n_fft: int = 512,
        hop_length: int = 256,
    ):
        super().__init__()
        if num_segments < 1:
            raise ValueError(f"num_segments={num_segments} must be >= 1")
        self.weight_waveform = float(weight_waveform)
        self.weight_segments = float(weight_segments)
        self.num_segments = int(num_segments)
        self.weight_spectral = float(weight_spectral)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def _magnitude(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            x,
            self.n_fft,
            hop_length=self.hop_length,
            window=self.window.to(x.device),
            center=True,
            return_complex=True,
        )
        return spec.abs()

    def forward(
        self, estimate_sum: torch.Tensor, mixture: torch.Tensor
    ) -> torch.Tensor:
        """estimate_sum, mixture [b, t] → loss per mixture [b] (computed in fp32)."""
        with torch.autocast(device_type=mixture.device.type, enabled=False):
            est = estimate_sum.float()
            mix = mixture.float()
            residual = mix - est
            loss = self.weight_waveform * residual.norm(dim=-1)
            if self.weight_segments:
                seg_len = math.ceil(residual.shape[-1] / self.num_segments)
                pad = seg_len * self.num_segments - residual.shape[-1]
                padded = F.pad(residual, (0, pad))
                segments = rearrange(padded, "b (k l) -> b k l", k=self.num_segments)
                loss = loss + self.weight_segments * segments.norm(dim=-1).sum(dim=-1)
            if self.weight_spectral:
                diff = self._magnitude(est) - self._magnitude(mix)
                loss = loss + self.weight_spectral * diff.flatten(1).norm(dim=-1)
        return loss


# ------------------------------------------------------------------------ step rules
@dataclass
class StepContext:
    """What a step rule may use about the current reverse step.

    Attributes:
        index: position i in the reverse schedule (K − 1 … 0).
        step: the training step τ_i.
        sigma: σ_i = √β̃_i, the standard deviation of the ancestral step.
        num_samples: L_src, the samples of one source.
    """

    index: int
    step: int
    sigma: float
    num_samples: int


def _per_source_norm(x: torch.Tensor) -> torch.Tensor:
    """‖x_{b,n}‖ over samples: [b, n, t] → [b, n, 1]."""
    return x.norm(dim=-1, keepdim=True)


class StepRule(ABC):
    """Turns the ancestral sample x' and the guidance gradient g into the next state."""

    #: False for rules that ignore g (the sampler then skips the backward pass).
    needs_gradient: bool = True

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


STEP_RULES = Registry("step rule")


def smoothmax(a: float, b: float, sharpness: float) -> float:
    """log(e^{k a} + e^{k b}) / k: a smooth, never smaller, version of max(a, b)."""
    ka, kb = sharpness * a, sharpness * b
    top = max(ka, kb)
    return (top + math.log(math.exp(ka - top) + math.exp(kb - top))) / sharpness


@STEP_RULES.register("hybrid")
class HybridStep(StepRule):
    """The paper's rule: every source moves by ρ_t along its own normalised gradient.

    ``x_n ← x'_n − ρ_t g_n / ‖g_n‖``, ``ρ_t = √L_src · smoothmax(scale · σ_t, floor)``
    with the smooth maximum of sharpness k (authors: scale 0.09, floor 0.002, k 1000).
    Large noise levels follow the DSG-like σ-proportional radius, small ones keep a
    floor so that guidance does not vanish at the end of sampling.
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
        """ρ_t."""
        return math.sqrt(ctx.num_samples) * smoothmax(
            self.scale * ctx.sigma, self.floor, self.sharpness
        )

    def __call__(self, x_prime, mean, grad, ctx):
        direction = grad / (_per_source_norm(grad) + _EPS)
        return x_prime - self.step_length(ctx) * direction


@STEP_RULES.register("dps")
class DPSStep(StepRule):
    """DPS (Chung et al. 2023): ``x_n ← x'_n − ζ g_n`` with a constant ζ.

    The loss is a (non-squared) norm, so this equals DPS's step ζ'/‖y − A x̂0‖ on the
    squared norm. Default ζ = 1.5, the authors' DPS baseline.
    """

    def __init__(self, step_size: float = 1.5):
        if step_size < 0:
            raise ValueError(f"step_size={step_size} must be >= 0")
        self.step_size = float(step_size)

    def __call__(self, x_prime, mean, grad, ctx):
        return x_prime - self.step_size * grad


@STEP_RULES.register("dsg")
class DSGStep(StepRule):
    """DSG (Yang et al. 2024), spherical Gaussian constraint, per source.

    The next state stays on the sphere of radius r = √L_src σ_t around the posterior
    mean μ: ``d = d_sample + γ (d* − d_sample)`` with d_sample = x' − μ (the ancestral
    noise) and d* = −r g/‖g‖, then ``x_n ← μ_n + r d / ‖d‖``. γ is the guidance rate
    (1: the noise is replaced by the steepest-descent direction). At the last step
    (σ = 0) it returns μ.
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


@STEP_RULES.register("none")
class NoGuidance(StepRule):
    """Plain ancestral sampling with each prior (the mixture is used at the start)."""

    needs_gradient = False

    def __call__(self, x_prime, mean, grad, ctx):
        return x_prime


# ------------------------------------------------------------------ initialisations
class Initialisation(ABC):
    """The state the reverse process starts from."""

    @abstractmethod
    def __call__(
        self,
        mixture: torch.Tensor,
        num_sources: int,
        schedule: DDPMSchedule,
        generator: Optional[torch.Generator],
    ) -> torch.Tensor:
        """mixture [b, t] → initial state [b, n, t]."""
        raise NotImplementedError


INITIALISATIONS = Registry("initialisation")


def _randn(
    shape, like: torch.Tensor, generator: Optional[torch.Generator]
) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


@INITIALISATIONS.register("augmented_mixture")
class AugmentedMixtureInit(Initialisation):
    """Every source starts as the mixture diffused to step ``t`` (paper: 149 of 200).

    Args:
        t: diffusion step of the initial state, ``√ᾱ_t y + √(1 − ᾱ_t) z``.
        shared_noise: one z for all sources (the authors' choice: the sources start
            identical and the priors split them); False draws one z per source.
    """

    def __init__(self, t: int = 149, shared_noise: bool = True):
        self.t = int(t)
        self.shared_noise = bool(shared_noise)

    def __call__(self, mixture, num_sources, schedule, generator):
        if not 0 <= self.t < schedule.num_steps:
            raise ValueError(
                f"augmented_mixture t={self.t} is outside [0, {schedule.num_steps - 1}]"
            )
        batch, length = mixture.shape
        count = 1 if self.shared_noise else num_sources
        noise = _randn((batch, count, length), mixture, generator)
        steps = torch.full((batch,), self.t, dtype=torch.long, device=mixture.device)
        noisy = schedule.q_sample(
            mixture[:, None, :].expand(batch, count, length), steps, noise
        )
        return noisy.expand(batch, num_sources, length).clone()


@INITIALISATIONS.register("gaussian")
class GaussianInit(Initialisation):
    """Every source starts as standard Gaussian noise (the usual DDPM start)."""

    def __call__(self, mixture, num_sources, schedule, generator):
        batch, length = mixture.shape
        return _randn((batch, num_sources, length), mixture, generator)


# ----------------------------------------------------------------------------- sampler
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
        step_rule: "hybrid" (paper), "dps", "dsg" or "none"; see :data:`STEP_RULES`.
        step_rule_conf: keyword arguments of the step rule.
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
        self.step_rule: StepRule = STEP_RULES.build(step_rule, step_rule_conf)
        self.init: Initialisation = INITIALISATIONS.build(init, init_conf)
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
    ) -> Tuple[torch.Tensor, torch.Tensor, int]:
        """One guided reverse step at position ``i`` of the reverse schedule.

        Args:
            x: current state [b, n, t].
            i: position (``len(self.reverse) − 1`` first, 0 last).
            y: the (level-scaled) mixtures [b, t].
            labels: per-source class labels (checked, as :meth:`separate` does).
            generator: random generator of the ancestral noise.
        Returns:
            next state [b, n, t], reconstruction loss before the step [b], network
            evaluations.
        """
        rev: ReverseSchedule = self.reverse
        step = int(rev.steps[i])
        ctx = StepContext(
            index=i, step=step, sigma=rev.posterior_std(i), num_samples=y.shape[-1]
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
                x_prime = mean + ctx.sigma * _randn(x.shape, x, generator)
            x = self.step_rule(x_prime, mean, grad, ctx)
        return x, loss.detach(), evaluations

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
            each step, [K, b]).
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
        positions = range(len(self.reverse) - 1, -1, -1)
        if progress:
            from tqdm import tqdm

            positions = tqdm(positions, desc="diffusion separation", leave=False)
        for i in positions:
            x, loss, evaluations = self.step(x, i, y, labels, generator)
            nfe += evaluations
            losses.append(loss)
        estimates = x / gain[:, :, None]
        info = {
            "nfe": nfe,
            "steps": [int(s) for s in self.reverse.steps.flip(0)],
            "loss": torch.stack(losses),
        }
        return (estimates[0] if squeeze else estimates), info
