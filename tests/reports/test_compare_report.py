"""The comparison table (espnet2_ext.reports.compare, bin/compare_report) on scoring
folders written by hand in the scoring stage's format (reports/scores.py:
``summary.json`` and ``scores.csv``), with numbers whose mean, sd and paired
differences are known.

The set: stems chords, melody, rhythm; songs A, B, C; song C has a silent melody, so
(as museval does) its melody has no uSDR and none of its stems has a cSDR. Arm
``scratch``, seed s = 1, 2, 3: uSDR = 2 + j + s/2 for stem j on every song, cSDR the
same + 0.25. Arm ``finetune`` = scratch + d_s + e_t with d = (1, 2, 3) per seed and
e = (−1.5, 0, +1.5) per song. The mixture baseline: −3 − j (uSDR), −2 − j (cSDR).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from espnet2_ext.bin.compare_report import main as compare_report_main
from espnet2_ext.reports.compare import build_comparison

STEMS = ["chords", "melody", "rhythm"]
SONGS = ["A", "B", "C"]
SEEDS = ["1", "2", "3"]
D = {"1": 1.0, "2": 2.0, "3": 3.0}
E = {"A": -1.5, "B": 0.0, "C": 1.5}
#: t quantile 0.975 with 2 degrees of freedom (the 95 % interval over 3 seeds)
T_975_2 = 4.302652729911275


def _defined(metric: str, song: str, stem: str) -> bool:
    if song != "C":
        return True
    return metric == "uSDR" and stem != "melody"


def _per_song(arm: str, seed: str) -> dict:
    """``{metric: {(song, stem): dB or NaN}}``."""
    out = {"uSDR": {}, "cSDR": {}}
    for metric, offset in (("uSDR", 0.0), ("cSDR", 0.25)):
        for song in SONGS:
            for j, stem in enumerate(STEMS):
                value = 2 + j + int(seed) / 2 + offset
                if arm == "finetune":
                    value += D[seed] + E[song]
                if arm == "mixture":
                    value = -3 - j + 1.0 * (metric == "cSDR")
                ok = _defined(metric, song, stem)
                out[metric][(song, stem)] = value if ok else math.nan
    return out


def _summary(per_song: dict) -> dict:
    """The scoring stage's numbers: uSDR mean over songs, cSDR median over songs,
    average = mean of the stems; undefined songs left out."""
    out = {}
    for metric, reduce in (("uSDR", np.nanmean), ("cSDR", np.nanmedian)):
        row = {
            stem: float(reduce([per_song[metric][(t, stem)] for t in SONGS]))
            for stem in STEMS
        }
        row["average"] = float(np.mean([row[s] for s in STEMS]))
        out[metric] = row
    return out


def write_scoring(root: Path, arm: str, seed: str, songs=SONGS, mixture=None) -> Path:
    """A scoring folder of run (arm, seed) as music_score writes it."""
    tag = f"{arm}_seed{seed}"
    folder = root / f"enh_{tag}" / "separate_test" / "scoring"
    folder.mkdir(parents=True)
    systems = {
        tag: _per_song(arm, seed),
        "mixture": mixture or _per_song("mixture", "0"),
    }
    with open(folder / "scores.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["track", "system", "stem", "uSDR", "cSDR", "cSDR_active",
                         "windows", "windows_scored", "windows_active"])  # fmt: skip
        for song in songs:
            for system, values in systems.items():
                for stem in STEMS:
                    u, c = (values[m][(song, stem)] for m in ("uSDR", "cSDR"))
                    writer.writerow([song, system, stem, f"{u:.5f}", f"{c:.5f}",
                                     f"{c:.5f}", 6, 6, 6])  # fmt: skip
    counts = {
        system: {
            m: {s: sum(_defined(m, t, s) for t in songs) for s in STEMS}
            for m in ("uSDR", "cSDR")
        }
        for system in systems
    }
    summary = {
        "tag": tag,
        "stems": STEMS,
        "scorer": "fast",
        "num_songs": len(songs),
        "num_scored": len(songs),
        "num_skipped": 0,
        "skipped": {},
        "systems": {name: _summary(values) for name, values in systems.items()},
        "songs_per_value": counts,
        "silent_stems": {"C": ["melody"]},
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return folder


@pytest.fixture
def runs(tmp_path):
    return [
        (arm, seed, write_scoring(tmp_path, arm, seed))
        for arm in ("finetune", "scratch")
        for seed in SEEDS
    ]


def test_mean_and_sd_over_seeds_and_the_songs_each_rests_on(runs):
    text, summary, rows = build_comparison(runs, pairs=[("finetune", "scratch")])
    arms = summary["arms"]
    # scratch: 2 + j + s/2 -> mean 3 + j, sd 0.5; finetune adds d_s (sd 1 together
    # with s/2: 1.5 s) and the mean of e over the songs each stem is defined on
    expected = {
        ("scratch", "uSDR"): {"chords": 3.0, "melody": 4.0, "rhythm": 5.0},
        ("finetune", "uSDR"): {"chords": 5.0, "melody": 5.25, "rhythm": 7.0},
        ("scratch", "cSDR"): {"chords": 3.25, "melody": 4.25, "rhythm": 5.25},
        ("finetune", "cSDR"): {"chords": 4.5, "melody": 5.5, "rhythm": 6.5},
    }
    for (arm, metric), means in expected.items():
        sd = 0.5 if arm == "scratch" else 1.5
        for stem, mean in means.items():
            entry = arms[arm][metric][stem]
            assert entry["n"] == 3
            assert entry["mean"] == pytest.approx(mean, abs=1e-9), (arm, metric, stem)
            assert entry["sd"] == pytest.approx(sd, abs=1e-9), (arm, metric, stem)
        average = arms[arm][metric]["average"]
        assert average["mean"] == pytest.approx(np.mean(list(means.values())))
        assert average["sd"] == pytest.approx(sd)
    # songs: uSDR melody on A and B; cSDR of every stem on A and B (museval)
    assert arms["scratch"]["uSDR"]["chords"]["songs"] == [3, 3, 3]
    assert arms["scratch"]["uSDR"]["melody"]["songs"] == [2, 2, 2]
    assert arms["finetune"]["cSDR"]["rhythm"]["songs"] == [2, 2, 2]
    # the table: per stem mean ± sd, (k/N) where fewer songs, † on a partial average
    scratch_row = (
        "|`scratch`: from scratch (all parameters), same fine-tuning budget|3|"
        "3.00 ± 0.50|4.00 ± 0.50 (2/3)|5.00 ± 0.50|4.00 ± 0.50 †|"
    )
    assert scratch_row in text
    assert "|5.00 ± 1.50|5.25 ± 1.50 (2/3)|7.00 ± 1.50|5.75 ± 1.50 †|" in text
    assert (
        "|4.50 ± 1.50 (2/3)|5.50 ± 1.50 (2/3)|6.50 ± 1.50 (2/3)|5.50 ± 1.50 †|" in text
    )
    # the mixture baseline, with its counts
    assert "|-3.00|-4.00 (2/3)|-5.00|-4.00 †|" in text
    # the per-song rows of every run
    assert len(rows) == 6 * 3 * 3
    assert {(r["arm"], r["seed"]) for r in rows} == {
        (a, s) for a in ("finetune", "scratch") for s in SEEDS
    }


def test_paired_differences_per_seed_and_per_seed_and_song(runs):
    text, summary, _ = build_comparison(runs, pairs=[("finetune", "scratch")])
    diff = summary["differences"]["finetune − scratch"]
    assert diff["seeds"] == SEEDS and diff["tracks"] == SONGS
    u = diff["uSDR"]
    # per seed: d_s + the mean over stems of the mean of e over each stem's songs
    # (melody: A and B, -0.75) = d_s - 0.25
    assert u["per_seed_values"]["average"] == pytest.approx([0.75, 1.75, 2.75])
    seed = u["per_seed"]["average"]
    assert (seed["mean"], seed["sd"]) == pytest.approx((1.75, 1.0))
    half = T_975_2 * 1.0 / math.sqrt(3)
    assert (seed["ci95_low"], seed["ci95_high"]) == pytest.approx(
        (1.75 - half, 1.75 + half)
    )
    assert seed["above_zero"] == 3
    assert u["per_seed"]["melody"]["mean"] == pytest.approx(1.25)
    assert u["per_seed"]["chords"]["mean"] == pytest.approx(2.0)
    # per (seed, song): d_s + e_t, 9 values -0.5 … 4.5, one below zero
    song = u["per_seed_song"]
    values = [D[s] + E[t] for s in SEEDS for t in SONGS]
    assert song["n"] == 9
    assert song["mean"] == pytest.approx(2.0)
    assert song["sd"] == pytest.approx(np.std(values, ddof=1))
    assert song["sd"] == pytest.approx(math.sqrt(19.5 / 8))
    assert (song["min"], song["max"], song["above_zero"]) == pytest.approx(
        (-0.5, 4.5, 8)
    )
    # cells: 3 seeds x (3 + 3 + 2) defined (song, stem); seed 1, song A below zero
    assert (u["cells"]["n"], u["cells"]["above_zero"]) == (24, 21)
    # per song over seeds: e_t + 2, sd 1
    for track in SONGS:
        entry = u["per_song"][track]
        assert (entry["mean"], entry["sd"]) == pytest.approx((2.0 + E[track], 1.0))
    # cSDR: song C has none; the medians over A and B are their means
    c = diff["cSDR"]
    assert c["per_seed_values"]["average"] == pytest.approx([0.25, 1.25, 2.25])
    assert (c["per_seed_song"]["n"], c["per_seed_song"]["above_zero"]) == (6, 5)
    assert c["per_seed_song"]["mean"] == pytest.approx(1.25)
    assert (c["cells"]["n"], c["cells"]["above_zero"]) == (18, 15)
    assert c["per_song"]["C"]["n"] == 0
    # the table
    ci = f"[{1.75 - half:+.2f}, {1.75 + half:+.2f}]"
    row = (
        f"|finetune − scratch|uSDR|+1.75 ± 1.00|{ci}|3/3|+2.00 ± 1.56|"
        "-0.50 … +4.50|8/9|21/24|"
    )
    assert row in text
    assert "|finetune − scratch|uSDR|+2.00 ± 1.00|+1.25 ± 1.00|+2.00 ± 1.00|" in text
    assert "|1|+0.75|+0.25|" in text and "|3|+2.75|+2.25|" in text
    assert "|A|+0.50 ± 1.00|+0.50 ± 1.00|" in text
    assert "|C|+3.50 ± 1.00|n/a|" in text


def test_undefined_pairs_are_excluded_and_listed(runs):
    text, summary, _ = build_comparison(runs, pairs=[("finetune", "scratch")])
    assert summary["silent"] == [["C", "melody"]]
    assert summary["undefined"] == {
        "uSDR": [["C", "melody", 6]],
        "cSDR": [["C", "chords", 6], ["C", "melody", 6], ["C", "rhythm", 6]],
    }
    section = text[text.index("## Undefined (song, stem) pairs") :]
    assert "Silent reference stems: C / melody." in section
    assert "|uSDR|C / melody|6/6|" in section
    for stem in STEMS:
        assert f"|cSDR|C / {stem}|6/6|" in section


def test_runs_that_are_not_comparable_are_refused(tmp_path, runs):
    other = tmp_path / "other"
    fewer = write_scoring(other, "scratch", "4", songs=["A", "B"])
    with pytest.raises(ValueError, match="songs differ"):
        build_comparison(runs + [("scratch", "4", fewer)])
    mixture = _per_song("mixture", "0")
    mixture["uSDR"][("A", "chords")] += 1.0
    moved = write_scoring(other, "scratch", "5", mixture=mixture)
    with pytest.raises(ValueError, match="mixture baselines differ"):
        build_comparison(runs + [("scratch", "5", moved)])
    with pytest.raises(ValueError, match="given twice"):
        build_comparison(runs + [runs[0]])
    with pytest.raises(ValueError, match="no runs of arm 'frozen'"):
        build_comparison(runs, pairs=[("frozen", "scratch")])
    with pytest.raises(FileNotFoundError, match="was not scored"):
        build_comparison(runs + [("frozen", "1", tmp_path / "nowhere")])


def test_the_command_writes_the_files_with_settings_heads_times_and_command(
    tmp_path, runs
):
    heads = tmp_path / "heads.json"
    heads.write_text(json.dumps({"heads": {"chords": 3, "melody": 0, "rhythm": 7}}))
    timings = tmp_path / "timings.tsv"
    timings.write_text("finetune_seed1\t60.0\t100.0\t20.0\nfinetune_seed1\t30\t6\t6\n")
    out = tmp_path / "report"
    args = ["--out_dir", str(out), "--pair", "finetune", "scratch",
            "--heads", "1", str(heads), "--timings", str(timings),
            "--setting", "fine-tuning=3 updates", "--title", "T",
            "--command", "cd /x && local/compare.sh --work w --seeds '1 2 3'"]  # fmt: skip
    for arm, seed, path in runs:
        args += ["--run", arm, seed, str(path)]
    assert compare_report_main(args) == 0
    text = (out / "RESULTS.md").read_text()
    assert text.startswith("# T\n")
    assert "    cd /x && local/compare.sh --work w --seeds '1 2 3'" in text
    assert "|fine-tuning|3 updates|" in text
    assert "|1|chords: 3, melody: 0, rhythm: 7|–|" in text
    # two invocations of one step: summed
    assert "|finetune_seed1|1.5|2.2|2|" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"].startswith("cd /x")
    assert summary["arms"]["finetune"]["uSDR"]["chords"]["mean"] == pytest.approx(5.0)
    with open(out / "per_song.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 54
    melody_c = [r for r in rows if (r["track"], r["stem"]) == ("C", "melody")]
    assert {r["uSDR"] for r in melody_c} == {"nan"}
    missing = ["--out_dir", str(out), "--run", "a", "1", str(tmp_path / "nowhere")]
    assert compare_report_main(missing) == 1
