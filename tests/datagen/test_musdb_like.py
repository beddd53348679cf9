"""The MUSDB18-HQ-like generator: layout, exact mixtures, splits, determinism, resuming."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.datagen.compose import TEST_PROGRAMS, TRAIN_PROGRAMS
from espnet2_ext.datagen.musdb_like import (
    FILES,
    MANIFEST,
    PARTIAL,
    VALID_LIST,
    default_num_valid,
    generate_musdb_like,
    main,
    quantise_stems,
)
from espnet2_ext.datagen.render import DEFAULT_TEST_SOUNDFONT, DEFAULT_TRAIN_SOUNDFONT

pytestmark = pytest.mark.skipif(
    shutil.which("fluidsynth") is None
    or shutil.which("espeak-ng") is None
    or not DEFAULT_TRAIN_SOUNDFONT.exists()
    or not DEFAULT_TEST_SOUNDFONT.exists(),
    reason="needs fluidsynth, espeak-ng and both GM soundfonts",
)

DURATION = 2.0
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Two train songs and one test song of 2 s, rendered by two worker processes."""
    root = tmp_path_factory.mktemp("musdb_like")
    manifest = generate_musdb_like(
        root, num_train=2, num_test=1, duration=DURATION, seed=0, jobs=2, progress=False
    )
    return root, manifest


def song_dirs(root, split):
    return sorted(p for p in (root / split).iterdir() if p.is_dir())


def read_song(folder):
    return {n: sf.read(folder / f"{n}.wav", dtype="int16")[0] for n in FILES}


def test_layout_and_file_properties(tree):
    root, manifest = tree
    assert len(song_dirs(root, "train")) == 2 and len(song_dirs(root, "test")) == 1
    assert not (root / PARTIAL).exists()
    assert (
        manifest["complete"] and json.loads((root / MANIFEST).read_text()) == manifest
    )
    for split in ("train", "test"):
        for folder in song_dirs(root, split):
            assert sorted(p.name for p in folder.iterdir()) == sorted(
                f"{n}.wav" for n in FILES
            )
            for name in FILES:
                info = sf.info(folder / f"{name}.wav")
                assert (info.samplerate, info.channels, info.subtype) == (
                    44100,
                    2,
                    "PCM_16",
                )
                assert info.frames == int(DURATION * 44100)


def test_mixture_is_exactly_the_sum_of_the_stems(tree):
    root, _ = tree
    for folder in song_dirs(root, "train") + song_dirs(root, "test"):
        audio = read_song(folder)
        total = sum(audio[s].astype(np.int32) for s in MUSDB_STEMS)
        assert np.array_equal(audio["mixture"].astype(np.int32), total)
        assert np.abs(audio["mixture"]).max() > 1000  # not a near-silent song


def test_valid_list_names_train_songs(tree):
    root, manifest = tree
    valid = (root / VALID_LIST).read_text().splitlines()
    assert valid == manifest["valid_songs"] and len(valid) == default_num_valid(2) == 1
    assert (root / "train" / valid[0]).is_dir()
    assert valid[0] == song_dirs_by_index(manifest, "train")[-1]


def song_dirs_by_index(manifest, split):
    items = [r for r in manifest["items"].values() if r["split"] == split]
    return [r["name"] for r in sorted(items, key=lambda r: r["index"])]


def test_test_split_uses_the_other_soundfont_and_program_set(tree):
    _, manifest = tree
    for rec in manifest["items"].values():
        programs = TEST_PROGRAMS if rec["split"] == "test" else TRAIN_PROGRAMS
        expected = "TimGM6mb.sf2" if rec["split"] == "test" else "FluidR3_GM.sf2"
        assert rec["soundfont"] == expected
        assert rec["program_set"] == programs.name
        assert rec["singer"] in {v for v, _ in programs.singers}
        bass = [p["program"] for p in rec["parts"] if p["stem"] == "bass"]
        assert bass and all(b in programs.bass for b in bass)


def band_fraction(x, low, high):
    spec = np.abs(np.fft.rfft(x.astype(np.float64).mean(axis=1))) ** 2
    freqs = np.fft.rfftfreq(x.shape[0], 1 / 44100)
    return spec[(freqs >= low) & (freqs < high)].sum() / spec.sum()


def test_stems_sound_and_have_distinct_spectra(tree):
    root, _ = tree
    for folder in song_dirs(root, "train") + song_dirs(root, "test"):
        audio = read_song(folder)
        for stem in MUSDB_STEMS:
            rms = np.sqrt(np.mean((audio[stem] / 32768.0) ** 2))
            assert rms > 10 ** (-50 / 20), (folder.name, stem)
        low = {s: band_fraction(audio[s], 0, 300) for s in MUSDB_STEMS}
        assert low["bass"] > 0.8 and low["bass"] > low["vocals"] + 0.3, low
        assert low["bass"] > low["other"], low
        high = {s: band_fraction(audio[s], 5000, 22050) for s in MUSDB_STEMS}
        assert high["drums"] > high["bass"] * 10, high  # cymbals and hats
        specs = {
            s: np.log1p(np.abs(np.fft.rfft(audio[s].mean(axis=1), 4096)))
            for s in MUSDB_STEMS
        }
        for a in MUSDB_STEMS:
            for b in MUSDB_STEMS:
                if a < b:
                    assert not np.allclose(specs[a], specs[b], rtol=0.05)


