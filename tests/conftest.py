"""Shared test helpers: tiny stereo WAV data sets and tiny model configs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import soundfile as sf
import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


def pytest_collection_modifyitems(session, config, items):
    """The files with end-to-end (``slow``) tests first, each file's tests in their
    order: with two workers (tools/test.sh; a file per worker at a time), the longest
    files start at once instead of ending the run on one worker."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


FS = 44100

#: A BS-Locoformer small enough for a CPU test (1 block, D = 8), stereo, 2 sources.
TINY_SEPARATOR_CONF = dict(
    num_spk=2,
    num_channels=2,
    n_layers=1,
    emb_dim=8,
    ffn_hidden_dim=8,
    n_heads=2,
    norm_groups=2,
    dropout=0.0,
    attention_dropout=0.0,
)


def tiny_config(num_spk: int = 2, criterion: str = "snr") -> Dict:
    """A complete enh training config (dict) for a tiny stereo BS-Locoformer."""
    stft = dict(n_fft=2048, hop_length=512, window="hann", default_fs=FS)
    return dict(
        encoder="stft",
        encoder_conf=dict(stft),
        decoder="stft",
        decoder_conf=dict(stft),
        separator="bs_locoformer",
        separator_conf={**TINY_SEPARATOR_CONF, "num_spk": num_spk},
        criterions=[
            dict(name=criterion, conf={}, wrapper="fixed_order", wrapper_conf={})
        ],
        sample_rate=FS,
        num_spk=num_spk,
    )


def tiny_model_dir(root: Path, num_spk: int = 4, seed: int = 0) -> Path:
    """A trained-model folder (config.yaml + model.pth, as ESPnet writes them) of a
    tiny BS-Locoformer with random weights (``torch.manual_seed(seed)``)."""
    from espnet2_ext.tasks.enh import EnhancementTask
    from espnet2_ext.zoo import full_train_config, write_model_dir

    torch.manual_seed(seed)
    config = tiny_config(num_spk=num_spk)
    model = EnhancementTask.build_model(
        argparse.Namespace(**full_train_config(config, root))
    )
    write_model_dir(config, model.state_dict(), root)
    return root


def pack_model_dir(folder: Path, out: Path) -> Path:
    """ESPnet's model-zoo zip of ``folder`` (config.yaml + model.pth); packed from inside
    the folder, as ESPnet records cwd-relative paths."""
    from espnet2_ext.zoo import pack

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return pack("config.yaml", "model.pth", out)
    finally:
        os.chdir(cwd)


def write_stereo_set(
    root: Path, n_utts: int = 4, num_spk: int = 2, seconds: float = 0.3, seed: int = 0
) -> Dict[str, Path]:
    """Stereo 44.1 kHz sources and their mixtures on disk, with ESPnet scp files.

    Source n of every utterance is a sinusoid of its own frequency band with a random
    pan, so a separator can learn something in a few steps.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    n = int(seconds * FS)
    t = np.arange(n) / FS
    scps: Dict[str, List[str]] = {"wav": []}
    scps.update({f"spk{k + 1}": [] for k in range(num_spk)})
    for u in range(n_utts):
        uid = f"utt{u}"
        mix = np.zeros((n, 2), dtype=np.float32)
        for k in range(num_spk):
            f0 = 110.0 * (4**k) * (1 + 0.1 * rng.random())
            mono = 0.3 * np.sin(2 * np.pi * f0 * t + rng.random() * 6.28)
            pan = rng.uniform(0.2, 0.8)
            src = np.stack([mono * (1 - pan), mono * pan], axis=1).astype(np.float32)
            path = root / f"{uid}_s{k + 1}.wav"
            sf.write(path, src, FS, subtype="FLOAT")
            scps[f"spk{k + 1}"].append(f"{uid} {path}")
            mix += src
        path = root / f"{uid}_mix.wav"
        sf.write(path, mix, FS, subtype="FLOAT")
        scps["wav"].append(f"{uid} {path}")
    out = {}
    for name, lines in scps.items():
        out[name] = root / f"{name}.scp"
        out[name].write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture
def stereo_set(tmp_path):
    return write_stereo_set(tmp_path / "data")
