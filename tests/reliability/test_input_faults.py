"""Reliability of audio in (issue 16): a truncated file is an error naming the file and
both lengths, never a shorter separation; integer arrays are scaled by their full
scale, complex ones refused; a folder given to separate_file says so; a chunk shorter
than the model's STFT frame is refused with the minimum."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet2_ext.api import AudioDecodeError, load_model
from espnet2_ext.bin import separate as separate_cli

from conftest import FS, pack_model_dir, tiny_model_dir

FRAMES = int(0.5 * FS)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tiny_model_dir(tmp_path_factory.mktemp("inputs") / "exp", 2)
    return pack_model_dir(root, root.parent / "packed.zip")


@pytest.fixture(scope="module")
def separator(packed, tmp_path_factory):
    return load_model(packed, segment=None, cache_dir=tmp_path_factory.mktemp("c"))


@pytest.fixture(scope="module")
def truncated_wav(tmp_path_factory):
    """A 16-bit stereo WAV whose header declares 22,050 frames and that holds half."""
    path = tmp_path_factory.mktemp("wav") / "cut.wav"
    rng = np.random.default_rng(0)
    sf.write(path, 0.1 * rng.standard_normal((FRAMES, 2)), FS, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: 44 + (len(data) - 44) // 2])
    return path


def test_truncated_wav_in_the_api_names_both_lengths(separator, truncated_wav):
    with pytest.raises(AudioDecodeError) as e:
        separator.separate_file(truncated_wav)
    message = str(e.value)
    assert str(truncated_wav) in message
    assert f"declares {FRAMES} samples" in message
    assert f"holds {FRAMES // 2} samples" in message


def test_truncated_wav_in_the_command_writes_nothing(
    packed, truncated_wav, tmp_path, capsys
):
    out = tmp_path / "out"
    status = separate_cli.main(["-m", str(packed), "-o", str(out), str(truncated_wav)])
    printed = capsys.readouterr().out
    assert status == 1
    assert re.search(rf"failed\s+cut: .*declares {FRAMES} samples", printed), printed
    assert not out.exists() or not list(out.rglob("*.*"))


def test_truncated_mp3_through_ffmpeg_is_refused(separator, tmp_path):
    """An MP3 whose Xing header declares the full length, cut in half (ffmpeg's
    route: the container's declared length is checked)."""
    wav, mp3 = tmp_path / "full.wav", tmp_path / "cut.mp3"
    rng = np.random.default_rng(1)
    sf.write(wav, 0.1 * rng.standard_normal((2 * FS, 2)), FS)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(wav), "-b:a", "128k",
         str(tmp_path / "full.mp3")],
        check=True,
    )  # fmt: skip
    data = (tmp_path / "full.mp3").read_bytes()
    mp3.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioDecodeError, match="truncated or damaged"):
        separator.separate_file(mp3)


def test_integer_pcm_is_scaled_by_its_full_scale(separator):
    rng = np.random.default_rng(2)
    pcm = (rng.standard_normal((2, 4410)) * 3000).astype(np.int16)
    as_float = separator.separate(pcm.astype(np.float32) / 32768, FS)
    for array in (pcm, torch.from_numpy(pcm)):
        scaled = separator.separate(array, FS)
        for stem in separator.stems:
            np.testing.assert_allclose(
                np.asarray(scaled[stem]), as_float[stem], rtol=0, atol=1e-6
            )
            assert float(np.abs(np.asarray(scaled[stem])).max()) < 2.0
    unsigned = (pcm.astype(np.int32) // 256 + 128).astype(np.uint8)  # 8-bit WAV
    out = separator.separate(unsigned, FS)
    expected = separator.separate((unsigned.astype(np.float32) - 128) / 128, FS)
    np.testing.assert_allclose(out["spk1"], expected["spk1"], atol=1e-6)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((2, 4410), np.complex64), "complex"),
        (torch.zeros(2, 4410, dtype=torch.complex64), "complex"),
        (np.zeros((2, 4410), np.int64), "no audio full scale"),
        (np.zeros((2, 4410), bool), "boolean"),
    ],
    ids=["numpy-complex", "torch-complex", "int64", "bool"],
)
def test_arrays_without_a_meaning_as_audio_are_refused(separator, array, message):
    with pytest.raises(TypeError, match=message):
        separator.separate(array, FS)


def test_separate_file_on_a_folder_says_it_is_a_folder(separator, tmp_path):
    with pytest.raises(AudioDecodeError, match="is a folder"):
        separator.separate_file(tmp_path)


def test_a_segment_shorter_than_the_stft_frame_is_refused(
    packed, truncated_wav, tmp_path, capsys
):
    with pytest.raises(ValueError, match=r"shorter than one STFT frame .*2048"):
        load_model(packed, segment=0.01, cache_dir=tmp_path)
    status = separate_cli.main(
        ["-m", str(packed), "-o", str(tmp_path / "o"), "--segment", "0.01",
         str(truncated_wav)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1 and "at least 0.047 s" in err and "Traceback" not in err
    # one frame is enough
    assert load_model(packed, segment=0.047, cache_dir=tmp_path).chunking.segment


def test_no_decoder_for_a_format_is_a_clear_error(separator, tmp_path, monkeypatch):
    wav, m4a = tmp_path / "a.wav", tmp_path / "a.m4a"
    sf.write(wav, np.zeros((4410, 2)), FS)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a)],
        check=True,
    )
    assert separator.separate_file(m4a)["spk1"].shape[0] == 2  # with ffmpeg
    monkeypatch.setattr("espnet2_ext.separation.audio.ffmpeg_available", lambda: False)
    with pytest.raises(AudioDecodeError) as e:
        separator.separate_file(m4a)
    assert "libsndfile:" in str(e.value) and "ffmpeg: not installed" in str(e.value)
