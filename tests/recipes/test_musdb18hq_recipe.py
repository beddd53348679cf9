"""The MUSDB18-HQ recipe end to end on a small song tree of a researcher's own kind.

espnet2_ext.datagen.own_data's tree: three stems with names of their own (melody,
chords, rhythm), a training song and a test song without melody, a validation list
outside the tree. Stages 1-11 once (module fixture), then the options that reuse that
run (resume, statistics reuse, skip options, download_model, the stem checks, the Slurm
runner with stand-in sbatch/srun and a two-node training).
"""

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
from recipe_helpers import (
    MUSDB_RECIPE,
    ROOT,
    copy_recipe,
    fake_slurm,
    recipe_env,
    run_recipe,
    tiny_config,
)

from espnet2_ext.datagen.own_data import generate_own_data
from espnet2_ext.version import __version__

pytestmark = pytest.mark.slow

STEMS = [
    "chords",
    "melody",
    "rhythm",
]  # the data's order: MUSDB's names first, then a-z
#: the options every run of the tiny experiment shares
TINY = [
    "--size", "tiny", "--enh_config", "conf/train_enh_ci.yaml", "--nj", "1",
    "--segment_size", "4", "--hop_size", "2", "--segment_seconds", "2",
    "--activity_args", "--crop-seconds 2", "--test_sets", "test",
]  # fmt: skip


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """Stages 1-11 on the tree; returns the recipe folder (its output in run.log)."""
    work = tmp_path_factory.mktemp("musdb")
    own = generate_own_data(
        work / "own", num_train=4, num_test=2, num_unlabeled=0, duration=6.0
    )
    songs, valid_list = work / "own" / "songs", work / "own" / own["valid_list"]
    recipe = copy_recipe(MUSDB_RECIPE, work / "enh1")
    tiny_config(
        MUSDB_RECIPE / "conf" / "train_enh_demo.yaml",
        recipe / "conf" / "train_enh_ci.yaml",
        preprocessor_conf={"segment_seconds": 2.0},
    )
    proc = run_recipe(
        recipe,
        "--data", str(songs), "--valid_list", str(valid_list),
        *TINY, "--enh_tag", "ci", "--stop_stage", "11",
    )  # fmt: skip
    (recipe / "run.log").write_text(proc.stdout + proc.stderr)
    return recipe


def _exp(recipe) -> Path:
    return recipe / "exp" / "enh_ci"


def test_data_has_the_trees_stems_and_the_validation_list(recipe):
    for split, songs in (("train", 2), ("valid", 2), ("test", 2)):
        data = recipe / "data" / split
        assert (data / "stems").read_text().split() == STEMS, split
        assert len((data / "wav.scp").read_text().splitlines()) == songs
    manifest = json.loads((recipe.parent / "own/generation_manifest.json").read_text())
    valid_songs = (recipe / "data" / "valid" / "uid2song").read_text()
    for song in manifest["valid_songs"]:
        assert song in valid_songs
    for stem in STEMS:
        assert (recipe / "dump" / "segments" / "train" / f"active_{stem}.tsv").exists()


def test_stages_are_espnets_and_training_shows_progress(recipe):
    log = (recipe / "run.log").read_text()
    for n in (1, 3, 4, 5, 6, 7, 8, 11):
        assert f"Stage {n}: " in log and f"Stage {n} done in" in log, n
    for n in (2, 9, 10, 12, 13):
        assert f"Stage {n}:" not in log, n
    # epoch, losses and time left on the console; the full log in exp/
    assert "epoch 1/2 done: train loss" in log and "valid loss" in log
    assert "epoch 2/2 started; about" in log and "left" in log
    assert "iter_time=" not in log
    assert "iter_time=" in (_exp(recipe) / "train.log").read_text()


