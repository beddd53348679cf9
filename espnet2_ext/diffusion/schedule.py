"""DDPM (variance-preserving) noise schedule and its respaced reverse process.

Ho et al., "Denoising Diffusion Probabilistic Models" (2020); the priors of
seeds/001 use 200 steps with a linear β from 1e-4 to 0.02 and ε-prediction.

Notation (index ``t`` counts from 0, so ``t = 0`` is the first noising step):

* ``β_t`` linear, ``α_t = 1 − β_t``, ``ᾱ_t = Π_{s≤t} α_s``;
* ``q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)``;
* ``x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t``.

A sampler may visit a subsequence ``τ_0 < τ_1 < … < τ_{K−1}`` of the training steps
(respacing, Nichol & Dhariwal 2021): the reverse step from ``τ_i`` to ``τ_{i−1}`` uses
``β'_i = 1 − ᾱ_{τ_i} / ᾱ_{τ_{i−1}}`` (with ``ᾱ_{τ_{−1}} = 1``), which gives back the
original β when every step is visited. Tables are float64 on the CPU; :func:`gather`
moves the entries for a batch of steps onto the data's device and dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch


def gather(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``table[t]`` shaped to broadcast against ``like`` ([B] → [B, 1, …, 1])."""
    values = table.to(device=t.device)[t.long()]
    values = values.to(device=like.device, dtype=like.dtype)
    return values.reshape(values.shape + (1,) * (like.dim() - values.dim()))


class DDPMSchedule:
    """Variance-preserving DDPM schedule with linearly spaced β.

    Args:
        num_steps: number of diffusion steps T (the paper: 200).
        beta_start: β of the first step.
        beta_end: β of the last step.
    """

    def __init__(
        self, num_steps: int = 200, beta_start: float = 1e-4, beta_end: float = 0.02
    ):
        if num_steps < 2:
            raise ValueError(
                f"num_steps={num_steps}: a schedule needs at least 2 steps"
            )
        if not 0.0 < beta_start <= beta_end < 1.0:
            raise ValueError(
                f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, "
                f"beta_end={beta_end} (the paper uses 1e-4 and 0.02)"
            )
        self.num_steps = int(num_steps)
        self.beta_start = float(beta_start)
        self.beta_end = float(beta_end)
        self.betas = torch.linspace(
            beta_start, beta_end, num_steps, dtype=torch.float64
        )
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_steps={self.num_steps}, "
            f"beta_start={self.beta_start}, beta_end={self.beta_end})"
        )

    def same_as(self, other: "DDPMSchedule") -> bool:
        return self.num_steps == other.num_steps and torch.equal(
            self.betas, other.betas
        )

    def _check_t(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t)
        if t.is_floating_point():
            raise ValueError(f"diffusion steps must be integers, got dtype {t.dtype}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_steps):
            raise ValueError(
                f"diffusion step out of range [0, {self.num_steps - 1}]: "
                f"min {int(t.min())}, max {int(t.max())}"
            )
        return t

    def q_sample(
        self,
        x0: torch.Tensor,
        t: torch.Tensor,
        noise: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Draw ``x_t ~ q(x_t | x_0)``.

        Args:
            x0: clean signals [B, ...].
            t: steps [B] (integers in [0, T−1]).
            noise: ε [B, ...]; drawn from N(0, I) when None.
        Returns:
            x_t [B, ...].
        """
        t = self._check_t(t)
        if noise is None:
            noise = torch.randn(
                x0.shape, generator=generator, device=x0.device, dtype=x0.dtype
            )
        abar = gather(self.alphas_cumprod, t, x0)
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise

    def predict_x0(
        self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor
    ) -> torch.Tensor:
        """x̂_0 from x_t and the predicted noise ε̂ (shapes [B, ...], t [B])."""
        abar = gather(self.alphas_cumprod, self._check_t(t), x_t)
        return (x_t - (1.0 - abar).sqrt() * eps) / abar.sqrt()

    def sampling_steps(
        self, num_sampling_steps: Optional[int] = None, start_t: Optional[int] = None
    ) -> "ReverseSchedule":
        """The reverse process over ``num_sampling_steps`` steps ending at ``t = 0``.

        Args:
            num_sampling_steps: how many steps to visit; None visits every step from
                ``start_t`` down to 0. Steps are spread evenly (rounded) over
                [0, start_t], always including both ends.
            start_t: the step the reverse process starts from (default T − 1).
        """
        start = self.num_steps - 1 if start_t is None else int(start_t)
        if not 0 < start <= self.num_steps - 1:
            raise ValueError(
                f"start_t={start_t} must lie in [1, {self.num_steps - 1}] "
                f"for a {self.num_steps}-step schedule"
            )
        count = start + 1 if num_sampling_steps is None else int(num_sampling_steps)
        if not 2 <= count <= start + 1:
            raise ValueError(
                f"num_sampling_steps={num_sampling_steps} must lie in [2, {start + 1}] "
                f"(the steps between t=0 and start_t={start})"
            )
        steps = np.unique(np.round(np.linspace(0, start, count)).astype(np.int64))
        return ReverseSchedule.from_steps(self, torch.from_numpy(steps))


@dataclass
class ReverseSchedule:
    """Tables of a (possibly respaced) reverse process, indexed by position ``i``.

    Position ``i`` goes from ``steps[i]`` to ``steps[i − 1]`` (to the clean signal for
    ``i = 0``). All tables are float64 [K].

    Attributes:
        steps: the training steps visited, ascending [K] (int64).
        alphas_cumprod: ᾱ at ``steps[i]``.
        alphas_cumprod_prev: ᾱ at ``steps[i − 1]`` (1 for i = 0).
        betas: β'_i = 1 − ᾱ_i / ᾱ_{i−1}.
        posterior_variance: β̃_i = β'_i (1 − ᾱ_{i−1}) / (1 − ᾱ_i), the variance of
            q(x_{i−1} | x_i, x_0); 0 at i = 0.
        posterior_mean_coef_x0, posterior_mean_coef_xt: μ̃ = c0 x_0 + ct x_i.
    """

    steps: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    betas: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_mean_coef_x0: torch.Tensor
    posterior_mean_coef_xt: torch.Tensor

    @classmethod
    def from_steps(
        cls, schedule: DDPMSchedule, steps: Sequence[int]
    ) -> "ReverseSchedule":
        steps = torch.as_tensor(steps, dtype=torch.int64)
        if steps.dim() != 1 or steps.numel() < 1 or bool((steps.diff() <= 0).any()):
            raise ValueError(
                f"steps must be a strictly increasing 1-D sequence: {steps}"
            )
        abar = schedule.alphas_cumprod[steps]
        abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
        betas = 1.0 - abar / abar_prev
        post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
        coef_x0 = abar_prev.sqrt() * betas / (1.0 - abar)
        coef_xt = (1.0 - betas).sqrt() * (1.0 - abar_prev) / (1.0 - abar)
        return cls(
            steps=steps,
            alphas_cumprod=abar,
            alphas_cumprod_prev=abar_prev,
            betas=betas,
            posterior_variance=post_var,
            posterior_mean_coef_x0=coef_x0,
            posterior_mean_coef_xt=coef_xt,
        )

    def __len__(self) -> int:
        return int(self.steps.numel())

    def posterior_std(self, i: int) -> float:
        """σ_i = √β̃_i, the standard deviation of the ancestral step at position i."""
        return float(self.posterior_variance[i].sqrt())
