"""The separation command end to end: formats, conversions, layout, options, help."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet2_ext.bin import separate as separate_cli
from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.separation import read_audio, tracks
from espnet2_ext.separation.config import ChunkingConfig
from espnet2_ext.tasks.enh import EnhancementTask
from espnet2_ext.zoo import full_train_config, pack, safe_unpack, write_model_dir

from conftest import FS, tiny_config

REPO = Path(__file__).resolve().parents[2]
SECONDS = 0.3


def _pack_model(root: Path, name: str, seed: int = 0, **pack_options) -> Path:
    torch.manual_seed(seed)
    config = tiny_config(num_spk=4)
    model = EnhancementTask.build_model(
        argparse.Namespace(**full_train_config(config, root))
    )
    write_model_dir(config, model.state_dict(), root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        return pack("config.yaml", "model.pth", root.parent / name, **pack_options)
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A pack named ``packed.zip`` of the experiment folder ``enh_tiny``."""
    return _pack_model(tmp_path_factory.mktemp("cli") / "enh_tiny", "packed.zip")


def _stereo(seconds=SECONDS, seed=0):
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((int(seconds * FS), 2))).astype(np.float32)


def _ffmpeg(src: Path, dst: Path, *codec: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), *codec, str(dst)],
        check=True,
    )
    return dst


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Every input kind: 4 libsndfile formats, M4A/AAC, mono, 48 kHz, an undecodable
    file, and a folder with an audio file, an M4A file and a cover image."""
    import torchaudio.functional as AF

    d = tmp_path_factory.mktemp("inputs")
    x = _stereo()
    sf.write(d / "a_wav.wav", x, FS, subtype="FLOAT")
    sf.write(d / "b_flac.flac", x, FS, subtype="PCM_24")
    sf.write(d / "c_mp3.mp3", x, FS, format="MP3")
    sf.write(d / "d_ogg.ogg", x, FS, format="OGG")
    sf.write(d / "e_mono.wav", x[:, 0], FS, subtype="FLOAT")
    x48 = AF.resample(torch.from_numpy(x.T.copy()), FS, 48000).numpy().T
    sf.write(d / "f_48k.wav", x48, 48000, subtype="FLOAT")
    (d / "g_broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot audio at all")
    _ffmpeg(d / "a_wav.wav", d / "h_aac.m4a", "-c:a", "aac")
    album = d / "album" / "disc1"
    album.mkdir(parents=True)
    sf.write(album / "track.wav", _stereo(seed=1), FS, subtype="PCM_16")
    _ffmpeg(album / "track.wav", album / "bonus.m4a", "-c:a", "aac")
    (album / "cover.jpg").write_bytes(b"\xff\xd8\xff not really a picture")
    return d


def _hub_cache(cache: Path, repo_id: str, files_root: Path) -> None:
    """huggingface_hub's cache layout: blobs, snapshot symlinks, refs/main."""
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    for path in sorted(p for p in files_root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / path.relative_to(files_root)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


def test_console_command_end_to_end_offline_from_the_hub_cache(
    packed, inputs, tmp_path
):
    """One run of the real command (new process, HF_HUB_OFFLINE=1, model given as a
    hub id found only in a pre-populated hub cache) over every input kind: stems under
    <out>/<repo name>/<track>/, the M4A files separated (also inside the folder), the
    cover image listed as skipped, the broken file failed, and no third-party noise."""
    _hub_cache(tmp_path / "hub", "someone/tiny", safe_unpack(packed, tmp_path / "repo"))
    out = tmp_path / "out"
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_HUB_CACHE=str(tmp_path / "hub"),
        OMP_NUM_THREADS="1",
    )
    files = sorted(str(p) for p in inputs.iterdir() if p.is_file())
    proc = subprocess.run(
        [sys.executable, "-m", "espnet2_ext.bin.separate", "-m", "someone/tiny",
         "-o", str(out), "--format", "flac", "--bits", "16", "--segment", "0.2",
         *files, str(inputs / "album")],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log  # the broken file fails, the batch goes on
    assert re.search(r"failed\s+g_broken: .*cannot decode", proc.stdout), log
    assert "Summary: 9 separated, 1 skipped, 1 failed" in proc.stdout, log
    assert re.search(r"skipped\s+disc1/cover\.jpg: not an audio file", proc.stdout)
    assert "resampled 48000 Hz to 44100 Hz" in log
    assert "copied the mono input to 2 channels" in log
    assert "Flash Attention" not in log
    expected_frames = {
        "a_wav": int(SECONDS * FS),
        "b_flac": int(SECONDS * FS),
        "d_ogg": int(SECONDS * FS),
        "e_mono": int(SECONDS * FS),
        "f_48k": int(SECONDS * FS),
        "disc1/track": int(SECONDS * FS),
    }
    model_dir = out / "tiny"  # the hub repository's name
    assert sorted(p.name for p in out.iterdir()) == ["tiny"]
    for track in [*expected_frames, "c_mp3", "h_aac", "disc1/bonus"]:
        for stem in MUSDB_STEMS:
            info = sf.info(model_dir / track / f"{stem}.flac")
            assert (info.samplerate, info.channels) == (FS, 2), (track, stem)
            assert info.subtype == "PCM_16"
            if track in expected_frames:
                assert info.frames == expected_frames[track], track
            else:  # compressed: the decoder's length, at least the source's
                assert info.frames >= int(SECONDS * FS), track
    assert not (model_dir / "g_broken").exists()
    assert not list(out.rglob("*.partial"))


def test_command_and_api_give_identical_stems(packed, inputs, tmp_path):
    from espnet2_ext.api import load_model

    song = inputs / "b_flac.flac"
    out = tmp_path / "out"
    status = separate_cli.main(
        ["-m", str(packed), "-o", str(out), "--bits", "float", "--segment", "0.2",
         "--cache_dir", str(tmp_path / "cache"), "-q", str(song)]
    )  # fmt: skip
    assert status == 0
    separator = load_model(packed, segment=0.2, cache_dir=tmp_path / "cache")
    stems = separator.separate_file(song)
    for stem in MUSDB_STEMS:
        path = out / "enh_tiny" / "b_flac" / f"{stem}.wav"  # the recorded name
        written, rate = sf.read(path, dtype="float32")
        assert rate == FS
        np.testing.assert_array_equal(written, stems[stem].numpy().T)


def test_two_models_write_to_their_own_folders(packed, inputs, tmp_path, capsys):
    """Two models, same default output folder: neither skips the other's tracks."""
    other = _pack_model(tmp_path / "other_exp", "packed.zip", seed=1)
    song = str(inputs / "a_wav.wav")
    out = tmp_path / "separated"
    for model in (packed, other):
        assert separate_cli.main(["-m", str(model), "-o", str(out), "-q", song]) == 0
        assert "1 separated, 0 skipped" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["enh_tiny", "other_exp"]
    a = sf.read(out / "enh_tiny" / "a_wav" / "vocals.wav")[0]
    b = sf.read(out / "other_exp" / "a_wav" / "vocals.wav")[0]
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_two_stems_are_the_stem_and_the_mixture_minus_it(packed, inputs, tmp_path):
    song = inputs / "a_wav.wav"
    out = tmp_path / "out"
    args = ["-m", str(packed), "-o", str(out), "--two-stems", "bass",
            "--bits", "float", "-q", str(song)]  # fmt: skip
    assert separate_cli.main(args) == 0
    folder = out / "enh_tiny" / "a_wav"
    assert sorted(p.name for p in folder.iterdir()) == ["bass.wav", "no_bass.wav"]
    bass, _ = sf.read(folder / "bass.wav", dtype="float32")
    rest, _ = sf.read(folder / "no_bass.wav", dtype="float32")
    mix, _ = sf.read(song, dtype="float32")
    np.testing.assert_allclose(bass + rest, mix, atol=1e-6)
    full = tmp_path / "full"
    separate_cli.main(["-m", str(packed), "-o", str(full), "--bits", "float", "-q",
                       str(song)])  # fmt: skip
    np.testing.assert_array_equal(
        bass, sf.read(full / "enh_tiny" / "a_wav" / "bass.wav", dtype="float32")[0]
    )


def test_unknown_two_stems_name_lists_the_stems(packed, inputs, tmp_path, capsys):
    args = ["-m", str(packed), "-o", str(tmp_path), "--two-stems", "piano",
            str(inputs / "a_wav.wav")]  # fmt: skip
    assert separate_cli.main(args) == 2
    assert "vocals, bass, drums, other" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.wav"))


def test_mp3_output_from_m4a_input(packed, inputs, tmp_path):
    out = tmp_path / "out"
    args = ["-m", str(packed), "-o", str(out), "--format", "mp3", "-q",
            str(inputs / "h_aac.m4a")]  # fmt: skip
    assert separate_cli.main(args) == 0
    decoded = read_audio(inputs / "h_aac.m4a")[0]
    for stem in MUSDB_STEMS:
        wave, rate = read_audio(out / "enh_tiny" / "h_aac" / f"{stem}.mp3")
        assert rate == FS and wave.shape == decoded.shape, stem  # gapless MP3
        assert float(wave.abs().max()) > 0


def test_the_pack_chunk_setting_is_used_unless_overridden(tmp_path, inputs, caplog):
    """A pack records 0.1 s chunks every 0.05 s: the command uses them by default,
    and --segment replaces the chunk length (keeping the recorded overlap)."""
    import logging

    recorded = _pack_model(
        tmp_path / "chunked",
        "chunked.zip",
        chunking=ChunkingConfig(segment=0.1, hop=0.05, window="triangular"),
    )
    song = str(inputs / "a_wav.wav")
    with caplog.at_level(logging.INFO, logger="espnet2_ext.separation"):
        assert separate_cli.main(["-m", str(recorded), "-o", str(tmp_path), song]) == 0
    assert "0.1 s chunks, 0.05 s hop, triangular" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="espnet2_ext.separation"):
        separate_cli.main(
            ["-m", str(recorded), "-o", str(tmp_path / "b"), "--segment", "0.2", song]
        )
    assert "0.2 s chunks, 0.1 s hop, triangular" in caplog.text


