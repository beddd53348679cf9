"""Python API: loading from packs, folders and the hub cache; separating tensors."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet2_ext.api import AudioDecodeError, MultiStepConfig, Separator, load_model
from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.zoo import (
    IncompatiblePackError,
    UnsafeArchiveError,
    pack,
    resolve_folder,
    safe_unpack,
)

from conftest import FS, pack_model_dir, tiny_model_dir

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("api") / "exp", 4)


@pytest.fixture(scope="module")
def packed(model_dir):
    return pack_model_dir(model_dir, model_dir.parent / "packed.zip")


@pytest.fixture(scope="module")
def separator(packed, tmp_path_factory):
    return load_model(packed, cache_dir=tmp_path_factory.mktemp("cache"))


def _mix(seconds=0.25, channels=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(channels, int(seconds * FS), generator=g)


def populate_hub_cache(cache: Path, repo_id: str, files_root: Path) -> Path:
    """Lay out ``files_root`` the way huggingface_hub caches a downloaded snapshot:
    blobs named by content hash, snapshot entries as relative symlinks, refs/main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    for path in sorted(p for p in files_root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path.relative_to(files_root)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


# --------------------------------------------------------------------------- loading
def test_loaded_model_describes_itself(separator):
    assert separator.stems == MUSDB_STEMS  # 4 outputs, no stems entry: MUSDB order
    assert separator.sample_rate == FS
    assert separator.num_channels == 2
    assert separator.files.plugin_version is not None
    assert "vocals" in repr(separator)


def test_separate_is_the_enh_inference_code_path(separator, model_dir):
    mix = _mix()
    stems = separator.separate(mix, FS)
    assert list(stems) == list(MUSDB_STEMS)
    # the ESPnet-layout call that enh_inference makes, on a separator built from files
    reference = Separator.from_files(
        model_dir / "config.yaml", model_dir / "model.pth", chunking=separator.chunking
    )(mix.T[None].numpy(), fs=FS)
    for n, name in enumerate(MUSDB_STEMS):
        assert stems[name].shape == mix.shape and stems[name].dtype == torch.float32
        assert torch.equal(stems[name], torch.from_numpy(reference[n][0].T))


def test_pack_folder_and_hub_cache_load_the_same_model(
    separator, packed, model_dir, tmp_path
):
    mix = _mix(seed=1)
    expected = separator.separate(mix, FS)
    from_folder = load_model(model_dir).separate(mix, FS)
    unpacked = safe_unpack(packed, tmp_path / "repo")
    snapshot = populate_hub_cache(tmp_path / "hub", "someone/tiny-model", unpacked)
    hub = load_model(
        "someone/tiny-model", hub_cache_dir=tmp_path / "hub", local_files_only=True
    )
    assert hub.files.kind == "hub" and hub.files.root == snapshot
    from_hub = hub.separate(mix, FS)
    for name in MUSDB_STEMS:
        assert torch.equal(from_folder[name], expected[name])
        assert torch.equal(from_hub[name], expected[name])


def test_hub_id_not_in_the_cache_offline_is_a_clear_error(tmp_path):
    with pytest.raises(OSError, match="not in the cache"):
        load_model("someone/absent", hub_cache_dir=tmp_path, local_files_only=True)


# --------------------------------------------------------------------------- inputs
def test_batches_numpy_and_mono_shapes(separator):
    mix = _mix()
    batch = separator.separate(torch.stack([mix, 0.5 * mix]), FS)
    single = separator.separate(mix, FS)
    as_numpy = separator.separate(mix.numpy(), FS)
    for name in separator.stems:
        assert batch[name].shape == (2, 2, mix.shape[-1])
        torch.testing.assert_close(batch[name][0], single[name], rtol=1e-4, atol=1e-6)
        assert isinstance(as_numpy[name], np.ndarray)
        np.testing.assert_array_equal(as_numpy[name], single[name].numpy())
    with pytest.raises(ValueError, match="channels first"):
        separator.separate(mix.T.contiguous(), FS)


def test_mono_input_is_copied_to_both_channels(separator, caplog):
    mono = _mix(channels=1)
    with caplog.at_level(logging.INFO, logger="espnet2_ext.separation"):
        stems = separator.separate(mono[0], FS)
    assert "copied the mono input to 2 channels" in caplog.text
    stereo = separator.separate(mono.expand(2, -1), FS)
    for name in separator.stems:
        assert stems[name].shape == (2, mono.shape[-1])
        assert torch.equal(stems[name], stereo[name])


def test_other_rates_are_resampled_to_the_model_rate(separator, caplog):
    import torchaudio.functional as AF

    mix48 = _mix(seconds=0.2).mul(1.0)
    mix48 = AF.resample(mix48, FS, 48000)
    with caplog.at_level(logging.INFO, logger="espnet2_ext.separation"):
        stems = separator.separate(mix48, 48000)
    assert "resampled 48000 Hz to 44100 Hz" in caplog.text
    direct = separator.separate(AF.resample(mix48, 48000, FS), FS)
    for name in separator.stems:
        assert stems[name].shape[-1] == direct[name].shape[-1]
        assert torch.equal(stems[name], direct[name])


def test_bad_inputs_are_clear_errors(separator, tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        separator.separate(torch.full((2, 4000), float("nan")), FS)
    with pytest.raises(ValueError, match="empty"):
        separator.separate(torch.zeros(2, 0), FS)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt not really")
    with pytest.raises(AudioDecodeError, match="cannot decode"):
        separator.separate_file(broken)


def test_very_short_input_is_padded_for_the_stft_and_cropped(separator):
    stems = separator.separate(_mix(seconds=0.005), FS)  # 220 samples < n_fft / 2
    assert all(s.shape == (2, 220) for s in stems.values())
    assert all(bool(torch.isfinite(s).all()) for s in stems.values())


def test_separate_file_equals_separate_on_the_decoded_audio(separator, tmp_path):
    mix = _mix(seed=3)
    path = tmp_path / "song.flac"
    sf.write(path, mix.numpy().T, FS, subtype="PCM_24")
    decoded, rate = sf.read(path, dtype="float32", always_2d=True)
    from_file = separator.separate_file(path)
    direct = separator.separate(torch.from_numpy(decoded.T.copy()), rate)
    for name in separator.stems:
        assert torch.equal(from_file[name], direct[name])


def test_chunked_overlap_add_covers_long_inputs(packed, tmp_path):
    chunked = load_model(packed, segment=0.1, overlap=0.25, cache_dir=tmp_path)
    whole = load_model(packed, segment=None, cache_dir=tmp_path)
    mix = _mix(seconds=0.3)
    a, b = chunked.separate(mix, FS), whole.separate(mix, FS)
    for name in chunked.stems:
        assert a[name].shape == b[name].shape == mix.shape
        assert bool(torch.isfinite(a[name]).all())
        assert not torch.equal(a[name], b[name])  # the chunks really were separate


# --------------------------------------------------------------------------- safety
def test_corrupt_and_missing_weights_are_clear_errors(packed, tmp_path):
    folder = safe_unpack(packed, tmp_path / "corrupt")
    weights = folder / "model.pth"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(RuntimeError, match="corrupt"):
        load_model(folder)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="model weights not found"):
        load_model(folder)


def test_weights_are_loaded_without_running_pickled_code(packed, tmp_path):
    folder = safe_unpack(packed, tmp_path / "evil")
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"payload": Payload()}, folder / "model.pth")
    with pytest.raises(RuntimeError, match="cannot read model weights"):
        load_model(folder)
    assert not marker.exists()


