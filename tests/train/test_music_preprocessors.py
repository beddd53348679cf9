"""Statistics and contracts of MusicDynamicMixing and MixtureOfMixtures."""

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.train.dataset import (
    SegmentSoundScpReader,
    SoundSegment,
    active_index_path,
    write_active_index,
    write_segment_scp,
)
from espnet2_ext.train.preprocessor import MixtureOfMixtures, MusicDynamicMixing

RATE = 8000
SONG_SAMPLES = 8000
CROP_SECONDS = 0.1
CROP = int(CROP_SECONDS * RATE)


def _position_coded(song: int, rng) -> np.ndarray:
    """Stereo whose channel ratio tells the song and the sample position.

    ch1 = 0.5·n, ch0 = (0.1·(song+1) + 1e-5·t)·n with n > 0 a random envelope, so
    ch0/ch1 = 0.2·(song+1) + 2e-5·t survives any gain (and has a random RMS).
    """
    t = np.arange(SONG_SAMPLES)
    envelope = rng.uniform(0.2, 1.0, SONG_SAMPLES)
    ch0 = (0.1 * (song + 1) + 1e-5 * t) * envelope
    ch1 = 0.5 * envelope
    return np.stack([ch0, ch1], axis=1).astype(np.float32)


def _decode_position(ref: np.ndarray):
    ratio = ref[:, 0].astype(np.float64) / ref[:, 1]
    song = int(np.floor(ratio[0] / 0.2 + 1e-6)) - 1
    start = int(round((ratio[0] - 0.2 * (song + 1)) / 2e-5))
    return song, start


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    """3 songs × 4 stems; song 0 has 4 active segments per stem, songs 1 and 2 one."""
    root = tmp_path_factory.mktemp("dm")
    rng = np.random.default_rng(0)
    segments = {
        0: [(0, 2000), (2000, 4000), (4000, 6000), (6000, 8000)],
        1: [(1000, 2500)],
        2: [(5000, 7000)],
    }
    rows = {stem: [] for stem in MUSDB_STEMS}
    for song in range(3):
        for stem in MUSDB_STEMS:
            path = root / f"song {song}" / f"{stem}.wav"
            path.parent.mkdir(exist_ok=True)
            sf.write(path, _position_coded(song, rng), RATE, subtype="FLOAT")
            for start, end in segments[song]:
                rows[stem].append((f"song{song}", SoundSegment(str(path), start, end)))
    for stem in MUSDB_STEMS:
        write_active_index(active_index_path(str(root), stem), rows[stem])
    return str(root), segments


def _dm(index, **kwargs):
    conf = dict(index_dir=index, segment_seconds=CROP_SECONDS, sample_rate=RATE)
    conf.update(kwargs)
    return MusicDynamicMixing(train=True, **conf)


def test_dynamic_mixing_statistics(index_dir):
    index, segments = index_dir
    dm = _dm(index)
    level_db = 0.0  # the default level_db (of the mean absolute value)
    np.random.seed(0)
    draws, gains, dropped = 1000, [], 0
    for i in range(draws):
        out = dm(f"item{i}", {})
        refs = [out[f"speech_ref{k}"] for k in range(1, 5)]
        for ref in refs:
            assert ref.shape == (CROP, 2) and ref.dtype == np.float32
        assert out["speech_mix"].shape == (CROP, 2)
        np.testing.assert_array_equal(
            out["speech_mix"], refs[0] + refs[1] + refs[2] + refs[3]
        )
        silent = [not np.any(ref) for ref in refs]
        assert not all(silent)
        dropped += sum(silent)
        for ref, is_silent in zip(refs, silent):
            if not is_silent:
                mean_abs = np.mean(np.abs(ref), dtype=np.float64)
                gains.append(20 * np.log10(mean_abs) - level_db)
    gains = np.array(gains)
    assert gains.min() >= -10 - 1e-3 and gains.max() <= 10 + 1e-3
    assert gains.min() < -9.5 and gains.max() > 9.5  # the whole range is used
    assert abs(gains.mean()) < 0.5  # uniform: mean 0, std error ~0.1 dB here
    rate = dropped / (4 * draws)
    assert abs(rate - 0.05) < 0.015, rate  # 4000 Bernoulli(0.05): std 0.0034


def test_never_all_stems_dropped_even_at_high_drop_prob(index_dir):
    dm = _dm(index_dir[0], drop_prob=0.9)
    np.random.seed(1)
    kept = []
    for i in range(300):
        out = dm(f"x{i}", {})
        kept.append(sum(bool(np.any(out[f"speech_ref{k}"])) for k in range(1, 5)))
    assert min(kept) >= 1
    assert np.mean(np.array(kept) == 1) > 0.5  # mostly a single stem, as p = 0.9 wants


