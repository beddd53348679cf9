"""Shared assignment code: Gram-based energies, least squares, exhaustive, Hungarian."""

import itertools

import pytest
import torch

from espnet2_ext.enh.loss.criterions.thresholded_snr import ThresholdedSNRLoss
from espnet2_ext.enh.loss.wrappers.assignment import (
    assignment_to_mixing,
    best_injective_assignment,
    enumerate_assignments,
    exhaustive_assignment,
    exhaustive_assignment_by_signals,
    gram_statistics,
    least_squares_assignment,
    least_squares_mixing,
    num_assignments,
    pairwise_snr,
    remix_error_energies,
)


def _random(batch, num, length, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, num, length, generator=g, dtype=torch.float64)


def test_enumeration_matches_itertools_and_one_hot():
    cands = enumerate_assignments(3, 2)
    assert cands.tolist() == [list(p) for p in itertools.product(range(2), repeat=3)]
    assert num_assignments(3, 2) == 8 == cands.shape[0]
    mixing = assignment_to_mixing(torch.tensor([1, 0, 2]), 3)
    assert mixing.tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 1]]
    assert (mixing.sum(0) == 1).all()


def test_gram_statistics_of_fp32_inputs_are_close_to_fp64():
    # long signals: the fp32 products are summed per chunk in fp64
    ref, est = _random(2, 2, 70000, 12), _random(2, 5, 70000, 13)
    exact = gram_statistics(ref, est)
    approx = gram_statistics(ref.float(), est.float())
    # inner products are accurate relative to the energies (Cauchy-Schwarz scale)
    scale = max(exact.ref_energy.max(), exact.est_energy.max())
    for name in ("ref_gram", "cross", "est_gram"):
        a, b = getattr(approx, name), getattr(exact, name)
        assert a.dtype == torch.float64
        assert (a - b).abs().max() <= 1e-6 * scale


def test_error_energies_match_direct_remix():
    ref, est = _random(2, 3, 300, 0), _random(2, 4, 300, 1)
    cands = enumerate_assignments(4, 3)
    error = remix_error_energies(gram_statistics(ref, est), cands)  # [B, K, M]
    mixing = assignment_to_mixing(cands, 3, torch.float64)
    remix = torch.einsum("kmn,bnt->bkmt", mixing, est)
    direct = (ref.unsqueeze(1) - remix).pow(2).sum(-1)
    torch.testing.assert_close(error, direct)


def test_least_squares_matches_lstsq_and_binarises():
    ref, est = _random(3, 2, 500, 2), _random(3, 5, 500, 3)
    stats = gram_statistics(ref, est)
    mixing = least_squares_mixing(stats)
    # torch.linalg.lstsq solves est^T A^T = ref^T
    expected = torch.linalg.lstsq(est.transpose(1, 2), ref.transpose(1, 2)).solution
    torch.testing.assert_close(mixing, expected.transpose(1, 2))
    assert torch.equal(least_squares_assignment(stats), mixing.argmax(dim=1))


def test_least_squares_is_finite_on_silent_and_duplicate_outputs():
    est = _random(1, 4, 400, 4)
    est[:, 1] = 0.0  # a silent output
    est[:, 3] = est[:, 2]  # two identical outputs
    ref = torch.stack([est[:, 0] + est[:, 2] + est[:, 3], 0.5 * est[:, 0]], dim=1)
    mixing = least_squares_mixing(gram_statistics(ref, est))
    assert torch.isfinite(mixing).all()
    torch.testing.assert_close(mixing[:, :, 1], torch.zeros(1, 2, dtype=torch.float64))
    # minimum-norm: the identical outputs share their coefficient
    torch.testing.assert_close(mixing[:, :, 2], mixing[:, :, 3])
    assert least_squares_assignment(gram_statistics(ref, est))[0, 2:].tolist() == [0, 0]


def test_exhaustive_energy_search_equals_brute_force_on_signals():
    ref, est = _random(4, 2, 200, 5), _random(4, 4, 200, 6)
    crit = ThresholdedSNRLoss()
    assignment, loss = exhaustive_assignment(
        gram_statistics(ref, est), crit.from_energies
    )
    # brute force: the criterion itself on every remix
    cands = enumerate_assignments(4, 2)
    for b in range(4):
        losses = []
        for cand in cands:
            remix = assignment_to_mixing(cand, 2, torch.float64) @ est[b]
            losses.append(crit(ref[b], remix).mean())
        losses = torch.stack(losses)
        assert torch.equal(assignment[b], cands[losses.argmin()])
        torch.testing.assert_close(loss[b], losses.min())
    by_signals, loss2 = exhaustive_assignment_by_signals(
        ref, est, lambda r, e, mix: crit(r, e)
    )
    assert torch.equal(by_signals, assignment)
    torch.testing.assert_close(loss2, loss)


def test_exhaustive_chunking_does_not_change_the_result():
    ref, est = _random(3, 3, 100, 7), _random(3, 4, 100, 8)
    crit = ThresholdedSNRLoss()
    stats = gram_statistics(ref, est)
    whole = exhaustive_assignment(stats, crit.from_energies)
    tiny = exhaustive_assignment(stats, crit.from_energies, max_chunk_elements=1)
    assert torch.equal(whole[0], tiny[0])
    small = exhaustive_assignment_by_signals(
        ref, est, lambda r, e, mix: crit(r, e), max_chunk_elements=1
    )
    assert torch.equal(whole[0], small[0])


def test_pairwise_snr_matches_direct():
    ref, est = _random(2, 3, 300, 9), _random(2, 5, 300, 10)
    snr = pairwise_snr(ref, est)
    direct = 10 * torch.log10(ref.pow(2).sum(-1)[:, :, None] + 1e-8) - 10 * torch.log10(
        (ref[:, :, None] - est[:, None]).pow(2).sum(-1) + 1e-8
    )
    torch.testing.assert_close(snr, direct)


@pytest.mark.parametrize("num_ref,num_out", [(1, 3), (3, 3), (4, 7)])
def test_hungarian_equals_brute_force(num_ref, num_out):
    g = torch.Generator().manual_seed(num_ref * 10 + num_out)
    score = torch.randn(5, num_ref, num_out, generator=g)
    chosen = best_injective_assignment(score)
    assert chosen.shape == (5, num_ref)
    for b in range(5):
        best = max(
            itertools.permutations(range(num_out), num_ref),
            key=lambda p: sum(score[b, r, n].item() for r, n in enumerate(p)),
        )
        assert chosen[b].tolist() == list(best)
        assert len(set(chosen[b].tolist())) == num_ref


def test_hungarian_refuses_more_refs_than_outputs():
    with pytest.raises(ValueError, match="distinct outputs"):
        best_injective_assignment(torch.zeros(3, 2))
