#!/usr/bin/env python3
"""BSSEval v4 per window: museval vs :mod:`espnet2_ext.metrics.bsseval`, side by side.

Songs of 4 stereo stems at 44.1 kHz, scored on museval's MUSDB windows (1 s, hop 1 s)
by ``museval.evaluate(..., mode="v4")`` and by ours on the same arrays, at 1 and 2
threads (BLAS/OpenMP pools through threadpoolctl, and ``torch.set_num_threads``). The
stems are synthetic but music-like (harmonic notes with decays, a bass line, noise
bursts for drums, a vocal-like vibrato line, stereo panning, 16-bit quantisation as in
a WAV file); the estimates are a plausible separation (a short filter, leakage from the
other stems, noise).

Reported per song and thread count: CPU seconds of this process (all threads; the
steadier number on a shared machine) and wall seconds, the ratios museval / ours, and
the largest difference between the two over every finite window value of SDR, ISR,
SIR and SAR (in dB), plus the largest difference of the per-stem median SDR (cSDR).
With ``--device cuda`` ours also runs on the GPU (museval has no GPU path).

Usage::

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/bench_bsseval.py
    .venv/bin/python benchmarks/bench_bsseval.py --seconds 30 --threads 1 --device cuda
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import warnings
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch
from scipy.signal import lfilter

from espnet2_ext.metrics.bsseval import evaluate

RATE = 44100
METRICS = ("SDR", "ISR", "SIR", "SAR")


def make_song(seconds: float, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """references, estimates [4, T, 2]: vocals, bass, drums, other."""
    rng = np.random.default_rng(seed)
    nsamples = int(seconds * RATE)
    t = np.arange(nsamples) / RATE
    beat = 0.5  # seconds
    position = (t % beat) / beat

    def notes(base: float, step: float, harmonics: int, decay: float) -> np.ndarray:
        degree = rng.integers(0, 8, size=int(seconds / step) + 1)
        f0 = base * 2 ** (np.array([0, 2, 4, 5, 7, 9, 11, 12])[degree] / 12)
        f0 = np.repeat(f0, int(step * RATE))[:nsamples]
        phase = 2 * np.pi * np.cumsum(f0) / RATE
        tone = sum(np.sin(h * phase) / h**1.3 for h in range(1, harmonics + 1))
        return tone * np.exp(-decay * ((t % step) / step))

    vibrato = 1 + 0.01 * np.sin(2 * np.pi * 5.5 * t)
    vocal_f0 = np.repeat(220 * 2 ** (rng.integers(0, 12, int(seconds) + 1) / 12), RATE)[
        :nsamples
    ]
    vocal = sum(
        np.sin(2 * np.pi * h * np.cumsum(vocal_f0 * vibrato) / RATE) / h**2
        for h in range(1, 12)
    ) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.25 * t) ** 2)
    bass = notes(55.0, 2 * beat, 4, 2.0)
    kick = np.sin(2 * np.pi * 60 * t * (1 - 0.5 * position)) * np.exp(-12 * position)
    hats = lfilter([1, -1], [1], rng.standard_normal(nsamples)) * np.exp(
        -30 * ((t % (beat / 2)) / (beat / 2))
    )
    drums = kick + 0.3 * hats
    other = notes(196.0, beat, 8, 3.0) + 0.5 * notes(330.0, beat / 2, 6, 4.0)
    pans = ((0.9, 0.9), (1.0, 0.8), (0.7, 1.0), (1.0, 0.5))
    references = np.stack(
        [
            0.2 * np.outer(stem, pan)
            for stem, pan in zip((vocal, bass, drums, other), pans)
        ]
    )
    references = np.round(references * 32768) / 32768  # 16-bit PCM, as read from a WAV
    estimates = lfilter([0.85, 0.1, 0.05], [1.0], references, axis=1)
    estimates += 0.08 * np.roll(references, 1, axis=0)  # leakage between stems
    estimates += 0.003 * rng.standard_normal(references.shape)
    return references, estimates


def timed(function: Callable, *args, sync: Callable = lambda: None, **kwargs):
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    sync()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def differences(ours, theirs) -> Dict[str, float]:
    out = {}
    for name, mine, reference in zip(METRICS, ours, theirs):
        same = np.array_equal(np.isnan(mine), np.isnan(reference)) and np.array_equal(
            np.isinf(mine), np.isinf(reference)
        )
        finite = np.isfinite(reference) & np.isfinite(mine)
        gap = np.abs(mine[finite] - reference[finite]).max() if finite.any() else 0.0
        out[name] = gap if same else float("inf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out["cSDR"] = float(
            np.nanmax(np.abs(np.nanmedian(ours[0], 1) - np.nanmedian(theirs[0], 1)))
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[30.0, 240.0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (ours only)")
    parser.add_argument("--skip-museval", action="store_true", help="ours only")
    args = parser.parse_args()

    from importlib.metadata import version

    import museval
    from threadpoolctl import threadpool_limits

    print(f"load average at start: {open('/proc/loadavg').read().split()[:3]}")
    print(f"torch {torch.__version__}, device {args.device}, {os.cpu_count()} CPUs")
    # one-time initialisation (imports, FFT plans, BLAS) outside the timings
    warm_refs, warm_ests = make_song(2.0, seed=99)
    evaluate(warm_refs, warm_ests, device=args.device)
    if not args.skip_museval:
        museval.evaluate(warm_refs, warm_ests)

    timings: List[Tuple] = []  # (song s, threads, ours on, museval cpu, wall, ours..)
    gaps: List[Tuple] = []  # (song s, threads, ours on, {metric: max |diff| dB})
    for seconds in args.seconds:
        references, estimates = make_song(seconds)
        for threads in args.threads:
            torch.set_num_threads(threads)
            with threadpool_limits(limits=threads):
                theirs, m_wall, m_cpu = None, float("nan"), float("nan")
                if not args.skip_museval:
                    theirs, m_wall, m_cpu = timed(
                        museval.evaluate, references, estimates, RATE, RATE
                    )
                devices = ["cpu"] + ([args.device] if args.device != "cpu" else [])
                for device in devices:
                    sync = torch.cuda.synchronize if device != "cpu" else lambda: None
                    ours, o_wall, o_cpu = timed(
                        evaluate,
                        references,
                        estimates,
                        RATE,
                        RATE,
                        device=device,
                        sync=sync,
                    )
                    timings.append(
                        (seconds, threads, device, m_cpu, m_wall, o_cpu, o_wall)
                    )
                    if theirs is not None:
                        gaps.append(
                            (seconds, threads, device, differences(ours, theirs))
                        )
            print(f"  done: {seconds:.0f} s song, {threads} thread(s)", flush=True)

    print(f"\n4 stereo stems, {RATE} Hz, 1 s windows; museval {version('museval')}")
    print(
        f"{'song':>6} {'threads':>7} {'ours on':>7} | {'museval':>15} | {'ours':>15} |"
        f" {'museval / ours':>15}"
    )
    print(
        f"{'':>6} {'':>7} {'':>7} | {'CPU s':>7} {'wall s':>7} | {'CPU s':>7} "
        f"{'wall s':>7} | {'CPU':>7} {'wall':>7}"
    )
    for seconds, threads, device, m_cpu, m_wall, o_cpu, o_wall in timings:
        print(
            f"{seconds:>5.0f}s {threads:>7} {device:>7} | {m_cpu:>7.2f} {m_wall:>7.2f}"
            f" | {o_cpu:>7.2f} {o_wall:>7.2f} | {m_cpu / o_cpu:>6.1f}x"
            f" {m_wall / o_wall:>6.1f}x"
        )
    if gaps:
        names = METRICS + ("cSDR",)
        print(
            "\nlargest |ours - museval| over finite window values (dB; inf: the NaN or"
        )
        print("inf windows differ), and over the per-stem median SDR (cSDR):")
        print(
            f"{'song':>6} {'threads':>7} {'ours on':>7} | "
            + " ".join(f"{m:>8}" for m in names)
        )
        for seconds, threads, device, gap in gaps:
            print(
                f"{seconds:>5.0f}s {threads:>7} {device:>7} | "
                + " ".join(f"{gap[m]:>8.1e}" for m in names)
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\npeak resident memory of this process: {peak:.1f} GiB")
    print(f"load average at end: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
