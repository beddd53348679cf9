"""DiffusionPriorTask: configs build, preprocessing, ESPnet training, separation."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from espnet2_ext.bin.diffusion_prior_train import main as train_main
from espnet2_ext.bin.diffusion_separate import main as separate_main
from espnet2_ext.diffusion.loading import build_sampler_from_files
from espnet2_ext.diffusion.preprocessor import PriorPreprocessor
from espnet2_ext.diffusion.prior_model import DiffusionPriorModel
from espnet2_ext.tasks.diffusion import DiffusionPriorTask

from diffusion_helpers import _one_thread  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(ROOT.glob("conf/diffusion/prior_*.yaml")) + sorted(
    ROOT.glob("egs2/*/diffsep1/conf/prior*.yaml")
)
FS = 16000


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_prior_config_builds_a_model(config):
    parser = DiffusionPriorTask.get_parser()
    args = parser.parse_args(["--config", str(config)])
    model = DiffusionPriorTask.build_model(args)
    assert isinstance(model, DiffusionPriorModel)
    categories = args.preprocessor_conf.get("categories") or []
    assert model.num_classes == len(categories)


def test_preprocessor_crops_levels_and_labels():
    np.random.seed(0)
    pre = PriorPreprocessor(
        train=True, segment_length=1000, rms_db_range=(-25, -20), categories=["a", "b"]
    )
    out = pre("u", {"speech_ref1": np.random.randn(3000, 2), "category": "b"})
    x = out["speech_ref1"]
    assert x.shape == (1000,) and x.dtype == np.float32
    assert (
        -25.0 - 1e-4
        <= 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        <= -20.0 + 1e-4
    )
    assert out["category"].tolist() == [1]
    short = pre("u", {"speech_ref1": np.ones(300)})["speech_ref1"]
    assert short.shape == (1000,) and np.count_nonzero(short) == 300
    silent = PriorPreprocessor(train=False, segment_length=None)(
        "u", {"speech_ref1": np.zeros(50)}
    )
    assert not silent["speech_ref1"].any()
    with pytest.raises(ValueError, match="not in preprocessor_conf.categories"):
        pre("u", {"speech_ref1": np.ones(10), "category": "c"})


def _write_data(root: Path, name: str, count: int, seed: int, length: int) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / name
    (folder / "wav").mkdir(parents=True)
    scp, shape, cats = [], [], []
    for i in range(count):
        t = np.arange(length) / FS
        x = 0.05 * np.sin(
            2 * np.pi * rng.uniform(200, 800) * t
        ) + 0.01 * rng.standard_normal(length)
        path = folder / "wav" / f"u{i}.wav"
        sf.write(path, x.astype(np.float32), FS, subtype="FLOAT")
        scp.append(f"u{i} {path}")
        shape.append(f"u{i} {length}")
        cats.append(f"u{i} {'tone' if i % 2 else 'hum'}")
    (folder / "wav.scp").write_text("\n".join(scp) + "\n")
    (folder / "speech_ref1_shape").write_text("\n".join(shape) + "\n")
    (folder / "utt2category").write_text("\n".join(cats) + "\n")
    return folder


@pytest.mark.slow
def test_training_through_espnet_then_separation(tmp_path):
    train = _write_data(tmp_path, "train", 4, 0, 1200)
    valid = _write_data(tmp_path, "valid", 2, 1, 1200)
    conf = dict(
        batch_type="unsorted",
        batch_size=2,
        max_epoch=2,
        num_workers=0,
        optim="adam",
        optim_conf=dict(lr=1e-3),
        network="tf_unet",
        network_conf=dict(
            n_fft=62,
            hop_length=31,
            hidden_size=8,
            depths=[1, 1, 1, 1, 1],
            emb_dim=16,
            num_heads=2,
            fullband_dim=4,
            num_classes=2,
        ),
        model_conf=dict(ema_decay=0.9),
        preprocessor="prior",
        preprocessor_conf=dict(segment_length=1000, categories=["hum", "tone"]),
        best_model_criterion=[["valid", "loss", "min"]],
        keep_nbest_models=1,
    )
    (tmp_path / "conf.yaml").write_text(yaml.safe_dump(conf))
    exp = tmp_path / "exp"
    train_main(
        [
            "--config",
            str(tmp_path / "conf.yaml"),
            "--output_dir",
            str(exp),
            "--train_data_path_and_name_and_type",
            f"{train}/wav.scp,speech_ref1,sound",
            "--train_data_path_and_name_and_type",
            f"{train}/utt2category,category,text",
            "--train_shape_file",
            f"{train}/speech_ref1_shape",
            "--valid_data_path_and_name_and_type",
            f"{valid}/wav.scp,speech_ref1,sound",
            "--valid_data_path_and_name_and_type",
            f"{valid}/utt2category,category,text",
            "--valid_shape_file",
            f"{valid}/speech_ref1_shape",
        ]
    )
    checkpoint = exp / "valid.loss.best.pth"
    assert checkpoint.exists() and (exp / "config.yaml").exists()
    state = torch.load(checkpoint, map_location="cpu")
    assert (
        int(state["ema.num_updates"]) == 4
    )  # 2 epochs × 2 batches: one per optimizer step
    assert not torch.equal(
        state["ema.shadow.final_conv.weight"], state["network.final_conv.weight"]
    )

    # separation with the trained prior (twice: speech-like "hum" and "tone" classes)
    mix_dir = tmp_path / "mix"
    mix_dir.mkdir()
    mix = 0.05 * np.random.default_rng(5).standard_normal((2, 900)).astype(np.float32)
    lines = []
    for i in range(2):
        sf.write(mix_dir / f"m{i}.wav", mix[i], FS, subtype="FLOAT")
        lines.append(f"m{i} {mix_dir / f'm{i}.wav'}")
    (mix_dir / "wav.scp").write_text("\n".join(lines) + "\n")
    out = tmp_path / "sep"
    args = [
        "--data_path_and_name_and_type",
        f"{mix_dir}/wav.scp,speech_mix,sound",
        "--output_dir",
        str(out),
        "--categories",
        "hum",
        "1",
        "--sampler_conf",
        "num_steps=2",
        "--output_subtype",
        "FLOAT",
        "--fs",
        str(FS),
    ]
    for _ in range(2):
        args += ["--prior_train_config", str(exp / "config.yaml")]
        args += ["--prior_model_file", str(checkpoint)]
    separate_main(args)
    for n in (1, 2):
        scp = (out / f"spk{n}.scp").read_text().split()
        assert scp[0] == "m0" and Path(scp[1]).exists()
        wave, rate = sf.read(out / "wavs" / str(n) / "m1.wav")
        assert rate == FS and wave.shape == (900,)

    # the files give the same sampler as one built in Python from the same files
    sampler = build_sampler_from_files(
        [exp / "config.yaml"] * 2,
        [checkpoint] * 2,
        ["hum", "tone"],
        sampler_conf={"num_steps": 2},
    )
    est, _ = sampler.separate(
        torch.from_numpy(mix[0]), torch.Generator().manual_seed(0)
    )
    written, _ = sf.read(out / "wavs" / "1" / "m0.wav", dtype="float32")
    assert np.allclose(est[0].numpy(), written, atol=1e-6)
    assert sampler.priors[0] is sampler.priors[1]  # loaded once

    # the plugin's inference entry point separates with the same priors: same files
    from espnet2_ext.bin.enh_inference import main as inference_main

    out2 = tmp_path / "sep_via_enh_inference"
    priors = []
    for _ in range(2):
        priors += ["--diffusion_prior_train_config", str(exp / "config.yaml")]
        priors += ["--diffusion_prior_model_file", str(checkpoint)]
    inference_main(
        [
            "--data_path_and_name_and_type",
            f"{mix_dir}/wav.scp,speech_mix,sound",
            "--output_dir",
            str(out2),
            "--diffusion_categories",
            "hum",
            "1",
            "--diffusion_sampler_conf",
            "num_steps=2",
            "--fs",
            str(FS),
            *priors,
        ]
    )
    for n in (1, 2):
        for key in ("m0", "m1"):
            a, _ = sf.read(out / "wavs" / str(n) / f"{key}.wav", dtype="float32")
            b, _ = sf.read(out2 / "wavs" / str(n) / f"{key}.wav", dtype="float32")
            assert np.array_equal(a, b)
        assert (out2 / f"spk{n}.scp").read_text().split()[::2] == ["m0", "m1"]

    # a job of a split run (--key_file with m1 only) gives m1 what the whole run gave:
    # its seed comes from its line in the scp, not its place in the job's key list
    (tmp_path / "keys.2").write_text("m1\n")
    out_job = tmp_path / "sep_job2"
    separate_main(
        [a if a != str(out) else str(out_job) for a in args]
        + ["--key_file", str(tmp_path / "keys.2")]
    )
    for n in (1, 2):
        assert (out_job / f"spk{n}.scp").read_text().split()[::2] == ["m1"]
        a, _ = sf.read(out / "wavs" / str(n) / "m1.wav", dtype="float32")
        b, _ = sf.read(out_job / "wavs" / str(n) / "m1.wav", dtype="float32")
        assert np.array_equal(a, b)

    # and the Python API, from the same files, with the same seed as mixture m0
    from espnet2_ext.api import load_diffusion_separator

    api = load_diffusion_separator(
        [exp / "config.yaml"] * 2,
        [checkpoint] * 2,
        sample_rate=FS,
        categories=["hum", "tone"],
        names=["speech", "event"],
        sampler_conf={"num_steps": 2},
    )
    stems = api.separate(mix[0], FS, seed=0)
    assert list(stems) == ["speech", "event"] and stems["speech"].shape == (1, 900)
    assert np.allclose(stems["speech"][0], written, atol=1e-6)
    assert api.last_info["nfe"] > 0

    # a mixture at another rate stops the run before anything is written
    sf.write(mix_dir / "m1.wav", mix[1], 8000, subtype="FLOAT")
    out3 = tmp_path / "sep_bad_rate"
    with pytest.raises(ValueError, match="m1: .* is 8000 Hz, the model needs 16000 Hz"):
        inference_main(
            [
                "--data_path_and_name_and_type",
                f"{mix_dir}/wav.scp,speech_mix,sound",
                "--output_dir",
                str(out3),
                "--diffusion_sampler_conf",
                "num_steps=2",
                "--fs",
                str(FS),
                *priors,
            ]
        )
    assert not out3.exists()


def test_inference_needs_exactly_one_way_to_separate(tmp_path):
    from espnet2_ext.bin.enh_inference import main as inference_main

    data = ["--data_path_and_name_and_type", "x.scp,speech_mix,sound"]
    with pytest.raises(ValueError, match="nothing to separate with"):
        inference_main([*data, "--output_dir", str(tmp_path / "a")])
    with pytest.raises(ValueError, match="not both"):
        inference_main(
            [
                *data,
                "--output_dir",
                str(tmp_path / "b"),
                "--train_config",
                "c.yaml",
                "--model_file",
                "m.pth",
                "--diffusion_prior_train_config",
                "p.yaml",
                "--diffusion_prior_model_file",
                "p.pth",
            ]
        )