def test_the_stems_are_carried_into_the_training_config(recipe):
    config = yaml.safe_load((_exp(recipe) / "config.yaml").read_text())
    assert config["stems"] == STEMS
    assert config["num_spk"] == config["separator_conf"]["num_spk"] == 3
    assert config["preprocessor_conf"]["stems"] == STEMS
    assert config["resume"] is True
    assert (_exp(recipe) / "valid.loss.ave.pth").exists()


def test_statistics_folder_is_keyed_by_data_and_config(recipe):
    (stats,) = (recipe / "exp").glob("enh_stats_*")
    key = json.loads((stats / "key.json").read_text())
    assert stats.name == f"enh_stats_{key['key']}"
    assert "dump/segments/train/mix_segments.scp" in key["files"]
    assert (stats / "train" / "speech_mix_shape").exists()


def test_whole_songs_separated_with_the_models_stem_names(recipe):
    out = _exp(recipe) / "separate_test"
    manifest = json.loads((recipe.parent / "own/generation_manifest.json").read_text())
    songs = sorted(p.name for p in (out / "stems").iterdir())
    assert songs == sorted(song["name"] for song in manifest["songs"]["test"])
    assert any(song["silent_stems"] for song in manifest["songs"]["test"])
    for song in songs:
        info = sf.info(out / "refs" / song / "mixture.wav")
        for stem in STEMS:
            est = sf.info(out / "stems" / song / f"{stem}.wav")
            assert (est.frames, est.channels, est.samplerate) == (
                info.frames, 2, 44100,
            )  # fmt: skip
            ref = (out / "refs" / song / f"{stem}.wav").resolve()
            assert ref.parent.name == song and ref.stem == stem


def test_scoring_names_the_stems_and_the_mixture_baseline(recipe):
    scoring = _exp(recipe) / "separate_test" / "scoring"
    results = (scoring / "RESULTS.md").read_text()
    assert "uSDR" in results and "mixture" in results
    for stem in STEMS:
        assert stem in results
    assert (recipe / "exp" / "mixture_baseline_test.json").exists()


def test_pack_keeps_espnets_images_and_adds_the_scoring_plots(recipe):
    exp = _exp(recipe)
    assert (exp / "images" / "loss.png").exists()  # ESPnet's training curve
    assert (exp / "images" / "scoring" / "sdr_per_stem.png").stat().st_size > 1000
    with zipfile.ZipFile(exp / "packed.zip") as z:
        names = z.namelist()
        meta = yaml.safe_load(z.read("meta.yaml"))
    assert meta["plugins"]["espnet2_ext"] == __version__
    # the chunking stage 7 evaluated the model with (TINY: 4 s chunks, 2 s hop)
    chunking = meta["espnet2_ext"]["chunking"]
    assert (chunking["segment"], chunking["hop"]) == (4.0, 2.0)
    assert any(n.endswith("RESULTS.md") for n in names)
    assert any(n.endswith("images/loss.png") for n in names)
    assert any(n.endswith("images/scoring/sdr_per_stem.png") for n in names)


def test_training_again_resumes_and_keeps_the_earlier_log(recipe):
    before = (_exp(recipe) / "train.log").read_text()
    proc = run_recipe(
        recipe, *TINY, "--enh_tag", "ci", "--stage", "6", "--stop_stage", "6"
    )
    assert "The training was resumed" in proc.stdout
    assert (_exp(recipe) / "train.1.log").read_text() == before
    assert "--resume true" in (_exp(recipe) / "train.log").read_text()


def test_old_option_names_work_with_one_deprecation_line_each(recipe):
    # and the statistics of this data and config are reused under another name
    proc = run_recipe(
        recipe, *TINY, "--train_config", "conf/train_enh_ci.yaml", "--tag", "other",
        "--stage", "5", "--stop_stage", "5",
    )  # fmt: skip
    assert proc.stderr.count("--train_config is deprecated, use --enh_config") == 1
    assert proc.stderr.count("--tag is deprecated, use --enh_tag") == 1
    assert "already holds them for this data and config" in proc.stdout
    assert len(list((recipe / "exp").glob("enh_stats_*"))) == 1
    old = run_recipe(recipe, "--demo", "false", "--stage", "99", check=True)
    assert "--demo is deprecated" in old.stderr


