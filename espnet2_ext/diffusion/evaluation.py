"""SI-SNR with permutation search: the evaluation of seeds/001 (unordered sources).

:func:`score_scps` scores separated scp lists against the references,
:func:`write_scores` also writes them and :func:`results_row` formats the summary as a
row of a recipe's ``RESULTS.md`` (the scoring stage of ``egs2/TEMPLATE/diffsep1``).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import soundfile as sf
import torch

from espnet2_ext.utils.atomic import atomic_write_json
from espnet2_ext.utils.scp import read_scp


def si_snr(
    estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-12
) -> torch.Tensor:
    """Scale-invariant SNR in dB (Le Roux et al. 2019), zero-mean signals.

    Args:
        estimate, reference: [..., t] (broadcastable).
    Returns:
        SI-SNR [...] (float64).
    """
    est = estimate.double() - estimate.double().mean(dim=-1, keepdim=True)
    ref = reference.double() - reference.double().mean(dim=-1, keepdim=True)
    scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * ref
    noise = est - target
    ratio = (target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps)
    return 10 * torch.log10(ratio)


def permutation_si_snr(
    estimates: torch.Tensor, references: torch.Tensor
) -> Tuple[torch.Tensor, Tuple[int, ...]]:
    """SI-SNR per reference under the estimate order that maximises their mean.

    Args:
        estimates: [n, t] separated sources (any order).
        references: [n, t] true sources.
    Returns:
        SI-SNR of each reference with its assigned estimate [n], and the assignment
        ``perm`` (reference k ↔ estimate ``perm[k]``).
    """
    if estimates.shape != references.shape or estimates.dim() != 2:
        raise ValueError(
            f"estimates {tuple(estimates.shape)} and references "
            f"{tuple(references.shape)} must both be [n, t]"
        )
    num = references.shape[0]
    pairwise = si_snr(estimates[None, :, :], references[:, None, :])  # [ref, est]
    best, best_perm = None, None
    for perm in itertools.permutations(range(num)):
        score = pairwise[torch.arange(num), torch.tensor(perm)].mean()
        if best is None or score > best:
            best, best_perm = score, perm
    return pairwise[torch.arange(num), torch.tensor(best_perm)], tuple(best_perm)


def _load_mono(path: str) -> torch.Tensor:
    audio, _ = sf.read(path, dtype="float64", always_2d=True)
    return torch.from_numpy(audio.mean(axis=1))


def score_scps(
    mixture_scp: Union[str, Path],
    reference_scps: Sequence[Union[str, Path]],
    estimate_scps: Sequence[Union[str, Path]],
    permutation: bool = True,
) -> Dict[str, Dict[str, List[float]]]:
    """SI-SNR and its improvement over the mixture for every key of the mixture scp.

    Args:
        mixture_scp: wav.scp of the mixtures.
        reference_scps: spk1.scp … of the true sources.
        estimate_scps: spk1.scp … written by the separation.
        permutation: search the estimate order (seeds/001's protocol); False pairs
            reference n with estimate n (e.g. one prior per fixed stem).
    Returns:
        {key: {"si_snr": [per reference], "si_snri": [...], "perm": [...]}}.
    """
    if len(reference_scps) != len(estimate_scps):
        raise ValueError(
            f"{len(reference_scps)} reference scps but {len(estimate_scps)} estimate "
            "scps"
        )
    mixtures = read_scp(mixture_scp)
    refs = [read_scp(p) for p in reference_scps]
    ests = [read_scp(p) for p in estimate_scps]
    results = {}
    for key, mix_path in mixtures.items():
        mix = _load_mono(mix_path)
        ref = torch.stack([_load_mono(r[key]) for r in refs])
        est = torch.stack([_load_mono(e[key]) for e in ests])
        length = min(mix.shape[-1], ref.shape[-1], est.shape[-1])
        mix, ref, est = mix[:length], ref[:, :length], est[:, :length]
        if permutation:
            values, perm = permutation_si_snr(est, ref)
        else:
            values, perm = si_snr(est, ref), tuple(range(len(refs)))
        baseline = si_snr(mix[None].expand_as(ref), ref)
        results[key] = {
            "si_snr": values.tolist(),
            "si_snri": (values - baseline).tolist(),
            "perm": list(perm),
        }
    return results


def _sd(values: torch.Tensor) -> float:
    """Sample standard deviation; NaN (undefined) for fewer than two values."""
    return values.std().item() if values.numel() > 1 else float("nan")


def summarize(results: Dict[str, Dict[str, List[float]]]) -> Dict[str, float]:
    """Means over mixtures and sources, per source index, and their standard deviations
    over mixtures (``*_sd``, of the per-mixture mean over sources; sample sd, undefined
    (NaN) for one mixture)."""
    si_snr_all = torch.tensor([v["si_snr"] for v in results.values()])  # [utt, n]
    si_snri_all = torch.tensor([v["si_snri"] for v in results.values()])
    summary = {
        "num_mixtures": len(results),
        "si_snr": si_snr_all.mean().item(),
        "si_snri": si_snri_all.mean().item(),
        "si_snr_sd": _sd(si_snr_all.mean(dim=1)),
        "si_snri_sd": _sd(si_snri_all.mean(dim=1)),
    }
    for n in range(si_snr_all.shape[1]):
        summary[f"si_snr_spk{n + 1}"] = si_snr_all[:, n].mean().item()
        summary[f"si_snri_spk{n + 1}"] = si_snri_all[:, n].mean().item()
        summary[f"si_snri_spk{n + 1}_sd"] = _sd(si_snri_all[:, n])
    return summary


def write_scores(
    mixture_scp: Union[str, Path],
    reference_scps: Sequence[Union[str, Path]],
    estimate_scps: Sequence[Union[str, Path]],
    out_dir: Union[str, Path],
    permutation: bool = True,
) -> Dict[str, float]:
    """Score as :func:`score_scps` and write ``<out_dir>/scores.json`` (per mixture)
    and ``<out_dir>/summary.json`` (:func:`summarize`).

    Returns:
        the summary.
    """
    results = score_scps(
        mixture_scp, reference_scps, estimate_scps, permutation=permutation
    )
    summary = summarize(results)
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "scores.json", results)
    atomic_write_json(out_dir / "summary.json", summary)  # undefined sd → null
    return summary


def _mean_sd(summary: Dict[str, float], key: str) -> str:
    mean, sd = summary[key], summary.get(f"{key}_sd")
    if sd is None or math.isnan(sd):  # undefined for one mixture: the mean alone
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {sd:.2f}"


def results_row(
    name: str,
    summary: Dict[str, float],
    num_sources: int,
    columns: Sequence[str] = (),
) -> str:
    """The Markdown row ``| name | columns… | mixtures | SI-SNR | SI-SNRi | SI-SNRi per
    source |`` of a recipe's results table: dB, two decimals, mean ± sd over mixtures
    (the mean alone where the sd is undefined). ``columns`` are extra cells after the
    name (e.g. the steps and the path-scaling setting of the sampler)."""
    cells = [name, *columns, str(summary["num_mixtures"])]
    cells += [_mean_sd(summary, "si_snr"), _mean_sd(summary, "si_snri")]
    cells += [_mean_sd(summary, f"si_snri_spk{n + 1}") for n in range(num_sources)]
    return "| " + " | ".join(cells) + " |"
