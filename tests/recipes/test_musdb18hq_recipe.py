"""The MUSDB18-HQ recipe, stages 1-7, on a very small generated data set."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import soundfile as sf
import yaml

from espnet2_ext.version import __version__

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs2" / "musdb18hq" / "enh1"
#: what a recipe run writes into its folder (a developer's earlier run, not copied)
OUTPUTS = shutil.ignore_patterns("data", "dump", "exp", "downloads")

TINY_TRAINING = dict(
    max_epoch=2,
    num_iters_per_epoch=2,
    batch_size=2,
    keep_nbest_models=2,
    num_workers=0,
    log_interval=1,
)


def _run(recipe, *args, check=True):
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        ["./run.sh", *args],
        cwd=recipe,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    if shutil.which("fluidsynth") is None:
        pytest.skip("fluidsynth is not installed (tools/setup_venv.sh installs it)")
    work = tmp_path_factory.mktemp("recipe") / "enh1"
    shutil.copytree(RECIPE, work, symlinks=False, ignore=OUTPUTS)
    config = yaml.safe_load((RECIPE / "conf" / "train_enh_demo.yaml").read_text())
    config.update(TINY_TRAINING)
    config["preprocessor_conf"]["segment_seconds"] = 2.0
    (work / "conf" / "train_enh_ci.yaml").write_text(yaml.safe_dump(config))
    _run(
        work,
        "--demo",
        "true",
        "--local_data_opts",
        "--demo true --demo_train 3 --demo_valid 1 --demo_test 1 --demo_duration 8",
        "--train_config",
        "conf/train_enh_ci.yaml",
        "--tag",
        "ci",
        "--nj",
        "1",
        "--segment_size",
        "4",
        "--hop_size",
        "2",
    )
    return work


def test_data_preparation_wrote_the_splits(recipe):
    for split, count in (("train", 2), ("valid", 1), ("test", 1)):
        lines = (recipe / "data" / split / "wav.scp").read_text().splitlines()
        assert len(lines) == count, split
        for n in range(1, 5):
            assert (recipe / "data" / split / f"spk{n}.scp").exists()
    for stem in ("vocals", "bass", "drums", "other"):
        assert (recipe / "dump" / "segments" / "train" / f"active_{stem}.tsv").exists()


def test_training_and_averaging(recipe):
    exp = recipe / "exp" / "enh_ci"
    assert (exp / "valid.loss.ave.pth").exists()
    assert (exp / "config.yaml").exists()
    assert (recipe / "exp" / "enh_stats_ci" / "train" / "speech_mix_shape").exists()


def test_whole_songs_separated_in_fixed_order(recipe):
    out = recipe / "exp" / "enh_ci" / "separate_test"
    mixture = (
        (recipe / "data" / "test" / "wav.scp").read_text().split(maxsplit=1)[1].strip()
    )
    info = sf.info(mixture)
    for stem in ("vocals", "bass", "drums", "other"):
        (song,) = [p for p in (out / "stems").iterdir()]
        est = sf.info(song / f"{stem}.wav")
        assert (est.frames, est.channels, est.samplerate) == (info.frames, 2, 44100)


def test_scoring_reports_model_and_mixture_baseline(recipe):
    scoring = recipe / "exp" / "enh_ci" / "separate_test" / "scoring"
    results = (scoring / "RESULTS.md").read_text()
    assert "uSDR" in results and "cSDR" in results
    summary = json.loads((scoring / "summary.json").read_text())
    text = json.dumps(summary)
    for stem in ("vocals", "bass", "drums", "other"):
        assert stem in text
    assert (scoring / "images" / "sdr_per_stem.png").stat().st_size > 1000


def test_pack_is_an_espnet_model_zoo_zip_with_the_plugin_version(recipe):
    packed = recipe / "exp" / "enh_ci" / "packed.zip"
    with zipfile.ZipFile(packed) as z:
        names = z.namelist()
        meta = yaml.safe_load(z.read("meta.yaml"))
    assert meta["plugins"]["espnet2_ext"] == __version__
    assert any(n.endswith("config.yaml") for n in names)
    assert any(n.endswith(".pth") for n in names)
    assert any(n.endswith("RESULTS.md") for n in names)
    assert any("images/" in n for n in names)


def test_a_stage_can_be_run_again(recipe):
    scoring = recipe / "exp" / "enh_ci" / "separate_test" / "scoring" / "RESULTS.md"
    before = scoring.stat().st_mtime_ns
    _run(
        recipe,
        "--demo",
        "true",
        "--tag",
        "ci",
        "--nj",
        "1",
        "--train_config",
        "conf/train_enh_ci.yaml",
        "--stage",
        "6",
        "--stop_stage",
        "6",
    )
    assert scoring.stat().st_mtime_ns > before


def test_missing_dataset_folder_stops_before_writing(tmp_path):
    work = tmp_path / "enh1"
    shutil.copytree(RECIPE, work, symlinks=False, ignore=OUTPUTS)
    proc = _run(
        work,
        "--local_data_opts",
        f"--musdb_root {tmp_path / 'nowhere'}",
        "--stop_stage",
        "1",
        check=False,
    )
    assert proc.returncode != 0
    assert "nowhere" in proc.stderr + proc.stdout
    assert not (work / "data").exists()