def test_existing_outputs_are_kept_without_overwrite(packed, inputs, tmp_path, capsys):
    song = inputs / "a_wav.wav"
    out = tmp_path / "out"
    args = ["-m", str(packed), "-o", str(out), "--cache_dir", str(tmp_path / "c"),
            "-q", str(song)]  # fmt: skip
    assert separate_cli.main(args) == 0
    vocals = out / "enh_tiny" / "a_wav" / "vocals.wav"
    vocals.write_bytes(b"user's own file")
    assert separate_cli.main(args) == 0
    assert vocals.read_bytes() == b"user's own file"
    assert "0 separated, 1 skipped" in capsys.readouterr().out
    assert separate_cli.main(args + ["--overwrite"]) == 0
    assert sf.info(vocals).frames == int(SECONDS * FS)


def test_pcm_outputs_are_clipped_not_wrapped(tmp_path):
    loud = {"vocals": torch.tensor([[0.5, 1.5, -2.0, 0.25]] * 2)}
    path = {"vocals": tmp_path / "vocals.wav"}
    tracks.write_stems(loud, path, FS, fmt="wav", bits="16")
    data, _ = sf.read(path["vocals"], dtype="float32")
    np.testing.assert_allclose(data[:, 0], [0.5, 1.0, -1.0, 0.25], atol=1e-4)


