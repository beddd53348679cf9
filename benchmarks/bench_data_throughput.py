#!/usr/bin/env python3
"""Training examples per second per data-loader worker, against what a GPU consumes.

Side by side in one run, each case in one process with one thread (a DataLoader worker
is one process), through ESPnet's own data path: ``espnet2.train.dataset.ESPnetDataset``
with the recipe's ``segment_sound`` loaders and our preprocessor, ``dataset[uid]`` as a
worker calls it (collation, which is small, is not timed):

* ``musdb_dm_recipe``: MUSDB18-HQ dynamic mixing from WAV, as the recipe's training
  stage loads it: the 6 s crop of the item's mixture and of its 4 stems
  (``mix_segments.scp``, ``spk{1..4}_segments.scp``), then ``MusicDynamicMixing`` draws 4
  new stems from the activity index (4 more 6 s reads) and mixes them;
* ``musdb_dm_required``: the same with only the inputs ESPnet requires loaded (mixture
  and stem 1), the rest is dynamic mixing;
* ``fma_mom_mp3``: FMA mixture of mixtures, the 10 s segment read from its MP3 (libsndfile
  decodes an MP3 from its first sample: ``espnet2_ext.train.dataset``) and a 6 s partner
  crop from another MP3;
* ``fma_mom_flac``: the same from the decoded cache that ``python -m
  espnet2_ext.datasets.fma --cache-all`` writes (16-bit FLAC, exact seeks).

Data: generated here with the own-data synthesiser (``espnet2_ext.datagen.own_data``):
``--songs`` MUSDB-layout songs of ``--song-seconds`` with the four MUSDB stems (PCM_16
WAV), prepared with the recipe's stages (``datasets.musdb18hq``, ``datasets.activity``);
``--tracks`` stereo 44.1 kHz MP3s of ``--track-seconds`` (30 s, the length of FMA large's
clips) at 320 kbit/s (ffmpeg's libmp3lame), prepared with ``datasets.fma`` in place and
with the decoded cache. Decoding speed hardly depends on the music; FLAC's size does
(synthetic music compresses better than recordings), so the sizes are indicative.

The GPU side is an **estimate**, not a measurement: no GPU is used here. A training
step costs about 3× the forward FLOPs (forward + backward); the forward of the medium
BS-Locoformer on one 6 s stereo example is counted with
``torch.utils.flop_counter`` on fake tensors (``bench_bs_locoformer.flop_counter``: matrix
products, convolutions and attention, not the STFT or element-wise work), for 4 outputs
(MUSDB18-HQ) and 12 (MixIT), at ``--mfu`` (40 %) of the H100's dense bf16 peak
(``--peak-tflops`` 989). Workers needed = that rate / the measured per-worker rate
(CPU time, so that a shared machine's load does not count).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_data_throughput.py \\
        --examples 300 --json exp/bench_data_throughput.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import soundfile as sf

RATE = 44100
CROP_SECONDS = 6.0
MEDIUM = "medium"


def make_musdb_tree(root: Path, songs: int, seconds: float, seed: int) -> None:
    """``songs`` train songs (and one test song) with the four MUSDB stems."""
    from espnet2_ext.datagen.compose import PROGRAM_SETS, compose_song
    from espnet2_ext.datagen.musdb_like import quantise_stems
    from espnet2_ext.datagen.own_data import level_stems, render_musdb_stems

    for split, count in (("train", songs), ("test", 1)):
        for i in range(count):
            rng = np.random.default_rng([seed, split == "test", i])
            song = compose_song(rng, seconds, PROGRAM_SETS["train"])
            stems = level_stems(render_musdb_stems(song, RATE, rng), rng)
            quantised, mixture = quantise_stems(stems)
            folder = root / split / f"Song {split} {i}"
            folder.mkdir(parents=True)
            sf.write(folder / "mixture.wav", mixture, RATE, subtype="PCM_16")
            for name, audio in quantised.items():
                sf.write(folder / f"{name}.wav", audio, RATE, subtype="PCM_16")


def make_mp3_folder(folder: Path, tracks: int, seconds: float, seed: int) -> None:
    """``tracks`` stereo MP3 mixtures at 320 kbit/s (FMA's common rate)."""
    from espnet2_ext.datagen.compose import PROGRAM_SETS, compose_song
    from espnet2_ext.datagen.own_data import level_stems, render_musdb_stems

    folder.mkdir(parents=True)
    for i in range(tracks):
        rng = np.random.default_rng([seed, 9, i])
        song = compose_song(rng, seconds, PROGRAM_SETS["train"])
        mix = sum(level_stems(render_musdb_stems(song, RATE, rng), rng).values())
        mix = (0.9 * mix / max(1.0, float(np.max(np.abs(mix))) / 0.9)).astype(
            np.float32
        )
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar",
             str(RATE), "-ac", "2", "-i", "pipe:0", "-c:a", "libmp3lame", "-b:a",
             "320k", str(folder / f"{i:06d}.mp3")],
            input=mix.tobytes(), check=True,
        )  # fmt: skip


