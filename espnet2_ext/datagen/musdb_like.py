"""Generate a small MUSDB18-HQ-like data set from real recorded instrument samples.

Usage::

    python -m espnet2_ext.datagen.musdb_like --out ROOT --num-train 12 --num-test 4 \\
        --duration 30 --seed 0 --jobs 2

writes the real MUSDB18-HQ layout::

    ROOT/train/<Artist - Title>/{mixture,vocals,bass,drums,other}.wav
    ROOT/test/<Artist - Title>/{mixture,vocals,bass,drums,other}.wav
    ROOT/valid_songs.txt            # train songs to use as the validation split
    ROOT/generation_manifest.json   # parameters, per-song score summary and levels

Songs are composed procedurally (:mod:`compose`) and rendered per stem with FluidSynth and
espeak-ng (:mod:`render`): stereo 44.1 kHz PCM_16 like the real data set, and
``mixture.wav`` is exactly the sample-wise sum of the four quantised stems. Train songs use
FluidR3_GM and the train program set; test songs use TimGM6mb and the test program set
(other drum kits, programs and singers), so test scores measure generalisation.

Validation: the real recipe holds out a fixed list of 14 train songs; here the last
``--num-valid`` train songs (by generation index) are listed in ``ROOT/valid_songs.txt``,
one folder name per line (also under ``"valid_songs"`` in the manifest).

Reproducible: song ``i`` of a split is a pure function of (seed, split, i), so the same seed
gives identical files, and a larger ``--num-train`` only adds songs. Writes are atomic: a song
is written under ``ROOT/.partial/`` and renamed into place when complete. Re-running with the
same parameters skips complete songs (resuming an interrupted run); other parameters are
refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf
from tqdm import tqdm

from espnet2_ext.constants import MUSDB_STEMS, MUSIC_SAMPLE_RATE
from espnet2_ext.datagen.compose import PROGRAM_SETS, Song, compose_song
from espnet2_ext.datagen.render import (
    DEFAULT_TEST_SOUNDFONT,
    DEFAULT_TRAIN_SOUNDFONT,
    balance_stems,
    render_stems,
    require_soundfont,
    require_tool,
)

MANIFEST = "generation_manifest.json"
VALID_LIST = "valid_songs.txt"
PARTIAL = ".partial"
FILES = ("mixture",) + MUSDB_STEMS
SPLIT_IDS = {"train": 0, "test": 1}
FORMAT_VERSION = 1


# ------------------------------------------------------------------ shared plumbing


def write_json_atomic(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextmanager
def output_lock(root: Path) -> Iterator[None]:
    """Exclusive lock on ``root`` so two generators never write the same tree."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".generation.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(
                f"another generator is writing to {root}; wait for it or use another --out"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def tool_versions() -> Dict[str, str]:
    """First output line of each tool's version query (recorded in manifests)."""
    out = {}
    for tool, flag in (("fluidsynth", "--version"), ("espeak-ng", "--version")):
        try:
            proc = subprocess.run([tool, flag], capture_output=True, text=True)
            out[tool] = (proc.stdout.strip().splitlines() or [""])[0]
        except OSError:
            out[tool] = "missing"
    return out


def check_existing_output(
    root: Path,
    generator: str,
    params: Dict[str, object],
    overwrite: bool,
    data_dirs: Sequence[str],
) -> Optional[dict]:
    """Check what is already under ``root`` and return its manifest (``None`` if none).

    Refuses data this generator did not make (folders in ``data_dirs`` without our
    manifest: e.g. the real data set), and a tree made with other parameters unless
    ``overwrite``.
    """
    manifest_path = root / MANIFEST
    if not manifest_path.exists():
        foreign = [
            d for d in data_dirs if (root / d).exists() and any((root / d).iterdir())
        ]
        if foreign:
            raise ValueError(
                f"{root} already holds {', '.join(foreign)} without a {MANIFEST}: that "
                "is not output of this generator; choose another --out"
            )
        return None
    old = json.loads(manifest_path.read_text())
    if old.get("generator") != generator:
        raise ValueError(
            f"{root} holds output of {old.get('generator')!r}, not {generator!r}; "
            "choose another --out"
        )
    old_params = old.get("params", {})
    if old_params != params and not overwrite:
        diff = {
            k: (old_params.get(k), v)
            for k, v in params.items()
            if old_params.get(k) != v
        }
        raise ValueError(
            f"{root} was generated with other parameters {diff} (old, new); pass "
            "--overwrite to replace it, or choose another --out"
        )
    return old


def remove_partial(root: Path) -> None:
    """Delete leftovers of an interrupted run (everything under ROOT/.partial)."""
    shutil.rmtree(root / PARTIAL, ignore_errors=True)


def run_jobs(
    fn: Callable, jobs: Sequence, num_workers: int, desc: str, progress: bool = True
) -> List:
    """``fn`` over ``jobs`` on ``num_workers`` processes with a tqdm bar; results in
    completion order. Exceptions name the failing job."""
    results = []
    if not jobs:
        return results
    if num_workers <= 1:
        for job in tqdm(
            jobs, desc=desc, unit="item", file=sys.stderr, disable=not progress
        ):
            results.append(fn(job))
        return results
    # forkserver/spawn, not fork: the caller may hold threads (torch, tqdm), and a
    # forked child of a threaded process can deadlock.
    method = (
        "forkserver"
        if "forkserver" in multiprocessing.get_all_start_methods()
        else "spawn"
    )
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=num_workers, mp_context=context) as pool:
        futures = {pool.submit(fn, job): job for job in jobs}
        with tqdm(
            total=len(jobs),
            desc=desc,
            unit="item",
            file=sys.stderr,
            disable=not progress,
        ) as bar:
            for future in as_completed(futures):
                try:
                    results.append(future.result())
                except Exception as exc:
                    for f in futures:
                        f.cancel()
                    raise RuntimeError(
                        f"generation of {futures[future]} failed: {exc}"
                    ) from exc
                bar.update(1)
    return results


