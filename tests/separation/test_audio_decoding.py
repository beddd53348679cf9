"""Audio in and out: decoding with libsndfile and ffmpeg, exact lengths, encoding the
output formats (MP3 through libsndfile or ffmpeg)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet2_ext.separation.audio import read_audio, to_float_tensor
from espnet2_ext.utils import audio_io

FS = 44100


def _ffmpeg(src: Path, dst: Path, *options: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), *options, str(dst)],
        check=True,
    )
    return dst


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """One second of stereo noise as a float WAV."""
    path = tmp_path_factory.mktemp("audio") / "source.wav"
    rng = np.random.default_rng(0)
    sf.write(path, (0.1 * rng.standard_normal((FS, 2))).astype(np.float32), FS)
    return path


def test_vbr_mp3_without_a_xing_header_is_decoded_whole(source, tmp_path):
    """libsndfile stops such a file at a length estimated from its first frame;
    the decoder takes ffmpeg for MP3 and gets all of it."""
    mp3 = _ffmpeg(source, tmp_path / "vbr.mp3", "-q:a", "4", "-write_xing", "0")
    libsndfile_frames = sf.read(mp3)[0].shape[0]
    wave, rate = read_audio(mp3)
    assert rate == FS and wave.shape[0] == 2
    assert wave.shape[1] >= FS  # at least the source (plus the encoder's padding)
    assert libsndfile_frames < 0.9 * FS  # the failure this route avoids


@pytest.mark.parametrize(
    "name, options",
    [("a.m4a", ("-c:a", "aac")), ("a.opus", ("-c:a", "libopus")), ("a.mka", ())],
)
def test_formats_libsndfile_cannot_read_go_through_ffmpeg(
    source, tmp_path, name, options
):
    encoded = _ffmpeg(source, tmp_path / name, *options)
    wave, rate = read_audio(encoded)
    assert wave.dtype == torch.float32 and wave.shape[0] == 2
    assert rate in (FS, 48000)  # Opus decodes at 48 kHz
    assert abs(wave.shape[1] / rate - 1.0) < 0.05


def test_libsndfile_formats_keep_their_exact_samples(source):
    data, _ = sf.read(source, dtype="float32")
    wave, rate = read_audio(source)
    assert rate == FS
    np.testing.assert_array_equal(wave.numpy(), data.T)


@pytest.mark.parametrize("fmt, bits", [("wav", "16"), ("wav", "float"), ("flac", "24")])
def test_encoded_pcm_round_trips(fmt, bits, tmp_path):
    wave = np.linspace(-0.5, 0.5, 2 * 1000, dtype=np.float32).reshape(1000, 2)
    data, clipped = audio_io.encode_audio(wave, FS, fmt, bits)
    path = tmp_path / f"x.{fmt}"
    path.write_bytes(data)
    decoded, rate = sf.read(path, dtype="float32")
    assert rate == FS and clipped == 0
    np.testing.assert_allclose(decoded, wave, atol=2.0**-15 if bits == "16" else 1e-6)


@pytest.mark.parametrize("encoder", ["libsndfile", "ffmpeg"])
def test_mp3_is_written_at_320_kbps_with_its_exact_length(
    encoder, tmp_path, monkeypatch
):
    monkeypatch.setattr(audio_io, "mp3_encoder", lambda: encoder)
    rng = np.random.default_rng(1)
    wave = (0.1 * rng.standard_normal((FS, 2))).astype(np.float32)
    data, _ = audio_io.encode_audio(wave, FS, "mp3", None)
    path = tmp_path / "x.mp3"
    path.write_bytes(data)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=bit_rate", "-of",
         "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert int(probe.stdout.strip()) == 320000
    decoded, rate = read_audio(path)
    assert rate == FS and decoded.shape == (2, FS)  # gapless: no encoder delay left


def test_encoder_options_are_checked():
    wave = np.zeros((10, 2), np.float32)
    with pytest.raises(ValueError, match="FLAC takes bits 16, 24"):
        audio_io.encode_audio(wave, FS, "flac", "float")
    with pytest.raises(ValueError, match="MP3 has no sample format"):
        audio_io.encode_audio(wave, FS, "mp3", "16")
    with pytest.raises(ValueError, match="format must be one of"):
        audio_io.encode_audio(wave, FS, "aac", None)


def test_float_arrays_pass_through_and_pcm_is_scaled():
    x = np.array([[0.25, -0.5]], np.float64)
    assert torch.equal(to_float_tensor(x), torch.tensor([[0.25, -0.5]]))
    assert torch.equal(
        to_float_tensor(np.array([[-32768, 16384]], np.int16)),
        torch.tensor([[-1.0, 0.5]]),
    )
    assert torch.equal(
        to_float_tensor(torch.tensor([[-(2**31), 2**30]], dtype=torch.int32)),
        torch.tensor([[-1.0, 0.5]]),
    )
    assert torch.equal(
        to_float_tensor(np.array([[0, 128, 192]], np.uint8)),
        torch.tensor([[-1.0, 0.0, 0.5]]),
    )
    reversed_view = np.arange(4, dtype=np.float32)[::-1]  # negative strides
    assert to_float_tensor(reversed_view).tolist() == [3.0, 2.0, 1.0, 0.0]