def prepare(work: Path, args) -> Dict[str, object]:
    """Generate and prepare the data; returns paths and preparation costs."""
    from espnet2_ext.datasets.activity import ActivityConfig, run_activity
    from espnet2_ext.datasets.fma import FmaConfig, prepare_unlabeled
    from espnet2_ext.datasets.musdb18hq import prepare_musdb18hq

    tree = work / "musdb"
    t0 = time.perf_counter()
    make_musdb_tree(tree, args.songs, args.song_seconds, args.seed)
    make_mp3_folder(work / "mp3", args.tracks, args.track_seconds, args.seed)
    print(f"generated the data in {time.perf_counter() - t0:.0f} s", flush=True)
    prepare_musdb18hq(str(tree), str(work / "data"), check_silence=False)
    run_activity(
        str(work / "data" / "train"),
        str(work / "segments"),
        config=ActivityConfig(),
        crop_seconds=CROP_SECONDS,
    )
    costs = {}
    for name, cache_all in (("mp3", False), ("flac", True)):
        start = time.process_time()
        prepare_unlabeled(
            str(work / "mp3"),
            str(work / f"fma_{name}"),
            str(work / "cache"),
            FmaConfig(cache_all=cache_all),
        )
        costs[name] = time.process_time() - start
    mp3_bytes = sum(p.stat().st_size for p in (work / "mp3").glob("*.mp3"))
    flac_bytes = sum(p.stat().st_size for p in (work / "cache").rglob("*.flac"))
    audio_seconds = args.tracks * args.track_seconds
    return {
        "fma_prep_cpu_s_per_track": {
            k: v / args.tracks for k, v in costs.items()
        },  # segmenting (and decoding into the cache)
        "mp3_bytes_per_audio_s": mp3_bytes / audio_seconds,
        "flac_bytes_per_audio_s": flac_bytes / audio_seconds,
    }


def build_dataset(work: Path, case: str):
    """(ESPnetDataset, uids) of one case."""
    from espnet2.train.dataset import ESPnetDataset

    from espnet2_ext.registry import register_all
    from espnet2_ext.train.dataset import SEGMENT_SOUND
    from espnet2_ext.train.preprocessor import MixtureOfMixtures, MusicDynamicMixing

    register_all()  # segment_sound in ESPnet's DATA_TYPES
    if case.startswith("musdb"):
        seg = work / "segments"
        pairs = [(seg / "mix_segments.scp", "speech_mix")]
        refs = range(1, 5) if case == "musdb_dm_recipe" else range(1, 2)
        pairs += [(seg / f"spk{n}_segments.scp", f"speech_ref{n}") for n in refs]
        preprocess = MusicDynamicMixing(
            train=True, index_dir=str(seg), segment_seconds=CROP_SECONDS
        )
    else:
        data = work / ("fma_mp3" if case == "fma_mom_mp3" else "fma_flac")
        scp = data / "train" / "mix_segments.scp"
        pairs = [(scp, "speech_ref1")]
        preprocess = MixtureOfMixtures(
            train=True, segment_scp=str(scp), segment_seconds=CROP_SECONDS
        )
    dataset = ESPnetDataset(
        [(str(path), name, SEGMENT_SOUND) for path, name in pairs],
        preprocess=preprocess,
    )
    return dataset, list(dataset.loader_dict[pairs[0][1]].keys())