def test_skip_options_skip_their_stages(recipe):
    exp = _exp(recipe)
    before = {p: p.stat().st_mtime_ns for p in exp.rglob("*") if p.is_file()}
    proc = run_recipe(
        recipe, *TINY, "--enh_tag", "ci", "--stage", "1", "--stop_stage", "13",
        "--skip_data_prep", "true", "--skip_train", "true", "--skip_eval", "true",
        "--skip_packing", "true", "--skip_upload_hf", "true",
    )  # fmt: skip
    assert "Stage " not in proc.stdout.replace("Successfully finished stages", "")
    after = {p: p.stat().st_mtime_ns for p in exp.rglob("*") if p.is_file()}
    assert after == before
    bad = run_recipe(recipe, *TINY, "--skip_train", "yes", check=False)
    assert bad.returncode != 0 and "--skip_train is true or false" in bad.stderr


def test_download_model_evaluates_a_pack_without_training(recipe):
    proc = run_recipe(
        recipe, *TINY, "--download_model", "exp/enh_ci/packed.zip",
        "--skip_data_prep", "true",
    )  # fmt: skip
    assert "Stage 6" not in proc.stdout and "Stage 11" not in proc.stdout
    exp = recipe / "exp" / "download_enh_ci_packed"
    assert (exp / "config.yaml").is_symlink()
    ours = json.loads((exp / "separate_test/scoring/summary.json").read_text())
    trained = json.loads(
        (_exp(recipe) / "separate_test/scoring/summary.json").read_text()
    )
    # one mixture-baseline cache for both systems, keyed by the references' content:
    # the second system's scoring took every song's baseline from it
    cache = json.loads((recipe / "exp" / "mixture_baseline_test.json").read_text())
    assert ours["num_scored"] == trained["num_scored"] == len(cache["songs"]) == 2
    songs = list((exp / "separate_test/scoring/songs").glob("*.json"))
    assert len(songs) == 2
    assert all(json.loads(p.read_text())["baseline_cached"] for p in songs)
    # the same weights on the same song: the same uSDR, stem by stem
    a = ours["systems"]["download_enh_ci_packed"]["uSDR"]
    b = trained["systems"]["ci"]["uSDR"]
    assert a.keys() == b.keys() and set(STEMS) <= set(a)
    for stem in a:
        assert (a[stem] is None) == (b[stem] is None), stem
        assert a[stem] is None or abs(a[stem] - b[stem]) < 1e-6, stem


