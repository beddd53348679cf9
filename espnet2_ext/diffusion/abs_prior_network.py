"""The interface of a source-prior network: an ε-predictor on waveforms."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional

import torch


class AbsPriorNetwork(torch.nn.Module, ABC):
    """A network that predicts the noise ε of a diffused waveform.

    Attributes:
        num_classes: number of class labels it is conditioned on (0: unconditional).
            Label ``num_classes`` is the "no class" label (classifier-free training).
    """

    num_classes: int = 0

    @abstractmethod
    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        category: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Predict ε.

        Args:
            x_t: diffused waveforms [B, T].
            t: the network's time input [B] (float; the model maps the step index to
                it).
            category: class labels [B] (long) in [0, num_classes]; None means
                "no class" for every item.
        Returns:
            ε̂ [B, T].
        """
        raise NotImplementedError
