"""A plain folder of unlabeled mixtures in mixed formats → MixIT segments.

Issue 17: a small set works with the default options (two validation files, so that
mixture of mixtures can pair two files there too), and a folder with fewer than two
readable files, or too few usable ones, is a clear error before anything is written.
"""

import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.datasets.fma import main, prepare_unlabeled
from espnet2_ext.train.dataset import read_segment_scp
from espnet2_ext.train.preprocessor import MixtureOfMixtures

RATE = 44100
SECONDS = 10.5  # one default segment (10 s) and a bit


def _audio(seconds=SECONDS, rate=RATE, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((int(seconds * rate), channels))).astype(
        np.float32
    )


def _m4a(path, audio, rate=RATE):
    """AAC in MP4 (libsndfile cannot read it): encoded by ffmpeg."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(rate), "-ac",
         str(audio.shape[1]), "-i", "pipe:0", "-c:a", "aac", "-b:a", "128k", str(path)],
        input=audio.tobytes(), check=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("my_mixtures")
    sf.write(folder / "a song.wav", _audio(seed=1), RATE)
    sf.write(folder / "b.flac", _audio(seed=2), RATE)
    sf.write(folder / "c.mp3", _audio(seed=3), RATE, format="MP3")
    sf.write(folder / "d.ogg", _audio(seed=4), RATE, format="OGG")
    sf.write(folder / "e_48k.wav", _audio(rate=48000, seed=5), 48000)  # resampled
    (folder / "live").mkdir()
    sf.write(folder / "live" / "f.wav", _audio(seed=6), RATE)
    sf.write(folder / "mono.wav", _audio(channels=1, seed=7), RATE)  # dropped
    (folder / "notes.txt").write_text("not audio, ignored\n")
    if shutil.which("ffmpeg"):
        _m4a(folder / "g.m4a", _audio(seed=8))
    return folder


def test_small_mixed_format_folder_works_with_defaults(mixed_folder, tmp_path):
    out, cache = tmp_path / "data" / "fma", tmp_path / "cache"
    counts = prepare_unlabeled(str(mixed_folder), str(out), str(cache))
    has_m4a = (mixed_folder / "g.m4a").exists()
    assert counts["files"] == 7 + has_m4a  # notes.txt is not audio
    assert counts["kept_files"] == 6 + has_m4a
    assert counts["dropped_files"] == 1  # mono
    assert counts["valid_files"] == 2  # 5 % of 7 rounds to 0: two all the same
    assert counts["resampled_files"] == 1
    assert counts["cached_files"] == 1 + has_m4a  # 48 kHz and M4A
    train = read_segment_scp(str(out / "train" / "mix_segments.scp"))
    valid = read_segment_scp(str(out / "valid" / "mix_segments.scp"))
    assert len({s.path for s in valid.values()}) == 2
    assert not {s.path for s in train.values()} & {s.path for s in valid.values()}
    for uid, segment in {**train, **valid}.items():
        assert " " not in uid
        assert sf.info(segment.path).samplerate == RATE
        assert segment.end <= sf.info(segment.path).frames
        if "48k" in uid or "m4a" in uid:
            assert segment.path.startswith(str(cache)) and segment.path.endswith(
                ".flac"
            )
    assert any(uid.startswith("a_song.wav-") for uid in {**train, **valid})
    assert any(uid.startswith("live_f.wav-") for uid in {**train, **valid})
    # the MixIT preprocessor pairs two different files in training and validation
    scps = dict(
        segment_scp=str(out / "train" / "mix_segments.scp"),
        valid_segment_scp=str(out / "valid" / "mix_segments.scp"),
        segment_seconds=1.0,
    )
    for train_mode, table in ((True, train), (False, valid)):
        mom = MixtureOfMixtures(train=train_mode, **scps)
        uid, segment = next(iter(table.items()))
        audio, _ = sf.read(segment.path, start=segment.start, stop=segment.end)
        item = mom(uid, {"speech_ref1": audio.astype(np.float32)})
        assert item["speech_mix"].shape == (RATE, 2)


def test_fewer_than_two_readable_files_stop_before_writing(tmp_path):
    folder = tmp_path / "few"
    folder.mkdir()
    sf.write(folder / "one.wav", _audio(seed=1), RATE)
    (folder / "broken.mp3").write_bytes(np.random.default_rng(0).bytes(3000))
    (folder / "empty.flac").write_bytes(b"")
    out, cache = tmp_path / "data", tmp_path / "cache"
    with pytest.raises(ValueError) as err:
        prepare_unlabeled(str(folder), str(out), str(cache))
    assert "1 readable audio file(s) of 3" in str(err.value)
    assert "broken.mp3" in str(err.value) and "empty.flac" in str(err.value)
    assert not out.exists() and not cache.exists()
    assert main(["--unlabeled-dir", str(folder), "--out", str(out)]) == 1
    assert not out.exists()


def test_too_few_usable_files_or_too_many_valid_ones_say_what_to_do(tmp_path):
    folder = tmp_path / "three"
    folder.mkdir()
    for i in range(3):
        sf.write(folder / f"{i}.wav", _audio(seed=i), RATE)
    sf.write(folder / "short.wav", _audio(seconds=2.0), RATE)
    out = tmp_path / "data"
    with pytest.raises(ValueError) as err:
        prepare_unlabeled(str(folder), str(out), str(tmp_path / "cache"))
    message = str(err.value)
    assert "3 of 4 files usable" in message and "shorter than a segment" in message
    assert "at least 4 usable files" in message and "--valid_percent" in message
    assert not out.exists()

    sf.write(folder / "3.wav", _audio(seed=3), RATE)
    sf.write(folder / "4.wav", _audio(seed=4), RATE)  # 5 usable
    with pytest.raises(ValueError, match="choose another --valid_percent"):
        prepare_unlabeled(
            str(folder), str(out), str(tmp_path / "cache"), valid_percent=80
        )
    assert not out.exists()
    counts = prepare_unlabeled(str(folder), str(out), str(tmp_path / "cache"))
    assert (counts["train_files"], counts["valid_files"]) == (3, 2)


def test_missing_or_empty_folder(tmp_path):
    out = tmp_path / "data"
    assert main(["--unlabeled-dir", str(tmp_path / "nope"), "--out", str(out)]) == 1
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="no audio file"):
        prepare_unlabeled(str(tmp_path / "texts"), str(out), str(tmp_path / "c"))
    assert not out.exists()


def test_the_decoded_cache_is_reused_and_gives_the_same_segments(tmp_path):
    """Segments are cut on the cache as written (16-bit FLAC), so a rerun that reads
    the cache instead of decoding again gives the same items; --cache-all caches
    44.1 kHz files too."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(5):
        audio = _audio(seconds=2.0, seed=i)
        if i == 4:  # 1e-6 is below half a 16-bit step: zero in the cache
            audio[: RATE // 2] = 1e-6
        sf.write(folder / f"{i}.wav", audio, RATE, subtype="FLOAT")
    cache = tmp_path / "cache"
    runs = []
    for run in range(2):
        out = tmp_path / f"out{run}"
        args = ["--unlabeled-dir", str(folder), "--out", str(out), "--cache-all"]
        args += [
            "--cache",
            str(cache),
            "--segment-seconds",
            "1",
            "--hop-seconds",
            "0.5",
        ]
        assert main(args) == 0
        runs.append((out / "train" / "mix_segments.scp").read_text())
        runs.append((out / "skipped.tsv").read_text())
        if run == 0:
            stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*.flac")}
    assert runs[:2] == runs[2:]
    assert len(stamps) == 5
    assert stamps == {p: p.stat().st_mtime_ns for p in cache.rglob("*.flac")}
    # in the cache the first 0.5 s of 4.wav is zero: 10 of the 20 chunks of the first
    # segment, a silent segment under the authors' rule, so the track is dropped
    assert "4.wav\tdropped\tsegment at 0.0 s is silent" in runs[1]
