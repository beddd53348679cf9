"""music_score end to end on the suite's own songs: the fast scorer equals museval's,
jobs and a merge equal one process, museval reads our JSON, silent stems are undefined
and counted, the mixture baseline's cache serves a second system, bad input is named.

The songs are the own-data generator's (its composer and synthesis), at 8 kHz and
16-bit like real stems: one with a break of the melody (a silent window), one
instrumental (the melody silent throughout).
"""

import csv
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import museval
import numpy as np
import pytest
import soundfile as sf
from jsonschema import validate
from scipy.signal import lfilter

from espnet2_ext.bin.music_score import main
from espnet2_ext.datagen.compose import compose_song
from espnet2_ext.datagen.own_data import render_own_stems
from espnet2_ext.metrics.music import usdr

RATE = 8000
STEMS = ("melody", "chords", "rhythm")
TOLERANCE_DB = 0.01
#: ratios above this are rounding noise in both scorers (an error 1e-10 of the signal)
ROUNDING_DB = 100.0


def _write(path: Path, audio: np.ndarray, rate: int = RATE, subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, rate, subtype=subtype)


def _suite_songs(root: Path, seconds: float = 3.0) -> dict:
    """references/estimates under root/ref and root/est; returns the arrays read back."""
    songs = {}
    for index, (name, instrumental) in enumerate(
        (("with_break", False), ("instrumental", True))
    ):
        rng = np.random.default_rng([12, index])
        song = compose_song(rng, seconds, instrumental=instrumental)
        stems = render_own_stems(song, RATE, rng)
        references = np.stack([stems[s] for s in STEMS]).astype(np.float64)
        if not instrumental:
            references[0, RATE : 2 * RATE] = 0.0  # the melody pauses for a window
        # a separation of sorts: a short filter, leakage from the next stem, noise
        estimates = lfilter([0.8, 0.15], [1.0], references, axis=1)
        estimates += 0.15 * np.roll(references, 1, axis=0)
        estimates += 0.005 * rng.standard_normal(references.shape)
        for j, stem in enumerate(STEMS):
            _write(root / "ref" / name / f"{stem}.wav", references[j])
            _write(root / "est" / name / f"{stem}.wav", estimates[j])
        _write(root / "ref" / name / "mixture.wav", references.sum(axis=0))
        songs[name] = tuple(
            np.stack([sf.read(str(root / k / name / f"{s}.wav"))[0] for s in STEMS])
            for k in ("ref", "est")
        )
    return songs


def _args(root: Path, out: str, ref: str = "ref", est: str = "est", *more):
    return [
        "--ref_dir", str(root / ref), "--est_dir", str(root / est),
        "--out_dir", str(root / out), "--stems", *STEMS, *more,
    ]  # fmt: skip


