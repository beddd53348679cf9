"""FixedOrderMixtureSolver: hands the mixture (the sum of the references) to criteria
that use it, and is ESPnet's fixed-order solver for the others."""

import math

import pytest
import torch
from espnet2.enh.loss.criterions.abs_loss import AbsEnhLoss
from espnet2.enh.loss.criterions.time_domain import SNRLoss
from espnet2.enh.loss.wrappers.fixed_order import FixedOrderSolver

from espnet2_ext.enh.loss.criterions.thresholded_snr import (
    ThresholdedSNRLoss,
    ThresholdedSNRZeroRefLoss,
)
from espnet2_ext.enh.loss.wrappers.fixed_order_mixture_solver import (
    FixedOrderMixtureSolver,
)


class MixtureProbe(AbsEnhLoss):
    """Records every call; its loss is ``<inf, mixture>`` per example, so the value
    depends on the mixture it is given."""

    uses_mixture = True

    def __init__(self):
        super().__init__()
        self.calls = []

    @property
    def name(self) -> str:
        return "probe"

    def forward(self, ref, inf, mixture=None):
        self.calls.append((ref, inf, mixture))
        return (inf * mixture).sum(dim=-1)


def _stems(num_spk=3, batch=2, length=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref = [torch.randn(batch, length, generator=g) for _ in range(num_spk)]
    inf = [torch.randn(batch, length, generator=g) for _ in range(num_spk)]
    return ref, inf


def test_every_criterion_call_gets_the_sum_of_the_references():
    ref, inf = _stems()
    probe = MixtureProbe()
    loss, stats, others = FixedOrderMixtureSolver(probe)(ref, inf)
    mixture = ref[0] + ref[1] + ref[2]
    assert len(probe.calls) == 3
    for k, (r, i, m) in enumerate(probe.calls):
        assert r is ref[k] and i is inf[k]  # fixed order: stem k against output k
        torch.testing.assert_close(m, mixture)
    # known answer: mean over stems and examples of <inf_k, mixture>
    expected = sum((i * mixture).sum(-1).mean() for i in inf) / 3
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(stats["probe"], expected)
    assert torch.equal(others["perm"], torch.tensor([[0, 1, 2], [0, 1, 2]]))


def test_the_mixture_decides_which_stem_is_inactive():
    """A silent stem gets the inactive-reference loss, floored by the mixture level."""
    length = 400
    t = torch.arange(length, dtype=torch.float64)
    active = torch.sin(0.05 * t)[None]  # [1, T]
    silent = torch.zeros(1, length, dtype=torch.float64)
    est_active = active + 0.1 * torch.cos(0.3 * t)[None]
    est_silent = 0.01 * torch.cos(0.7 * t)[None]
    criterion = ThresholdedSNRZeroRefLoss()
    loss, _, _ = FixedOrderMixtureSolver(criterion)(
        [silent, active], [est_silent, est_active]
    )
    # the mixture is the active stem alone: |x|² = |s|²
    mix2 = active.square().sum().item()
    err2 = (active - est_active).square().sum().item()
    silent2 = est_silent.square().sum().item()
    tau, eps = 10 ** (-30 / 10), 1e-8
    active_loss = 10 * math.log10(err2 + tau * mix2 + eps) - 10 * math.log10(mix2 + eps)
    silent_loss = 0.1 * 10 * math.log10(silent2 + tau * mix2 + eps)
    assert loss.item() == pytest.approx((active_loss + silent_loss) / 2, rel=1e-9)


def test_espnet_fixed_order_cannot_feed_a_mixture_criterion():
    ref, inf = _stems()
    with pytest.raises(ValueError, match="needs the mixture"):
        FixedOrderSolver(ThresholdedSNRZeroRefLoss())(ref, inf)


@pytest.mark.parametrize("criterion", [SNRLoss(), ThresholdedSNRLoss()])
def test_criteria_without_the_mixture_are_called_as_espnet_calls_them(criterion):
    ref, inf = _stems(length=64)
    ours = FixedOrderMixtureSolver(criterion)(ref, inf)
    theirs = FixedOrderSolver(criterion)(ref, inf)
    torch.testing.assert_close(ours[0], theirs[0])
    assert ours[1].keys() == theirs[1].keys()
    assert torch.equal(ours[2]["perm"], theirs[2]["perm"])


def test_one_estimate_per_reference():
    ref, inf = _stems()
    with pytest.raises(ValueError, match="3 references but 2 estimates"):
        FixedOrderMixtureSolver(MixtureProbe())(ref, inf[:2])
