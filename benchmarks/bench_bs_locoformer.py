#!/usr/bin/env python3
"""CPU inference cost of BS-Locoformer against BS-RoFormer and HTDemucs.

Side by side in one run, on one clip of stereo 44.1 kHz audio (30 s by default,
synthetic: every model has random weights, so the content does not matter):

* **ours**: the small, medium and large BS-Locoformer (``BS_LOCOFORMER_SIZES``, 4 stems,
  stereo) with ESPnet's STFT encoder and decoder (n_fft 2048, hop 512), the whole clip
  in one pass;
* **bs_roformer**: lucidrains' ``BSRoformer`` (PyPI ``bs-roformer``), one per size of
  ours, with as many layers as ours (one time and one frequency transformer each, plain
  residuals) and the width whose parameter count is nearest to ours; the whole clip in
  one pass;
* **htdemucs**: demucs' ``HTDemucs`` (default constructor, 4 sources) through
  ``demucs.apply.apply_model`` with its defaults (segments of the model's length,
  overlap 0.25, ``shifts=1``): HTDemucs cannot take a 30 s clip in one pass.

Each model runs in a process of its own (so that the peak resident memory,
``ru_maxrss``, is that model's), with the same number of torch threads, inference only
(``torch.inference_mode``), after one warm-up pass on a 2 s clip. Per model:

* wall and CPU time (``time.process_time``) per second of audio;
* peak resident memory of the process and its resident memory before the timed pass;
* FLOPs per second of audio, counted with ``torch.utils.flop_counter.FlopCounterMode``
  (matrix products, convolutions and attention; element-wise work is not counted);
  ours and BS-RoFormer are counted at the same length on fake tensors (shapes, no
  data), HTDemucs on one real segment, times the number of segments the timed
  ``apply_model`` call ran;
* the achieved throughput, counted FLOPs / CPU time, as a fraction of the fp32 matrix
  product throughput measured in the same process just before (2048 × 2048 products).

The machine these numbers come from is shared: CPU time is the figure to compare,
wall time depends on the load (``os.getloadavg`` is printed before and after).

bs-roformer and demucs are not dependencies of espnet2_ext; they may live in another
virtual environment (give its interpreter with ``--other_python``)::

    python3.11 -m venv /tmp/benchvenv
    /tmp/benchvenv/bin/pip install torch==2.13.0 bs-roformer demucs
    .venv/bin/python benchmarks/bench_bs_locoformer.py \\
        --other_python /tmp/benchvenv/bin/python --threads 1 \\
        --json exp/bench_bs_locoformer.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from memory_cap import limit_memory

RATE = 44100
STEMS = ["drums", "bass", "other", "vocals"]
SIZES = ("small", "medium", "large")
#: Layers of our sizes (BS_LOCOFORMER_SIZES; repeated so the workers for the other
#: models need not import espnet2_ext).
OUR_LAYERS = {"small": 4, "medium": 6, "large": 9}
RESULT_TAG = "RESULT "


# --------------------------------------------------------------------------- worker
def _rss_mb() -> float:
    """Resident memory of this process now (MB)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def matmul_gflops(n: int = 2048, repeats: int = 5) -> Dict[str, float]:
    """fp32 matrix product throughput of this process: best of ``repeats``."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best_cpu = best_wall = math.inf
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        a @ b
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    flops = 2 * n**3
    return {"cpu": flops / best_cpu / 1e9, "wall": flops / best_wall / 1e9}


def flop_counter():
    """A FlopCounterMode that also counts the CPU flash-attention kernel."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_flash(query, key, value, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query, key, value)

    return FlopCounterMode(
        display=False,
        custom_mapping={
            torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_flash
        },
    )


def fake_mode():
    """Tensors with shapes and devices but no data: FLOPs of a long clip for free."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    return FakeTensorMode(allow_non_fake_inputs=True)


def test_audio(seconds: float, seed: int = 0):
    """[1, 2, samples]: stereo noise with a slow level envelope, peak about 0.5."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n = int(round(seconds * RATE))
    t = torch.arange(n) / RATE
    envelope = 0.6 + 0.4 * torch.sin(2 * math.pi * 0.5 * t)
    return 0.15 * envelope * torch.randn(1, 2, n, generator=g)


def build_ours(size: str):
    """(model parts, run(audio [1, 2, n]) → stems, meta FLOP count(n))."""
    import torch
    from espnet2.enh.decoder.stft_decoder import STFTDecoder
    from espnet2.enh.encoder.stft_encoder import STFTEncoder

    from espnet2_ext.enh.separator.bs_locoformer_separator import (
        BS_LOCOFORMER_SIZES,
        BSLocoformerSeparator,
    )

    stft = dict(n_fft=2048, hop_length=512, window="hann", default_fs=RATE)

    def make():
        encoder, decoder = STFTEncoder(**stft), STFTDecoder(**stft)
        separator = BSLocoformerSeparator(
            num_spk=len(STEMS), num_channels=2, **BS_LOCOFORMER_SIZES[size]
        )
        return encoder, separator, decoder

    encoder, separator, decoder = make()
    separator.eval()

    def run(audio):
        wav = audio.transpose(1, 2)  # ESPnet's layout [B, samples, C]
        lens = torch.full((wav.shape[0],), wav.shape[1])
        spec, flens = encoder(wav, lens)
        masked, _, _ = separator(spec, flens)
        return [decoder(s, lens)[0] for s in masked]

    def count(n_samples: int) -> int:
        frames = n_samples // stft["hop_length"] + 1
        with fake_mode():
            fake_separator = make()[1].eval()
            spec = torch.empty(1, frames, 2, 1025, dtype=torch.complex64)
            with torch.inference_mode(), flop_counter() as counter:
                fake_separator(spec, torch.tensor([frames]))
        return counter.get_total_flops()  # the STFTs (FFTs) are not counted

    params = sum(p.numel() for p in separator.parameters())
    return params, run, count, "whole clip in one pass"