def time_case(work: Path, case: str, examples: int, warmup: int, seed: int) -> Dict:
    """Examples per second of one worker (this process, one thread)."""
    dataset, uids = build_dataset(work, case)
    rng = np.random.default_rng(seed)
    order = [uids[i] for i in rng.integers(len(uids), size=examples + warmup)]
    np.random.seed(
        seed
    )  # ESPnet seeds numpy per worker; the preprocessors draw from it
    for uid in order[:warmup]:
        dataset[uid]
    cpu, wall = time.process_time(), time.perf_counter()
    for uid in order[warmup:]:
        _, item = dataset[uid]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert item["speech_mix"].shape == (int(CROP_SECONDS * RATE), 2), item.keys()
    return {
        "case": case,
        "examples": examples,
        "cpu_s": cpu,
        "wall_s": wall,
        "per_worker_cpu": examples / cpu,
        "per_worker_wall": examples / wall,
    }


def gpu_rate(
    num_spk: int, peak_tflops: float, mfu: float, size: str = MEDIUM
) -> Tuple[float, float]:
    """(forward FLOPs of one 6 s example, estimated training examples/s on one GPU)."""
    import torch
    from bench_bs_locoformer import fake_mode, flop_counter

    from espnet2_ext.enh.separator.bs_locoformer_separator import (
        BS_LOCOFORMER_SIZES,
        BSLocoformerSeparator,
    )

    frames = int(CROP_SECONDS * RATE) // 512 + 1  # ESPnet's STFT, hop 512, centred
    with fake_mode():
        separator = BSLocoformerSeparator(
            num_spk=num_spk, num_channels=2, **BS_LOCOFORMER_SIZES[size]
        ).eval()
        spec = torch.empty(1, frames, 2, 1025, dtype=torch.complex64)
        with torch.inference_mode(), flop_counter() as counter:
            separator(spec, torch.tensor([frames]))
    forward = counter.get_total_flops()
    return forward, mfu * peak_tflops * 1e12 / (3 * forward)


