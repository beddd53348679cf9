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


class GaussianProcessNetwork(AbsPriorNetwork):
    """Exact ε-predictor of a stationary Gaussian prior given by its power spectrum.

    The prior: x0 whose orthonormal real-FFT bins X_k are independent, zero-mean, with
    E|X_k|² = v_k (a circulant Gaussian process). Then per bin
    E[X0_k | x_t] = √ᾱ v_k / (ᾱ v_k + 1 − ᾱ) · X_t,k, the exact posterior mean, and
    ε̂ = (x_t − √ᾱ E[x0 | x_t]) / √(1 − ᾱ) is the exact score of the diffused prior.
    A band prior is v = const inside [low, high) and 0 elsewhere.
    """

    def __init__(self, variance: torch.Tensor, schedule: DDPMSchedule):
        super().__init__()
        self.register_buffer("variance", variance.double())  # [f]
        self.schedule = schedule

    def forward(self, x_t, t, category=None):
        abar = self.schedule.alphas_cumprod[t.round().long().cpu()].to(x_t)[:, None]
        spec = torch.fft.rfft(x_t, norm="ortho")
        v = self.variance.to(x_t)
        if v.shape[-1] != spec.shape[-1]:
            raise ValueError(
                f"prior spectrum has {v.shape[-1]} bins, the input {spec.shape[-1]}"
            )
        gain = abar.sqrt() * v / (abar * v + 1 - abar)
        x0 = torch.fft.irfft(spec * gain, n=x_t.shape[-1], norm="ortho")
        return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()


def gaussian_process(variance: torch.Tensor, length: int, seed: int) -> torch.Tensor:
    """One draw [t] of the prior of :class:`GaussianProcessNetwork` (float32)."""
    g = torch.Generator().manual_seed(seed)
    bins = length // 2 + 1
    spec = torch.randn(bins, dtype=torch.cdouble, generator=g)  # E|z|² = 1
    spec[0] = spec[0].real * 2**0.5  # real bins: variance 1 too
    if length % 2 == 0:
        spec[-1] = spec[-1].real * 2**0.5
    x = torch.fft.irfft(spec * variance.double().sqrt(), n=length, norm="ortho")
    return x.float()


def spectrum_for_rms(shape: torch.Tensor, rms: float, length: int) -> torch.Tensor:
    """Scale a power spectrum [f] so that its process has this expected RMS."""
    weights = torch.full_like(shape, 2.0, dtype=torch.float64)
    weights[0] = 1.0
    if length % 2 == 0:
        weights[-1] = 1.0
    power = (weights * shape.double()).sum() / length  # E[x²] per sample
    return shape.double() * rms**2 / power


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
        variance = torch.zeros(length // 2 + 1, dtype=torch.float64)
        variance[low:high] = rms**2 * (length / 2) / (high - low)
        return PriorDenoiser(
            GaussianProcessNetwork(variance, schedule), schedule, time_scale=1.0
        )

    return make


@pytest.fixture
def gaussian_prior(schedule) -> Callable[[torch.Tensor], PriorDenoiser]:
    def make(variance: torch.Tensor) -> PriorDenoiser:
        return PriorDenoiser(
            GaussianProcessNetwork(variance, schedule), schedule, time_scale=1.0
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