def make_roformer(size: str, width: int):
    """BSRoformer with as many layers as our ``size``, of width ``width``."""
    from bs_roformer import BSRoformer

    return BSRoformer(
        dim=width,
        depth=OUR_LAYERS[size],
        stereo=True,
        num_stems=len(STEMS),
        time_transformer_depth=1,
        freq_transformer_depth=1,
        num_residual_streams=1,  # plain residuals, as in the BS-RoFormer paper
    )


def build_bs_roformer(size: str, target_params: int, chunk_seconds: float = 0.0):
    import torch

    counts = {}
    for width in range(32, 513, 8):
        with torch.device("meta"):
            model = make_roformer(size, width)
        counts[width] = sum(p.numel() for p in model.parameters())
    dim = min(counts, key=lambda w: abs(counts[w] - target_params))
    model = make_roformer(size, dim).eval()

    chunk = int(round(chunk_seconds * RATE)) or None

    def pieces(n_samples: int) -> List[int]:
        if chunk is None:
            return [n_samples]
        return [min(chunk, n_samples - start) for start in range(0, n_samples, chunk)]

    def run(audio):  # → [B, N, 2, samples]; chunks back to back, no overlap
        starts = [0] + list(itertools.accumulate(pieces(audio.shape[-1])))
        return torch.cat(
            [model(audio[..., a:b]) for a, b in zip(starts[:-1], starts[1:])], dim=-1
        )

    def count(n_samples: int) -> int:
        lengths = pieces(n_samples)
        total = 0
        with fake_mode():
            fake_model = make_roformer(size, dim).eval()
            for length in set(lengths):
                audio = torch.empty(1, 2, length)
                with torch.inference_mode(), flop_counter() as counter:
                    fake_model(audio)
                total += counter.get_total_flops() * lengths.count(length)
        return total

    params = sum(p.numel() for p in model.parameters())
    how = f"{chunk_seconds:g} s chunks" if chunk else "whole clip in one pass"
    return params, run, count, f"dim {dim}, {how}"


def build_htdemucs():
    import torch
    from demucs.apply import apply_model
    from demucs.htdemucs import HTDemucs

    model = HTDemucs(sources=STEMS, audio_channels=2, samplerate=RATE).eval()
    overlap = 0.25
    segment = float(model.segment)
    calls = []  # segment lengths the model was called with (apply_model pads each)
    model.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape))

    def run(audio):
        calls.clear()
        return apply_model(model, audio, shifts=1, split=True, overlap=overlap)

    def count(n_samples: int) -> int:
        # the calls of the last run (its random shift decides how many segments)
        # (counted on real data: HTDemucs has data-dependent shapes)
        shapes = list(calls)
        total = 0
        with torch.inference_mode():
            for shape in set(shapes):
                with flop_counter() as counter:
                    model(0.1 * torch.randn(shape))
                total += counter.get_total_flops() * shapes.count(shape)
        return total

    params = sum(p.numel() for p in model.parameters())
    settings = f"apply_model: {segment:.2f} s segments, overlap {overlap}, shifts 1"
    return params, run, count, settings


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cap_gb = limit_memory(args.max_memory_gb)
    matmul = matmul_gflops()
    if args.model == "ours":
        params, run, count, settings = build_ours(args.size)
    elif args.model == "bs_roformer":
        params, run, count, settings = build_bs_roformer(
            args.size, args.target_params, args.roformer_chunk_seconds
        )
    elif args.model == "htdemucs":
        params, run, count, settings = build_htdemucs()
    else:
        raise ValueError(f"unknown model {args.model!r}")

    audio = test_audio(args.seconds)
    with torch.inference_mode():
        run(test_audio(2.0, seed=1))  # warm-up: kernels, allocator
        rss_before = _rss_mb()
        c0, w0 = time.process_time(), time.perf_counter()
        out = run(audio)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    peak = _peak_rss_mb()
    n_out = len(out) if isinstance(out, list) else out.shape[1]
    flops = count(audio.shape[-1])
    result = dict(
        model=args.model,
        size=args.size,
        settings=settings,
        params=params,
        outputs=n_out,
        seconds=args.seconds,
        threads=args.threads,
        cpu_s=cpu,
        wall_s=wall,
        rss_before_mb=rss_before,
        peak_rss_mb=peak,
        flops=flops,
        matmul_gflops_cpu=matmul["cpu"],
        matmul_gflops_wall=matmul["wall"],
        memory_cap_gb=cap_gb,
    )
    print(RESULT_TAG + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- driver
def run_worker(python: str, argv: List[str], timeout: float) -> Optional[Dict]:
    cmd = [python, str(Path(__file__).resolve()), "--worker", *argv]
    print("$ " + " ".join(cmd), flush=True)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        print(f"  timed out after {timeout:.0f} s", flush=True)
        return None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG) :])
            print(
                f"  cpu {result['cpu_s']:.1f} s, wall {result['wall_s']:.1f} s, "
                f"peak {result['peak_rss_mb']:.0f} MB",
                flush=True,
            )
            return result
    print(f"  failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", flush=True)
    return None


