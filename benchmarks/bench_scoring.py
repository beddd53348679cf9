#!/usr/bin/env python3
"""Scoring one song as ``music_score`` does: ``--scorer museval`` vs ``--scorer fast``.

Songs of 4 stereo stems at 44.1 kHz (``make_song`` of ``bench_bsseval.py``: music-like
synthetic stems, 16-bit references, a plausible separation as estimates) are written as
WAV files in the MUSDB18-HQ layout, then each path below is timed on the same files,
each in a fresh process with its thread count set before numpy and torch load
(``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``,
``torch.set_num_threads``), after a warm-up on a 2 s song:

* **museval, cached baseline**: ``score_song`` with the museval scorer, the mixture
  baseline taken from the cache (what every system after the first costs): read and
  check the WAVs, uSDR, ``museval.evaluate`` on the model's estimates, the
  active-window SDR, the content key of the references;
* **fast, cached baseline**: the same with our BSSEval v4
  (:func:`espnet2_ext.metrics.bsseval.evaluate`);
* **fast, with baseline**: the fast path scoring the mixture baseline too (the first
  system on a reference set);
* **fast on cuda**, when a GPU is there (``--device cuda``; museval has no GPU path).

Reported: CPU seconds of the process (all threads; the steadier number on a shared
machine), wall seconds, the museval / fast ratios, peak resident memory of the process,
and the largest difference between the two scorers over every finite window value of
SDR, ISR, SIR and SAR and over the per-stem cSDR (dB).

Usage::

    nice .venv/bin/python benchmarks/bench_scoring.py              # 30 s and 4 min
    .venv/bin/python benchmarks/bench_scoring.py --seconds 30 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

RATE = 44100
STEMS = ("vocals", "bass", "drums", "other")
METRICS = ("SDR", "ISR", "SIR", "SAR")
#: (label, scorer, baseline cached, device)
PATHS = (
    ("museval, cached baseline", "museval", True, "cpu"),
    ("fast, cached baseline", "fast", True, "cpu"),
    ("fast, with baseline", "fast", False, "cpu"),
)
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def write_song(root: Path, seconds: float, seed: int = 0) -> None:
    """``root/ref/song/{stems,mixture}.wav`` and ``root/est/song/<stem>.wav``."""
    import soundfile as sf

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_bsseval import make_song

    references, estimates = make_song(seconds, seed=seed)
    for folder in ("ref", "est"):
        (root / folder / "song").mkdir(parents=True, exist_ok=True)
    for j, stem in enumerate(STEMS):
        sf.write(root / "ref" / "song" / f"{stem}.wav", references[j], RATE, "PCM_16")
        sf.write(root / "est" / "song" / f"{stem}.wav", estimates[j], RATE, "FLOAT")
    mixture = references.sum(axis=0)  # exact in float32: sums of 16-bit values
    sf.write(root / "ref" / "song" / "mixture.wav", mixture, RATE, "FLOAT")


# ----------------------------------------------------------------------- child
def child(spec: dict) -> None:
    """Time one path in this (fresh) process; print one JSON line, save the scores."""
    import torch

    from espnet2_ext.metrics.scoring import (
        SongTask,
        baseline_key,
        load_song,
        score_song,
    )

    torch.set_num_threads(spec["threads"])
    device = None if spec["device"] == "cpu" else spec["device"]

    def task(root: Path, cached: bool) -> SongTask:
        keys = frozenset()
        if cached:  # the key as a cache file would hold it
            refs, _, mixture, rate, _ = load_song(
                root / "ref" / "song", root / "est" / "song", STEMS
            )
            keys = frozenset([baseline_key(refs, mixture, rate, STEMS, spec["scorer"])])
        return SongTask(
            "song",
            str(root / "ref" / "song"),
            str(root / "est" / "song"),
            STEMS,
            spec["scorer"],
            device,
            keys,
        )

    warm = score_song(task(Path(spec["warmup"]), spec["cached"]))  # imports, plans
    assert warm.error is None, warm.error
    work = task(Path(spec["root"]), spec["cached"])
    sync = torch.cuda.synchronize if device else (lambda: None)
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    result = score_song(work)
    sync()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert result.error is None, result.error
    assert result.baseline_cached == spec["cached"]
    np.savez(spec["scores"], **result.model.bss)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(json.dumps({"wall": wall, "cpu": cpu, "peak_gib": peak}))


# ---------------------------------------------------------------------- parent
def run_child(spec: dict, threads: int) -> Dict[str, float]:
    env = {**os.environ, **{var: str(threads) for var in _THREAD_VARIABLES}}
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{spec}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def gaps(ours: Path, theirs: Path) -> Dict[str, float]:
    """Largest |fast - museval| over windows finite in both, per metric, and of cSDR;
    inf if the NaN windows differ."""
    a, b = np.load(ours), np.load(theirs)
    out = {}
    for metric in METRICS:
        x, y = a[metric], b[metric]
        if not np.array_equal(np.isnan(x), np.isnan(y)):
            out[metric] = float("inf")
            continue
        finite = np.isfinite(x) & np.isfinite(y)
        out[metric] = float(np.abs(x[finite] - y[finite]).max())
    out["cSDR"] = float(
        np.nanmax(np.abs(np.nanmedian(a["SDR"], 1) - np.nanmedian(b["SDR"], 1)))
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[30.0, 240.0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default=None, help="also time ours on this GPU")
    parser.add_argument("--skip_museval", action="store_true")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(json.loads(args.child))
        return

    import torch

    paths = [p for p in PATHS if not (args.skip_museval and p[1] == "museval")]
    device = args.device or ("cuda" if torch.cuda.is_available() else None)
    if device:
        paths.append((f"fast on {device}, cached baseline", "fast", True, device))
    print(f"load average at start: {open('/proc/loadavg').read().split()[:3]}")
    print(f"{os.cpu_count()} CPUs; GPU: {device or 'none available on this machine'}")
    rows: List[tuple] = []
    diffs: Dict[tuple, Dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_song(tmp / "warmup", 2.0, seed=99)
        for seconds in args.seconds:
            root = tmp / f"{seconds:g}s"
            write_song(root, seconds)
            for threads in args.threads:
                results = {}
                for label, scorer, cached, where in paths:
                    spec = {
                        "root": str(root),
                        "warmup": str(tmp / "warmup"),
                        "scorer": scorer,
                        "cached": cached,
                        "device": where,
                        "threads": threads,
                        "scores": str(tmp / f"{seconds:g}_{threads}_{len(rows)}.npz"),
                    }
                    timing = run_child(spec, threads)
                    results[label] = (timing, spec["scores"])
                    rows.append((seconds, threads, label, timing))
                    print(
                        f"  {seconds:g} s song, {threads} thread(s), {label}: "
                        f"CPU {timing['cpu']:.2f} s, wall {timing['wall']:.2f} s",
                        flush=True,
                    )
                theirs = results.get(PATHS[0][0])
                for label, (_, scores) in results.items():
                    if theirs is not None and label != PATHS[0][0]:
                        diffs[(seconds, threads, label)] = gaps(
                            Path(scores), Path(theirs[1])
                        )

    print(f"\n4 stereo stems, {RATE} Hz, 1 s windows and hop; per song")
    header = (
        f"{'song':>5} {'thr':>3} {'path':>32} | {'CPU s':>8} {'wall s':>8} | "
        f"{'museval/this CPU':>16} {'wall':>6} | {'peak GiB':>8}"
    )
    print(header)
    print("-" * len(header))
    reference = {}
    for seconds, threads, label, timing in rows:
        if label.startswith("museval"):
            reference[(seconds, threads)] = timing
    for seconds, threads, label, timing in rows:
        base = reference.get((seconds, threads))
        ratio = (
            f"{base['cpu'] / timing['cpu']:>15.1f}x {base['wall'] / timing['wall']:>5.1f}x"
            if base
            else f"{'-':>16} {'-':>6}"
        )
        print(
            f"{seconds:>4.0f}s {threads:>3} {label:>32} | {timing['cpu']:>8.2f} "
            f"{timing['wall']:>8.2f} | {ratio} | {timing['peak_gib']:>8.2f}"
        )
    print("\nmax |fast - museval| in dB over finite windows (same NaN windows: yes "
          "unless inf):")  # fmt: skip
    for (seconds, threads, label), diff in diffs.items():
        print(
            f"{seconds:>4.0f}s {threads} thr {label:>32}: "
            + " ".join(f"{k} {v:.1e}" for k, v in diff.items())
        )
    print(f"load average at end: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
