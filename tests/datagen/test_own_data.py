"""The own-data generator: other stem names, silent stems, mixed-format mixtures."""

import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.datagen.own_data import (
    MANIFEST,
    STEMS,
    VALID_LIST,
    generate_own_data,
    main,
)
from espnet2_ext.datasets.fma import decode_file


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen") / "own"
    return root, generate_own_data(root)


def test_songs_in_the_musdb_layout_with_other_stems(own):
    root, manifest = own
    assert set(STEMS) == {"melody", "chords", "rhythm"}
    for split, count in (("train", 5), ("test", 2)):
        songs = sorted(os.listdir(root / "songs" / split))
        assert len(songs) == count
        for name in songs:
            folder = root / "songs" / split / name
            assert sorted(os.listdir(folder)) == sorted(
                ["mixture.wav"] + [f"{s}.wav" for s in STEMS]
            )
            mix, rate = sf.read(folder / "mixture.wav", dtype="int16")
            stems = [sf.read(folder / f"{s}.wav", dtype="int16")[0] for s in STEMS]
            assert rate == 44100 and mix.shape == (441000, 2)
            # the mixture is the exact sum of the stems
            np.testing.assert_array_equal(mix, np.sum(stems, axis=0, dtype=np.int32))
    # one song of each split has no vocals: its melody file exists and holds zeros
    for split in ("train", "test"):
        silent = [s for s in manifest["songs"][split] if s["silent_stems"]]
        assert [s["silent_stems"] for s in silent] == [["melody"]]
        melody, _ = sf.read(root / "songs" / split / silent[0]["name"] / "melody.wav")
        assert not np.any(melody)
    others = [s for s in manifest["songs"]["train"] if not s["silent_stems"]]
    for song in others:
        for stem in STEMS:
            audio, _ = sf.read(root / "songs" / "train" / song["name"] / f"{stem}.wav")
            assert np.sqrt(np.mean(audio**2)) > 0.01  # every other stem plays
    valid = (root / VALID_LIST).read_text().split("\n")
    assert [v for v in valid if v] == manifest["valid_songs"]
    assert not (root / "songs" / "valid_songs.txt").exists()  # given with --valid_list


def test_unlabeled_folder_in_mixed_formats(own):
    root, manifest = own
    files = sorted(os.listdir(root / "unlabeled"))
    assert len(files) == 10
    formats = {os.path.splitext(f)[1] for f in files}
    expected = {".wav", ".flac", ".mp3", ".ogg", ".m4a"}
    if not shutil.which("ffmpeg"):
        expected.discard(".m4a")
    assert formats == expected
    rates = []
    for name in files:
        audio, rate = decode_file(str(root / "unlabeled" / name))
        assert audio.shape[1] == 2 and audio.shape[0] >= 11.9 * rate
        assert 0.01 < np.sqrt(np.mean(audio**2)) and np.max(np.abs(audio)) <= 1.0
        rates.append(rate)
    assert sorted(set(rates)) == [44100, 48000] and rates.count(48000) == 1


def test_rerun_keeps_the_set_and_other_parameters_are_refused(own, tmp_path):
    root, manifest = own
    before = os.path.getmtime(root / MANIFEST)
    assert generate_own_data(root) == manifest
    assert os.path.getmtime(root / MANIFEST) == before
    with pytest.raises(ValueError, match="--overwrite"):
        generate_own_data(root, seed=1)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    assert main(["--out", str(foreign), "--num-unlabeled", "0"]) == 1
    assert main(["--out", str(foreign), "--overwrite"]) == 1
    assert (foreign / "thesis.tex").read_text() == "precious"
    assert sorted(os.listdir(tmp_path)) == ["mine"]  # no temporary folder left
