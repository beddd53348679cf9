"""egs2/synth2/diffsep1: its data (tones vs. noise bursts), sampler configs, references
and the scores table."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from espnet2_ext.datagen.tones_bursts import CLASSES, make_clip
from espnet2_ext.diffusion.evaluation import results_row, summarize
from espnet2_ext.diffusion.sampling import DiffusionPriorSampler

from diffusion_helpers import _one_thread, gaussian_prior, schedule  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs2" / "synth2" / "diffsep1"
FS = 8000


def _scp(path: Path) -> dict:
    return dict(line.split(maxsplit=1) for line in path.read_text().splitlines())


def _band_share(x: np.ndarray, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / FS)
    return float(power[(f >= low) & (f < high)].sum() / power.sum())


def _flatness(x: np.ndarray) -> float:
    """Spectral flatness of 256-sample frames (geometric / arithmetic mean power)."""
    frames = np.lib.stride_tricks.sliding_window_view(x, 256)[::128] * np.hanning(256)
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2 + 1e-12
    return float(np.mean(np.exp(np.log(power).mean(-1)) / power.mean(-1)))


def _crest(x: np.ndarray) -> float:
    """Peak over mean of the 10 ms frame energies (transient content)."""
    energy = (x[: len(x) // 80 * 80].reshape(-1, 80) ** 2).sum(-1)
    return float(energy.max() / energy.mean())


def test_classes_overlap_in_frequency_and_differ_in_structure():
    clips = {c: [make_clip(c, 0, i, FS, FS)[0] for i in range(8)] for c in CLASSES}
    for name, items in clips.items():
        for x in items:
            level = 10 * np.log10(np.mean(x.astype(np.float64) ** 2))
            assert -25.0 - 1e-3 <= level <= -20.0 + 1e-3
            # both classes have energy below 500 Hz and above 1 kHz
            assert _band_share(x, 0, 500) > 0.05 and _band_share(x, 1000, 4000) > 0.05
    flat = {c: np.median([_flatness(x) for x in clips[c]]) for c in CLASSES}
    crest = {c: np.median([_crest(x) for x in clips[c]]) for c in CLASSES}
    assert flat["tones"] < 0.05 < 0.2 < flat["bursts"]  # lines vs. noise
    assert crest["bursts"] > 3 * crest["tones"]  # transients vs. sustained notes
    # deterministic per (class, seed, index); another seed or index is another clip
    again, _ = make_clip("tones", 0, 3, FS, FS)
    assert np.array_equal(again, clips["tones"][3])
    assert not np.allclose(make_clip("tones", 1, 3, FS, FS)[0], again)


def test_data_layout_and_mixtures(tmp_path):
    out = tmp_path / "data"
    args = ["--out", str(out), "--num_train", "3", "--num_valid", "2"]
    args += ["--num_valid_mix", "1", "--num_test", "2", "--seconds", "0.5"]
    subprocess.run(
        [sys.executable, "-m", "espnet2_ext.datagen.tones_bursts", *args],
        check=True,
        capture_output=True,
    )
    for name in CLASSES:
        train = _scp(out / f"{name}_train" / "wav.scp")
        assert len(train) == 3 and len(_scp(out / f"{name}_valid" / "wav.scp")) == 2
        shapes = _scp(out / f"{name}_train" / "speech_ref1_shape")
        assert set(shapes.values()) == {"4000"}
    for split, count in (("valid_mix", 1), ("test", 2)):
        mixtures = _scp(out / split / "wav.scp")
        refs = [_scp(out / split / f"spk{n}.scp") for n in (1, 2)]
        assert len(mixtures) == count
        for key, path in mixtures.items():
            mix, fs = sf.read(path)
            sources = [sf.read(r[key])[0] for r in refs]
            assert fs == FS and mix.shape == (4000,)
            assert np.allclose(mix, np.sum(sources, axis=0), atol=1e-6)
    # the test clips are not training clips
    train0, _ = sf.read(_scp(out / "tones_train" / "wav.scp")["tones_train_00000"])
    test0, _ = sf.read(_scp(out / "test" / "spk1.scp")["test_0000"])
    assert not np.allclose(train0, test0, atol=1e-3)


def test_every_sampler_config_builds_a_sampler(gaussian_prior):
    configs = sorted((ROOT / "egs2" / "TEMPLATE" / "diffsep1" / "conf").glob("*.yaml"))
    configs += sorted(ROOT.glob("egs2/*/diffsep1/conf/separate_*.yaml"))
    assert len(configs) >= 8
    prior = gaussian_prior(torch.ones(501, dtype=torch.float64))
    labels = set()
    for config in configs:
        conf = yaml.safe_load(config.read_text())
        sampler = DiffusionPriorSampler([prior, prior], **conf["sampler_conf"])
        labels.add((config.name, sampler.path_scaling_label))
    assert ("separate_paper.yaml", "×1.00") in labels
    assert ("separate_paper_k20.yaml", "×3.65") in labels
    assert ("separate_paper_k20_noscale.yaml", "off") in labels
    assert ("separate_dps.yaml", "n/a") in labels


def test_results_rows_give_mean_and_sd():
    results = {
        "a": {"si_snr": [1.0, 3.0], "si_snri": [2.0, 4.0], "perm": [0, 1]},
        "b": {"si_snr": [5.0, 7.0], "si_snri": [6.0, 8.0], "perm": [0, 1]},
    }
    summary = summarize(results)
    assert summary["si_snri"] == pytest.approx(5.0)
    # sd over mixtures of the per-mixture means 3 and 7
    assert summary["si_snri_sd"] == pytest.approx(np.std([3.0, 7.0], ddof=1))
    row = results_row("full", summary, 2, ["200", "×1.00"])
    assert row == (
        "| full | 200 | ×1.00 | 2 | 4.00 ± 2.83 | 5.00 ± 2.83 | 4.00 ± 2.83 | "
        "6.00 ± 2.83 |"
    )
    single = summarize({"a": results["a"]})  # sd undefined: the mean alone
    assert results_row("x", single, 2).startswith("| x | 1 | 2.00 | 3.00 |")


def test_reference_separations_and_table(tmp_path):
    """local/bounds.py and local/make_results.py on a tiny data set."""
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, "-m", "espnet2_ext.datagen.tones_bursts", "--out", str(data)]
        + ["--num_train", "4", "--num_valid", "1", "--num_valid_mix", "1"]
        + ["--num_test", "3", "--seconds", "0.5"],
        check=True,
        capture_output=True,
    )
    sep = tmp_path / "exp" / "separate_prior"
    subprocess.run(
        [sys.executable, str(RECIPE / "local" / "bounds.py"), "--data", str(data)]
        + ["--out", str(sep)],
        check=True,
        capture_output=True,
    )
    summaries = {}
    for name in ("oracle_irm", "wiener_lti", "mixture"):
        subprocess.run(
            [sys.executable, str(RECIPE / "pyscripts" / "score.py")]
            + ["--mix", str(data / "test" / "wav.scp"), "--ref"]
            + [str(data / "test" / f"spk{n}.scp") for n in (1, 2)]
            + ["--est"]
            + [str(sep / name / f"spk{n}.scp") for n in (1, 2)]
            + ["--out", str(sep / name / "scoring"), "--permutation", "false"],
            check=True,
            capture_output=True,
        )
        summaries[name] = json.loads(
            (sep / name / "scoring" / "summary.json").read_text()
        )
    assert summaries["mixture"]["si_snri"] == pytest.approx(0.0, abs=1e-9)
    assert summaries["oracle_irm"]["si_snri"] > 8.0
    # frequency alone separates little: far below the oracle mask
    assert summaries["wiener_lti"]["si_snri"] < summaries["oracle_irm"]["si_snri"] - 5
    prior = tmp_path / "exp" / "prior_tones_prior"
    prior.mkdir()
    (prior / "config.yaml").write_text(
        yaml.safe_dump(
            dict(
                network_conf={"hidden_size": 16}, num_iters_per_epoch=100, batch_size=8
            )
        )
    )
    # a log of a training resumed after epoch 1: epochs 1, 2 logged once each
    (prior / "train.log").write_text(
        "INFO: 1epoch results: [valid] loss=0.5\n"
        "INFO: The training was resumed using checkpoint.pth\n"
        "INFO: 2epoch results: [valid] loss=0.4\n"
    )
    out = tmp_path / "RESULTS.md"
    subprocess.run(
        [sys.executable, str(RECIPE / "local" / "make_results.py")]
        + ["--exp", str(sep), "--priors", str(prior), "--data", str(data)]
        + ["--run", "oracle_irm:oracle mask", "--run", "mixture:mixture"]
        + ["--run", "separate_paper:full method", "--reference", "mixture"]
        + ["--out", str(out)],
        check=True,
        capture_output=True,
    )
    table = out.read_text()
    assert "| full method | `separate_paper` | not run |" in table
    row = next(line for line in table.splitlines() if line.startswith("| oracle mask"))
    assert "(0/3)" in row  # the reference (the mixture) is ahead on no mixture
    assert "200 (2 epochs × 100 × batch 8) optimizer steps" in table
    # the paired difference's mean ± sd and 95 % t interval, recomputed here
    per = {
        name: json.loads((sep / name / "scoring" / "scores.json").read_text())
        for name in ("oracle_irm", "mixture")
    }
    diff = [
        np.mean(per["mixture"][k]["si_snri"]) - np.mean(per["oracle_irm"][k]["si_snri"])
        for k in sorted(per["mixture"])
    ]
    mean, sd = np.mean(diff), np.std(diff, ddof=1)
    half = 4.302653 * sd / np.sqrt(3)  # Student's t, 97.5 %, 2 degrees of freedom
    cell = f"{mean:.2f} ± {sd:.2f} [{mean - half:+.2f}, {mean + half:+.2f}] (0/3)"
    assert cell in row


def test_loss_curve_reads_a_resumed_log_once_per_step(tmp_path):
    """stage 2 appends a resumed run to train.log: an epoch logged twice (interrupted,
    then redone) counts once, as last logged, and later epochs continue the steps."""
    sys.path.insert(0, str(RECIPE / "local"))
    try:
        from loss_curve import parse
    finally:
        sys.path.pop(0)
    line = "[vm] 2026 (trainer:300) INFO: {e}epoch:train:{a}-{b}batch: iter_time=0.1, loss={v}"
    result = "[vm] 2026 (trainer:392) INFO: {e}epoch results: [train] loss=0.5, [valid] loss={v}"
    first = [
        line.format(e=1, a=1, b=50, v=0.9),
        line.format(e=1, a=51, b=100, v=0.8),
        result.format(e=1, v=0.7),
        line.format(e=2, a=1, b=50, v=0.65),  # interrupted here
    ]
    resumed = [
        line.format(e=2, a=1, b=50, v=0.6),
        line.format(e=2, a=51, b=100, v=0.5),
        result.format(e=2, v=0.4),
    ]
    (tmp_path / "config.yaml").write_text("num_iters_per_epoch: 100\n")
    (tmp_path / "train.log").write_text("\n".join(first + resumed) + "\n")
    curve = parse(tmp_path / "train.log")
    assert curve["train"] == [(50, 0.9), (100, 0.8), (150, 0.6), (200, 0.5)]
    assert curve["valid"] == [(100, 0.7), (200, 0.4)]
