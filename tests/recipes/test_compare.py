"""local/compare.sh end to end on a researcher's own data (espnet2_ext.datagen.own_data:
3 stems of their own names, a test song without melody, 10 unlabeled files in five
formats): MixIT pre-training, head selection, every arm trained, separated and scored
for 2 seeds at the smallest budget that trains (3 updates each), one table. Then the
same command again (it resumes: nothing runs, the same table) and one with other
settings on the same work folder (refused, nothing changed).

The numbers mean nothing at 3 updates; the table is checked against the scoring
stage's files it was built from.
"""

import json
import re
import shlex
import statistics
import subprocess
from pathlib import Path

import pytest
from recipe_helpers import FMA_RECIPE, recipe_env, tiny_config

from espnet2_ext.datagen.own_data import generate_own_data

pytestmark = pytest.mark.slow

COMPARE = FMA_RECIPE / "local" / "compare.sh"
STEMS = ["chords", "melody", "rhythm"]  # the data's order
ARMS = ["finetune", "scratch", "frozen", "frozen_scratch", "heads"]
SEEDS = ["1", "2"]
#: relative to the folder compare.sh is called from (the test's root)
OPTIONS = [
    "--songs", "own/songs", "--unlabeled", "own/unlabeled",
    "--valid_list", "own/my_valid_songs.txt", "--seeds", "1 2", "--nj", "1",
    "--jobs", "2", "--mixit_steps", "3", "--finetune_steps", "3",
    "--steps_per_epoch", "3",
    "--mixit_config", "conf/mixit.yaml", "--finetune_config", "conf/finetune.yaml",
    "--frozen_config", "conf/frozen.yaml",
    "--musdb_args", "--segment_size 4 --hop_size 2 --segment_seconds 2 "
    "--activity_args '--crop-seconds 2'",
]  # fmt: skip


def _compare(root: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(COMPARE), "--work", "work", *OPTIONS, *extra],
        cwd=root,
        env=recipe_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )


