"""Source-activity filtering keeps loud segments, drops silent ones; fixed crops."""

import os

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.datasets.activity import (
    ActivityConfig,
    main,
    run_activity,
    select_active_segments,
)
from espnet2_ext.train.dataset import (
    SegmentSoundScpReader,
    active_index_path,
    read_active_index,
)

RATE = 8000
SECONDS = 6
CONFIG = ActivityConfig(segment_seconds=1.0)  # 10 chunks of 800, hop of 5 chunks


def test_threshold_floor_and_half_of_the_chunks_rule():
    energies = np.array([10.0] * 10 + [0.0] * 20)
    keep, threshold = select_active_segments(energies, ActivityConfig(), hop_chunks=5)
    # segments cover chunks 0-9 (all loud), 5-14 (half loud), 10-19 and on (silent)
    assert keep.tolist() == [True, True, False, False, False]
    assert threshold == 1e-3  # the 15th percentile is 0: the floor applies


def test_percentile_threshold_drops_quiet_background():
    quiet, loud = 0.01, 1.0
    energies = np.array([quiet] * 20 + [loud] * 10 + [quiet] * 10)
    keep, threshold = select_active_segments(energies, ActivityConfig(), hop_chunks=5)
    assert threshold == pytest.approx(quiet)  # 15th percentile, above the 1e-3 floor
    # chunks [20, 30) are loud: segments 3 (15-24, 5 loud), 4 (20-29) and 5 (25-34)
    assert np.flatnonzero(keep).tolist() == [3, 4, 5]


def test_zero_energy_chunks_count_as_1e_5_in_the_percentile():
    """The authors replace exact zeros by 1e-5 before the percentile: with two zero
    chunks of ten, the 15th percentile (at rank 1.35) interpolates from 1e-5."""
    energies = np.array([0.0, 0.0, 0.02] + [1.0] * 7)
    _, threshold = select_active_segments(energies, ActivityConfig(), hop_chunks=5)
    assert threshold == pytest.approx(1e-5 + 0.35 * (0.02 - 1e-5))
    plain = ActivityConfig(zero_energy=0.0)
    _, threshold = select_active_segments(energies, plain, hop_chunks=5)
    assert threshold == pytest.approx(0.35 * 0.02)


def test_grid_must_be_whole_chunks():
    with pytest.raises(ValueError, match="equal chunks"):
        ActivityConfig(segment_seconds=1.0, num_chunks=7).grid(RATE)


def _write_data(tmp_path, songs):
    """songs: {uid: {stem: [T, 2] array}}; writes wavs and a data folder."""
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    scps = {"mixture": open(data / "wav.scp", "w")}
    scps.update(
        {s: open(data / f"spk{i}.scp", "w") for i, s in enumerate(MUSDB_STEMS, 1)}
    )
    for uid, stems in sorted(songs.items()):
        folder = tmp_path / "audio" / f"{uid} song"
        folder.mkdir(parents=True)
        stems = dict(stems, mixture=sum(stems.values()))
        for name, audio in stems.items():
            path = folder / f"{name}.wav"
            sf.write(path, audio.astype(np.float32), RATE, subtype="FLOAT")
            scps[name].write(f"{uid} {path}\n")
    for f in scps.values():
        f.close()
    return str(data)


def _noise(rng, start_s=0.0, end_s=SECONDS):
    x = np.zeros((SECONDS * RATE, 2))
    a, b = int(start_s * RATE), int(end_s * RATE)
    x[a:b] = 0.1 * rng.standard_normal((b - a, 2))
    return x


@pytest.fixture
def planted(tmp_path):
    rng = np.random.default_rng(0)
    songs = {
        # vocals loud for the first 2 s only, then digital silence
        "songA": {
            "vocals": _noise(rng, 0, 2),
            "bass": _noise(rng),
            "drums": _noise(rng),
            "other": _noise(rng),
        },
        # no vocals at all; every stem silent after 5 s
        "songB": {
            "vocals": _noise(rng, 0, 0),
            "bass": _noise(rng, 0, 5),
            "drums": _noise(rng, 0, 5),
            "other": _noise(rng, 0, 5),
        },
    }
    return _write_data(tmp_path, songs), tmp_path


