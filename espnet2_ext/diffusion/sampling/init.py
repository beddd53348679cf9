"""Initial states of the separation sampler (seeds/001) and their registry.

The paper starts every source from the mixture diffused to t = 149
(``augmented_mixture``); the usual DDPM start from Gaussian noise (``gaussian``) is the
baseline. Chosen by name from :data:`INITIALISATIONS` with an ``init_conf`` dict.

Shape legend: b mixtures, n sources, t samples.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional, Sequence

import torch

from espnet2_ext.diffusion.schedule import DDPMSchedule
from espnet2_ext.utils.registry import Registry


def gaussian_noise(
    shape: Sequence[int], like: torch.Tensor, generator: Optional[torch.Generator]
) -> torch.Tensor:
    """Standard normal noise of ``shape`` on ``like``'s device and dtype."""
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


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


#: The initialisations by name; register a new one with
#: ``@INITIALISATIONS.register("name")``.
INITIALISATIONS: Registry[type] = Registry("initialisation", base=Initialisation)


@INITIALISATIONS.register("augmented_mixture", builtin=True)
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
        noise = gaussian_noise((batch, count, length), mixture, generator)
        steps = torch.full((batch,), self.t, dtype=torch.long, device=mixture.device)
        noisy = schedule.q_sample(
            mixture[:, None, :].expand(batch, count, length), steps, noise
        )
        return noisy.expand(batch, num_sources, length).clone()


@INITIALISATIONS.register("gaussian", builtin=True)
class GaussianInit(Initialisation):
    """Every source starts as standard Gaussian noise (the usual DDPM start)."""

    def __call__(self, mixture, num_sources, schedule, generator):
        batch, length = mixture.shape
        return gaussian_noise((batch, num_sources, length), mixture, generator)
