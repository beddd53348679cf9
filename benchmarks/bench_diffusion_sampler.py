#!/usr/bin/env python3
"""Seconds per guided sampling step and peak memory of diffusion-prior separation.

One step = every source's prior evaluated on its state, the reconstruction loss, the
gradient through the denoisers (backward), and the hybrid update: what each of the 200
steps of the paper's sampler costs. Every configuration runs in a fresh subprocess so
its peak memory is its own: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the
process's peak resident set (``ru_maxrss``) and the resident set before the first step
(priors built, mixture made). Wall-clock and CPU seconds are both reported: on a shared
machine the CPU time is the steadier figure.

    python benchmarks/bench_diffusion_sampler.py   # tiny and paper priors, 2 and 3 sources
    python benchmarks/bench_diffusion_sampler.py --sizes tiny --steps 5 --device cuda
    python benchmarks/bench_diffusion_sampler.py --sizes synth2 --sources 2 --fs 8000 \
        --seconds 1 --steps 10

Each child's address space is capped at the memory the machine has available (less
1 GiB), so a configuration that does not fit is reported as such instead of being
killed by the OOM killer.

Priors are randomly initialised (the cost does not depend on the weights); the sources
share one prior object, as when one prior serves several sources, so they are denoised
in one batch.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from memory_cap import limit_memory

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "tiny": ROOT / "conf" / "diffusion" / "prior_tiny.yaml",
    "paper": ROOT / "conf" / "diffusion" / "prior_paper.yaml",
    # the CPU-sized prior of the tones / bursts evidence (run with --fs 8000 --seconds 1)
    "synth2": ROOT / "egs2" / "synth2" / "diffsep1" / "conf" / "prior.yaml",
}


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_one(
    size: str,
    sources: int,
    seconds: float,
    fs: int,
    steps: int,
    warmup: int,
    device: str,
    threads: int,
) -> dict:
    import torch
    import yaml

    from espnet2_ext.diffusion.prior_model import DiffusionPriorModel
    from espnet2_ext.diffusion.sampling import DiffusionPriorSampler
    from espnet2_ext.diffusion.tf_unet import TFAttentionUNet

    torch.set_num_threads(threads)
    cap_gb = limit_memory()
    conf = yaml.safe_load(CONFIGS[size].read_text())
    torch.manual_seed(0)
    network = TFAttentionUNet(**conf["network_conf"])
    model = DiffusionPriorModel(network, **conf["model_conf"])
    prior = model.as_denoiser().to(device)
    del model
    # the sampling copy holds the (averaged) weights as buffers
    num_params = sum(
        b.numel() for b in prior.network.buffers() if b.is_floating_point()
    )
    sampler = DiffusionPriorSampler([prior] * sources)
    gen = torch.Generator(device=device).manual_seed(0)
    mixture = 0.1 * torch.randn(1, int(seconds * fs), generator=gen, device=device)
    labels = [None] * sources
    x = sampler.init(mixture, sources, sampler.schedule, gen)
    position = len(sampler.reverse) - 1
    base_rss = _rss_mib()  # priors built, mixture made: what the steps add comes next
    for _ in range(warmup):
        sampler.step(x, position, mixture, labels, gen)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, cpu_times = [], []
    for k in range(steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        x, _, _, _ = sampler.step(x, position - k, mixture, labels, gen)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    result = {
        "size": size,
        "sources": sources,
        "seconds": seconds,
        "network_parameters": num_params,
        "device": device,
        "threads": threads,
        "timed_steps": steps,
        "warmup_steps": warmup,
        "sec_per_step": sum(times) / len(times),
        "sec_per_step_min": min(times),
        "cpu_sec_per_step": sum(cpu_times) / len(cpu_times),
        "memory_cap_gib": cap_gb,
    }
    if device.startswith("cuda"):
        result["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result["peak_rss_mib"] = peak_kib / 1024
        result["rss_before_steps_mib"] = base_rss
    return result


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--sizes", nargs="+", default=["tiny", "paper"], choices=sorted(CONFIGS)
    )
    p.add_argument("--sources", nargs="+", type=int, default=[2, 3])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--fs", type=int, default=16000)
    p.add_argument("--steps", type=int, default=3, help="timed steps (tiny)")
    p.add_argument("--paper_steps", type=int, default=1, help="timed steps (paper)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (tiny)")
    p.add_argument("--paper_warmup", type=int, default=0, help="untimed (paper)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="also write JSON results")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child mode
    args = p.parse_args()

    if args.one:
        size, sources = args.one.split(":")
        paper = size == "paper"
        print(
            json.dumps(
                run_one(
                    size,
                    int(sources),
                    args.seconds,
                    args.fs,
                    args.paper_steps if paper else args.steps,
                    args.paper_warmup if paper else args.warmup,
                    args.device,
                    args.threads,
                )
            )
        )
        return

    results = []
    for size in args.sizes:
        for sources in args.sources:
            cmd = [sys.executable, __file__, "--one", f"{size}:{sources}"]
            for name in (
                "seconds",
                "fs",
                "steps",
                "paper_steps",
                "warmup",
                "paper_warmup",
                "device",
                "threads",
            ):
                cmd += [f"--{name}", str(getattr(args, name))]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode == 0:
                results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            else:
                why = (done.stderr.strip().splitlines() or ["no message"])[-1]
                if "memory" in why.lower() or "alloc" in why.lower():
                    why = f"did not fit in memory ({why[:120]})"
                results.append({"size": size, "sources": sources, "error": why})
            print(json.dumps(results[-1]), flush=True)
    mem = "peak RSS (MiB) [before steps]"
    if args.device.startswith("cuda"):
        mem = "peak GPU memory (MiB)"
    print(
        f"\n| prior | params | sources | wall s/step ({args.seconds:g} s mix) | "
        f"CPU s/step | {mem} |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['size']} | | {r['sources']} | {r['error']} | | |")
            continue
        memory = (
            f"{r['peak_memory_mib']:.0f}"
            if "peak_memory_mib" in r
            else f"{r['peak_rss_mib']:.0f} [{r['rss_before_steps_mib']:.0f}]"
        )
        params = r["network_parameters"] / 1e6
        print(
            f"| {r['size']} | {params:.2f} M | {r['sources']} | "
            f"{r['sec_per_step']:.2f} | {r['cpu_sec_per_step']:.2f} | {memory} |"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
