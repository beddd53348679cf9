"""A tiny stereo BS-Locoformer trained through our ESPnet entry point, then reloaded."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from espnet2_ext.separation import ChunkingConfig, MultiStepConfig, Separator
from espnet2_ext.zoo import load_model

from conftest import FS, tiny_config

pytestmark = pytest.mark.slow

#: MusicSeparator's old default: the whole input in one pass
WHOLE = ChunkingConfig(segment=None)


def _run(module, *args, cwd):
    cmd = [sys.executable, "-m", module, *map(str, args)]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _data_opts(kind, scps):
    opts = [f"--{kind}_data_path_and_name_and_type", f"{scps['wav']},speech_mix,sound"]
    for n in (1, 2):
        opts += [
            f"--{kind}_data_path_and_name_and_type",
            f"{scps[f'spk{n}']},speech_ref{n},sound",
        ]
    return opts


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import write_stereo_set

    root = tmp_path_factory.mktemp("train")
    scps = write_stereo_set(root / "data", n_utts=4, seconds=0.3)
    config = tiny_config()
    config.update(
        batch_type="unsorted",
        batch_size=2,
        max_epoch=2,
        num_workers=0,
        optim="adamw",
        optim_conf=dict(lr=1e-3, weight_decay=1e-2),
        grad_clip=5.0,
        best_model_criterion=[["valid", "loss", "min"]],
        keep_nbest_models=2,
        seed=0,
    )
    conf = root / "train.yaml"
    conf.write_text(yaml.safe_dump(config))
    exp = root / "exp"
    proc = _run(
        "espnet2_ext.bin.enh_train",
        "--config",
        conf,
        *_data_opts("train", scps),
        *_data_opts("valid", scps),
        "--train_shape_file",
        scps["wav"],
        "--valid_shape_file",
        scps["wav"],
        "--output_dir",
        exp,
        "--ngpu",
        "0",
        cwd=root,
    )
    (exp / "train.log").write_text(proc.stderr)
    return root, scps, exp


def test_training_writes_espnet_outputs(trained):
    _, _, exp = trained
    for name in ("config.yaml", "1epoch.pth", "2epoch.pth", "valid.loss.best.pth"):
        assert (exp / name).exists(), name
    # ESPnet averages the n best checkpoints at the end of training
    assert (exp / "valid.loss.ave.pth").exists()
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["separator"] == "bs_locoformer"
    log = (exp / "train.log").read_text()
    losses = [float(x) for x in __import__("re").findall(r"\bloss=(-?[\d.]+)", log)]
    assert losses and all(math.isfinite(x) for x in losses)


def test_training_changed_the_weights(trained):
    _, _, exp = trained
    first = torch.load(exp / "1epoch.pth", weights_only=True)
    second = torch.load(exp / "2epoch.pth", weights_only=True)
    assert any(not torch.equal(first[k], second[k]) for k in first)


def test_reload_gives_the_same_output_as_the_trained_weights(trained):
    _, scps, exp = trained
    model, _ = load_model(exp / "config.yaml", exp / "valid.loss.best.pth")
    state = torch.load(exp / "valid.loss.best.pth", weights_only=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])
    mix, fs = sf.read(scps["wav"].read_text().split()[1], dtype="float32")
    x = torch.from_numpy(mix)[None]
    a = Separator.from_files(
        exp / "config.yaml", exp / "valid.loss.best.pth", chunking=WHOLE
    )(x, fs=fs)
    b = Separator.from_files(
        exp / "config.yaml", exp / "valid.loss.best.pth", chunking=WHOLE
    )(x, fs=fs)
    assert len(a) == 2 and a[0].shape == (1, mix.shape[0], 2)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_inference_entry_point_matches_the_python_api(trained):
    root, scps, exp = trained
    out = root / "separated"
    _run(
        "espnet2_ext.bin.enh_inference",
        "--train_config",
        exp / "config.yaml",
        "--model_file",
        exp / "valid.loss.best.pth",
        "--data_path_and_name_and_type",
        f"{scps['wav']},speech_mix,sound",
        "--output_dir",
        out,
        cwd=root,
    )
    api = Separator.from_files(
        exp / "config.yaml", exp / "valid.loss.best.pth", chunking=WHOLE
    )
    for line in scps["wav"].read_text().splitlines():
        uid, path = line.split()
        mix, fs = sf.read(path, dtype="float32")
        expected = api(torch.from_numpy(mix)[None], fs=fs)
        for n in (1, 2):
            scp = dict(
                ln.split() for ln in (out / f"spk{n}.scp").read_text().splitlines()
            )
            got, got_fs = sf.read(scp[uid], dtype="float32")
            assert got_fs == FS and got.shape == mix.shape
            np.testing.assert_allclose(got, expected[n - 1][0], atol=1e-6)
    assert not list(out.rglob("*.partial"))


def test_inference_refuses_a_wrong_sample_rate(trained, tmp_path):
    root, scps, exp = trained
    wav = tmp_path / "low.wav"
    sf.write(wav, np.zeros((8000, 2), dtype=np.float32), 16000)
    scp = tmp_path / "wav.scp"
    scp.write_text(f"low {wav}\n")
    cmd = [
        sys.executable,
        "-m",
        "espnet2_ext.bin.enh_inference",
        "--train_config",
        str(exp / "config.yaml"),
        "--model_file",
        str(exp / "valid.loss.best.pth"),
        "--data_path_and_name_and_type",
        f"{scp},speech_mix,sound",
        "--output_dir",
        str(tmp_path / "out"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "16000 Hz, the model needs 44100 Hz" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_mono_input_to_a_stereo_model_is_a_clear_error(trained):
    _, _, exp = trained
    api = Separator.from_files(
        exp / "config.yaml", exp / "valid.loss.best.pth", chunking=WHOLE
    )
    with pytest.raises(ValueError, match="2-channel audio but the input has 1"):
        api(torch.zeros(1, FS // 4), fs=FS)


def _snr(ref, est):
    return 10 * np.log10((ref**2).sum() / ((ref - est) ** 2).sum())


def test_oracle_multistep_through_the_api_never_loses_to_one_step(trained):
    _, scps, exp = trained
    uid, path = scps["wav"].read_text().splitlines()[0].split()
    mix, fs = sf.read(path, dtype="float32")
    refs = []
    for n in (1, 2):
        scp = dict(ln.split() for ln in scps[f"spk{n}"].read_text().splitlines())
        refs.append(sf.read(scp[uid], dtype="float32")[0][None])
    x = mix[None]
    one = Separator.from_files(
        exp / "config.yaml", exp / "valid.loss.best.pth", chunking=WHOLE
    )(x, fs=fs)
    ms = Separator.from_files(
        exp / "config.yaml",
        exp / "valid.loss.best.pth",
        chunking=ChunkingConfig(segment=0.2),
        multistep=MultiStepConfig(
            enable=True, steps=2, candidates=3, metric="snr", candidate_batch=1
        ),
    )
    multi = ms(x, fs=fs, speech_ref=refs)
    for n in range(2):
        # selection is per chunk and channel, so compare per channel
        for c in range(2):
            assert (
                _snr(refs[n][0, :, c], multi[n][0, :, c])
                >= _snr(refs[n][0, :, c], one[n][0, :, c]) - 0.5
            )  # chunked overlap-add vs one pass: small cross-fade difference
    summary = ms.last_multistep_summary
    assert "oracle" in summary["label"]
    assert summary["forward_passes"] > 0


def test_oracle_multistep_without_references_is_a_clear_error(trained):
    _, scps, exp = trained
    ms = Separator.from_files(
        exp / "config.yaml",
        exp / "valid.loss.best.pth",
        chunking=WHOLE,
        multistep=MultiStepConfig(enable=True, steps=1),
    )
    with pytest.raises(ValueError, match="oracle"):
        ms(torch.zeros(1, FS // 4, 2), fs=FS)


def test_multistep_options_of_the_inference_entry_point(trained):
    import json

    root, scps, exp = trained
    out = root / "separated_multistep"
    args = [
        "--train_config",
        exp / "config.yaml",
        "--model_file",
        exp / "valid.loss.best.pth",
        "--data_path_and_name_and_type",
        f"{scps['wav']},speech_mix,sound",
        "--data_path_and_name_and_type",
        f"{scps['spk1']},speech_ref1,sound",
        "--data_path_and_name_and_type",
        f"{scps['spk2']},speech_ref2,sound",
        "--allow_variable_data_keys",
        "true",
        "--multistep_enable",
        "true",
        "--multistep_steps",
        "1",
        "--multistep_candidates",
        "2",
        "--output_dir",
        out,
    ]
    _run("espnet2_ext.bin.enh_inference", *args, cwd=root)
    summary = json.loads((out / "multistep_summary.json").read_text())
    assert set(summary) == {f"utt{u}" for u in range(4)}
    assert all("oracle" in s["label"] for s in summary.values())
    assert (out / "spk2.scp").exists()


def test_a_clip_shorter_than_one_stft_frame_is_a_clear_error(trained):
    _, _, exp = trained
    api = Separator.from_files(
        exp / "config.yaml", exp / "valid.loss.best.pth", chunking=WHOLE
    )
    with pytest.raises(ValueError, match="too short for the model's STFT"):
        api(torch.zeros(1, 1000, 2), fs=FS)
    # one sample more than n_fft // 2 separates
    out = api(torch.zeros(1, 1025, 2), fs=FS)
    assert out[0].shape == (1, 1025, 2)
