"""FMA preparation: filters, resampling, silence rules, bad files never fatal.

The rules on planted arrays are in test_fma_segment_rules.py; here they run on MP3 files.
"""

import csv
import os

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.datasets.fma import FmaConfig, main, prepare_fma, process_track
from espnet2_ext.train.dataset import SegmentSoundScpReader, read_segment_scp

# 20 chunks of 50 ms; OURS: complete segments, -60 dBFS chunks, drop only the segment
AUTHORS = FmaConfig(segment_seconds=1.0, hop_seconds=0.5)
OURS = FmaConfig(
    segment_seconds=1.0,
    hop_seconds=0.5,
    last_segment="complete",
    silence="below_db",
    silent_segment="drop_segment",
)


def _mp3(path, seconds, rate=44100, channels=2, loud_seconds=None, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    audio = np.zeros((n, channels))
    loud = n if loud_seconds is None else int(loud_seconds * rate)
    audio[:loud] = 0.1 * rng.standard_normal((loud, channels))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, audio, rate, format="MP3")


@pytest.fixture(scope="module")
def fma_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fma")
    d0, d1 = root / "fma_small" / "000", root / "fma_small" / "001"
    _mp3(str(d0 / "000001.mp3"), 2.5)
    _mp3(str(d0 / "000002.mp3"), 2.5, rate=48000)  # resampled
    _mp3(str(d0 / "000003.mp3"), 2.5, channels=1)  # mono: dropped
    _mp3(str(d0 / "000004.mp3"), 2.5, rate=22050)  # below 44.1 kHz: dropped
    (d0 / "000005.mp3").write_bytes(np.random.default_rng(0).bytes(3000))  # corrupt
    (d0 / "000006.mp3").write_bytes(b"")  # zero bytes
    _mp3(str(d1 / "001007.mp3"), 3.0, loud_seconds=1.2)  # silent after 1.2 s
    _mp3(str(d1 / "001008.mp3"), 2.0, loud_seconds=0.0)  # all silent: dropped
    _mp3(str(d1 / "001009.mp3"), 0.5)  # shorter than a segment: dropped
    _mp3(str(d1 / "001010.mp3"), 2.5, seed=1)
    _mp3(str(d1 / "001011.mp3"), 2.0, seed=2)
    return root


def _tracks(scp):
    return {uid.split("-")[0] for uid in read_segment_scp(scp)}


def test_filters_resampling_and_bad_files(fma_root, tmp_path):
    out, cache = tmp_path / "data" / "fma", tmp_path / "cache"
    counts = prepare_fma(str(fma_root), "small", str(out), str(cache), config=OURS)

    assert counts["files"] == 11
    assert counts["unreadable_files"] == 2
    assert counts["dropped_files"] == 4
    assert counts["kept_files"] == 5
    assert counts["resampled_files"] == 1

    with open(out / "skipped.tsv") as f:
        rows = {
            os.path.basename(r["path"]): r for r in csv.DictReader(f, delimiter="\t")
        }
    assert rows["000003.mp3"]["reason"] == "mono"
    assert "22050 Hz" in rows["000004.mp3"]["reason"]
    assert rows["000005.mp3"]["status"] == "unreadable"
    assert rows["000006.mp3"]["reason"] == "empty file (0 bytes)"
    assert "silent" in rows["001008.mp3"]["reason"]
    assert "shorter" in rows["001009.mp3"]["reason"]
    assert set(rows) == {
        "000003.mp3",
        "000004.mp3",
        "000005.mp3",
        "000006.mp3",
        "001008.mp3",
        "001009.mp3",
    }

    resampled = cache / "000" / "000002.mp3.flac"
    info = sf.info(str(resampled))
    assert info.samplerate == 44100 and info.channels == 2 and info.format == "FLAC"
    # 2.5 s at 48 kHz · 147/160 (ffmpeg and libsndfile may trim the encoder delay
    # differently: within one MP3 frame)
    assert abs(info.frames - 110250) <= 1152

    train = str(out / "train" / "mix_segments.scp")
    valid = str(out / "valid" / "mix_segments.scp")
    train_tracks, valid_tracks = _tracks(train), _tracks(valid)
    assert train_tracks | valid_tracks == {
        "fma000001",
        "fma000002",
        "fma001007",
        "fma001010",
        "fma001011",
    }
    assert len(valid_tracks) >= 2 and not train_tracks & valid_tracks
    for scp in (train, valid):
        reader = SegmentSoundScpReader(scp)
        for uid, segment in reader.segments.items():
            assert " " not in uid
            if uid.startswith("fma000002"):
                assert segment.path == str(resampled.resolve())
            else:
                assert segment.path.endswith(".mp3")
            audio = reader[uid]
            assert audio.shape == (44100, 2) and audio.dtype == np.float32
            assert np.mean(audio**2) > 1e-4  # no silent item
    with open(out / "train" / "speech_ref1_shape") as f:
        assert f.readline().split()[1] == "44100,2"


