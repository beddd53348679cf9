"""EfficientMixITSolver: planted assignments, efficient vs exact, vs ESPnet's MixIT."""

import itertools

import pytest
import torch
from espnet2.enh.loss.criterions.time_domain import SNRLoss
from espnet2.enh.loss.wrappers.mixit_solver import MixITSolver

from espnet2_ext.enh.loss.criterions.thresholded_snr import (
    ThresholdedSNRLoss,
    ThresholdedSNRZeroRefLoss,
)
from espnet2_ext.enh.loss.wrappers.assignment import assignment_to_mixing
from espnet2_ext.enh.loss.wrappers.efficient_mixit_solver import EfficientMixITSolver


def _planted(batch, num_out, num_mix, length, seed, channels=None):
    """Random outputs and a random assignment that leaves no mixture empty."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, num_out, length) + ((channels,) if channels else ())
    est = torch.randn(*shape, generator=g, dtype=torch.float64)
    rows = []
    for _ in range(batch):
        while True:
            a = torch.randint(0, num_mix, (num_out,), generator=g)
            if len(set(a.tolist())) == num_mix:
                rows.append(a)
                break
    assignment = torch.stack(rows)
    mixing = assignment_to_mixing(assignment, num_mix, torch.float64)
    ref = torch.einsum("bmn,bn...->bm...", mixing, est)
    return ref, est, assignment, g


def _lists(ref, est):
    return list(ref.unbind(1)), list(est.unbind(1))


@pytest.mark.parametrize("mode", ["efficient", "exact"])
@pytest.mark.parametrize(
    "num_out,num_mix,channels,dtype",
    [
        (4, 2, None, torch.float64),
        (8, 2, None, torch.float64),
        (5, 3, None, torch.float64),
        (6, 2, 2, torch.float64),
        (12, 2, None, torch.float32),
        (6, 2, 2, torch.float32),
    ],
)
def test_planted_assignment_gives_floor_and_comes_back(
    mode, num_out, num_mix, channels, dtype
):
    ref, est, assignment, _ = _planted(3, num_out, num_mix, 600, num_out, channels)
    ref, est = ref.to(dtype), est.to(dtype)
    solver = EfficientMixITSolver(ThresholdedSNRLoss(), mode=mode)
    loss, stats, others = solver(*_lists(ref, est))
    atol = 1e-6 if dtype == torch.float64 else 1e-3
    torch.testing.assert_close(
        loss, torch.tensor(-30.0, dtype=loss.dtype), atol=atol, rtol=0
    )
    assert torch.equal(others["mixit_output_to_mixture"], assignment)
    expected = assignment_to_mixing(assignment, num_mix, est.dtype)
    assert others["mixit_assignment"].dtype == dtype
    assert torch.equal(others["mixit_assignment"], expected)
    assert torch.equal(others["perm"], expected)
    assert others["mixit_assignment"].shape == (3, num_mix, num_out)
    assert set(stats) == {"thres_snr_loss"}


def _noisy_planted(batch, num_out, num_mix, length, seed, noise=0.3):
    ref, est, assignment, g = _planted(batch, num_out, num_mix, length, seed)
    ref = ref + noise * torch.randn(ref.shape, generator=g, dtype=ref.dtype)
    return ref, est, assignment


@pytest.mark.parametrize("seed", range(4))
def test_efficient_and_exact_agree_when_least_squares_is_unambiguous(seed):
    # independent outputs, references = planted remix + noise (about 10 dB):
    # least squares is close to the binary matrix, so both modes must find it
    ref, est, assignment = _noisy_planted(4, 6, 2, 2000, seed)
    results = {}
    for mode in ("efficient", "exact"):
        loss, _, others = EfficientMixITSolver(ThresholdedSNRLoss(), mode=mode)(
            *_lists(ref, est)
        )
        results[mode] = (loss, others["mixit_output_to_mixture"])
    assert torch.equal(results["efficient"][1], results["exact"][1])
    assert torch.equal(results["exact"][1], assignment)
    torch.testing.assert_close(results["efficient"][0], results["exact"][0])


def test_exact_is_never_worse_than_efficient_on_unrelated_signals():
    g = torch.Generator().manual_seed(11)
    for trial in range(5):
        ref = torch.randn(2, 2, 300, generator=g, dtype=torch.float64)
        est = torch.randn(2, 6, 300, generator=g, dtype=torch.float64)
        losses = {}
        for mode in ("efficient", "exact"):
            solver = EfficientMixITSolver(ThresholdedSNRLoss(), mode=mode)
            losses[mode] = solver(*_lists(ref, est))[0]
        assert losses["exact"] <= losses["efficient"] + 1e-9


@pytest.mark.parametrize("criterion", [ThresholdedSNRLoss(), SNRLoss()])
@pytest.mark.parametrize("num_mix", [1, 2, 3])
@pytest.mark.parametrize("noise", [0.3, None])
def test_exact_mode_agrees_with_espnet_mixit(criterion, num_mix, noise):
    # ESPnet's MixITSolver assumes N = 2M outputs (it uses ref[:N // 2])
    num_out = 2 * num_mix
    if noise is None:  # unrelated signals: the hardest case for agreement
        g = torch.Generator().manual_seed(num_mix)
        ref = torch.randn(3, num_mix, 400, generator=g, dtype=torch.float64)
        est = torch.randn(3, num_out, 400, generator=g, dtype=torch.float64)
    else:
        ref, est, _ = _noisy_planted(3, num_out, num_mix, 400, num_mix, noise)
    ours = EfficientMixITSolver(criterion, mode="exact")(*_lists(ref, est))
    theirs = MixITSolver(criterion)(*_lists(ref, est))
    torch.testing.assert_close(ours[0], theirs[0])
    assert torch.equal(ours[2]["perm"], theirs[2]["perm"].to(ours[2]["perm"].dtype))


def test_efficient_agrees_with_espnet_on_planted_cases():
    ref, est, assignment = _noisy_planted(4, 4, 2, 1500, 21)
    ours = EfficientMixITSolver(ThresholdedSNRLoss())(*_lists(ref, est))
    theirs = MixITSolver(ThresholdedSNRLoss())(*_lists(ref, est))
    torch.testing.assert_close(ours[0], theirs[0])
    assert torch.equal(ours[2]["perm"], theirs[2]["perm"])


def test_efficient_solves_on_ref_channel_only():
    # channel 0 holds the planted mixtures; channel 1 of the references is built
    # from a different assignment. The efficient solve must follow channel 0.
    ref, est, assignment, _ = _planted(2, 4, 2, 800, 3, channels=2)
    other = 1 - assignment
    ref[..., 1] = torch.einsum(
        "bmn,bnt->bmt", assignment_to_mixing(other, 2, est.dtype), est[..., 1]
    )
    solver = EfficientMixITSolver(ThresholdedSNRLoss(), ref_channel=0)
    assert torch.equal(
        solver(*_lists(ref, est))[2]["mixit_output_to_mixture"], assignment
    )
    solver1 = EfficientMixITSolver(ThresholdedSNRLoss(), ref_channel=1)
    assert torch.equal(solver1(*_lists(ref, est))[2]["mixit_output_to_mixture"], other)


@pytest.mark.parametrize("crit", [ThresholdedSNRLoss(), ThresholdedSNRZeroRefLoss()])
def test_stereo_loss_is_per_channel_with_one_assignment(crit):
    """[B, T, C] inputs: the assignment from channel 0 serves both channels and the
    loss is the mean of the two channels' losses (the authors' MixIT loss)."""
    ref, est, assignment, g = _planted(2, 4, 2, 600, 8, channels=2)
    est = est + 0.3 * torch.randn(est.shape, generator=g, dtype=est.dtype)
    ref[1, 1, :, 1] = 0.0  # a mixture silent in one channel (zeroref: inactive)
    loss, _, others = EfficientMixITSolver(crit)(*_lists(ref, est))
    assert torch.equal(others["mixit_output_to_mixture"], assignment)
    remix = torch.einsum("bmn,bntc->bmtc", others["mixit_assignment"], est)
    per_channel = []
    for ch in (0, 1):
        extra = {"mixture": ref[..., ch].sum(1)} if crit.uses_mixture else {}
        per_channel.append(
            torch.stack(
                [crit(ref[:, m, :, ch], remix[:, m, :, ch], **extra) for m in (0, 1)]
            ).mean()
        )
    torch.testing.assert_close(loss, (per_channel[0] + per_channel[1]) / 2)


@pytest.mark.parametrize("crit", [ThresholdedSNRLoss(), ThresholdedSNRZeroRefLoss()])
def test_exact_stereo_search_minimises_the_per_channel_loss(crit):
    """Exact mode on [B, T, C]: the least mean-of-channels loss over all 2^N
    assignments, checked by evaluating every candidate with the criterion itself."""
    g = torch.Generator().manual_seed(9)
    ref = torch.randn(2, 2, 300, 2, generator=g, dtype=torch.float64)
    est = torch.randn(2, 5, 300, 2, generator=g, dtype=torch.float64)
    loss, _, others = EfficientMixITSolver(crit, mode="exact")(*_lists(ref, est))
    best = []
    for b in range(2):
        values = []
        for a in itertools.product(range(2), repeat=5):
            mixing = assignment_to_mixing(torch.tensor(a), 2, est.dtype)
            remix = torch.einsum("mn,ntc->mtc", mixing, est[b])
            extra = {"mixture": ref[b].sum(0)[None]} if crit.uses_mixture else {}
            values.append(
                torch.stack(
                    [crit(ref[b, m][None], remix[m][None], **extra) for m in (0, 1)]
                ).mean()
            )
        best.append(torch.stack(values).min())
    torch.testing.assert_close(loss, torch.stack(best).mean())


def test_gradient_reaches_outputs_not_assignment():
    ref, est, _ = _noisy_planted(2, 4, 2, 500, 5)
    est = est.float().requires_grad_(True)
    loss, _, others = EfficientMixITSolver(ThresholdedSNRLoss())(
        list(ref.float().unbind(1)), list(est.unbind(1))
    )
    loss.backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0
    assert not others["mixit_assignment"].requires_grad


def test_zero_outputs_and_references_are_finite():
    ref = torch.zeros(2, 2, 300)
    est = torch.zeros(2, 4, 300, requires_grad=True)
    for mode in ("efficient", "exact"):
        loss, _, _ = EfficientMixITSolver(ThresholdedSNRLoss(), mode=mode)(
            list(ref.unbind(1)), list(est.unbind(1))
        )
        assert torch.isfinite(loss)
        loss.backward()
        assert torch.isfinite(est.grad).all()


@pytest.mark.parametrize("mode", ["efficient", "exact"])
def test_zeroref_criterion_gets_the_mixture_of_mixtures(mode):
    ref, est, assignment = _noisy_planted(2, 4, 2, 500, 6)
    ref[1, 1] = 0.0  # an inactive reference mixture in example 1
    crit = ThresholdedSNRZeroRefLoss()
    loss, _, others = EfficientMixITSolver(crit, mode=mode)(*_lists(ref, est))
    mixing = others["mixit_assignment"]
    remix = torch.einsum("bmn,bnt->bmt", mixing, est)
    mixture = ref.sum(1)
    expected = torch.stack(
        [crit(ref[:, m], remix[:, m], mixture=mixture) for m in range(2)], 1
    ).mean()
    torch.testing.assert_close(loss, expected)


def test_invalid_configs_and_inputs_raise():
    with pytest.raises(ValueError, match="mode"):
        EfficientMixITSolver(ThresholdedSNRLoss(), mode="fast")
    with pytest.raises(ValueError, match="ref_channel"):
        EfficientMixITSolver(ThresholdedSNRLoss(), ref_channel=-1)
    ref, est, _ = _noisy_planted(1, 4, 2, 100, 7)
    exact = EfficientMixITSolver(
        ThresholdedSNRLoss(), mode="exact", max_exact_assignments=8
    )
    with pytest.raises(ValueError, match="2\\^4 = 16"):
        exact(*_lists(ref, est))
    solver = EfficientMixITSolver(ThresholdedSNRLoss())
    with pytest.raises(ValueError, match="same shape"):
        solver(list(ref.unbind(1)), list(est[..., :50].unbind(1)))
    with pytest.raises(ValueError, match="ref_channel 3"):
        EfficientMixITSolver(ThresholdedSNRLoss(), ref_channel=3)(
            list(ref[..., None].unbind(1)), list(est[..., None].unbind(1))
        )
    with pytest.raises(ValueError, match="complex"):
        solver([r.to(torch.complex64) for r in ref.unbind(1)], list(est.unbind(1)))


def test_trains_inside_espnet_enhancement_model():
    # ESPnet's model with M = 2 references and N = 4 outputs needs
    # flexible_numspk: true (otherwise it expects num_spk references)
    from espnet2.enh.decoder.stft_decoder import STFTDecoder
    from espnet2.enh.encoder.stft_encoder import STFTEncoder
    from espnet2.enh.espnet_model import ESPnetEnhancementModel

    from espnet2_ext.enh.separator.bs_locoformer_separator import BSLocoformerSeparator

    torch.manual_seed(0)
    model = ESPnetEnhancementModel(
        encoder=STFTEncoder(n_fft=16, hop_length=4),
        separator=BSLocoformerSeparator(
            input_dim=9,
            num_spk=4,
            num_channels=1,
            bands=(2, 3, 4),
            n_layers=1,
            emb_dim=8,
            ffn_hidden_dim=8,
            n_heads=2,
            norm_groups=2,
        ),
        decoder=STFTDecoder(n_fft=16, hop_length=4),
        mask_module=None,
        loss_wrappers=[EfficientMixITSolver(ThresholdedSNRLoss())],
        flexible_numspk=True,
    )
    refs = torch.randn(2, 2, 400)
    loss, stats, weight = model(
        refs.sum(1),
        torch.tensor([400, 400]),
        speech_ref1=refs[:, 0],
        speech_ref2=refs[:, 1],
    )
    assert torch.isfinite(loss) and "thres_snr_loss" in stats
    loss.backward()
    grads = [p.grad for p in model.separator.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
