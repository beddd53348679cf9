#!/usr/bin/env python3
"""Benchmark of multi-step inference (espnet2_ext.enh.inference.multistep).

Three measurements, printed as tables:

1. **Batched candidates against loops.** Wall time of one multi-step search (oracle SNR)
   on a small model, with the K candidates of a step in one separator call
   (``candidate_batch`` unset), one call per candidate (``candidate_batch=1``, the loop
   of the authors' scripts), and one call per blended input (a separator that takes one
   signal at a time). The three must give the same estimates; the script checks it.
2. **Peak memory on a long stereo song** (default 5 minutes, 44.1 kHz) composed with the
   chunked overlap-add inference (12 s chunks, 6 s hop), with a cheap separator (a fixed
   FIR filter per stem and channel, 4 stems). Each variant runs in a fresh subprocess; the number is the
   rise of the peak resident memory above the peak after the song and its references
   were created. Memory does not depend on the number of steps, so few steps are run.
3. **Converged stems skipped.** The oracle search at the paper's T = 20, K = 10 with
   ``skip_converged`` off (every candidate of every step recomputed) and on (a stem
   whose channels all kept is not recomputed: its candidates would repeat). The two
   must give the same estimates; the script checks it. Parts 1 and 2 run the full
   search (``skip_converged=False``), so their pass counts are the formula's.

Run from the repository root::

    .venv/bin/python benchmarks/bench_multistep.py            # both parts
    .venv/bin/python benchmarks/bench_multistep.py --skip_memory
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch
from einops import rearrange

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from espnet2_ext.constants import MUSIC_SAMPLE_RATE  # noqa: E402
from espnet2_ext.enh.inference.chunking import (  # noqa: E402
    DEFAULT_CHUNK_SIZE,
    DEFAULT_HOP_SIZE,
    apply_chunked,
    chunk_starts,
)
from espnet2_ext.enh.inference.espnet_adapter import (  # noqa: E402
    espnet_model_separate_fn,
)
from espnet2_ext.enh.inference.multistep import (  # noqa: E402
    MultiStepSeparator,
    RatioSchedule,
)

N_STEMS = 4


# ----------------------------------------------------------------------------- models
def build_bs_locoformer() -> Callable[[torch.Tensor], torch.Tensor]:
    """A small BS-Locoformer (native stereo, 4 stems) at 44.1 kHz, random weights."""
    from espnet2.enh.decoder.stft_decoder import STFTDecoder
    from espnet2.enh.encoder.stft_encoder import STFTEncoder
    from espnet2.enh.espnet_model import ESPnetEnhancementModel

    from espnet2_ext.enh.separator.bs_locoformer_separator import BSLocoformerSeparator

    separator = BSLocoformerSeparator(
        num_spk=N_STEMS,
        num_channels=2,
        n_layers=1,
        emb_dim=16,
        ffn_hidden_dim=16,
        n_heads=2,
        norm_groups=2,
    )
    model = ESPnetEnhancementModel(
        encoder=STFTEncoder(n_fft=2048, hop_length=512, window="hann"),
        separator=separator,
        decoder=STFTDecoder(n_fft=2048, hop_length=512, window="hann"),
        mask_module=None,
        loss_wrappers=None,
    ).eval()
    return espnet_model_separate_fn(model)


def build_conv_tasnet() -> Callable[[torch.Tensor], torch.Tensor]:
    """A small stock ESPnet Conv-TasNet (mono, channels folded), random weights."""
    from espnet2.tasks.enh import EnhancementTask

    args = EnhancementTask.get_parser().parse_args(
        [
            "--encoder", "conv",
            "--encoder_conf", '{"channel": 64, "kernel_size": 32, "stride": 16}',
            "--decoder", "conv",
            "--decoder_conf", '{"channel": 64, "kernel_size": 32, "stride": 16}',
            "--separator", "tcn",
            "--separator_conf",
            '{"num_spk": 4, "layer": 4, "stack": 1, "bottleneck_dim": 32, '
            '"hidden_dim": 64, "kernel": 3}',
        ]
    )  # fmt: skip
    model = EnhancementTask.build_model(args).eval()
    return espnet_model_separate_fn(model)


MODELS = {"bs_locoformer": build_bs_locoformer, "conv_tasnet": build_conv_tasnet}


class Counted:
    """Counts the calls that reach the separator itself."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        self.fn, self.calls = fn, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.fn(x)


