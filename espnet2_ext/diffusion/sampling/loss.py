"""The reconstruction loss that guides the separation sampler (seeds/001).

Shape legend: b mixtures, k segments, l samples of a segment, t samples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


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
