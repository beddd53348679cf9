"""One song at a time: bad input named, the content key of the baseline, song files
checked at the merge, the split of songs over jobs."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.metrics.music import usdr
from espnet2_ext.metrics.scoring import (
    ScoringSetup,
    SongTask,
    baseline_key,
    job_songs,
    load_baseline_cache,
    read_song_results,
    score_song,
    song_file,
    write_song_file,
)

RATE = 8000
STEMS = ("vocals", "bass")


def _write(path: Path, audio: np.ndarray, rate: int = RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, rate, subtype="DOUBLE")


def _song(root: Path, name: str = "song", seconds: float = 1.2, seed: int = 0):
    rng = np.random.default_rng(seed)
    references = 0.1 * rng.standard_normal((len(STEMS), int(seconds * RATE), 2))
    estimates = references + 0.02 * rng.standard_normal(references.shape)
    for j, stem in enumerate(STEMS):
        _write(root / "ref" / name / f"{stem}.wav", references[j])
        _write(root / "est" / name / f"{stem}.wav", estimates[j])
    _write(root / "ref" / name / "mixture.wav", references.sum(axis=0))
    return references, estimates


def _task(root: Path, name: str = "song", ref: str = "ref", **options) -> SongTask:
    return SongTask(
        name, str(root / ref / name), str(root / "est" / name), STEMS, **options
    )


BAD_ESTIMATES = {
    "shorter": (lambda e: e[:-5], "9595 samples where .*vocals.wav has 9600"),
    "mono": (lambda e: e[:, :1], "1 channel\\(s\\) where .*vocals.wav has 2"),
    "nan": (lambda e: np.where(np.arange(len(e))[:, None] == 7, np.nan, e), "NaN"),
    "inf": (lambda e: np.where(np.arange(len(e))[:, None] == 7, np.inf, e), "NaN"),
}


@pytest.mark.parametrize("case", sorted(BAD_ESTIMATES))
def test_bad_estimates_are_named(tmp_path, case):
    _, estimates = _song(tmp_path)
    change, message = BAD_ESTIMATES[case]
    bass = tmp_path / "est" / "song" / "bass.wav"
    if case in ("nan", "inf"):
        sf.write(str(bass), change(estimates[1]), RATE, subtype="FLOAT")
    else:
        _write(bass, change(estimates[1]))
    result = score_song(_task(tmp_path))
    assert result.model is None
    assert str(bass) in result.error  # the file is named
    assert re.search(message, result.error), result.error


def test_bad_rate_and_missing_stems_are_named(tmp_path):
    _, estimates = _song(tmp_path)
    vocals = tmp_path / "est" / "song" / "vocals.wav"
    _write(vocals, estimates[0], rate=16000)
    result = score_song(_task(tmp_path))
    assert f"{vocals}: sampling rate 16000 Hz where" in result.error
    vocals.unlink()
    assert score_song(_task(tmp_path)).error == f"estimate 'vocals' {vocals} is missing"
    reference = tmp_path / "ref" / "song" / "bass.wav"
    reference.unlink()
    error = score_song(_task(tmp_path)).error
    assert error == f"reference 'bass' {reference} is missing"
    reference.write_bytes(b"RIFF....not a wav")
    assert f"reference 'bass' {reference} is not readable audio" in (
        score_song(_task(tmp_path)).error
    )


def test_a_silent_stem_is_undefined_and_noted(tmp_path):
    references, estimates = _song(tmp_path, seconds=2.0)
    _write(tmp_path / "ref" / "song" / "vocals.wav", np.zeros_like(references[0]))
    result = score_song(_task(tmp_path))
    assert result.error is None and result.silent_stems == ["vocals"]
    assert np.isnan(result.model.usdr[0]) and np.isnan(result.mixture.usdr[0])
    assert np.isfinite(result.model.usdr[1])  # the bass is scored
    # museval's cSDR: undefined for every stem; the active-window SDR: bass only
    assert np.isnan(result.model.bss["SDR"]).all()
    assert np.isnan(result.model.active_sdr[0]).all()
    assert np.isfinite(result.model.active_sdr[1]).all()
    assert any("reference silent in the whole song: vocals" in n for n in result.notes)


def test_the_baseline_key_follows_the_content_not_the_folder(tmp_path):
    references, _ = _song(tmp_path)
    shutil.copytree(tmp_path / "ref", tmp_path / "refs_copy")
    assert score_song(_task(tmp_path)).baseline_key is None  # no cache, no key
    first = score_song(_task(tmp_path, cached_keys=frozenset()))  # an empty cache
    assert not first.baseline_cached and first.mixture is not None
    # the same songs in another folder: their key is in the cache, the baseline is
    # not computed (the caller fills it in from the cache)
    cached = frozenset([first.baseline_key])
    copy = score_song(_task(tmp_path, ref="refs_copy", cached_keys=cached))
    assert copy.baseline_key == first.baseline_key
    assert copy.baseline_cached and copy.mixture is None
    mixture = references.sum(axis=0)
    assert baseline_key(references, mixture, RATE, STEMS, "fast") == first.baseline_key
    assert baseline_key(references, mixture, RATE, STEMS, "museval") != (
        first.baseline_key
    )
    # one changed sample of a reference changes the key
    path = tmp_path / "refs_copy" / "song" / "bass.wav"
    audio, _ = sf.read(str(path))
    audio[100, 0] += 1e-3
    _write(path, audio)
    changed = score_song(_task(tmp_path, ref="refs_copy", cached_keys=cached))
    assert changed.baseline_key != first.baseline_key and not changed.baseline_cached


def test_song_files_round_trip_and_are_checked_at_the_merge(tmp_path):
    references, estimates = _song(tmp_path)
    setup = ScoringSetup.make(tmp_path / "ref", tmp_path / "est", STEMS, "fast")
    out = tmp_path / "out"
    result = score_song(_task(tmp_path))
    write_song_file(out, setup, result)
    (back,) = read_song_results(out, ["song"], setup)
    np.testing.assert_array_equal(back.model.usdr, result.model.usdr)
    np.testing.assert_allclose(back.model.usdr, usdr(references, estimates))
    for metric, values in result.mixture.bss.items():
        np.testing.assert_array_equal(back.mixture.bss[metric], values)
    np.testing.assert_array_equal(back.model.active_sdr, result.model.active_sdr)

    with pytest.raises(ValueError, match="no result .* for 1 of 2 song\\(s\\): other"):
        read_song_results(out, ["other", "song"], setup)
    museval = ScoringSetup.make(tmp_path / "ref", tmp_path / "est", STEMS, "museval")
    with pytest.raises(ValueError, match="other options: scorer 'fast'"):
        read_song_results(out, ["song"], museval)
    # an estimate rewritten after scoring: the song's result is stale
    _write(tmp_path / "est" / "song" / "bass.wav", 0.5 * estimates[1])
    with pytest.raises(ValueError, match="stale: est/bass.wav changed"):
        read_song_results(out, ["song"], setup)
    song_file(out, "song").write_text("{")
    with pytest.raises(ValueError, match="not a readable song result"):
        read_song_results(out, ["song"], setup)


def test_jobs_split_the_songs_without_overlap():
    songs = [f"s{i}" for i in range(7)]
    parts = [job_songs(songs, j, 3) for j in (1, 2, 3)]
    assert parts[0] == ["s0", "s3", "s6"]
    assert sorted(sum(parts, [])) == songs
    assert job_songs(songs[:1], 2, 2) == []
    with pytest.raises(ValueError, match="1 <= J <= N"):
        job_songs(songs, 0, 2)


def test_a_file_that_is_not_a_cache_is_refused_and_kept(tmp_path):
    other = tmp_path / "notes.json"
    other.write_text(json.dumps({"my": "notes"}))
    with pytest.raises(ValueError, match="not a baseline cache"):
        load_baseline_cache(other)
    assert json.loads(other.read_text()) == {"my": "notes"}
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"version": 1, "songs": {"/x/ref/a": {}}}))
    assert load_baseline_cache(old) == {}  # an older cache: its entries are unused
