"""music_score end to end on a tiny generated MUSDB-style tree, with broken songs."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.bin.music_score import main
from espnet2_ext.metrics.music import csdr, usdr

RATE = 8000
STEMS = ("vocals", "bass")
SNR_DB = 12.0


def _write(path: Path, audio: np.ndarray, rate: int = RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, rate, subtype="DOUBLE")  # exact round trip


def _make_tree(root: Path, seconds: float = 1.6, nchan: int = 2):
    """Two good songs and three broken ones; returns the good songs' arrays."""
    rng = np.random.default_rng(0)
    good = {}
    names = ["song_a", "song_b", "wrong_length", "missing", "bad_rate"]
    for k, name in enumerate(names):
        nsamples = int(seconds * RATE) + 37 * k
        references = 0.1 * rng.standard_normal((len(STEMS), nsamples, nchan))
        noise = rng.standard_normal(references.shape)
        # scale the noise to exactly SNR_DB in every channel of every stem
        power = np.sum(references**2, axis=1, keepdims=True)
        noise_power = np.sum(noise**2, axis=1, keepdims=True)
        noise *= np.sqrt(power / 10 ** (SNR_DB / 10) / noise_power)
        estimates = references + noise
        mixture = references.sum(axis=0)
        for j, stem in enumerate(STEMS):
            _write(root / "ref" / name / f"{stem}.wav", references[j])
            _write(root / "est" / name / f"{stem}.wav", estimates[j])
        _write(root / "ref" / name / "mixture.wav", mixture)
        good[name] = (references, estimates, mixture)
    # the broken ones
    _write(root / "est" / "wrong_length" / "bass.wav", good["wrong_length"][1][1][:-5])
    (root / "est" / "missing" / "vocals.wav").unlink()
    _write(root / "est" / "bad_rate" / "vocals.wav", good["bad_rate"][1][0], rate=16000)
    return {name: good[name] for name in ("song_a", "song_b")}


def _read_scores(path: Path):
    with open(path) as f:
        return {(r["track"], r["system"], r["stem"]): r for r in csv.DictReader(f)}