def table(results: List[Dict]) -> str:
    head = (
        "| model | params | settings | CPU s / audio s | wall s / audio s | "
        "peak RSS | RSS before | GFLOP / audio s | achieved GFLOP/s (CPU) | "
        "matmul GFLOP/s | fraction |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in results:
        achieved = r["flops"] / r["cpu_s"] / 1e9
        name = r["model"] + (f" {r['size']}" if r["size"] else "")
        lines.append(
            f"| {name} | {r['params'] / 1e6:.1f} M | {r['settings']} | "
            f"{r['cpu_s'] / r['seconds']:.2f} | {r['wall_s'] / r['seconds']:.2f} | "
            f"{r['peak_rss_mb']:.0f} MB | {r['rss_before_mb']:.0f} MB | "
            f"{r['flops'] / r['seconds'] / 1e9:.1f} | {achieved:.1f} | "
            f"{r['matmul_gflops_cpu']:.1f} | {achieved / r['matmul_gflops_cpu']:.2f} |"
        )
    return "\n".join(lines)


def ratios(results: List[Dict]) -> str:
    by_key = {(r["model"], r["size"]): r for r in results}
    lines = [
        "| ours | against | CPU time ratio | wall time ratio | peak RSS ratio | "
        "FLOP ratio |",
        "|---|---|---|---|---|---|",
    ]
    for size in SIZES:
        ours = by_key.get(("ours", size))
        if ours is None:
            continue
        for key in (("bs_roformer", size), ("htdemucs", None)):
            other = by_key.get(key)
            if other is None:
                continue
            name = key[0] + (f" ({size}-matched)" if key[1] else "")
            lines.append(
                f"| {size} | {name} | {ours['cpu_s'] / other['cpu_s']:.2f} | "
                f"{ours['wall_s'] / other['wall_s']:.2f} | "
                f"{ours['peak_rss_mb'] / other['peak_rss_mb']:.2f} | "
                f"{ours['flops'] / other['flops']:.2f} |"
            )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="clip length")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--sizes", nargs="+", default=list(SIZES), choices=SIZES, help="our sizes"
    )
    parser.add_argument(
        "--others",
        nargs="*",
        default=["bs_roformer", "htdemucs"],
        choices=["bs_roformer", "htdemucs"],
        help="comparison models (none: ours only)",
    )
    parser.add_argument(
        "--other_python",
        default=sys.executable,
        help="interpreter with bs-roformer and demucs installed",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds per model"
    )
    parser.add_argument(
        "--max_memory_gb",
        type=float,
        default=12.0,
        help="address-space cap per model process (also at most what the machine "
        "has available less 1 GiB): a model that needs more fails cleanly",
    )
    parser.add_argument(
        "--roformer_chunk_seconds",
        type=float,
        default=0.0,
        help="run BS-RoFormer on back-to-back chunks of this length (0: one pass)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    # worker mode (internal)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--size", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--target_params", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return

    repo = Path(__file__).resolve().parents[1]
    common = ["--seconds", str(args.seconds), "--threads", str(args.threads)]
    common += ["--max_memory_gb", str(args.max_memory_gb)]
    print(f"load average before: {os.getloadavg()}", flush=True)
    results: List[Dict] = []
    for size in args.sizes:
        ours = run_worker(
            sys.executable, ["--model", "ours", "--size", size, *common], args.timeout
        )
        if ours is not None:
            results.append(ours)
        if ours is not None and "bs_roformer" in args.others:
            argv_other = ["--model", "bs_roformer", "--size", size]
            argv_other += ["--target_params", str(ours["params"]), *common]
            argv_other += ["--roformer_chunk_seconds", str(args.roformer_chunk_seconds)]
            other = run_worker(args.other_python, argv_other, args.timeout)
            if other is not None:
                results.append(other)
    if "htdemucs" in args.others:
        other = run_worker(
            args.other_python, ["--model", "htdemucs", *common], args.timeout
        )
        if other is not None:
            results.append(other)
    print(f"load average after: {os.getloadavg()}", flush=True)
    print()
    print(
        f"{args.seconds:g} s of stereo 44.1 kHz audio, {args.threads} torch "
        f"thread(s), inference (no grad), random weights; repository {repo}"
    )
    print(table(results))
    print()
    print(ratios(results))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
