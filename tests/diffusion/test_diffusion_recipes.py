"""Recipes egs2/*/diffsep1: shell syntax, data preparation and its mixing protocol."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from diffusion_helpers import _one_thread  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
RECIPES = [
    ROOT / "egs2" / "vctk_fsd18" / "diffsep1",
    ROOT / "egs2" / "musdb18hq" / "diffsep1",
    ROOT / "egs2" / "synth2" / "diffsep1",
]


def _scp(path: Path) -> dict:
    return dict(line.split(maxsplit=1) for line in path.read_text().splitlines())


def _rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(x.astype(np.float64) ** 2))


def _check_test_set(test: Path, num_sources: int) -> None:
    mixtures = _scp(test / "wav.scp")
    refs = [_scp(test / f"spk{n}.scp") for n in range(1, num_sources + 1)]
    for key, path in mixtures.items():
        mix, fs = sf.read(path)
        sources = [sf.read(r[key])[0] for r in refs]
        assert fs == 16000 and all(len(s) == len(mix) for s in sources)
        assert np.allclose(mix, np.sum(sources, axis=0), atol=1e-6)
        for s in sources:
            assert -25.0 - 1e-3 <= _rms_db(s) <= -20.0 + 1e-3


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.parent.name)
def test_run_sh_parses_and_documents_its_stages(recipe):
    subprocess.run(["bash", "-n", str(recipe / "run.sh")], check=True)
    run = ["bash", str(recipe / "run.sh")]
    out = subprocess.run(
        run + ["--help"], check=True, capture_output=True, text=True
    ).stdout
    assert "Stages:" in out and "--stage" in out
    bad = subprocess.run(
        run + ["--no_such_option", "1"], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "unknown option" in bad.stderr


def test_music_data_prep_on_a_musdb_layout(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "musdb"
    for split, songs in (("train", ["a", "b", "c"]), ("test", ["z"])):
        for song in songs:
            folder = root / split / song
            folder.mkdir(parents=True)
            for k, stem in enumerate(("vocals", "bass", "drums", "other")):
                t = np.arange(44100 * 10) / 44100
                x = 0.2 * np.sin(2 * np.pi * 110 * (k + 1) * t)[:, None] * [1.0, 0.5]
                x = x + 0.01 * rng.standard_normal(x.shape)
                sf.write(folder / f"{stem}.wav", x, 44100)
    (root / "valid_songs.txt").write_text("c\n")
    out = tmp_path / "data"
    subprocess.run(
        [sys.executable, str(RECIPES[1] / "local" / "data_prep.py")]
        + ["--musdb_root", str(root), "--out", str(out)]
        + ["--stems", "vocals", "bass", "--num_test", "3"],
        check=True,
        capture_output=True,
    )
    train = _scp(out / "vocals_train" / "wav.scp")
    assert len(train) == 2 * 4  # 2 songs × 4 segments of 4 s with a 2 s hop in 10 s
    assert all(k.startswith(("a_", "b_")) for k in train)
    assert list(_scp(out / "bass_valid" / "wav.scp")) == ["c_0000", "c_0001"]
    x, fs = sf.read(next(iter(train.values())))
    assert fs == 16000 and x.shape == (64000,)
    _check_test_set(out / "test", 2)


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("fluidsynth")),
    reason="needs espeak-ng and fluidsynth",
)
def test_embedded_speech_and_event_data(tmp_path):
    out = tmp_path / "data"
    subprocess.run(
        [sys.executable, str(RECIPES[0] / "local" / "data_prep.py"), "--out", str(out)]
        + ["--num_speech_train", "3", "--num_speech_valid", "1"]
        + ["--num_events_per_class", "1", "--num_valid_events_per_class", "1"]
        + ["--num_test_events_per_class", "1", "--num_test", "3", "--seconds", "2"],
        check=True,
        capture_output=True,
    )
    categories = (out / "sfx_categories.txt").read_text().split()
    assert len(categories) == 24 and "snare" in categories
    speech = _scp(out / "speech_train" / "wav.scp")
    assert len(speech) == 3
    x, fs = sf.read(next(iter(speech.values())))
    assert fs == 16000 and len(x) > 8000 and np.abs(x).max() > 0.01
    labels = _scp(out / "sfx_train" / "utt2category")
    assert set(labels.values()) <= set(categories)
    _check_test_set(out / "test", 2)
    for line in (out / "test" / "utt2category").read_text().splitlines():
        key, first, event = line.split()
        assert first == "speech" and event in categories
