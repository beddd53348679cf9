#!/usr/bin/env python3
"""Scoring time per song: ``music_score``'s per-song path vs museval called directly.

A synthetic MUSDB-style song (4 stereo stems at 44.1 kHz, estimates = references + noise
and leakage) is written as WAV files, then timed, each once:

* **museval direct**: read the WAVs with soundfile, ``museval.eval_mus_track`` with a
  track object holding them, median over windows with museval's ``EvalStore`` (what a
  SiSEC-style evaluation of the model alone costs);
* **music_score**: :func:`espnet2_ext.bin.music_score.score_song` (reads and checks the
  WAVs, uSDR and cSDR of the model *and* of the mixture baseline);
* **music_score, cached baseline**: the same with the baseline's scores taken from
  ``--baseline_cache`` (a second system scored on the same references).

Wall-clock and CPU time (of this process, all threads) are reported: on a shared machine
the CPU time is the steadier of the two. The model's per-stem cSDR of both paths is
compared, as a check that the timings are of the same computation.

Usage::

    .venv/bin/python benchmarks/bench_scoring.py --seconds 30
"""

from __future__ import annotations

import argparse
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import soundfile as sf

from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.metrics.scoring import SongTask, score_song

RATE = 44100


def _write(path: Path, audio: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, RATE, subtype="FLOAT")


def _make_song(root: Path, seconds: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    nsamples = int(seconds * RATE)
    references = 0.1 * rng.standard_normal((len(MUSDB_STEMS), nsamples, 2))
    estimates = references + 0.03 * rng.standard_normal(references.shape)
    estimates[0] += 0.1 * references[3]  # some leakage
    for j, stem in enumerate(MUSDB_STEMS):
        _write(root / "ref" / "song" / f"{stem}.wav", references[j])
        _write(root / "est" / "song" / f"{stem}.wav", estimates[j])
    _write(root / "ref" / "song" / "mixture.wav", references.sum(axis=0))


def museval_direct(root: Path) -> np.ndarray:
    import museval

    targets = {}
    for stem in MUSDB_STEMS:
        audio, _ = sf.read(str(root / "ref" / "song" / f"{stem}.wav"), always_2d=True)
        targets[stem] = types.SimpleNamespace(audio=audio)
    track = types.SimpleNamespace(
        name="song", rate=RATE, subset="test", targets=targets
    )
    estimates = {
        stem: sf.read(str(root / "est" / "song" / f"{stem}.wav"), always_2d=True)[0]
        for stem in MUSDB_STEMS
    }
    store = museval.eval_mus_track(track, estimates)
    frames = museval.EvalStore()
    frames.add_track(store)
    sdr = frames.agg_frames_scores().xs("SDR", level="metric")
    return np.array([sdr.xs(stem, level="target").iloc[0] for stem in MUSDB_STEMS])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="song length")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _make_song(root, args.seconds)
        task = SongTask(
            "song", str(root / "ref" / "song"), str(root / "est" / "song"), MUSDB_STEMS
        )
        import museval  # noqa: F401  (import cost outside the timings)

        timings = {}  # name -> (wall seconds, CPU seconds of this process, all threads)

        def timed(name, function, *args):
            wall, cpu = time.perf_counter(), time.process_time()
            result = function(*args)
            timings[name] = (time.perf_counter() - wall, time.process_time() - cpu)
            return result

        theirs = timed("museval direct (model only)", museval_direct, root)
        ours = timed("music_score (model + baseline)", score_song, task)
        assert ours.error is None, ours.error
        cached = SongTask(
            task.track,
            task.ref_song,
            task.est_song,
            task.stems,
            {"uSDR": ours.mixture_usdr.tolist(), "cSDR": ours.mixture_csdr.tolist()},
        )
        again = timed("music_score (model, cached baseline)", score_song, cached)
        assert again.baseline_cached and again.error is None

    wall_ref, cpu_ref = timings["museval direct (model only)"]
    print(f"song: {args.seconds:.0f} s, 4 stereo stems, {RATE} Hz")
    print(f"{'path':>38} {'wall s':>7} {'ratio':>6} {'CPU s':>7} {'ratio':>6}")
    for name, (wall, cpu) in timings.items():
        print(
            f"{name:>38} {wall:>7.2f} {wall / wall_ref:>5.2f}x "
            f"{cpu:>7.2f} {cpu / cpu_ref:>5.2f}x"
        )
    difference = np.max(np.abs(ours.csdr - theirs))
    print(f"max |cSDR ours - museval| over stems: {difference:.2e} dB")
    print("cSDR per stem (ours):", np.round(ours.csdr, 3).tolist())


if __name__ == "__main__":
    main()