def test_invalid_arguments_and_clashing_tracks(packed, inputs, tmp_path, capsys):
    base = ["-m", str(packed), "-o", str(tmp_path / "o"), str(inputs / "a_wav.wav")]
    with pytest.raises(SystemExit) as e:
        separate_cli.main(base + ["--format", "flac", "--bits", "float"])
    assert e.value.code == 2 and "FLAC" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        separate_cli.main(base + ["--format", "mp3", "--bits", "16"])
    assert "drop --bits" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        separate_cli.main(base + ["--bf16"])
    assert "bf16" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            separate_cli.main(base + ["--device", "cuda"])
        assert "CUDA is not available" in capsys.readouterr().err
    twin = tmp_path / "other"
    twin.mkdir()
    sf.write(twin / "a_wav.wav", _stereo(0.05), FS)
    with pytest.raises(SystemExit):
        separate_cli.main(base + [str(twin / "a_wav.wav")])
    assert "same stems" in capsys.readouterr().err


def test_device_auto_is_the_default_and_mps_is_accepted(
    packed, inputs, tmp_path, capsys
):
    from espnet2_ext.separation.separator import check_device, resolve_device

    assert separate_cli.get_parser().get_default("device") == "auto"
    mps = torch.backends.mps.is_available()
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    assert resolve_device("auto") == expected
    if mps:  # pragma: no cover - Apple machines
        assert check_device("mps").type == "mps"
        return
    # "mps" is a known device; where Metal is absent the refusal says so
    with pytest.raises(SystemExit) as e:
        separate_cli.main(["-m", str(packed), "-o", str(tmp_path), "--device", "mps",
                           str(inputs / "a_wav.wav")])  # fmt: skip
    assert (
        e.value.code == 2 and "MPS backend is not available" in capsys.readouterr().err
    )
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        check_device("tpu")


