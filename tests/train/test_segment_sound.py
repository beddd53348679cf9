"""The ``segment_sound`` data type reads exactly the slice an scp line names."""

import numpy as np
import pytest
import soundfile as sf
from espnet2.train import dataset as espnet_dataset

from espnet2_ext.train.dataset import (
    SEGMENT_SOUND,
    SEGMENT_SOUND_DATA_TYPE,
    SegmentSoundScpReader,
    SoundSegment,
    parse_segment_line,
    read_active_index,
    read_segment_scp,
    read_sound_segment,
    shadowing_data_types,
    write_active_index,
    write_segment_scp,
)


@pytest.fixture
def stereo_wav(tmp_path):
    rng = np.random.default_rng(0)
    audio = rng.uniform(-0.5, 0.5, (8000, 2)).astype(np.float32)
    path = tmp_path / "Some Song, A & B" / "vocals.wav"  # spaces, comma, ampersand
    path.parent.mkdir()
    sf.write(path, audio, 8000, subtype="FLOAT")
    return str(path), audio


def test_reader_returns_exactly_the_slice(tmp_path, stereo_wav):
    path, audio = stereo_wav
    scp = tmp_path / "segments.scp"
    write_segment_scp(
        str(scp),
        [("a", SoundSegment(path, 0, 800)), ("b", SoundSegment(path, 1234, 5678))],
    )
    reader = SegmentSoundScpReader(str(scp))
    assert list(reader) == ["a", "b"]
    b = reader["b"]
    assert b.shape == (5678 - 1234, 2)
    assert b.dtype == np.float32
    np.testing.assert_array_equal(b, audio[1234:5678])
    np.testing.assert_array_equal(reader["a"], audio[:800])


def test_mp3_slice_matches_a_full_decode(tmp_path):
    # Sines in an MP3: libsndfile's seek into such a file lands on other samples.
    rate = 44100
    t = np.arange(3 * rate) / rate
    audio = 0.3 * np.stack(
        [np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], 1
    )
    path = str(tmp_path / "t.mp3")
    sf.write(path, audio, rate, format="MP3")
    full, _ = sf.read(path, dtype="float32", always_2d=True)
    for start, end in [(20000, 30000), (44100, 48100), (100000, 132300)]:
        part, got_rate = read_sound_segment(path, start, end)
        assert got_rate == rate
        np.testing.assert_array_equal(part, full[start:end])


def test_mono_file_gives_two_dimensional_array(tmp_path):
    path = str(tmp_path / "mono.wav")
    sf.write(path, np.linspace(-0.5, 0.5, 1000), 8000, subtype="FLOAT")
    part, _ = read_sound_segment(path, 10, 20)
    assert part.shape == (10, 1)
    np.testing.assert_allclose(
        part[:, 0], np.linspace(-0.5, 0.5, 1000)[10:20], atol=1e-7
    )


def test_slice_past_the_end_is_an_error(stereo_wav):
    path, _ = stereo_wav
    with pytest.raises(ValueError, match="past the end"):
        read_sound_segment(path, 7000, 9000)


def test_bad_scp_lines_name_the_line(tmp_path):
    scp = tmp_path / "bad.scp"
    scp.write_text("ok /a b/c.wav 0 10\nbroken /x.wav 10\n")
    with pytest.raises(ValueError, match=r"bad.scp:2"):
        read_segment_scp(str(scp))
    scp.write_text("u /a.wav 0 10\nu /b.wav 0 10\n")
    with pytest.raises(ValueError, match="repeated"):
        read_segment_scp(str(scp))
    with pytest.raises(ValueError, match="empty or negative"):
        parse_segment_line("u /a.wav 10 10")


def test_path_with_spaces_round_trips(tmp_path):
    uid, seg = parse_segment_line("song_1 /data/My Song - A & B/vocals.wav 5 15\n")
    assert uid == "song_1"
    assert seg == SoundSegment("/data/My Song - A & B/vocals.wav", 5, 15)
    index = tmp_path / "active_vocals.tsv"
    rows = [("s1", seg), ("s2", SoundSegment("/other path/x.wav", 0, 100))]
    write_active_index(str(index), rows)
    assert read_active_index(str(index)) == rows


def test_sampling_rate_change_is_refused_unless_allowed(tmp_path):
    a, b = str(tmp_path / "a.wav"), str(tmp_path / "b.wav")
    sf.write(a, np.zeros((100, 2)), 8000)
    sf.write(b, np.zeros((100, 2)), 16000)
    scp = str(tmp_path / "s.scp")
    write_segment_scp(
        scp, [("a", SoundSegment(a, 0, 50)), ("b", SoundSegment(b, 0, 50))]
    )
    reader = SegmentSoundScpReader(scp)
    reader["a"]
    with pytest.raises(RuntimeError, match="16000 Hz"):
        reader["b"]
    lenient = SegmentSoundScpReader(scp, allow_multi_rates=True)
    assert lenient["a"].shape == lenient["b"].shape == (50, 2)


def test_espnet_dataset_loads_the_slice_through_data_types(
    tmp_path, stereo_wav, monkeypatch
):
    path, audio = stereo_wav
    scp = str(tmp_path / "mix.scp")
    write_segment_scp(scp, [("utt1", SoundSegment(path, 100, 900))])
    # Why the type is not called "sound_segment": ESPnet would hand it to "sound".
    assert shadowing_data_types("sound_segment", espnet_dataset.DATA_TYPES) == ["sound"]
    monkeypatch.setitem(
        espnet_dataset.DATA_TYPES, SEGMENT_SOUND, SEGMENT_SOUND_DATA_TYPE
    )
    assert shadowing_data_types(SEGMENT_SOUND, espnet_dataset.DATA_TYPES) == []
    ds = espnet_dataset.ESPnetDataset([(scp, "speech_mix", SEGMENT_SOUND)])
    uid, data = ds["utt1"]
    assert uid == "utt1"
    assert data["speech_mix"].dtype == np.float32
    np.testing.assert_array_equal(data["speech_mix"], audio[100:900])