def test_a_model_and_data_with_other_stems_stop_with_both_lists(recipe):
    other = recipe / "data" / "test_vocals"
    shutil.copytree(recipe / "data" / "test", other)
    (other / "stems").write_text("chords\nmelody\nvocals\n")
    out = _exp(recipe) / "separate_test_vocals"
    proc = run_recipe(
        recipe, *TINY, "--enh_tag", "ci", "--test_sets", "test_vocals",
        "--stage", "7", "--stop_stage", "8", check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "stems mismatch" in proc.stderr
    assert "(chords melody rhythm)" in proc.stderr
    assert "(chords melody vocals)" in proc.stderr
    assert not out.exists()
    # --stems names a stem the data does not have: stopped before anything runs
    proc = run_recipe(
        recipe, *TINY, "--enh_tag", "ci", "--stems", "melody vocals",
        "--stage", "7", "--stop_stage", "8", check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "(melody vocals)" in proc.stderr
    assert "(chords melody rhythm)" in proc.stderr


def test_a_diverging_training_stops_the_recipe_before_inference(recipe):
    # lr 1e8: the loss blows up; stage 6 fails, stages 7-8 never run on that model
    proc = run_recipe(
        recipe, *TINY, "--enh_tag", "diverged", "--enh_args", "--optim_conf lr=1.0e+8",
        "--stage", "6", "--stop_stage", "8", check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    exp = recipe / "exp" / "enh_diverged"
    log = (exp / "train.log").read_text()
    assert "enh_train: error:" in log and "diverged" in log
    assert "Stage 7" not in proc.stdout
    assert not (exp / "separate_test").exists()
    assert not list(exp.glob("valid.*.pth"))


def test_more_gpus_than_present_stop_before_anything(recipe):
    import torch

    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has two GPUs")
    proc = run_recipe(
        recipe, *TINY, "--enh_tag", "two_gpus", "--ngpu", "2",
        "--stage", "6", "--stop_stage", "6", check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "--ngpu 2 needs 2 GPU(s), this machine has" in proc.stderr
    assert not (recipe / "exp" / "enh_two_gpus").exists()


def test_a_paper_size_config_on_the_cpu_is_warned_about(recipe):
    proc = run_recipe(
        recipe, *TINY, "--size", "small", "--enh_config",
        "conf/tuning/train_enh_bs_locoformer_small.yaml", "--enh_tag", "small_cpu",
        "--ngpu", "0", "--stage", "6", "--stop_stage", "6", check=False,
    )  # fmt: skip
    assert (
        "WARNING: conf/tuning/train_enh_bs_locoformer_small.yaml is a paper-size"
        in (proc.stdout)
    )
    assert "4 blocks, D = 96" in proc.stdout and "--ngpu 0 trains it" in proc.stdout
    # its statistics (another preprocessor config) were never collected: it stops there
    assert proc.returncode != 0 and "run stage 5 first" in proc.stderr
    assert not (recipe / "exp" / "enh_small_cpu").exists()


def test_slurm_runner_and_two_node_training_through_srun(recipe, tmp_path):
    calls = tmp_path / "calls.txt"
    env = recipe_env(CMD_BACKEND="slurm")
    env["PATH"] = f"{fake_slurm(tmp_path / 'bin', calls)}:{env['PATH']}"
    own = recipe.parent / "own"
    valid_list = (
        own / json.loads((own / "generation_manifest.json").read_text())["valid_list"]
    )
    proc = run_recipe(
        recipe, "--data", str(own / "songs"), "--valid_list", str(valid_list), *TINY,
        "--enh_tag", "nodes2", "--num_nodes", "2", "--enh_args", "--max_epoch 1",
        "--stage", "1", "--stop_stage", "6", env=env,
    )  # fmt: skip
    lines = calls.read_text().splitlines()
    sbatch = [line for line in lines if line.startswith("sbatch ")]
    (srun,) = [line for line in lines if line.startswith("srun ")]
    # stages 1, 3, 4 as CPU jobs, stage 6 on two nodes: conf/slurm.conf's translation
    assert len(sbatch) == 4 and sbatch[0].endswith("/dump/logs/q/data.sh")
    assert "wrote data/" in (recipe / "dump" / "logs" / "data.log").read_text()
    assert "-p cpu" in sbatch[0] and "--mem 16G" in sbatch[0]
    assert "--time 4:00:00" in sbatch[0] and "--wait" in sbatch[0]
    assert "--nodes 2" in sbatch[-1] and "--time 48:00:00" in sbatch[-1]
    assert "--dist_launcher slurm" in srun and "--dist_backend gloo" in srun
    assert "--resume true" in srun
    # both ranks trained one model (the same data again: the statistics were reused)
    log = (recipe / "exp" / "enh_nodes2" / "train.log").read_text()
    assert "/2] " in log and log.count("espnet2_ext/bin/enh_train.py") == 2
    assert (recipe / "exp" / "enh_nodes2" / "valid.loss.ave.pth").exists()
    assert "already holds them" in proc.stdout

    # a refused submission: the message, a non-zero status, the experiment untouched
    exp = _exp(recipe)
    before = {p.name: p.read_bytes() for p in exp.glob("*.pth")}
    logs = sorted(p.read_text() for p in exp.glob("train*.log"))
    env["FAKE_SBATCH_ERROR"] = "Batch job submission failed: Invalid partition name"
    proc = run_recipe(
        recipe, *TINY, "--enh_tag", "ci", "--stage", "6", "--stop_stage", "6",
        env=env, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "sbatch did not accept the job" in proc.stderr
    assert "Invalid partition name" in proc.stderr
    assert {p.name: p.read_bytes() for p in exp.glob("*.pth")} == before
    assert sorted(p.read_text() for p in exp.glob("train*.log")) == logs


# ------------------------------------------------------------------ environment
def _source_path_sh(recipe: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", '. ./path.sh && echo "PYTHON=$python"'],
        cwd=recipe,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _bare_env(**extra) -> dict:
    """No project Python on PATH, none named in the environment."""
    env = recipe_env(**extra)
    env["PATH"] = "/usr/bin:/bin"
    return env


@pytest.mark.skipif(
    not (ROOT / ".venv" / "bin" / "python").exists(), reason="no .venv (setup_venv.sh)"
)
def test_a_copied_recipe_finds_the_project_or_says_what_to_set(tmp_path):
    inside = _source_path_sh(MUSDB_RECIPE, _bare_env())
    assert inside.returncode == 0, inside.stderr
    assert f"PYTHON={ROOT}/.venv/bin/python" in inside.stdout
    assert "the repository this recipe is in" in inside.stderr

    # cp -rL: the template's files copied, the recipe outside the repository
    copy = tmp_path / "my_exp"
    shutil.copytree(MUSDB_RECIPE, copy, symlinks=False, ignore=shutil.ignore_patterns(
        "data", "dump", "exp", "downloads", "tuning"))  # fmt: skip
    lost = _source_path_sh(copy, _bare_env())
    if lost.returncode == 0:  # the system python3 has espnet2_ext installed
        assert "python3 on PATH imports espnet2_ext" in lost.stderr
    else:
        assert "ESPNET2_EXT_ROOT" in lost.stderr and "PYTHON=" in lost.stderr
    found = _source_path_sh(copy, _bare_env(ESPNET2_EXT_ROOT=str(ROOT)))
    assert found.returncode == 0, found.stderr
    assert f"PYTHON={ROOT}/.venv/bin/python" in found.stdout
    assert f"ESPNET2_EXT_ROOT={ROOT}" in found.stderr
    chosen = _source_path_sh(copy, _bare_env(PYTHON=sys.executable))
    assert f"PYTHON={sys.executable}" in chosen.stdout
    assert "PYTHON is set" in chosen.stderr
    installed = _bare_env()
    installed["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    via_path = _source_path_sh(copy, installed)
    assert via_path.returncode == 0, via_path.stderr
    assert "python3 on PATH imports espnet2_ext" in via_path.stderr

    # cp -r keeps the relative links, which now point nowhere: said so
    broken = tmp_path / "copied_with_links"
    shutil.copytree(MUSDB_RECIPE, broken, symlinks=True, ignore=shutil.ignore_patterns(
        "data", "dump", "exp", "downloads"))  # fmt: skip
    proc = subprocess.run(
        ["./run.sh", "--stage", "7"], cwd=broken, capture_output=True, text=True,
        env=_bare_env(ESPNET2_EXT_ROOT=str(ROOT)), timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0 and "broken link" in proc.stderr


def test_missing_dataset_folder_stops_before_writing(tmp_path):
    work = copy_recipe(MUSDB_RECIPE, tmp_path / "enh1")
    proc = run_recipe(
        work, "--data", str(tmp_path / "nowhere"), "--size", "tiny",
        "--stop_stage", "1", check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "nowhere" in proc.stderr + proc.stdout
    assert not (work / "data").exists()
