"""Thresholded SNR criteria: known values, the floor, the inactive branch, zeros."""

import math

import pytest
import torch

from espnet2_ext.enh.loss.criterions.thresholded_snr import (
    ThresholdedSNRLoss,
    ThresholdedSNRZeroRefLoss,
)

TAU = 10 ** (-30 / 10)


def _db(x):
    return 10 * torch.log10(x)


def _signals(batch=3, length=800, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(batch, length, generator=g, dtype=torch.float64)
    est = ref + 0.3 * torch.randn(batch, length, generator=g, dtype=torch.float64)
    return ref, est


def test_thres_snr_matches_formula():
    ref, est = _signals()
    loss = ThresholdedSNRLoss()(ref, est)
    s2 = ref.pow(2).sum(-1)
    e2 = (ref - est).pow(2).sum(-1)
    expected = _db(e2 + TAU * s2 + 1e-8) - _db(s2 + 1e-8)
    assert loss.shape == (3,)
    torch.testing.assert_close(loss, expected)
    # far from the cap it is close to the plain negative SNR (about 10 dB here):
    # the cap adds 10 log10(1 + τ |s|²/|s - ŝ|²) < 0.1 dB
    gap = loss - (_db(e2) - _db(s2))
    assert ((gap > 0) & (gap < 0.1)).all(), gap


def test_thres_snr_floor_and_cap():
    ref, est = _signals()
    crit = ThresholdedSNRLoss()
    torch.testing.assert_close(crit(ref, ref), torch.full((3,), -30.0, dtype=ref.dtype))
    # nearly perfect estimates cannot go below the floor
    assert (crit(ref, ref + 1e-6 * est) >= -30.0 - 1e-9).all()
    crit20 = ThresholdedSNRLoss(snr_max=20.0)
    torch.testing.assert_close(
        crit20(ref, ref), torch.full((3,), -20.0, dtype=ref.dtype)
    )


@pytest.mark.parametrize(
    "criterion", [ThresholdedSNRLoss(), ThresholdedSNRZeroRefLoss()]
)
def test_all_zero_refs_and_estimates_are_finite_with_finite_gradients(criterion):
    zeros = torch.zeros(2, 500)
    ref, _ = _signals(batch=2, length=500)
    ref = ref.float()
    cases = [(zeros, zeros), (zeros, ref), (ref, zeros)]
    for r, e in cases:
        e = e.clone().requires_grad_(True)
        kwargs = {"mixture": r + 0.5} if criterion.uses_mixture else {}
        loss = criterion(r, e, **kwargs)
        assert torch.isfinite(loss).all(), (r.abs().sum(), e.abs().sum(), loss)
        loss.sum().backward()
        assert torch.isfinite(e.grad).all()
    # both zero (and a zero mixture) gives a finite loss too
    e = zeros.clone().requires_grad_(True)
    kwargs = {"mixture": zeros} if criterion.uses_mixture else {}
    loss = criterion(zeros, e, **kwargs)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(e.grad).all()


def test_thres_snr_zero_estimate_value():
    ref, _ = _signals()
    loss = ThresholdedSNRLoss()(ref, torch.zeros_like(ref))
    # |s|² (1 + τ) / |s|²
    torch.testing.assert_close(
        loss, torch.full((3,), 10 * math.log10(1 + TAU), dtype=ref.dtype)
    )


def _scaled_to(ref, mixture, level_db):
    """ref rescaled so that 10 log10(|ref|² / |mixture|²) = level_db."""
    ratio = ref.pow(2).sum(-1, keepdim=True) / mixture.pow(2).sum(-1, keepdim=True)
    return ref * torch.sqrt(10 ** (level_db / 10) / ratio)


def test_inactive_branch_taken_exactly_below_threshold():
    g = torch.Generator().manual_seed(1)
    mixture = torch.randn(1, 1000, generator=g, dtype=torch.float64)
    base = torch.randn(1, 1000, generator=g, dtype=torch.float64)
    est = 1e-2 * torch.randn(1, 1000, generator=g, dtype=torch.float64)
    crit = ThresholdedSNRZeroRefLoss()
    m2 = mixture.pow(2).sum(-1)
    for level, active in [(-60.01, False), (-59.99, True), (-70.0, False), (-40, True)]:
        ref = _scaled_to(base, mixture, level)
        loss = crit(ref, est, mixture=mixture)
        s2 = ref.pow(2).sum(-1)
        e2 = (ref - est).pow(2).sum(-1)
        active_loss = _db(e2 + TAU * s2 + 1e-8) - _db(s2 + 1e-8)
        inactive_loss = 0.1 * _db(e2 + TAU * m2 + 1e-8)
        assert not torch.allclose(active_loss, inactive_loss)
        torch.testing.assert_close(loss, active_loss if active else inactive_loss)


def test_zeroref_all_zero_reference_value():
    g = torch.Generator().manual_seed(2)
    mixture = torch.randn(2, 600, generator=g, dtype=torch.float64)
    est = 0.1 * torch.randn(2, 600, generator=g, dtype=torch.float64)
    loss = ThresholdedSNRZeroRefLoss()(torch.zeros_like(est), est, mixture=mixture)
    expected = 0.1 * _db(est.pow(2).sum(-1) + TAU * mixture.pow(2).sum(-1) + 1e-8)
    torch.testing.assert_close(loss, expected)
    # active references give exactly the plain thresholded SNR
    ref = mixture * 0.5
    torch.testing.assert_close(
        ThresholdedSNRZeroRefLoss()(ref, est, mixture=mixture),
        ThresholdedSNRLoss()(ref, est),
    )


def test_stereo_loss_is_the_mean_of_the_channels_losses():
    """[B, T, C]: each channel on its own, averaged (the authors' stereo loss)."""
    g = torch.Generator().manual_seed(3)
    ref = torch.randn(2, 500, 2, generator=g, dtype=torch.float64)
    est = ref + 0.2 * torch.randn(2, 500, 2, generator=g, dtype=torch.float64)
    crit = ThresholdedSNRLoss()
    mono = (crit(ref[..., 0], est[..., 0]) + crit(ref[..., 1], est[..., 1])) / 2
    torch.testing.assert_close(crit(ref, est), mono)
    # the folded form (one SNR over both channels) is another number
    folded = crit(ref.transpose(1, 2).flatten(1), est.transpose(1, 2).flatten(1))
    assert not torch.allclose(folded, mono)


def test_activity_is_decided_per_channel():
    """A stem silent in the right channel only: inactive there, active on the left."""
    g = torch.Generator().manual_seed(4)
    mixture = torch.randn(1, 800, 2, generator=g, dtype=torch.float64)
    ref = 0.5 * mixture.clone()
    ref[..., 1] = 1e-5 * mixture[..., 1]  # -106 dB: inactive
    est = 0.1 * torch.randn(1, 800, 2, generator=g, dtype=torch.float64)
    crit = ThresholdedSNRZeroRefLoss()
    left = ThresholdedSNRLoss()(ref[..., 0], est[..., 0])  # the active branch
    e2 = (ref[..., 1] - est[..., 1]).pow(2).sum(-1)
    right = 0.1 * _db(e2 + TAU * mixture[..., 1].pow(2).sum(-1) + 1e-8)
    torch.testing.assert_close(crit(ref, est, mixture=mixture), (left + right) / 2)


def test_zeroref_without_mixture_raises():
    ref, est = _signals()
    with pytest.raises(ValueError, match="needs the mixture"):
        ThresholdedSNRZeroRefLoss()(ref, est)


def test_bad_shapes_raise():
    ref, est = _signals()
    with pytest.raises(ValueError, match="same shape"):
        ThresholdedSNRLoss()(ref, est[:, :-1])
    with pytest.raises(ValueError, match=r"\[B, T\] or \[B, T, C\]"):
        ThresholdedSNRLoss()(ref[..., None, None], est[..., None, None])
    with pytest.raises(ValueError, match="eps"):
        ThresholdedSNRLoss(eps=0.0)


def test_low_precision_inputs_give_fp32_losses():
    ref, est = _signals()
    loss = ThresholdedSNRLoss()(ref.bfloat16(), est.bfloat16())
    assert loss.dtype == torch.float32
    torch.testing.assert_close(
        loss.double(), ThresholdedSNRLoss()(ref, est), atol=0.1, rtol=0
    )


def test_espnet_properties():
    crit = ThresholdedSNRLoss()
    assert crit.name == "thres_snr_loss"
    assert (
        not crit.only_for_test and not crit.is_noise_loss and not crit.is_dereverb_loss
    )
    zr = ThresholdedSNRZeroRefLoss(is_noise_loss=True)
    assert zr.name == "thres_snr_zeroref_loss_noise" and zr.is_noise_loss
    assert ThresholdedSNRLoss(name="x", only_for_test=True).only_for_test


def test_espnet_fixed_order_wrapper_fails_loudly_with_zeroref():
    # ESPnet's wrappers call criterion(ref, inf): the zero-reference loss must say
    # that it needs a mixture-passing wrapper instead of guessing one
    from espnet2.enh.loss.wrappers.fixed_order import FixedOrderSolver

    ref, est = _signals()
    with pytest.raises(ValueError, match="mixture"):
        FixedOrderSolver(ThresholdedSNRZeroRefLoss())([ref], [est])