def run_case_in_subprocess(work: Path, case: str, args) -> Dict:
    """One case in a fresh process (its own imports, one thread)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, __file__, "--_case", case, "--_work", str(work),
         "--examples", str(args.examples), "--seed", str(args.seed)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


CASES = ("musdb_dm_recipe", "musdb_dm_required", "fma_mom_mp3", "fma_mom_flac")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--songs", type=int, default=4, help="MUSDB-layout songs")
    parser.add_argument("--song-seconds", type=float, default=60.0)
    parser.add_argument("--tracks", type=int, default=16, help="MP3 tracks")
    parser.add_argument("--track-seconds", type=float, default=30.0)
    parser.add_argument("--examples", type=int, default=300, help="timed per case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--mfu", type=float, default=0.4)
    parser.add_argument("--max-workers", type=int, default=8)
    parser.add_argument("--workdir", default=None, help="kept when given")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--_case", help=argparse.SUPPRESS)
    parser.add_argument("--_work", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._case:  # a child: one case, one JSON line
        result = time_case(Path(args._work), args._case, args.examples, 10, args.seed)
        print(json.dumps(result))
        return 0

    load_before = os.getloadavg()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_data_"))
    try:
        prep = prepare(work, args)
        results = []
        for case in CASES:
            result = run_case_in_subprocess(work, case, args)
            print(
                f"{case}: {result['per_worker_cpu']:.1f} examples/s per worker "
                f"(CPU time), {result['per_worker_wall']:.1f} (wall)",
                flush=True,
            )
            results.append(result)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        gpu, other_sizes = {}, {}
        for label, num_spk in (("musdb", 4), ("fma", 12)):
            flops, rate = gpu_rate(num_spk, args.peak_tflops, args.mfu)
            gpu[label] = {"num_spk": num_spk, "forward_flops": flops, "rate": rate}
            for size in ("small", "large"):
                other_sizes[(label, size)] = gpu_rate(
                    num_spk, args.peak_tflops, args.mfu, size
                )
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()

    print(
        f"\nload average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
        f"({os.cpu_count()} CPUs)"
    )
    print(
        "\n| case | examples/s per worker (CPU time) | (wall) | GPU needs, examples/s "
        "(estimate) | workers for one GPU | fed by "
        f"≤ {args.max_workers} workers |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        g = gpu["musdb" if r["case"].startswith("musdb") else "fma"]
        workers = g["rate"] / r["per_worker_cpu"]
        r["gpu_rate"], r["workers_needed"] = g["rate"], workers
        print(
            f"| {r['case']} | {r['per_worker_cpu']:.1f} | {r['per_worker_wall']:.1f} | "
            f"{g['rate']:.0f} | {workers:.1f} | "
            f"{'yes' if math.ceil(workers) <= args.max_workers else 'no'} |"
        )
    mp3, flac = (next(r for r in results if r["case"] == c) for c in CASES[2:])
    print(
        f"\nFLAC cache / MP3 per worker: "
        f"{flac['per_worker_cpu'] / mp3['per_worker_cpu']:.2f}x; "
        f"dynamic mixing with required inputs only / recipe: "
        f"{results[1]['per_worker_cpu'] / results[0]['per_worker_cpu']:.2f}x"
    )
    for label, g in gpu.items():
        print(
            f"GPU estimate ({label}, {g['num_spk']} outputs): forward "
            f"{g['forward_flops'] / 1e9:.0f} GFLOP per 6 s example, x3 for training, at "
            f"{args.mfu:.0%} of {args.peak_tflops:.0f} TFLOP/s: {g['rate']:.0f} "
            "examples/s (medium)"
        )
    print("\nother sizes (the decision above is on the medium model):")
    print(
        "| size | forward GFLOP per 6 s (4 / 12 outputs) | GPU examples/s (estimate) "
        "| workers: " + " | ".join(CASES) + " |"
    )
    print("|---|---|---|" + "---|" * len(CASES))
    for size in ("small", "large"):
        flops = [other_sizes[(label, size)][0] / 1e9 for label in ("musdb", "fma")]
        rates = [other_sizes[(label, size)][1] for label in ("musdb", "fma")]
        workers = [
            rates[r["case"].startswith("fma")] / r["per_worker_cpu"] for r in results
        ]
        print(
            f"| {size} | {flops[0]:.0f} / {flops[1]:.0f} | {rates[0]:.0f} / "
            f"{rates[1]:.0f} | " + " | ".join(f"{w:.1f}" for w in workers) + " |"
        )
    print(
        f"sizes: MP3 {prep['mp3_bytes_per_audio_s'] / 1e3:.1f} kB per audio second, "
        f"FLAC cache {prep['flac_bytes_per_audio_s'] / 1e3:.1f} kB; preparation CPU s "
        f"per {args.track_seconds:g} s track: in place "
        f"{prep['fma_prep_cpu_s_per_track']['mp3']:.3f}, decoding into the cache "
        f"{prep['fma_prep_cpu_s_per_track']['flac']:.3f}"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                dict(
                    args=vars(args),
                    load=[load_before, load_after],
                    prep=prep,
                    cases=results,
                    gpu=gpu,
                    other_sizes={f"{k[0]}/{k[1]}": v for k, v in other_sizes.items()},
                ),
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