def test_crops_lie_inside_active_segments_and_song_choice(index_dir):
    index, segments = index_dir
    for song_first, expected_share_of_song0 in [(True, 1 / 3), (False, 4 / 6)]:
        dm = _dm(index, song_first=song_first, drop_prob=0.0)
        np.random.seed(2)
        songs = []
        for i in range(300):
            out = dm(f"u{i}", {})
            for k in range(1, 5):
                song, start = _decode_position(out[f"speech_ref{k}"])
                inside = any(
                    s <= start and start + CROP <= e for s, e in segments[song]
                )
                assert inside, (song, start)
                songs.append(song)
        share = np.mean(np.array(songs) == 0)
        assert abs(share - expected_share_of_song0) < 0.05, (song_first, share)


def test_defaults_are_the_authors_rules(index_dir):
    dm = _dm(index_dir[0])
    assert dm.level_measure == "mean_abs" and dm.level == 1.0
    assert dm.song_first is False  # uniform over segments


def test_level_is_the_mean_absolute_value_or_the_rms(tmp_path):
    """A pulse train (one sample in 100 at 1.0): mean |x| = 0.01 but RMS = 0.1, so the
    two measures give stems 20 dB apart."""
    pulses = np.zeros((RATE, 2), np.float32)
    pulses[::100] = 1.0
    noise = 0.1 * np.random.default_rng(0).standard_normal((RATE, 2))
    for stem, audio in (("pulse", pulses), ("noise", noise)):
        path = tmp_path / f"{stem}.wav"
        sf.write(path, audio, RATE, subtype="FLOAT")
        write_active_index(
            active_index_path(str(tmp_path), stem),
            [("song", SoundSegment(str(path), 0, RATE))],
        )
    conf = dict(
        stems=("pulse", "noise"),
        min_gain_db=0.0,
        max_gain_db=0.0,
        drop_prob=0.0,
        segment_seconds=0.5,
    )
    np.random.seed(0)
    authors = _dm(str(tmp_path), **conf)("a", {})["speech_ref1"]
    assert np.mean(np.abs(authors), dtype=np.float64) == pytest.approx(1.0, rel=1e-5)
    assert np.sqrt(np.mean(np.square(authors, dtype=np.float64))) == pytest.approx(
        10.0, rel=1e-4
    )
    ours = _dm(str(tmp_path), level_measure="rms", level_db=-20.0, **conf)
    ref = ours("a", {})["speech_ref1"]
    assert np.sqrt(np.mean(np.square(ref, dtype=np.float64))) == pytest.approx(
        0.1, rel=1e-4
    )


def test_rms_level_db_is_a_deprecated_name_of_level_db(index_dir, caplog):
    dm = _dm(index_dir[0], rms_level_db=-6.0)
    assert dm.level == pytest.approx(10 ** (-6 / 20))
    assert any("rms_level_db is deprecated" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="not both"):
        _dm(index_dir[0], rms_level_db=-6.0, level_db=-3.0)
    with pytest.raises(ValueError, match="level_measure"):
        _dm(index_dir[0], level_measure="peak")


def test_dynamic_mixing_is_reproducible_from_numpy_seed(index_dir):
    dm = _dm(index_dir[0])
    np.random.seed(5)
    a = dm("same", {})
    np.random.seed(5)
    b = dm("same", {})
    np.random.seed(5)
    c = dm("other", {})
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["speech_mix"], c["speech_mix"])


def test_validation_mode_passes_data_through_without_an_index(tmp_path):
    dm = MusicDynamicMixing(train=False, index_dir=str(tmp_path / "nowhere"))
    data = {"speech_mix": np.ones((10, 2), np.float32)}
    out = dm("v", data)
    assert out is data


def test_missing_index_says_which_stage_to_run(tmp_path, index_dir):
    with pytest.raises(FileNotFoundError, match="espnet2_ext.datasets.activity"):
        MusicDynamicMixing(train=True, index_dir=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="'piano'"):
        _dm(index_dir[0], stems=("vocals", "piano"))


@pytest.mark.parametrize(
    "conf",
    [dict(drop_prob=1.0), dict(min_gain_db=5.0, max_gain_db=-5.0), dict(stems=())],
)
def test_dynamic_mixing_rejects_bad_config(tmp_path, conf):
    with pytest.raises(ValueError):
        MusicDynamicMixing(train=False, index_dir=str(tmp_path), **conf)


def test_segments_shorter_than_the_crop_are_refused(index_dir):
    with pytest.raises(ValueError, match="shorter than"):
        _dm(index_dir[0], segment_seconds=0.5)  # 4000 samples > the 1500-sample one


# ---------------------------------------------------------------- mixture of mixtures
SEG = 4000  # 0.5 s segments
MOM_CROP_SECONDS = 0.25
MOM_CROP = int(MOM_CROP_SECONDS * RATE)
FILE_TAGS = (0.2, 0.4, 0.6, 0.8)