def test_rerun_with_same_parameters_skips_complete_songs(tree):
    root, manifest = tree
    stamps = {p: p.stat().st_mtime_ns for p in root.glob("*/*/*.wav")}
    again = generate_musdb_like(
        root, num_train=2, num_test=1, duration=DURATION, seed=0, progress=False
    )
    assert {p: p.stat().st_mtime_ns for p in root.glob("*/*/*.wav")} == stamps
    assert again["items"].keys() == manifest["items"].keys()


def test_other_parameters_are_refused_without_overwrite(tree):
    root, _ = tree
    with pytest.raises(ValueError, match="--overwrite"):
        generate_musdb_like(root, num_train=2, num_test=1, duration=3.0, seed=0)
    assert (
        main(
            [
                "--out",
                str(root),
                "--num-train",
                "2",
                "--num-test",
                "1",
                "--duration",
                "3",
                "--seed",
                "0",
            ]
        )
        == 2
    )


def test_foreign_data_is_refused(tmp_path):
    (tmp_path / "train" / "Real Artist - Real Song").mkdir(parents=True)
    with pytest.raises(ValueError, match="not output of this generator"):
        generate_musdb_like(tmp_path, num_train=1, num_test=0, duration=1.0)


def test_interrupted_run_leaves_complete_songs_and_resumes_identically(tree, tmp_path):
    """Kill the CLI while it renders the second song: the first song is complete, nothing
    half-written is in train/, and resuming gives the very files of the reference tree
    (same seed, one worker here, two there)."""
    ref_root, _ = tree
    out = tmp_path / "interrupted"
    cmd = [
        sys.executable,
        "-m",
        "espnet2_ext.datagen.musdb_like",
        "--out",
        str(out),
        "--num-train",
        "2",
        "--num-test",
        "0",
        "--num-valid",
        "1",
        "--duration",
        str(DURATION),
        "--seed",
        "0",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "train").is_dir() and any((out / "train").iterdir()):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = song_dirs(out, "train")
    assert len(done) == 1
    for folder in done:  # whatever is in train/ is complete
        assert all(
            sf.info(folder / f"{n}.wav").frames == DURATION * 44100 for n in FILES
        )
    assert json.loads((out / MANIFEST).read_text())["complete"] is False
    first = {p: p.stat().st_mtime_ns for p in done[0].iterdir()}
    generate_musdb_like(
        out,
        num_train=2,
        num_test=0,
        num_valid=1,
        duration=DURATION,
        seed=0,
        progress=False,
    )
    assert {p: p.stat().st_mtime_ns for p in done[0].iterdir()} == first  # not redone
    assert not (out / PARTIAL).exists()
    assert [p.name for p in song_dirs(out, "train")] == [
        p.name for p in song_dirs(ref_root, "train")
    ]
    for folder in song_dirs(out, "train"):
        for n in FILES:
            assert (folder / f"{n}.wav").read_bytes() == (
                ref_root / "train" / folder.name / f"{n}.wav"
            ).read_bytes()


def test_other_seed_gives_other_songs_and_overwrite_replaces(tree, tmp_path):
    ref_root, _ = tree
    out = tmp_path / "seed1"
    m1 = generate_musdb_like(
        out, num_train=1, num_test=0, duration=DURATION, seed=1, progress=False
    )
    (name,) = [r["name"] for r in m1["items"].values()]
    ref_names = [p.name for p in song_dirs(ref_root, "train")]
    assert name not in ref_names
    ours = sf.read(out / "train" / name / "mixture.wav")[0]
    theirs = sf.read(ref_root / "train" / ref_names[0] / "mixture.wav")[0]
    assert not np.allclose(ours, theirs, atol=1e-3)
    m2 = generate_musdb_like(
        out,
        num_train=1,
        num_test=0,
        duration=1.0,
        seed=1,
        overwrite=True,
        progress=False,
    )
    assert m2["params"]["duration"] == 1.0
    assert sf.info(out / "train" / name / "mixture.wav").frames == 44100
    assert not (out / PARTIAL).exists()


def test_quantisation_scales_all_stems_together_when_the_sum_overflows():
    rng = np.random.default_rng(0)
    stems = {
        s: np.full((100, 2), 0.4) + 0.01 * rng.standard_normal((100, 2))
        for s in MUSDB_STEMS
    }
    q, mix = quantise_stems(stems)
    assert mix.dtype == np.int16 and all(v.dtype == np.int16 for v in q.values())
    assert np.array_equal(
        mix.astype(np.int32), sum(v.astype(np.int32) for v in q.values())
    )
    assert np.abs(mix.astype(np.int32)).max() <= 32767
    ratio = q["vocals"].astype(float).mean() / q["bass"].astype(float).mean()
    expected = stems["vocals"].mean() / stems["bass"].mean()
    assert ratio == pytest.approx(expected, rel=1e-3)  # one common scale


def test_invalid_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="at least"):
        generate_musdb_like(tmp_path, num_train=0, num_test=0)
    with pytest.raises(ValueError, match="num_valid"):
        generate_musdb_like(tmp_path, num_train=2, num_test=0, num_valid=2)
    with pytest.raises(ValueError, match="duration"):
        generate_musdb_like(tmp_path, num_train=1, num_test=0, duration=0)
    assert not any(tmp_path.iterdir())  # nothing written for refused arguments