def test_scores_results_plot_and_skipped_songs(tmp_path, caplog):
    good = _make_tree(tmp_path, seconds=1.2)
    out = tmp_path / "out"
    args = ["--ref_dir", str(tmp_path / "ref"), "--est_dir", str(tmp_path / "est")]
    args += ["--out_dir", str(out), "--stems", *STEMS, "--tag", "planted"]
    assert main(args) == 0

    scores = _read_scores(out / "scores.csv")
    assert len(scores) == 2 * 2 * len(STEMS)  # good songs x systems x stems
    assert {track for track, _, _ in scores} == set(good)
    # the command's numbers equal the metrics on the arrays (one song: museval is slow)
    references, estimates, mixture = good["song_a"]
    baseline = np.stack([mixture] * len(STEMS))
    expected = {
        "planted": (
            usdr(references, estimates),
            csdr(references, estimates, win=RATE, hop=RATE),
        ),
        "mixture": (
            usdr(references, baseline),
            csdr(references, baseline, win=RATE, hop=RATE),
        ),
    }
    for system, (u, c) in expected.items():
        for j, stem in enumerate(STEMS):
            row = scores[("song_a", system, stem)]
            assert float(row["uSDR"]) == pytest.approx(u[j], abs=1e-5)
            assert float(row["cSDR"]) == pytest.approx(c[j], abs=1e-5)
    for name in good:
        for stem in STEMS:  # the planted SNR, per channel
            assert float(scores[(name, "planted", stem)]["uSDR"]) == pytest.approx(
                SNR_DB, abs=1e-4
            )

    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_scored"] == 2 and summary["num_skipped"] == 3
    assert set(summary["skipped"]) == {"wrong_length", "missing", "bad_rate"}
    assert "samples" in summary["skipped"]["wrong_length"]
    assert "missing" in summary["skipped"]["missing"]
    assert "16000 Hz" in summary["skipped"]["bad_rate"]
    model = summary["systems"]["planted"]
    assert model["uSDR"]["average"] == pytest.approx(SNR_DB, abs=1e-4)
    for stem in STEMS:  # the estimates beat the mixture on every stem
        assert model["cSDR"][stem] > summary["systems"]["mixture"]["cSDR"][stem] + 5

    results = (out / "RESULTS.md").read_text()
    assert "|system|metric|vocals|bass|average|" in results
    assert "|planted|uSDR|12.00|12.00|12.00|" in results
    assert "planted − mixture" in results
    assert "## Per-track scores: planted" in results and "|song_a|" in results
    assert "## Skipped songs (3)" in results and "|bad_rate|" in results
    assert "images/sdr_per_stem.png" in results
    png = (out / "images" / "sdr_per_stem.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # atomic writes leave no temporary files behind
    assert sorted(p.name for p in out.rglob("*")) == sorted(
        ["RESULTS.md", "scores.csv", "summary.json", "images", "sdr_per_stem.png"]
    )
    # every skipped song was reported with its reason
    logged = caplog.text
    assert "skipping song 'wrong_length'" in logged
    assert "skipping song 'missing'" in logged


def test_parallel_command_line_run(tmp_path):
    _make_tree(tmp_path, seconds=1.1, nchan=1)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "espnet2_ext.bin.music_score"]
    command += ["--ref_dir", str(tmp_path / "ref"), "--est_dir", str(tmp_path / "est")]
    command += ["--out_dir", str(out), "--stems", *STEMS, "--nj", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "scoring" in done.stderr  # the progress bar
    assert "skipping song 'bad_rate'" in done.stderr
    scores = _read_scores(out / "scores.csv")
    assert {track for track, _, _ in scores} == {"song_a", "song_b"}
    assert "# RESULTS: est" in (out / "RESULTS.md").read_text()  # default tag


def test_baseline_cache_is_used_and_invalidated(tmp_path):
    _make_tree(tmp_path, seconds=1.0, nchan=1)
    cache = tmp_path / "cache" / "baseline.json"
    args = ["--ref_dir", str(tmp_path / "ref"), "--est_dir", str(tmp_path / "est")]
    args += ["--stems", *STEMS, "--baseline_cache", str(cache)]
    assert main(args + ["--out_dir", str(tmp_path / "out1")]) == 0
    first = _read_scores(tmp_path / "out1" / "scores.csv")
    entries = json.loads(cache.read_text())["songs"]
    assert len(entries) == 2  # the two scorable songs
    # plant a value in the cache: a second run must report it instead of recomputing
    key = str((tmp_path / "ref" / "song_a").resolve())
    entries[key]["uSDR"][0] = 123.0
    cache.write_text(json.dumps({"version": 1, "songs": entries}))
    assert main(args + ["--out_dir", str(tmp_path / "out2")]) == 0
    second = _read_scores(tmp_path / "out2" / "scores.csv")
    assert float(second[("song_a", "mixture", "vocals")]["uSDR"]) == 123.0
    assert second[("song_b", "mixture", "bass")] == first[("song_b", "mixture", "bass")]
    # a changed reference file invalidates its song's entry
    vocals = tmp_path / "ref" / "song_a" / "vocals.wav"
    _write(vocals, sf.read(str(vocals))[0])
    assert main(args + ["--out_dir", str(tmp_path / "out3")]) == 0
    third = _read_scores(tmp_path / "out3" / "scores.csv")
    recomputed = ("song_a", "mixture", "vocals")
    assert third[recomputed] == first[recomputed]


def test_nothing_scorable_writes_nothing_and_fails(tmp_path):
    _make_tree(tmp_path, seconds=0.5)
    for name in ("song_a", "song_b"):
        (tmp_path / "est" / name / "bass.wav").write_text("not audio")
    out = tmp_path / "out"
    args = ["--ref_dir", str(tmp_path / "ref"), "--est_dir", str(tmp_path / "est")]
    assert main(args + ["--out_dir", str(out), "--stems", *STEMS]) == 1
    assert not out.exists()


def test_a_silent_reference_stem_is_scored_with_a_note(tmp_path):
    rng = np.random.default_rng(1)
    references = 0.1 * rng.standard_normal((2, RATE, 1))
    references[1] = 0.0
    for j, stem in enumerate(STEMS):
        _write(tmp_path / "ref" / "quiet" / f"{stem}.wav", references[j])
        _write(tmp_path / "est" / "quiet" / f"{stem}.wav", references[j] + 0.01)
    out = tmp_path / "out"
    args = ["--ref_dir", str(tmp_path / "ref"), "--est_dir", str(tmp_path / "est")]
    with pytest.warns(RuntimeWarning, match="silent"):
        assert main(args + ["--out_dir", str(out), "--stems", *STEMS]) == 0
    results = (out / "RESULTS.md").read_text()
    assert "cSDR undefined" in results  # museval cannot score it; said so
    assert "no mixture.wav" in results  # the baseline used the sum of the stems
    scores = _read_scores(out / "scores.csv")
    assert scores[("quiet", "est", "vocals")]["cSDR"] == "nan"
    assert float(scores[("quiet", "est", "vocals")]["uSDR"]) > 10


def test_bad_arguments_exit_with_a_message(tmp_path, capsys):
    (tmp_path / "ref").mkdir()
    (tmp_path / "est").mkdir()
    base = ["--ref_dir", str(tmp_path / "ref"), "--est_dir", str(tmp_path / "est")]
    base += ["--out_dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit):
        main(base)
    assert "holds no song folders" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--nj", "0"])
    assert "--nj" in capsys.readouterr().err