@pytest.fixture(scope="module")
def mom_pool(tmp_path_factory):
    """4 tagged files (ch1 = tag·ch0) at different levels, 2 segments each, plus a
    silent file; returns (scp path, loaded items)."""
    root = tmp_path_factory.mktemp("mom")
    rng = np.random.default_rng(0)
    entries = []
    for j, (tag, level) in enumerate(zip(FILE_TAGS, (0.01, 0.1, 0.3, 0.05))):
        ch0 = level * rng.standard_normal(2 * SEG)
        audio = np.stack([ch0, tag * ch0], axis=1).astype(np.float32)
        path = str(root / f"{j:06d}.wav")
        sf.write(path, audio, RATE, subtype="FLOAT")
        entries += [
            (f"f{j}-0", SoundSegment(path, 0, SEG)),
            (f"f{j}-1", SoundSegment(path, SEG, 2 * SEG)),
        ]
    silent = str(root / "silent.wav")
    sf.write(silent, np.zeros((SEG, 2), np.float32), RATE, subtype="FLOAT")
    entries.append(("silent-0", SoundSegment(silent, 0, SEG)))
    scp = str(root / "mix_segments.scp")
    write_segment_scp(scp, entries)
    return scp, SegmentSoundScpReader(scp)


def _tag(x: np.ndarray) -> float:
    return float(np.median(x[:, 1].astype(np.float64) / x[:, 0]))


def _mom(scp, train=True, **kwargs):
    return MixtureOfMixtures(
        train=train,
        segment_scp=scp,
        segment_seconds=MOM_CROP_SECONDS,
        sample_rate=RATE,
        **kwargs,
    )


def test_mixture_of_mixtures_power_ratio_and_sum(mom_pool):
    scp, items = mom_pool
    mom = _mom(scp)
    np.random.seed(0)
    ratios = []
    uids = [u for u in items if not u.startswith("silent")]
    for i in range(400):
        uid = uids[i % len(uids)]
        item = items[uid]
        out = mom(uid, {"speech_ref1": item})
        x1, x2, mix = out["speech_ref1"], out["speech_ref2"], out["speech_mix"]
        assert x1.shape == x2.shape == mix.shape == (MOM_CROP, 2)
        assert x1.dtype == x2.dtype == mix.dtype == np.float32
        np.testing.assert_array_equal(mix, x1 + x2)
        # mixture 1 is a crop of the item itself
        candidates = np.flatnonzero(item[: SEG - MOM_CROP + 1, 0] == x1[0, 0])
        starts = [s for s in candidates if np.array_equal(item[s : s + MOM_CROP], x1)]
        assert starts, uid
        # the partner is not silent and comes from another file
        assert np.any(x2)
        assert abs(_tag(x2) - _tag(item)) > 0.1
        p1, p2 = np.mean(x1.astype(np.float64) ** 2), np.mean(
            x2.astype(np.float64) ** 2
        )
        ratios.append(10 * np.log10(p1 / p2))
    ratios = np.array(ratios)
    assert ratios.min() >= -5 - 1e-3 and ratios.max() <= 5 + 1e-3
    assert ratios.min() < -4.5 and ratios.max() > 4.5
    assert abs(ratios.mean()) < 0.5


def test_mixture_of_mixtures_validation_is_fixed_and_idempotent(mom_pool):
    scp, items = mom_pool
    mom = _mom(scp, train=False)
    np.random.seed(0)
    once = mom("f1-0", {"speech_ref1": items["f1-0"]})
    np.random.seed(123)  # the global state must not matter in validation mode
    again = mom("f1-0", {"speech_ref1": items["f1-0"]})
    twice = mom("f1-0", dict(once))
    for key in ("speech_ref1", "speech_ref2", "speech_mix"):
        np.testing.assert_array_equal(once[key], again[key])
        np.testing.assert_array_equal(once[key], twice[key])


def test_mixture_of_mixtures_errors(tmp_path, mom_pool):
    scp, items = mom_pool
    with pytest.raises(FileNotFoundError, match="espnet2_ext.datasets.fma"):
        _mom(str(tmp_path / "missing.scp"))
    one_file = str(tmp_path / "one.scp")
    write_segment_scp(
        one_file, [("a", SoundSegment(items.segments["f0-0"].path, 0, SEG))]
    )
    with pytest.raises(ValueError, match="two different files"):
        _mom(one_file)
    with pytest.raises(ValueError, match="min_ratio_db"):
        _mom(scp, min_ratio_db=3.0, max_ratio_db=-3.0)
    with pytest.raises(KeyError, match="speech_ref1"):
        _mom(scp)("f0-0", {"speech_mix": items["f0-0"]})