def _files(folder: Path) -> dict:
    """Every file under ``folder`` with its size and modification time."""
    return {
        p: (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One compare.sh run; returns the root (own/, conf/, work/, run.log)."""
    root = tmp_path_factory.mktemp("compare")
    generate_own_data(
        root / "own", num_train=4, num_test=2, duration=6.0, unlabeled_duration=10.5
    )
    demo = FMA_RECIPE / "conf"
    (root / "conf").mkdir()
    for name, src, seconds in (
        ("mixit", "train_mixit_demo.yaml", 1.0),
        ("finetune", "finetune_enh_demo.yaml", 2.0),
        ("frozen", "finetune_frozen_enh_demo.yaml", 2.0),
    ):
        # budget_config sets max_epoch x num_iters_per_epoch and the schedule
        tiny_config(
            demo / src,
            root / "conf" / f"{name}.yaml",
            preprocessor_conf={"segment_seconds": seconds},
            keep_nbest_models=1,
        )
    proc = _compare(root)
    (root / "run.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return root


def _row(text: str, section: str, arm: str) -> list:
    """The cells of ``arm``'s row in the table under ``## <section>``."""
    part = text[text.index(f"## {section}") :]
    part = part[: part.index("\n## ", 1)]
    (line,) = [ln for ln in part.splitlines() if ln.startswith(f"|`{arm}`:")]
    return line.strip("|").split("|")


def test_the_table_has_every_arm_and_seed_per_stem_and_the_differences(compared):
    work = compared / "work"
    text = (work / "report" / "RESULTS.md").read_text()
    summary = json.loads((work / "report" / "summary.json").read_text())
    assert {(r["arm"], r["seed"]) for r in summary["runs"]} == {
        (a, s) for a in ARMS for s in SEEDS
    }
    manifest = json.loads((compared / "own" / "generation_manifest.json").read_text())
    (silent_song,) = [
        song["name"] for song in manifest["songs"]["test"] if song["silent_stems"]
    ]
    for metric in ("uSDR", "cSDR"):
        section = f"{metric} (dB), mean ± sd over seeds"
        assert f"## {section}\n\n|arm|seeds|chords|melody|rhythm|average|" in text
        for arm in ARMS:
            cells = _row(text, section, arm)
            assert cells[1] == "2"  # seeds
            # each cell: mean ± sd over the seeds of the scoring stage's number
            for stem, cell in zip(STEMS + ["average"], cells[2:]):
                values = []
                for seed in SEEDS:
                    scoring = (
                        work / "musdb" / "exp" / f"enh_{arm}_seed{seed}"
                        / "separate_test" / "scoring" / "summary.json"
                    )  # fmt: skip
                    scored = json.loads(scoring.read_text())
                    values.append(scored["systems"][scored["tag"]][metric][stem])
                mean, sd = statistics.mean(values), statistics.stdev(values)
                assert cell.startswith(f"{mean:.2f} ± {sd:.2f}"), (metric, arm, stem)
            # the silent melody: uSDR on 1 of the 2 test songs, cSDR (museval) too
            assert cells[3].endswith("(1/2)")
    # training did something: fine-tuned and head-selected models differ
    assert _row(text, "uSDR", "finetune")[2:] != _row(text, "uSDR", "heads")[2:]

    # the paired differences: per seed, per (seed, song), per stem, per song
    for pair in ("finetune − scratch", "frozen − frozen_scratch"):
        for metric in ("uSDR", "cSDR"):
            assert re.search(
                rf"\|{pair}\|{metric}\|[-+]\d+\.\d\d ± \d+\.\d\d\|\[", text
            ), (pair, metric)
        diff = summary["differences"][pair]
        assert diff["seeds"] == SEEDS
        # uSDR: 2 seeds x 2 songs; cells: 2 seeds x (3 + 2 stems)
        assert diff["uSDR"]["per_seed_song"]["n"] == 4
        assert diff["uSDR"]["cells"]["n"] == 10
        assert diff["cSDR"]["per_seed_song"]["n"] == 2
    assert "|seed|finetune − scratch, uSDR|" in text
    assert re.search(r"\n\|1\|[-+]\d", text) and re.search(r"\n\|2\|[-+]\d", text)
    # silent pairs left out and listed
    assert f"Silent reference stems: {silent_song} / melody." in text
    assert f"|uSDR|{silent_song} / melody|10/10|" in text
    for stem in STEMS:
        assert f"|cSDR|{silent_song} / {stem}|10/10|" in text
    # head selection of both seeds, the times, the command line as typed
    assert re.search(r"\n\|1\|chords: \d+, melody: \d+, rhythm: \d+\|", text)
    assert re.search(r"\n\|2\|chords: \d+, melody: \d+, rhythm: \d+\|", text)
    assert "|mixit_seed2|" in text and "|heads_seed1|" in text
    assert f"    cd {compared} && {COMPARE} --work work --songs own/songs" in text
    # as typed: the same words through the shell, after a cd to where it was typed
    assert shlex.split(summary["command"]) == [
        "cd", str(compared), "&&", str(COMPARE), "--work", "work", *OPTIONS
    ]  # fmt: skip
    # the budget: 3 updates, the released schedule shrunk to them
    assert "3 updates, batch 2" in text and "warmupstaircaselr: warm-up 2" in text


def test_the_same_command_again_resumes_without_running_anything(compared):
    work = compared / "work"
    before = _files(work / "musdb" / "exp") | _files(work / "fma" / "exp")
    table = (work / "report" / "RESULTS.md").read_bytes()
    proc = _compare(compared)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    steps = ["songs", "unlabeled", "stats_mixit", "stats_finetune", "stats_frozen"]
    for name in steps + [
        f"{arm}_seed{seed}" for arm in ARMS + ["mixit"] for seed in SEEDS
    ]:
        assert f"(compare) {name}: done before" in proc.stdout, name
    assert "started" not in proc.stdout
    assert _files(work / "musdb" / "exp") | _files(work / "fma" / "exp") == before
    assert (work / "report" / "RESULTS.md").read_bytes() == table


def test_other_settings_on_the_same_work_folder_are_refused(compared):
    work = compared / "work"
    before = _files(work)
    proc = _compare(compared, "--finetune_steps", "6")
    assert proc.returncode != 0
    assert "was made with other settings" in proc.stderr
    assert "< finetune_steps=3" in proc.stderr and "> finetune_steps=6" in proc.stderr
    assert "Use another --work" in proc.stderr
    assert _files(work) == before


@pytest.mark.parametrize(
    "arms, refused",
    [("finetune scratch", "--unlabeled"), ("scratch frozen_scratch", "config")],
)
def test_the_unlabeled_folder_is_checked_only_when_an_arm_pre_trains(
    tmp_path, arms, refused
):
    # two bad options: the unlabeled folder, read only by the arms that start from a
    # MixIT model, and a config, checked after it; nothing may be written
    proc = subprocess.run(
        [
            str(COMPARE), "--work", "work", "--arms", arms,
            "--unlabeled", "no_such_folder", "--finetune_config", "no_such.yaml",
        ],
        cwd=tmp_path, env=recipe_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    if refused == "--unlabeled":
        assert f"--unlabeled {tmp_path}/no_such_folder: no such folder" in proc.stderr
    else:
        assert f"config {tmp_path}/no_such.yaml not found" in proc.stderr
        assert "--unlabeled" not in proc.stderr
    assert list(tmp_path.iterdir()) == []
