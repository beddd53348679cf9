#!/usr/bin/env python3
"""Time per batch of the MixIT loss wrappers: ours (efficient, exact) vs ESPnet's.

ESPnet's ``MixITSolver`` remixes the waveforms for all ``M^N`` assignments at once
(an einsum output of ``M^N x B x M x T`` floats) and calls the criterion ``M^N x M``
times; ours solves one least-squares problem (efficient) or searches the ``M^N``
assignments on Gram matrices (exact). All three use the same criterion
(thresholded SNR) and see the same batch: ``M`` mixtures (2 unless a case says
otherwise), each the sum of a
random subset of ``N`` random outputs plus noise. Timed: one forward pass of the
wrapper with gradients enabled on the outputs, median over repeats after one
warm-up (each wrapper gets about ``--budget`` seconds). ESPnet's wrapper only runs for
``N = 2M`` (it uses ``ref[:N // 2]``); the remix-based searches are skipped where
they would touch more than ``--remix_max_gsamples`` billion samples (ESPnet's
einsum holds all of them at once: 4 bytes each).

Usage::

    python benchmarks/bench_mixit_solver.py                 # 6 s and 0.1 s batches
    python benchmarks/bench_mixit_solver.py --seconds 6 --batch 8 --threads 1 \\
        --cases 4x2 8x2 12x2 6x3
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, List, Optional, Tuple

import torch
from espnet2.enh.loss.criterions.time_domain import TimeDomainLoss
from espnet2.enh.loss.wrappers.mixit_solver import MixITSolver

from espnet2_ext.constants import MUSIC_SAMPLE_RATE
from espnet2_ext.enh.loss.criterions.thresholded_snr import ThresholdedSNRLoss
from espnet2_ext.enh.loss.wrappers.efficient_mixit_solver import EfficientMixITSolver


class RemixSearchSNR(TimeDomainLoss):
    """The thresholded SNR behind a plain ``forward`` (no ``from_energies``): our exact
    mode then remixes the waveforms for every assignment, i.e. runs ESPnet's
    algorithm (in chunks) at any ``M``, which ESPnet's own wrapper cannot do for
    ``N != 2M``."""

    def __init__(self):
        super().__init__("thres_snr_loss")
        self.inner = ThresholdedSNRLoss()

    def forward(self, ref: torch.Tensor, inf: torch.Tensor) -> torch.Tensor:
        return self.inner(ref, inf)


def make_batch(batch: int, num_out: int, num_mix: int, length: int, seed: int = 0):
    """Random outputs; each mixture the sum of its (random) outputs plus noise."""
    g = torch.Generator().manual_seed(seed)
    est = torch.randn(batch, num_out, length, generator=g)
    assignment = torch.randint(0, num_mix, (batch, num_out), generator=g)
    mixing = torch.nn.functional.one_hot(assignment, num_mix).transpose(1, 2)
    ref = torch.einsum("bmn,bnt->bmt", mixing.float(), est)
    ref = ref + 0.3 * torch.randn(ref.shape, generator=g)
    return ref, est


def time_call(fn: Callable[[], object], budget: float, max_repeats: int = 20) -> float:
    """Median seconds of ``fn`` after one warm-up, within ``budget`` seconds."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    spent = first
    while spent < budget and len(times) < max_repeats:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
    return statistics.median(times) if times else first


def _ms(t: Optional[float]) -> str:
    return f"{1e3 * t:.1f}" if t is not None else "-"


def run(
    seconds: float,
    batch: int,
    cases: List[Tuple[int, int]],
    budget: float,
    remix_max_gsamples: float,
) -> None:
    length = int(round(seconds * MUSIC_SAMPLE_RATE))
    print(
        f"\n## batch {batch}, {seconds:g} s mono at {MUSIC_SAMPLE_RATE} Hz "
        f"({length} samples), {torch.get_num_threads()} thread(s); times in ms"
    )
    print(
        "| N | M | M^N | ours efficient | ours exact (Gram) | exhaustive remix "
        "(ESPnet's algorithm, chunked) | ESPnet MixITSolver | ESPnet / efficient "
        "| ESPnet = ours |"
    )
    print("|" + "---|" * 9)
    criterion = ThresholdedSNRLoss()
    for num_out, num_mix in cases:
        ref, est = make_batch(batch, num_out, num_mix, length)
        est.requires_grad_(True)
        refs, ests = list(ref.unbind(1)), list(est.unbind(1))
        size = num_mix**num_out
        efficient = EfficientMixITSolver(criterion, mode="efficient")
        exact = EfficientMixITSolver(criterion, mode="exact")
        t_eff = time_call(lambda: efficient(refs, ests), budget)
        t_exact = time_call(lambda: exact(refs, ests), budget)

        # remixing every assignment touches size * B * M * T samples
        gsamples = size * batch * num_mix * length / 1e9
        if gsamples <= remix_max_gsamples:
            remix = EfficientMixITSolver(RemixSearchSNR(), mode="exact")
            remix_cell = _ms(time_call(lambda: remix(refs, ests), budget))
        else:
            remix_cell = f"skipped ({gsamples:.0f} G samples)"

        if num_out != 2 * num_mix:
            espnet_cell, ratio, same = "cannot run (needs N = 2M)", "-", "-"
        elif gsamples <= remix_max_gsamples:
            espnet = MixITSolver(criterion)
            t_esp = time_call(lambda: espnet(refs, ests), budget)
            espnet_cell, ratio = _ms(t_esp), f"{t_esp / t_eff:.1f}x"
            theirs = espnet(refs, ests)
            ours = exact(refs, ests)
            same = str(
                bool(torch.equal(theirs[2]["perm"], ours[2]["perm"]))
                and bool(torch.allclose(theirs[0], ours[0]))
            )
        else:
            gb = gsamples * 4
            espnet_cell, ratio, same = f"skipped (remix tensor {gb:.0f} GB)", "-", "-"
        print(
            f"| {num_out} | {num_mix} | {size} | {_ms(t_eff)} | {_ms(t_exact)} "
            f"| {remix_cell} | {espnet_cell} | {ratio} | {same} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[6.0, 0.1])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["4x2", "8x2", "12x2", "6x3"],
        help="N x M (outputs x mixtures)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds per wrapper")
    parser.add_argument(
        "--remix_max_gsamples",
        type=float,
        default=0.3,
        help="skip remix-based searches above this many 1e9 samples (M^N·B·M·T)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = [tuple(int(v) for v in c.lower().split("x")) for c in args.cases]
    for seconds in args.seconds:
        run(seconds, args.batch, cases, args.budget, args.remix_max_gsamples)


if __name__ == "__main__":
    main()