def test_planted_activity_and_crops(planted):
    data, tmp_path = planted
    out = str(tmp_path / "dump" / "train_segments")
    summary = run_activity(data, out, config=CONFIG, crop_seconds=0.5)

    vocals = read_active_index(active_index_path(out, "vocals"))
    assert {song for song, _ in vocals} == {"songA"}
    # 1 s segments every 0.5 s; loud vocals in [0, 2 s): starts 0, .5, 1, 1.5 s kept
    # (the last one with exactly half of its chunks loud), 2 s and later dropped.
    assert [(s.start, s.end) for _, s in vocals] == [
        (int(t * RATE), int(t * RATE) + RATE) for t in (0.0, 0.5, 1.0, 1.5)
    ]
    assert all(s.path.endswith("songA song/vocals.wav") for _, s in vocals)
    assert summary["vocals"] == dict(segments=22, kept=4, songs_without=1)
    bass = read_active_index(active_index_path(out, "bass"))
    b_ends = [s.end for song, s in bass if song == "songB"]
    assert max(b_ends) == int(5.5 * RATE) and len(b_ends) == 10  # starts 0 .. 4.5 s
    assert len([1 for song, _ in bass if song == "songA"]) == 11

    # crops: every 0.5 s crop of songA; songB's silent last second is left out
    mix = SegmentSoundScpReader(os.path.join(out, "mix_segments.scp"))
    starts = {}
    for uid in mix:
        song, start = uid.rsplit("-", 1)
        starts.setdefault(song, []).append(int(start))
    assert starts["songA"] == [int(t * RATE) for t in np.arange(0, 6, 0.5)]
    assert starts["songB"] == [int(t * RATE) for t in np.arange(0, 5, 0.5)]
    for i in range(1, 5):
        ref = SegmentSoundScpReader(os.path.join(out, f"spk{i}_segments.scp"))
        assert list(ref) == list(mix)
    uid = "songA-0000004000"
    parts = [
        SegmentSoundScpReader(os.path.join(out, f"spk{i}_segments.scp"))[uid]
        for i in range(1, 5)
    ]
    np.testing.assert_allclose(mix[uid], sum(parts), atol=1e-6)
    assert mix[uid].shape == (4000, 2)
    with open(os.path.join(out, "speech_mix_shape")) as f:
        assert f.readline() == "songA-0000000000 4000,2\n"


def test_stem_without_any_active_segment_stops_before_writing(tmp_path):
    rng = np.random.default_rng(1)
    songs = {
        "s": {
            "vocals": _noise(rng, 0, 0),
            "bass": _noise(rng),
            "drums": _noise(rng),
            "other": _noise(rng),
        }
    }
    data = _write_data(tmp_path, songs)
    out = tmp_path / "dump" / "seg"
    with pytest.raises(ValueError, match="'vocals'"):
        run_activity(data, str(out), config=CONFIG)
    assert not out.exists()
    assert not (tmp_path / "dump").exists()  # not even the parent folder


def test_cli_crops_only_and_missing_data(planted, tmp_path):
    data, _ = planted
    out = tmp_path / "dump" / "valid_segments"
    assert (
        main(["--data", data, "--out", str(out), "--no-index", "--crop-seconds", "1"])
        == 0
    )
    assert sorted(os.listdir(out)) == sorted(
        ["mix_segments.scp", "utt2spk", "speech_mix_shape"]
        + [f"spk{i}_segments.scp" for i in range(1, 5)]
        + [f"speech_ref{i}_shape" for i in range(1, 5)]
    )
    with pytest.raises(ValueError, match="crop fits"):
        run_activity(data, str(tmp_path / "y"), config=None, crop_seconds=10.0)
    assert not (tmp_path / "y").exists()
    with pytest.raises(FileNotFoundError, match="musdb18hq"):
        run_activity(str(tmp_path / "nope"), str(tmp_path / "x"))


def test_stems_are_read_from_the_data_folder(planted, tmp_path):
    """A data folder with a ``stems`` file (any names): its stems by default."""
    data, _ = planted
    own = tmp_path / "own"
    own.mkdir()
    for name in ("wav.scp", "spk1.scp", "spk2.scp"):  # two stems, renamed
        (own / name).write_text((tmp_path / "data" / "train" / name).read_text())
    (own / "stems").write_text("lead\nlow\n")
    out = tmp_path / "dump" / "own"
    summary = run_activity(str(own), str(out), config=CONFIG, crop_seconds=0.5)
    assert set(summary) == {"lead", "low", "crops"}
    assert os.path.isfile(active_index_path(str(out), "lead"))
    assert os.path.isfile(os.path.join(out, "spk2_segments.scp"))
    assert not os.path.exists(os.path.join(out, "spk3_segments.scp"))
