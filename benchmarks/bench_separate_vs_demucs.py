#!/usr/bin/env python3
"""Time to first stem and total time: our small BS-Locoformer vs demucs' HTDemucs.

One 3-minute stereo 44.1 kHz song (synthetic; both models have random weights, so the
content does not matter) is separated by

* **ours**: ``espnet2_ext.api.load_model`` on a folder holding the small BS-Locoformer
  of ``conf/tuning/train_enh_bs_locoformer_small.yaml`` with random weights, the way
  ``espnet2-ext-separate`` does it (12 s chunks, overlap 0.5, Hann cross-fade);
* **demucs**: ``demucs.apply.apply_model`` with an ``HTDemucs`` of random weights
  (its default constructor, 4 sources, 44.1 kHz stereo) and apply_model's defaults
  (``split=True``, ``overlap=0.25``, ``shifts=1``, segments of the model's length).

Both decode the same WAV file and write 24-bit WAV stems one after the other, each under
a temporary name renamed when complete. "First stem" is the time from the start of
decoding until the first stem file exists; "total" until the last one does. Model
construction and loading are timed separately. Each system runs in its own process with
the same number of torch threads.

demucs is not a dependency of espnet2_ext (it is the ``bench`` extra, ``pip install
demucs``). It may live in another virtual environment: give its interpreter with
``--demucs_python``. The command used for the numbers in the report::

    python3.11 -m venv /tmp/benchvenv
    /tmp/benchvenv/bin/pip install torch==2.13.0 demucs soundfile
    .venv/bin/python benchmarks/bench_separate_vs_demucs.py \
        --demucs_python /tmp/benchvenv/bin/python --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RATE = 44100
STEMS_DEMUCS = ["drums", "bass", "other", "vocals"]


def make_song(path: Path, seconds: float, seed: int = 0) -> None:
    """A stereo test song: panned harmonic tones with vibrato, and noise bursts."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    song = np.zeros((t.size, 2))
    for f0, pan in ((110.0, 0.3), (220.0, 0.7), (440.0, 0.5), (660.0, 0.2)):
        phase = 2 * np.pi * f0 * t + 0.5 * np.sin(2 * np.pi * 5.0 * t)
        tone = sum(np.sin(k * phase) / k for k in range(1, 6))
        song += 0.05 * tone[:, None] * np.array([1 - pan, pan])
    beat = (np.sin(2 * np.pi * 2.0 * t) > 0.95).astype(float)
    song += 0.1 * beat[:, None] * rng.standard_normal((t.size, 2))
    sf.write(path, (0.8 * song / np.abs(song).max()).astype("float32"), RATE,
             subtype="PCM_16")  # fmt: skip


def _write_atomic(path: Path, wave_tc, rate: int) -> None:
    import soundfile as sf

    tmp = path.with_name(f".{path.name}.partial")
    sf.write(tmp, wave_tc, rate, format="WAV", subtype="PCM_24")
    os.replace(tmp, path)


def worker_ours(
    song: Path, out: Path, repo: Path, segment: float, overlap: float
) -> dict:
    import torch
    import yaml

    from espnet2_ext.api import load_model
    from espnet2_ext.separation.tracks import write_stems
    from espnet2_ext.tasks.enh import EnhancementTask
    from espnet2_ext.zoo import full_train_config, write_model_dir

    config_path = repo / "conf" / "tuning" / "train_enh_bs_locoformer_small.yaml"
    config = yaml.safe_load(config_path.read_text())
    # random weights: the training criterion does not matter, use a stock one
    config["criterions"] = [
        dict(name="snr", conf={}, wrapper="fixed_order", wrapper_conf={})
    ]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "small"
        args = argparse.Namespace(**full_train_config(config, folder))
        model = EnhancementTask.build_model(args)
        params = sum(p.numel() for p in model.parameters())
        write_model_dir(config, model.state_dict(), folder)
        del model
        start = time.perf_counter()
        separator = load_model(folder, segment=segment, overlap=overlap)
        load = time.perf_counter() - start

        out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        stems = separator.separate_file(song)
        separated = time.perf_counter() - start
        first = None
        for name, wave in stems.items():
            write_stems(
                {name: wave}, {name: out / f"{name}.wav"}, separator.sample_rate,
                fmt="wav", bits="24",
            )  # fmt: skip
            first = first or time.perf_counter() - start
        total = time.perf_counter() - start
    return dict(
        system="ours: BS-Locoformer small (random weights)",
        settings=f"{segment:g} s chunks, overlap {overlap:g}",
        params=params,
        load=load,
        separate=separated,
        first=first,
        total=total,
    )