def _rows(path: Path) -> dict:
    with open(path) as f:
        return {(r["track"], r["system"], r["stem"]): r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """The suite's songs, scored in one process with 2 workers (the command line)."""
    root = tmp_path_factory.mktemp("scored")
    songs = _suite_songs(root)
    command = [sys.executable, "-m", "espnet2_ext.bin.music_score"]
    command += _args(root, "out", "ref", "est", "--nj", "2", "--tag", "model")
    command += ["--baseline_cache", str(root / "baseline.json")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr
    return root, songs, done.stderr


def test_one_process_writes_every_output(scored):
    root, songs, log = scored
    out = root / "out"
    assert "scoring" in log  # the progress bar
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*")) == sorted(
        ["RESULTS.md", "scores.csv", "summary.json", "images/sdr_per_stem.png"]
        + [f"songs/{s}.json" for s in songs]
        + [f"museval/{m}/test/{s}.json" for m in ("model", "mixture") for s in songs]
    )  # and no temporary file left behind
    rows = _rows(out / "scores.csv")
    references, estimates = songs["with_break"]
    expected = usdr(references, estimates)
    for j, stem in enumerate(STEMS):
        assert float(rows[("with_break", "model", stem)]["uSDR"]) == pytest.approx(
            expected[j], abs=1e-5
        )
    png = (out / "images" / "sdr_per_stem.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_fast_scorer_equals_museval_through_the_command(scored):
    root, songs, _ = scored
    assert main(_args(root, "out_museval", "ref", "est", "--scorer", "museval")) == 0
    fast, exact = root / "out" / "museval", root / "out_museval" / "museval"
    compared = 0
    for system, tag in (("model", "est"), ("mixture", "mixture")):
        for song in songs:
            ours = json.loads((fast / system / "test" / f"{song}.json").read_text())
            theirs = json.loads((exact / tag / "test" / f"{song}.json").read_text())
            for mine, ref in zip(ours["targets"], theirs["targets"]):
                assert mine["name"] == ref["name"]
                for a, b in zip(mine["frames"], ref["frames"]):
                    for metric, value in b["metrics"].items():
                        other = a["metrics"][metric]
                        assert np.isnan(value) == np.isnan(other), (song, metric)
                        if value >= ROUNDING_DB:
                            assert other >= ROUNDING_DB
                        elif not np.isnan(value):
                            assert abs(other - value) <= TOLERANCE_DB, (song, metric)
                            compared += 1
    assert compared == 2 * 4 * 3 * 2  # systems, metrics, stems, scored windows
    rows_fast, rows_exact = _rows(root / "out" / "scores.csv"), _rows(
        root / "out_museval" / "scores.csv"
    )
    for (track, system, stem), row in rows_exact.items():
        mine = rows_fast[(track, "model" if system == "est" else system, stem)]
        for column in ("uSDR", "cSDR", "cSDR_active"):
            a, b = float(mine[column]), float(row[column])
            assert np.isnan(a) == np.isnan(b)
            assert np.isnan(b) or abs(a - b) <= TOLERANCE_DB, (track, column)
    summary = json.loads((root / "out_museval" / "summary.json").read_text())
    assert summary["scorer"] == "museval"


def test_jobs_and_a_merge_equal_one_process(scored, caplog):
    root, songs, _ = scored
    base = _args(root, "out_jobs", "ref", "est", "--tag", "model")
    # a merge before the jobs names what is missing and writes nothing
    assert main(base + ["--merge"]) == 1
    assert "no result in" in caplog.text and "for 2 of 2 song(s)" in caplog.text
    assert not (root / "out_jobs" / "RESULTS.md").exists()
    assert main(base + ["--job", "1/2"]) == 0
    assert sorted(os.listdir(root / "out_jobs")) == ["songs"]  # nothing else
    assert main(base + ["--job", "2/2"]) == 0
    assert main(base + ["--merge"]) == 0
    one, jobs = root / "out", root / "out_jobs"
    a, b = _rows(one / "scores.csv"), _rows(jobs / "scores.csv")
    assert a.keys() == b.keys()
    for key, row in a.items():
        for column, value in row.items():
            if column in ("uSDR", "cSDR", "cSDR_active"):
                x, y = float(value), float(b[key][column])
                assert (np.isnan(x) and np.isnan(y)) or abs(x - y) <= 1e-4, key
            else:
                assert b[key][column] == value
    summary_a = json.loads((one / "summary.json").read_text())
    summary_b = json.loads((jobs / "summary.json").read_text())
    assert summary_a["songs_per_value"] == summary_b["songs_per_value"]
    assert summary_a["silent_stems"] == summary_b["silent_stems"]
    for system in ("model", "mixture"):
        for metric, values in summary_a["systems"][system].items():
            for stem, value in values.items():
                other = summary_b["systems"][system][metric][stem]
                assert (value is None) == (other is None)
                assert value is None or abs(value - other) <= 1e-4

    # an estimate rewritten after its job: the merge refuses, the report stays
    before = (jobs / "RESULTS.md").read_bytes()
    estimate = root / "est" / "with_break" / "rhythm.wav"
    os.utime(estimate, ns=(0, estimate.stat().st_mtime_ns + 10**9))
    caplog.clear()
    assert main(base + ["--merge"]) == 1
    assert "stale: est/rhythm.wav changed" in caplog.text
    assert (jobs / "RESULTS.md").read_bytes() == before
    assert main(base + ["--job", "1/1"]) == 0 and main(base + ["--merge"]) == 0


def test_museval_reads_our_json_with_its_own_loader(scored):
    root, songs, _ = scored
    schema = json.loads(
        (Path(museval.__file__).parent / "musdb.schema.json").read_text()
    )
    for path in (root / "out" / "museval").rglob("*.json"):
        validate(json.loads(path.read_text()), schema)
    store = museval.EvalStore()
    store.add_eval_dir(root / "out" / "museval" / "model")
    medians = store.agg_frames_scores().xs("SDR", level="metric")
    rows = _rows(root / "out" / "scores.csv")
    for (track, system, stem), row in rows.items():
        if system != "model":
            continue
        theirs = medians.xs(track, level="track").xs(stem)
        ours = float(row["cSDR"])
        assert (np.isnan(theirs) and np.isnan(ours)) or theirs == pytest.approx(ours)
    methods = museval.MethodStore()
    methods.add_eval_dir(root / "out" / "museval" / "mixture")
    assert set(methods.df["method"]) == {"mixture"}


def test_silent_stems_are_undefined_counted_and_listed(scored):
    root, songs, _ = scored
    out = root / "out"
    rows = _rows(out / "scores.csv")
    for system in ("model", "mixture"):
        silent = rows[("instrumental", system, "melody")]
        assert silent["uSDR"] == "nan" and silent["cSDR"] == "nan"  # never -90 dB
        assert silent["cSDR_active"] == "nan" and silent["windows_active"] == "0"
        # museval leaves every stem of the song undefined; the extra scores the others
        for stem in ("chords", "rhythm"):
            row = rows[("instrumental", system, stem)]
            assert row["cSDR"] == "nan" and row["windows_scored"] == "0"
            assert float(row["cSDR_active"]) > -50 and row["windows_active"] == "3"
        # the melody's break: museval drops that window for every stem
        for stem in STEMS:
            row = rows[("with_break", system, stem)]
            assert row["windows_scored"] == "2" and row["windows"] == "3"
        assert rows[("with_break", system, "melody")]["windows_active"] == "2"
        assert rows[("with_break", system, "chords")]["windows_active"] == "3"

    summary = json.loads((out / "summary.json").read_text())
    assert summary["silent_stems"] == {"instrumental": ["melody"]}
    counts = summary["songs_per_value"]["model"]
    assert counts["uSDR"] == {"melody": 1, "chords": 2, "rhythm": 2}
    assert counts["cSDR"] == {"melody": 1, "chords": 1, "rhythm": 1}
    active = summary["active_windows"]["model"]
    assert active["songs"] == {"melody": 1, "chords": 2, "rhythm": 2}
    assert active["windows"] == {"melody": 2, "chords": 6, "rhythm": 6}
    assert summary["museval_windows"]["instrumental"] == {"scored": 0, "total": 3}
    # the means skip the undefined song: the melody's uSDR is the other song's
    melody = float(rows[("with_break", "model", "melody")]["uSDR"])
    assert summary["systems"]["model"]["uSDR"]["melody"] == pytest.approx(melody)

    results = (out / "RESULTS.md").read_text()
    assert "|model|uSDR|" in results
    row = next(line for line in results.splitlines() if line.startswith("|model|uSDR|"))
    assert "(1/2)" in row and "†" in row  # melody on 1 of 2 songs, average flagged
    assert "## Per-stem cSDR on the windows where the stem is active (extra)" in results
    assert "|melody|1/2|2|" in results and "|chords|2/2|6|" in results
    assert "## Silent references and undefined windows" in results
    assert "|instrumental|melody|3/3|" in results and "|with_break|-|1/3|" in results
    per_track = results.split("## Per-track scores: model")[1].splitlines()
    track = next(line for line in per_track if line.startswith("|instrumental|"))
    assert track.startswith("|instrumental|n/a|n/a|")  # the melody's uSDR and cSDR


def test_a_second_system_hits_the_baseline_cache(scored, caplog):
    caplog.set_level(logging.INFO)
    root, songs, _ = scored
    cache = root / "baseline.json"
    entries = json.loads(cache.read_text())["songs"]
    assert len(entries) == 2  # one per song, keyed by content
    # the second system's references: its own refs/ folder holding the same songs
    shutil.copytree(root / "ref", root / "refs_b")
    for song in songs:
        for stem in STEMS:
            audio, _ = sf.read(str(root / "est" / song / f"{stem}.wav"))
            _write(root / "est_b" / song / f"{stem}.wav", 0.9 * audio)
    # plant a value in one song's cached baseline: the report must show it
    (key,) = [k for k, e in entries.items() if e["scores"]["uSDR"][0] is not None]
    entries[key]["scores"]["uSDR"][1] = 123.0
    cache.write_text(json.dumps({"version": 2, "songs": entries}))
    args = _args(root, "out_b", "refs_b", "est_b", "--tag", "second")
    assert main(args + ["--baseline_cache", str(cache)]) == 0
    assert "mixture baseline of 2 of 2 song(s) taken from the cache" in caplog.text
    for song in songs:
        record = json.loads((root / "out_b" / "songs" / f"{song}.json").read_text())
        assert record["baseline_cached"] is True
    rows, first = _rows(root / "out_b" / "scores.csv"), _rows(
        root / "out" / "scores.csv"
    )
    assert float(rows[("with_break", "mixture", "chords")]["uSDR"]) == 123.0
    key = ("instrumental", "mixture", "rhythm")
    assert rows[key] == first[key]


def _broken_tree(root: Path) -> None:
    rng = np.random.default_rng(5)
    names = ["good", "short", "missing", "rate", "channels", "nan", "no_ref"]
    for name in names:
        references = 0.1 * rng.standard_normal((2, RATE, 2))
        estimates = references + 0.01 * rng.standard_normal(references.shape)
        for j, stem in enumerate(STEMS[:2]):
            _write(root / "ref" / name / f"{stem}.wav", references[j], subtype="FLOAT")
            _write(root / "est" / name / f"{stem}.wav", estimates[j], subtype="FLOAT")
    est = root / "est"
    _write(est / "short" / "chords.wav", np.zeros((RATE - 3, 2)) + 0.1, subtype="FLOAT")
    (est / "missing" / "melody.wav").unlink()
    _write(est / "rate" / "melody.wav", np.ones((RATE, 2)) * 0.1, 16000, "FLOAT")
    _write(est / "channels" / "melody.wav", np.ones((RATE, 1)) * 0.1, subtype="FLOAT")
    nan = np.full((RATE, 2), 0.1)
    nan[10, 1] = np.nan
    _write(est / "nan" / "chords.wav", nan, subtype="FLOAT")
    (root / "ref" / "no_ref" / "chords.wav").unlink()


def test_bad_input_is_named_counted_and_nothing_is_half_written(tmp_path, caplog):
    _broken_tree(tmp_path)
    args = [
        "--ref_dir", str(tmp_path / "ref"), "--est_dir", str(tmp_path / "est"),
        "--out_dir", str(tmp_path / "out"), "--stems", *STEMS[:2], "--tag", "m",
    ]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["num_scored"] == 1 and summary["num_songs"] == 7
    est, ref = tmp_path / "est", tmp_path / "ref"
    expected = {
        "short": f"{est / 'short' / 'chords.wav'}: {RATE - 3} samples where",
        "missing": f"estimate 'melody' {est / 'missing' / 'melody.wav'} is missing",
        "rate": f"{est / 'rate' / 'melody.wav'}: sampling rate 16000 Hz where",
        "channels": f"{est / 'channels' / 'melody.wav'}: 1 channel(s) where",
        "nan": f"estimate 'chords' {est / 'nan' / 'chords.wav'} has 1 NaN",
        "no_ref": f"reference 'chords' {ref / 'no_ref' / 'chords.wav'} is missing",
    }
    for song, message in expected.items():
        assert summary["skipped"][song].startswith(message), summary["skipped"][song]
        assert f"skipping song {song!r}: {message}" in caplog.text
    results = (tmp_path / "out" / "RESULTS.md").read_text()
    assert "## Skipped songs (6)" in results
    row = next(line for line in results.splitlines() if line.startswith("|m|cSDR|"))
    assert row.count("(1/7)") == 2  # every value rests on 1 of the 7 songs

    # no song scorable: exit 1, and the earlier report is left as it was
    before = {p: p.read_bytes() for p in (tmp_path / "out").glob("*.*")}
    shutil.rmtree(tmp_path / "ref" / "good")
    caplog.clear()
    assert main(args) == 1
    assert "no song could be scored" in caplog.text
    assert {p: p.read_bytes() for p in (tmp_path / "out").glob("*.*")} == before
    # a file that is not a baseline cache is refused before anything is scored
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    assert main(args + ["--baseline_cache", str(notes)]) == 1
    assert notes.read_text() == '{"mine": 1}'


def test_bad_arguments_exit_with_a_message(tmp_path, capsys):
    (tmp_path / "ref").mkdir()
    (tmp_path / "est").mkdir()
    base = ["--ref_dir", str(tmp_path / "ref"), "--est_dir", str(tmp_path / "est")]
    base += ["--out_dir", str(tmp_path / "out")]
    for extra, message in (
        ([], "holds no song folders"),
        (["--nj", "0"], "--nj"),
        (["--job", "3/2"], "need 1 <= J <= N"),
        (["--job", "x"], "expected J/N"),
        (["--job", "1/2", "--merge"], "not allowed with argument"),
        (["--scorer", "bss"], "invalid choice"),
        (["--tag", "a/b"], "folder name"),
    ):
        with pytest.raises(SystemExit):
            main(base + extra)
        assert message in capsys.readouterr().err, extra