# ------------------------------------------------------------------ MUSDB-like songs


def song_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of song ``index`` of ``split`` (independent of all other songs)."""
    return np.random.default_rng([seed, SPLIT_IDS[split], index])


def quantise_stems(
    stems: Dict[str, np.ndarray],
) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """PCM_16 stems and their exact int16 sum.

    Stems are quantised first and the mixture is their integer sum, so ``mixture.wav``
    equals the sum of the stem files sample by sample. If a stem or the sum would leave
    the int16 range, all stems are scaled down together and quantised again.

    Args:
        stems: ``{stem: float [T, 2]}`` in [-1, 1).
    Returns:
        (``{stem: int16 [T, 2]}``, mixture int16 [T, 2]).
    """
    scale = 1.0
    for _ in range(20):
        q = {
            k: np.round(v.astype(np.float64) * scale * 32767.0).astype(np.int32)
            for k, v in stems.items()
        }
        mix = np.sum(np.stack(list(q.values())), axis=0)
        peak = max(
            int(np.abs(mix).max()), max(int(np.abs(x).max()) for x in q.values())
        )
        if peak <= 32767:
            return {k: v.astype(np.int16) for k, v in q.items()}, mix.astype(np.int16)
        scale *= 0.98 * 32767.0 / peak
    raise RuntimeError("could not bring the stems into the int16 range")


@dataclass(frozen=True)
class SongJob:
    """Everything a worker needs to render and write one song."""

    root: str
    split: str
    index: int
    song: Song
    rng: np.random.Generator
    soundfont: str

    def __str__(self) -> str:
        return f"{self.split}/{self.song.name} (#{self.index})"


def stem_stats(
    audio: Dict[str, np.ndarray], frame: int = 4096
) -> Dict[str, Dict[str, float]]:
    """Per file: RMS in dBFS and spectral centroid in Hz (of the channel mean, from the
    power spectrum averaged over Hann-windowed ``frame``-sample blocks).

    Args:
        audio: ``{name: int16 or float [T, C]}``.
    """
    out = {}
    window = np.hanning(frame)
    freqs = np.fft.rfftfreq(frame, 1.0 / MUSIC_SAMPLE_RATE)
    for name, x in audio.items():
        x = x.astype(np.float64) / (32768.0 if x.dtype == np.int16 else 1.0)
        rms = float(np.sqrt(np.mean(x**2)))
        mono = x.mean(axis=1)
        n = mono.size // frame
        power = np.zeros(freqs.size)
        if n > 0:
            blocks = mono[: n * frame].reshape(n, frame) * window  # [blocks, frame]
            power = (np.abs(np.fft.rfft(blocks, axis=1)) ** 2).mean(axis=0)
        total = power.sum()
        centroid = float((power * freqs).sum() / total) if total > 0 else 0.0
        out[name] = {
            "rms_dbfs": round(float(20 * np.log10(max(rms, 1e-10))), 2),
            "centroid_hz": round(centroid, 1),
        }
    return out


def render_song_job(job: SongJob) -> Tuple[str, int, Dict[str, object]]:
    """Render, quantise and atomically write one song folder; returns its record."""
    root = Path(job.root)
    rng = job.rng
    stems = balance_stems(render_stems(job.song, job.soundfont, rng), rng)
    q_stems, mixture = quantise_stems(stems)
    final = root / job.split / job.song.name
    tmp = root / PARTIAL / job.split / job.song.name
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = {"mixture": mixture, **q_stems}
    for name in FILES:
        sf.write(tmp / f"{name}.wav", files[name], MUSIC_SAMPLE_RATE, subtype="PCM_16")
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # --overwrite: move the old folder aside, then swap atomically
        trash = root / PARTIAL / "trash" / job.split / job.song.name
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    record = {
        **job.song.summary(),
        "split": job.split,
        "index": job.index,
        "soundfont": Path(job.soundfont).name,
        "num_samples": int(mixture.shape[0]),
        "stats": stem_stats(files),
    }
    return job.split, job.index, record


def song_is_complete(folder: Path) -> bool:
    return folder.is_dir() and all((folder / f"{n}.wav").is_file() for n in FILES)


def compose_split(
    seed: int, split: str, count: int, duration: float, taken: set
) -> List[Tuple[Song, np.random.Generator]]:
    """Compose ``count`` songs of ``split``; names are made unique in index order."""
    programs = PROGRAM_SETS[split]
    out = []
    for index in range(count):
        rng = song_rng(seed, split, index)
        song = compose_song(rng, duration, programs)
        base, n = song.title, 2
        while song.name.lower() in taken:
            song.title = f"{base} {n}"
            n += 1
        taken.add(song.name.lower())
        out.append((song, rng))
    return out


def default_num_valid(num_train: int) -> int:
    """14 of MUSDB18-HQ's 100 train songs are validation songs; keep that ratio, at
    least one when there are two or more train songs."""
    if num_train < 2:
        return 0
    return max(1, int(round(num_train * 14 / 100)))


def generate_musdb_like(
    out: Union[str, Path],
    num_train: int = 12,
    num_test: int = 4,
    duration: float = 30.0,
    seed: int = 0,
    jobs: int = 1,
    num_valid: Optional[int] = None,
    train_soundfont: Union[str, Path] = DEFAULT_TRAIN_SOUNDFONT,
    test_soundfont: Union[str, Path] = DEFAULT_TEST_SOUNDFONT,
    overwrite: bool = False,
    progress: bool = True,
) -> Dict[str, object]:
    """Generate (or complete) a MUSDB18-HQ-like tree under ``out``; returns the manifest.

    Args:
        out: root folder (``train/``, ``test/``, ``valid_songs.txt``, manifest).
        num_train: songs in ``train/`` (validation songs included).
        num_test: songs in ``test/``.
        duration: seconds per song.
        seed: master seed.
        jobs: worker processes.
        num_valid: train songs listed as validation (default: 14 % of num_train).
        train_soundfont / test_soundfont: SoundFont 2 files for the two splits.
        overwrite: replace output made with other parameters.
        progress: show a tqdm bar.
    """
    if num_train < 0 or num_test < 0 or num_train + num_test == 0:
        raise ValueError(
            f"num_train={num_train}, num_test={num_test}: both must be >= 0 and at least "
            "one song must be requested"
        )
    if not duration > 0:
        raise ValueError(f"duration={duration} must be positive seconds, e.g. 30")
    if jobs < 1:
        raise ValueError(f"jobs={jobs} must be >= 1")
    num_valid = default_num_valid(num_train) if num_valid is None else num_valid
    if not 0 <= num_valid < max(num_train, 1):
        raise ValueError(
            f"num_valid={num_valid} must lie in [0, num_train) so that at least one "
            f"training song remains (num_train={num_train})"
        )
    require_tool("fluidsynth")
    require_tool("espeak-ng")
    soundfonts = {
        "train": str(require_soundfont(train_soundfont)),
        "test": str(require_soundfont(test_soundfont)),
    }
    root = Path(out)
    params = {
        "seed": int(seed),
        "num_train": int(num_train),
        "num_test": int(num_test),
        "num_valid": int(num_valid),
        "duration": float(duration),
        "sample_rate": MUSIC_SAMPLE_RATE,
        "train_soundfont": Path(soundfonts["train"]).name,
        "test_soundfont": Path(soundfonts["test"]).name,
        "format_version": FORMAT_VERSION,
    }
    generator = "espnet2_ext.datagen.musdb_like"
    with output_lock(root):
        previous = check_existing_output(
            root, generator, params, overwrite, ("train", "test")
        )
        remove_partial(root)
        taken: set = set()
        composed = {
            "train": compose_split(seed, "train", num_train, duration, taken),
            "test": compose_split(seed, "test", num_test, duration, taken),
        }
        same_params = previous is not None and previous.get("params") == params
        if previous is not None and not same_params:
            # --overwrite: drop songs of the old tree that the new one does not have.
            keep = {
                f"{s}/{song.name}" for s, items in composed.items() for song, _ in items
            }
            for key in previous.get("items", {}):
                split, _, name = key.partition("/")
                if key not in keep and split in SPLIT_IDS and name:
                    shutil.rmtree(root / split / name, ignore_errors=True)
        valid = [song.name for song, _ in composed["train"][num_train - num_valid :]]
        manifest: Dict[str, object] = {
            "generator": generator,
            "params": params,
            "complete": False,
            "valid_songs": valid if num_valid else [],
            "tools": tool_versions(),
            "items": {},
        }
        old_items = previous.get("items", {}) if same_params else {}
        jobs_todo: List[SongJob] = []
        for split, items in composed.items():
            for index, (song, rng) in enumerate(items):
                key = f"{split}/{song.name}"
                folder = root / split / song.name
                if not overwrite and song_is_complete(folder):
                    record = old_items.get(key)
                    if record is None:
                        record = {
                            **song.summary(),
                            "split": split,
                            "index": index,
                            "soundfont": Path(soundfonts[split]).name,
                        }
                    manifest["items"][key] = record
                    continue
                jobs_todo.append(
                    SongJob(str(root), split, index, song, rng, soundfonts[split])
                )
        write_json_atomic(root / MANIFEST, manifest)
        write_text_atomic(
            root / VALID_LIST, "".join(f"{n}\n" for n in manifest["valid_songs"])
        )
        results = run_jobs(
            render_song_job, jobs_todo, jobs, "musdb-like songs", progress
        )
        for split, index, record in results:
            manifest["items"][f"{split}/{record['name']}"] = record
        manifest["items"] = dict(
            sorted(
                manifest["items"].items(),
                key=lambda kv: (SPLIT_IDS[kv[1]["split"]], kv[1]["index"]),
            )
        )
        manifest["complete"] = True
        write_json_atomic(root / MANIFEST, manifest)
        remove_partial(root)
    return manifest


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m espnet2_ext.datagen.musdb_like",
        description="Generate a MUSDB18-HQ-like data set (train/test song folders with "
        "mixture and four stems) from FluidSynth-rendered GM soundfonts and "
        "espeak-ng singing.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output root folder")
    parser.add_argument("--num-train", type=int, default=12, help="train songs")
    parser.add_argument("--num-test", type=int, default=4, help="test songs")
    parser.add_argument(
        "--num-valid",
        type=int,
        default=None,
        help="train songs listed in valid_songs.txt (default 14 %% of " "--num-train)",
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per song")
    parser.add_argument("--seed", type=int, default=0, help="master seed")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--train-soundfont", default=str(DEFAULT_TRAIN_SOUNDFONT))
    parser.add_argument("--test-soundfont", default=str(DEFAULT_TEST_SOUNDFONT))
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing tree made with other parameters",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        manifest = generate_musdb_like(
            args.out,
            num_train=args.num_train,
            num_test=args.num_test,
            duration=args.duration,
            seed=args.seed,
            jobs=args.jobs,
            num_valid=args.num_valid,
            train_soundfont=args.train_soundfont,
            test_soundfont=args.test_soundfont,
            overwrite=args.overwrite,
        )
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = len(manifest["items"])
    print(f"{n} songs in {args.out} (valid: {len(manifest['valid_songs'])})")
    return 0


if __name__ == "__main__":
    # Run the importable module rather than __main__, so that worker processes can
    # unpickle the jobs and functions it sends them.
    from espnet2_ext.datagen.musdb_like import main as _main

    sys.exit(_main())