def worker_demucs(song: Path, out: Path) -> dict:
    import soundfile as sf
    import torch
    from demucs.apply import apply_model
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(0)
    start = time.perf_counter()
    model = HTDemucs(sources=STEMS_DEMUCS, audio_channels=2, samplerate=RATE).eval()
    load = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())

    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data, rate = sf.read(song, dtype="float32", always_2d=True)
    mix = torch.from_numpy(data.T.copy())[None]  # [1, C, T]
    with torch.no_grad():
        est = apply_model(model, mix, shifts=1, split=True, overlap=0.25)[0]
    separated = time.perf_counter() - start
    first = None
    for name, wave in zip(model.sources, est):
        _write_atomic(out / f"{name}.wav", wave.numpy().T, rate)
        first = first or time.perf_counter() - start
    total = time.perf_counter() - start
    return dict(
        system="demucs: HTDemucs (random weights), apply_model",
        settings=f"{float(model.segment):.2f} s segments, overlap 0.25, shifts 1",
        params=params,
        load=load,
        separate=separated,
        first=first,
        total=total,
    )


def _run_worker(
    python: str, kind: str, song: Path, out: Path, args: argparse.Namespace
) -> dict:
    threads = args.threads
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [python, str(Path(__file__).resolve()), "--worker", kind, "--song", str(song),
           "--out", str(out), "--threads", str(threads),
           "--our_segment", str(args.our_segment),
           "--our_overlap", str(args.our_overlap)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the {kind} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="song length")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument(
        "--demucs_python",
        default=sys.executable,
        help="interpreter with demucs installed (default: this one)",
    )
    parser.add_argument(
        "--our_segment", type=float, default=12.0, help="our chunk length (s)"
    )
    parser.add_argument(
        "--our_overlap", type=float, default=0.5, help="our chunk overlap (fraction)"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--worker", choices=("ours", "demucs"), help=argparse.SUPPRESS)
    parser.add_argument("--song", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker is not None:
        import torch

        torch.set_num_threads(args.threads)
        repo = Path(__file__).resolve().parents[1]
        if args.worker == "ours":
            result = worker_ours(
                args.song, args.out, repo, args.our_segment, args.our_overlap
            )
        else:
            result = worker_demucs(args.song, args.out)
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        song = work / "song.wav"
        make_song(song, args.seconds)
        results = [
            _run_worker(sys.executable, "ours", song, work / "ours", args),
            _run_worker(args.demucs_python, "demucs", song, work / "demucs", args),
        ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\n{args.seconds:.0f} s stereo song at {RATE} Hz, {args.threads} torch "
        f"threads, CPU ({os.cpu_count()} cores visible, load average {load:.1f} at "
        "the end)\n"
    )
    header = (
        f"{'system':<48} {'params':>8} {'load s':>7} {'first stem s':>13} "
        f"{'total s':>8}  settings"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['system']:<48} {r['params'] / 1e6:>7.2f}M {r['load']:>7.1f} "
            f"{r['first']:>13.1f} {r['total']:>8.1f}  {r['settings']}"
        )
    ours, demucs = results
    print(
        f"\nratio ours / demucs: first stem {ours['first'] / demucs['first']:.2f}, "
        f"total {ours['total'] / demucs['total']:.2f} (< 1: ours is faster)"
    )


if __name__ == "__main__":
    main()