def test_missing_model_is_reported(inputs, tmp_path, capsys):
    status = separate_cli.main(
        ["-m", str(tmp_path / "none.zip"), "-o", str(tmp_path), str(inputs)]
    )
    assert status == 1
    assert "cannot load the model" in capsys.readouterr().err


def test_help_documents_every_option_once(capsys):
    with pytest.raises(SystemExit):
        separate_cli.main(["--help"])
    text = capsys.readouterr().out
    parser = separate_cli.get_parser()
    for action in parser._actions:
        assert action.help, f"{action.option_strings} has no help"
    assert "(default: wav)" in text and "(default: auto)" in text
    for line in text.splitlines():  # argparse's default suffix is not added
        assert line.count("default") <= 1, line
    assert "examples:" in text and "--two-stems vocals" in text


def test_every_folder_member_is_accounted_for(tmp_path):
    """Audio files become tracks; anything else, and earlier outputs inside the
    folder, are listed as skipped with the reason; an empty folder fails."""
    album = tmp_path / "album"
    (album / "separated" / "enh_tiny" / "a").mkdir(parents=True)
    sf.write(album / "a.flac", _stereo(0.05), FS)
    (album / "b.M4A").write_bytes(b"decoded later")  # extensions in any case
    (album / "notes.txt").write_text("liner notes")
    (album / "separated" / "enh_tiny" / "a" / "vocals.wav").write_bytes(b"old output")
    (tmp_path / "empty").mkdir()
    found, others = tracks.collect_tracks(
        [str(album), str(tmp_path / "empty")], album / "separated"
    )
    assert [t.name for t in found] == ["a", "b"]
    reasons = {o.track.name: (o.status, o.message) for o in others}
    assert reasons["notes.txt"][0] == "skipped"
    assert "not an audio file name (.txt)" in reasons["notes.txt"][1]
    assert reasons["separated/enh_tiny/a/vocals.wav"] == (
        "skipped",
        "inside the output folder",
    )
    assert reasons[str(tmp_path / "empty")] == (
        "failed",
        "no audio files in the folder (it is empty)",
    )
