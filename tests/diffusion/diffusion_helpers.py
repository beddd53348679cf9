"""Helpers of the diffusion-prior tests: tiny networks, priors that know the answer.

A plain module, not a conftest.py: the suite's tests import ``conftest`` by name (the
root one), which a second conftest module would shadow. Test modules import the
fixtures they use from here (``_one_thread`` is autouse in every module that imports it).
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from espnet2_ext.diffusion.abs_prior_network import AbsPriorNetwork
from espnet2_ext.diffusion.prior_model import PriorDenoiser
from espnet2_ext.diffusion.schedule import DDPMSchedule

#: A TF-attention U-Net small enough for CPU tests (same structure as the paper's).
TINY_NET_CONF = dict(
    n_fft=62,
    hop_length=31,
    hidden_size=8,
    depths=(1, 1, 1, 1, 1),
    emb_dim=16,
    num_heads=2,
    fullband_fold=4,
    fullband_dim=4,
)


class OracleNetwork(AbsPriorNetwork):
    """Predicts the ε that makes x̂0 equal to the planted source (tests only)."""

    def __init__(self, source: torch.Tensor, schedule: DDPMSchedule):
        super().__init__()
        self.register_buffer("source", source)  # [1, t]
        self.schedule = schedule

    def forward(self, x_t, t, category=None):
        abar = self.schedule.alphas_cumprod[t.round().long().cpu()].to(x_t)[:, None]
        return (x_t - abar.sqrt() * self.source) / (1 - abar).sqrt()


class BandGaussianNetwork(AbsPriorNetwork):
    """Exact ε-predictor of a Gaussian prior: white noise of variance v in a band.

    E[x0 | x_t] = √ᾱ v / (ᾱ v + 1 − ᾱ) · P x_t, with P the projection on the band (an
    orthonormal real FFT). The prior knows where each source lives, not what it is.
    """

    def __init__(self, low: int, high: int, variance: float, schedule: DDPMSchedule):
        super().__init__()
        self.low, self.high, self.variance, self.schedule = (
            low,
            high,
            variance,
            schedule,
        )

    def forward(self, x_t, t, category=None):
        abar = self.schedule.alphas_cumprod[t.round().long().cpu()].to(x_t)[:, None]
        spec = torch.fft.rfft(x_t, norm="ortho")
        mask = torch.zeros(spec.shape[-1], device=x_t.device)
        mask[self.low : self.high] = 1
        gain = abar.sqrt() * self.variance / (abar * self.variance + 1 - abar)
        x0 = torch.fft.irfft(spec * mask * gain, n=x_t.shape[-1], norm="ortho")
        return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()


def band_noise(length: int, low: int, high: int, rms: float, seed: int) -> torch.Tensor:
    """A random signal [t] whose orthonormal-FFT bins outside [low, high) are zero."""
    g = torch.Generator().manual_seed(seed)
    spec = torch.randn(length // 2 + 1, dtype=torch.cfloat, generator=g)
    spec[:low] = 0
    spec[high:] = 0
    x = torch.fft.irfft(spec, n=length, norm="ortho")
    return x / x.pow(2).mean().sqrt() * rms


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: small ops, where more threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def schedule() -> DDPMSchedule:
    return DDPMSchedule()


@pytest.fixture
def oracle_prior(schedule) -> Callable[[torch.Tensor], PriorDenoiser]:
    def make(source: torch.Tensor) -> PriorDenoiser:
        return PriorDenoiser(
            OracleNetwork(source[None], schedule), schedule, time_scale=1.0
        )

    return make


@pytest.fixture
def band_prior(schedule) -> Callable[..., PriorDenoiser]:
    def make(low: int, high: int, rms: float, length: int) -> PriorDenoiser:
        # Per-bin variance of the orthonormal FFT that gives this RMS over the band.
        variance = rms**2 * (length / 2) / (high - low)
        return PriorDenoiser(
            BandGaussianNetwork(low, high, variance, schedule), schedule, time_scale=1.0
        )

    return make


@pytest.fixture
def tiny_prior(schedule) -> Callable[..., PriorDenoiser]:
    from espnet2_ext.diffusion.tf_unet import TFAttentionUNet

    def make(
        seed: int = 0, num_classes: int = 0, cfg_scale: float = 1.0
    ) -> PriorDenoiser:
        torch.manual_seed(seed)
        net = TFAttentionUNet(num_classes=num_classes, **TINY_NET_CONF)
        # Open the adaLN-Zero gates so that the network is not a mere convolution.
        with torch.no_grad():
            for p in net.parameters():
                if not p.abs().sum():
                    p.normal_(0.0, 0.05)
        return PriorDenoiser(net, schedule, time_scale=1000 / 200, cfg_scale=cfg_scale)

    return make
