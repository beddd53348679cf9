"""The separation command end to end: formats, conversions, bad files, safety."""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet2_ext.bin import separate as separate_cli
from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.separation import tracks
from espnet2_ext.tasks.enh import EnhancementTask
from espnet2_ext.zoo import full_train_config, pack, safe_unpack, write_model_dir

from conftest import FS, tiny_config

REPO = Path(__file__).resolve().parents[2]
SECONDS = 0.3


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "exp"
    torch.manual_seed(0)
    config = tiny_config(num_spk=4)
    model = EnhancementTask.build_model(
        argparse.Namespace(**full_train_config(config, root))
    )
    write_model_dir(config, model.state_dict(), root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        return pack("config.yaml", "model.pth", root.parent / "packed.zip")
    finally:
        os.chdir(cwd)


def _stereo(seconds=SECONDS, seed=0):
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((int(seconds * FS), 2))).astype(np.float32)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Every input kind: 4 formats, mono, 48 kHz, an undecodable file, a folder."""
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
    album = d / "album" / "disc1"
    album.mkdir(parents=True)
    sf.write(album / "track.wav", _stereo(seed=1), FS, subtype="PCM_16")
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
    hub id found only in a pre-populated hub cache) over every input kind."""
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
    assert "g_broken" in proc.stdout and "cannot decode" in proc.stdout
    assert "Summary: 7 separated, 0 skipped, 1 failed" in proc.stdout
    assert "resampled 48000 Hz to 44100 Hz" in log
    assert "copied the mono input to 2 channels" in log
    expected_frames = {
        "a_wav": int(SECONDS * FS),
        "b_flac": int(SECONDS * FS),
        "d_ogg": int(SECONDS * FS),
        "e_mono": int(SECONDS * FS),
        "f_48k": int(SECONDS * FS),
        "disc1/track": int(SECONDS * FS),
    }
    for track in [*expected_frames, "c_mp3"]:
        for stem in MUSDB_STEMS:
            info = sf.info(out / track / f"{stem}.flac")
            assert (info.samplerate, info.channels) == (FS, 2), (track, stem)
            assert info.subtype == "PCM_16"
            if track in expected_frames:
                assert info.frames == expected_frames[track], track
    assert not (out / "g_broken").exists()
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
        written, rate = sf.read(out / "b_flac" / f"{stem}.wav", dtype="float32")
        assert rate == FS
        np.testing.assert_array_equal(written, stems[stem].numpy().T)


def test_existing_outputs_are_kept_without_overwrite(packed, inputs, tmp_path, capsys):
    song = inputs / "a_wav.wav"
    out = tmp_path / "out"
    args = ["-m", str(packed), "-o", str(out), "--cache_dir", str(tmp_path / "c"),
            "-q", str(song)]  # fmt: skip
    assert separate_cli.main(args) == 0
    vocals = out / "a_wav" / "vocals.wav"
    vocals.write_bytes(b"user's own file")
    assert separate_cli.main(args) == 0
    assert vocals.read_bytes() == b"user's own file"
    assert "0 separated, 1 skipped" in capsys.readouterr().out
    assert separate_cli.main(args + ["--overwrite"]) == 0
    assert sf.info(vocals).frames == int(SECONDS * FS)


def test_an_interrupted_write_leaves_no_stem_file(tmp_path, monkeypatch):
    """Ctrl-C while the second stem is written: the complete first one stays a
    temporary file and is removed with the rest; no stem name appears."""
    real_write = sf.write
    calls = []

    def write_then_interrupt(*args, **kwargs):
        calls.append(args[0])
        real_write(*args, **kwargs)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(sf, "write", write_then_interrupt)
    stems = {s: torch.zeros(2, 1000) for s in MUSDB_STEMS}
    track = tracks.Track(tmp_path / "x.wav", "x", tmp_path / "out" / "x")
    paths = tracks.stem_paths(track, MUSDB_STEMS, "wav")
    with pytest.raises(KeyboardInterrupt):
        tracks.write_stems(stems, paths, FS, fmt="wav", bits="24")
    assert len(calls) == 2
    assert list((tmp_path / "out" / "x").iterdir()) == []


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
        separate_cli.main(base + ["--bf16"])
    assert "GPUs" in capsys.readouterr().err
    twin = tmp_path / "other"
    twin.mkdir()
    sf.write(twin / "a_wav.wav", _stereo(0.05), FS)
    with pytest.raises(SystemExit):
        separate_cli.main(base + [str(twin / "a_wav.wav")])
    assert "same stems" in capsys.readouterr().err


def test_missing_model_is_reported(inputs, tmp_path, capsys):
    status = separate_cli.main(
        ["-m", str(tmp_path / "none.zip"), "-o", str(tmp_path), str(inputs)]
    )
    assert status == 1
    assert "cannot load the model" in capsys.readouterr().err