def one_at_a_time(fn: Callable[[torch.Tensor], torch.Tensor]):
    """The same separator, fed one blended input per call (the naive loop)."""

    def separate(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([fn(x[i : i + 1]) for i in range(x.shape[0])], dim=0)

    return separate


class FilterbankSeparator:
    """Cheap 4-stem separator: a fixed random FIR filter (16 taps) per stem and channel.

    Cost and memory are those of its input and output tensors, so the memory measured
    around it is that of the multi-step and chunking layers themselves.
    """

    def __init__(self, taps: int = 16):
        gen = torch.Generator().manual_seed(0)
        self.taps = taps
        # [(c n), 1, taps]: grouped per input channel, N filters each
        self.weight = torch.randn(2 * N_STEMS, 1, taps, generator=gen) / taps

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b, c, length = x.shape
        out = torch.nn.functional.conv1d(
            torch.nn.functional.pad(
                x, (self.taps // 2, self.taps - 1 - self.taps // 2)
            ),
            self.weight.to(x),
            groups=c,
        )  # [b, (c n), L]
        return rearrange(out, "b (c n) l -> b n c l", n=N_STEMS)


# ----------------------------------------------------------------------------- part 1
def bench_batching(args) -> List[Dict]:
    rows = []
    length = int(round(args.seconds * MUSIC_SAMPLE_RATE))
    gen = torch.Generator().manual_seed(0)
    ref = 0.1 * torch.randn(args.batch, N_STEMS, 2, length, generator=gen)
    mix = ref.sum(dim=1)
    for name in args.models:
        torch.manual_seed(0)
        fn = Counted(MODELS[name]())
        variants = {
            "K candidates per call": (fn, None),
            "one call per candidate": (fn, 1),
            "one call per input": (one_at_a_time(fn), 1),
        }
        results = {}
        for variant, (sep, candidate_batch) in variants.items():
            ms = MultiStepSeparator(
                sep,
                steps=args.steps,
                candidates=args.candidates,
                candidate_batch=candidate_batch,
                skip_converged=False,
            )
            best = None
            for _ in range(args.repeat):
                fn.calls = 0
                cpu = time.process_time()
                est, info = ms.separate(mix, ref)
                cpu = time.process_time() - cpu
                timing = (info["seconds"], cpu)
                best = timing if best is None else min(best, timing)
            results[variant] = (est, info, best, fn.calls)
        est0, _, (t0, cpu0), _ = results["K candidates per call"]
        for variant, (est, info, (seconds, cpu), calls) in results.items():
            rows.append(
                {
                    "model": name,
                    "variant": variant,
                    "calls": calls,
                    "passes": info["forward_passes"],
                    "seconds": seconds,
                    "cpu_seconds": cpu,
                    "vs_batched": seconds / t0,
                    "cpu_vs_batched": cpu / cpu0,
                    "max_abs_diff": float((est - est0).abs().max()),
                    "gain_db": float(
                        info["trace"][-1].mean() - info["trace"][0].mean()
                    ),
                }
            )
    return rows


# ----------------------------------------------------------------------------- part 2
def memory_child(variant: str, minutes: float, steps: int, candidates: int) -> Dict:
    """Runs in a fresh process: one chunked whole-song inference, peak RSS rise."""
    torch.set_num_threads(1)
    length = int(round(minutes * 60 * MUSIC_SAMPLE_RATE))
    gen = torch.Generator().manual_seed(0)
    ref = 0.1 * torch.randn(1, N_STEMS, 2, length, generator=gen)
    mix = ref.sum(dim=1)
    separator = FilterbankSeparator()
    separator(mix[..., : 4 * 2048])  # warm up (allocator, FFT plans)
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    aligned = ()
    if variant == "one-step":
        fn = separator
    elif variant.startswith("oracle"):
        batch = None if variant == "oracle, K per call" else 1
        fn = MultiStepSeparator(
            separator,
            steps=steps,
            candidates=candidates,
            candidate_batch=batch,
            skip_converged=False,
        )
        aligned = (ref,)
    elif variant == "schedule":
        schedule = RatioSchedule(
            ratios=[[0.5] * N_STEMS for _ in range(steps)], metric="snr", oracle=True
        )
        fn = MultiStepSeparator(separator, schedule=schedule)
    else:
        raise ValueError(variant)
    start = time.perf_counter()
    out = apply_chunked(
        fn,
        mix,
        chunk_size=DEFAULT_CHUNK_SIZE,
        hop_size=DEFAULT_HOP_SIZE,
        aligned=aligned,
    )
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "variant": variant,
        "seconds": seconds,
        "base_mb": base_kb / 1024,
        "peak_rise_mb": (peak_kb - base_kb) / 1024,
        "output_shape": list(out.shape),
        "chunks": len(chunk_starts(length, DEFAULT_CHUNK_SIZE, DEFAULT_HOP_SIZE)),
    }
    if isinstance(fn, MultiStepSeparator):
        summary = fn.summary()
        result["passes"] = summary["forward_passes"]
        result["label"] = summary["label"]
    else:
        result["passes"] = result["chunks"]
        result["label"] = "one-step"
    return result


def bench_memory(args) -> List[Dict]:
    rows = []
    for variant in ("one-step", "oracle, K per call", "oracle, 1 per call", "schedule"):
        cmd = [
            sys.executable,
            __file__,
            "--_memory_child",
            variant,
            "--song_minutes",
            str(args.song_minutes),
            "--memory_steps",
            str(args.memory_steps),
            "--candidates",
            str(args.candidates),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


# ----------------------------------------------------------------------------- part 3
def bench_skipping(args) -> List[Dict]:
    rows = []
    length = int(round(args.seconds * MUSIC_SAMPLE_RATE))
    gen = torch.Generator().manual_seed(1)
    ref = 0.1 * torch.randn(1, N_STEMS, 2, length, generator=gen)
    mix = ref.sum(dim=1)
    torch.manual_seed(0)
    fn = MODELS["bs_locoformer"]()
    results = {}
    for skip in (False, True):
        ms = MultiStepSeparator(
            fn,
            steps=args.skip_steps,
            candidates=args.candidates,
            candidate_batch=1,
            skip_converged=skip,
        )
        cpu = time.process_time()
        est, info = ms.separate(mix, ref)
        results[skip] = (est, info, time.process_time() - cpu)
    est0, info0, cpu0 = results[False]
    for skip, (est, info, cpu) in results.items():
        rows.append(
            {
                "variant": "converged stems skipped" if skip else "full search",
                "passes": info["forward_passes"],
                "seconds": info["seconds"],
                "cpu_seconds": cpu,
                "cpu_vs_full": cpu / cpu0,
                "max_abs_diff": float((est - est0).abs().max()),
                "gain_db": float(info["trace"][-1].mean() - info["trace"][0].mean()),
            }
        )
    return rows


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=sorted(MODELS), choices=MODELS)
    parser.add_argument("--steps", type=int, default=2, help="T for the timing part")
    parser.add_argument("--candidates", type=int, default=10, help="K")
    parser.add_argument("--seconds", type=float, default=1.0, help="clip length (s)")
    parser.add_argument("--batch", type=int, default=1, help="clips per batch")
    parser.add_argument("--repeat", type=int, default=2, help="timing repeats (min)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--song_minutes", type=float, default=5.0)
    parser.add_argument("--memory_steps", type=int, default=1)
    parser.add_argument("--skip_memory", action="store_true")
    parser.add_argument("--skip_timing", action="store_true")
    parser.add_argument("--skip_skipping", action="store_true", help="no part 3")
    parser.add_argument("--skip_steps", type=int, default=20, help="T of part 3")
    parser.add_argument("--_memory_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._memory_child is not None:
        result = memory_child(
            args._memory_child, args.song_minutes, args.memory_steps, args.candidates
        )
        print(json.dumps(result))
        return
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU")
    if not args.skip_timing:
        print(
            f"\n## Batched candidates vs loops: T={args.steps}, K={args.candidates}, "
            f"{args.batch} x {args.seconds} s stereo at 44.1 kHz, {N_STEMS} stems, "
            "oracle SNR (random weights)"
        )
        header = (
            f"| {'model':<13} | {'variant':<22} | {'calls':>5} | {'passes':>6} | "
            f"{'wall s':>7} | {'wall ratio':>10} | {'CPU s':>7} | {'CPU ratio':>9} | "
            f"{'max abs diff':>12} | {'oracle gain dB':>14} |"
        )
        print(header)
        print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
        for r in bench_batching(args):
            print(
                f"| {r['model']:<13} | {r['variant']:<22} | {r['calls']:>5} | "
                f"{r['passes']:>6} | {r['seconds']:>7.2f} | {r['vs_batched']:>10.2f} | "
                f"{r['cpu_seconds']:>7.2f} | {r['cpu_vs_batched']:>9.2f} | "
                f"{r['max_abs_diff']:>12.1e} | {r['gain_db']:>14.2f} |"
            )
        print(
            "ratios are relative to 'K candidates per call'; wall time is what a user "
            "waits, CPU time is less disturbed by other processes on a shared machine"
        )
    if not args.skip_memory:
        print(
            f"\n## Peak memory: {args.song_minutes:g}-minute stereo song, 44.1 kHz, "
            f"chunks {DEFAULT_CHUNK_SIZE / MUSIC_SAMPLE_RATE:g} s / hop "
            f"{DEFAULT_HOP_SIZE / MUSIC_SAMPLE_RATE:g} s, FIR filterbank separator, "
            f"T={args.memory_steps}, K={args.candidates}"
        )
        header = (
            f"| {'variant':<20} | {'chunks':>6} | {'passes':>6} | {'seconds':>8} | "
            f"{'base MB':>8} | {'peak rise MB':>12} |"
        )
        print(header)
        print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
        for r in bench_memory(args):
            print(
                f"| {r['variant']:<20} | {r['chunks']:>6} | {r['passes']:>6} | "
                f"{r['seconds']:>8.1f} | {r['base_mb']:>8.0f} | "
                f"{r['peak_rise_mb']:>12.0f} |"
            )

    if not args.skip_skipping:
        print(
            f"\n## Converged stems skipped: oracle SNR, T={args.skip_steps}, "
            f"K={args.candidates}, {args.seconds} s stereo, small BS-Locoformer "
            "(random weights)"
        )
        header = (
            f"| {'variant':<23} | {'passes':>6} | {'wall s':>7} | {'CPU s':>7} | "
            f"{'CPU ratio':>9} | {'max abs diff':>12} | {'oracle gain dB':>14} |"
        )
        print(header)
        print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
        for r in bench_skipping(args):
            print(
                f"| {r['variant']:<23} | {r['passes']:>6} | {r['seconds']:>7.2f} | "
                f"{r['cpu_seconds']:>7.2f} | {r['cpu_vs_full']:>9.2f} | "
                f"{r['max_abs_diff']:>12.1e} | {r['gain_db']:>14.2f} |"
            )


if __name__ == "__main__":
    main()