def test_mostly_silent_segments_are_dropped(fma_root, tmp_path):
    path = str(fma_root / "fma_small" / "001" / "001007.mp3")
    result = process_track("001007", path, str(tmp_path), OURS, "001/001007.mp3")
    # loud [0, 1.2 s): [0, 1) kept; [0.5, 1.5) has 14 of 20 chunks loud: kept;
    # [1, 2) has 4 loud chunks and later ones none: dropped.
    assert result.status == "kept"
    assert result.segments == [(0, 0), (1, 22050)]


def test_authors_rules_on_mp3_files(fma_root, tmp_path):
    """Defaults: a silent stretch drops the whole track; the last segment is moved
    back to end at the track's end, one per hop position."""
    d1 = fma_root / "fma_small" / "001"
    quiet = process_track(
        "001007", str(d1 / "001007.mp3"), str(tmp_path), AUTHORS, "x.mp3"
    )
    assert quiet.status == "dropped" and "silent" in quiet.reason
    loud = process_track("001010", str(d1 / "001010.mp3"), str(tmp_path), AUTHORS, "y")
    assert loud.status == "kept" and not loud.cached
    total = sf.info(str(d1 / "001010.mp3")).frames  # 2.5 s and the MP3's padding
    hop, length = 22050, 44100
    positions = range(0, total, hop)
    assert loud.segments == [
        (p, min(t, total - length)) for p, t in enumerate(positions)
    ]
    assert loud.segments[-1][1] == total - length  # end-aligned

    out = tmp_path / "data"
    prepare_fma(str(fma_root), "small", str(out), str(tmp_path / "cache"), AUTHORS)
    train = read_segment_scp(str(out / "train" / "mix_segments.scp"))
    valid = read_segment_scp(str(out / "valid" / "mix_segments.scp"))
    assert "fma001007" not in _tracks(str(out / "train" / "mix_segments.scp"))
    for segment in list(train.values()) + list(valid.values()):
        assert segment.end <= sf.info(segment.path).frames


def test_metadata_split_and_cli(fma_root, tmp_path):
    meta = tmp_path / "tracks.csv"
    with open(meta, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["", "album", "set", "set", "track"])
        writer.writerow(["", "title", "split", "subset", "title"])
        writer.writerow(["track_id", "", "", "", ""])
        writer.writerow([1, "x", "validation", "small", "a, with comma"])
        writer.writerow([2, "y", "training", "small", "b"])
        writer.writerow([1007, "z", "test", "small", "c"])
    out = tmp_path / "out"
    args = ["--root", str(fma_root), "--subset", "small", "--out", str(out)]
    args += ["--metadata", str(meta)]
    args += [
        "--cache",
        str(tmp_path / "cache"),
        "--segment-seconds",
        "1",
        "--hop-seconds",
        "0.5",
        "--silence",
        "below_db",
        "--silent-segment",
        "drop_segment",
    ]
    assert main(args) == 0
    valid = _tracks(str(out / "valid" / "mix_segments.scp"))
    train = _tracks(str(out / "train" / "mix_segments.scp"))
    assert "fma000001" in valid and "fma000002" in train
    assert "fma001007" not in valid | train  # FMA's test split is not used


def test_missing_subset_stops_before_writing(fma_root, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="fma_large"):
        prepare_fma(str(fma_root), "large", str(out), str(tmp_path / "cache"))
    assert main(["--root", str(tmp_path / "nope"), "--out", str(out)]) == 1
    assert not out.exists()