def test_weights_of_another_architecture_are_refused(packed, tmp_path):
    folder = safe_unpack(packed, tmp_path / "other")
    state = torch.load(folder / "model.pth", weights_only=True)
    state.pop(next(iter(state)))
    torch.save(state, folder / "model.pth")
    with pytest.raises(RuntimeError, match="missing"):
        load_model(folder)


def test_unsafe_and_incompatible_packs_are_refused_by_load_model(packed, tmp_path):
    import zipfile

    import yaml

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(packed) as zin, zipfile.ZipFile(evil, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, zin.read(item.filename))
        zout.writestr("../../outside.txt", b"x")
    with pytest.raises(UnsafeArchiveError):
        load_model(evil, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "outside.txt").exists()

    newer = tmp_path / "newer.zip"
    with zipfile.ZipFile(packed) as zin, zipfile.ZipFile(newer, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "meta.yaml":
                meta = yaml.safe_load(data)
                meta["plugins"]["espnet2_ext"] = "0.99.0"
                data = yaml.safe_dump(meta).encode()
            zout.writestr(item, data)
    with pytest.raises(IncompatiblePackError, match="newer"):
        load_model(newer, cache_dir=tmp_path / "cache")


def test_invalid_options_are_refused(packed, tmp_path):
    files = resolve_folder(safe_unpack(packed, tmp_path / "opts"))
    with pytest.raises(ValueError, match="GPU"):
        Separator.from_files(files.train_config, files.model_file, bf16=True)
    with pytest.raises(ValueError, match="overlap"):
        load_model(files.root, overlap=1.0)
    with pytest.raises(ValueError, match="segment"):
        load_model(files.root, segment=-1.0)
    with pytest.raises(ValueError, match="schedule fixes"):
        MultiStepConfig(schedule="s.yaml", steps=3)


# --------------------------------------------------------------------------- multi-step
def test_multistep_schedule_refines_with_per_source_blends(packed, tmp_path):
    from espnet2_ext.enh.inference.espnet_adapter import espnet_model_separate_fn
    from espnet2_ext.enh.inference.multistep import RatioSchedule

    schedule = RatioSchedule(
        ratios=[[0.5, None, 1.0, 0.25]], metric="snr", oracle=True
    ).save(tmp_path / "schedule.yaml")
    refined = load_model(
        packed, segment=None, multistep_schedule=schedule, cache_dir=tmp_path
    )
    assert "multi-step" in repr(refined)
    mix = _mix(seed=4)
    out = refined.separate(mix, FS)

    f = espnet_model_separate_fn(refined.model)
    y0 = f(mix[None])  # [1, N, C, T]
    for n, (name, r) in enumerate(zip(refined.stems, [0.5, None, 1.0, 0.25])):
        if r is None or r == 1.0:
            expected = y0[0, n]  # kept, or the mixture pass itself
        else:
            expected = f(r * mix[None] + (1 - r) * y0[:, n])[0, n]
        torch.testing.assert_close(out[name], expected, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(out["vocals"], y0[0, 0])


def test_oracle_multistep_metric_is_refused_for_songs(packed, tmp_path):
    with pytest.raises(ValueError, match="oracle"):
        load_model(packed, multistep_metric="snr", cache_dir=tmp_path)


# --------------------------------------------------------------------------- options
def test_load_model_uses_the_chunking_the_pack_records(model_dir, tmp_path):
    from espnet2_ext.separation.config import ChunkingConfig

    cwd = os.getcwd()
    os.chdir(model_dir)
    try:
        recorded = pack(
            "config.yaml",
            "model.pth",
            tmp_path / "chunked.zip",
            chunking=ChunkingConfig(segment=0.1, hop=0.025, window="rectangular"),
        )
    finally:
        os.chdir(cwd)
    default = load_model(recorded, cache_dir=tmp_path)
    assert default.chunking == ChunkingConfig(0.1, 0.025, "rectangular")
    assert default.name == "exp"  # the folder the config was packed from
    told = load_model(recorded, segment=0.2, window="hann", cache_dir=tmp_path)
    assert told.chunking == ChunkingConfig(0.2, 0.05, "hann")  # recorded overlap kept
    assert (
        load_model(recorded, segment=None, cache_dir=tmp_path).chunking.segment is None
    )
    # a pack that records nothing: the recipe's default, 12 s chunks every 6 s
    assert load_model(model_dir).chunking == ChunkingConfig(12.0, 6.0, "hann")


def test_device_auto_picks_the_best_available(packed, tmp_path):
    separator = load_model(packed, device="auto", cache_dir=tmp_path)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if torch.backends.mps.is_available():  # pragma: no cover - Apple machines
        expected = "mps"
    assert separator.device.type == expected
