"""ESPnet's own inference loads what our training wrote (issue 15): in a process that
only did ``import espnet2_ext``, stock ``espnet2.bin.enh_inference.SeparateSpeech``
builds the model from our ``config.yaml`` (per-channel stereo loss, the authors'
framing) and separates exactly as our loader does."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from train_helpers import make_run, train

from espnet2_ext.zoo import load_model

from conftest import FS, TINY_SEPARATOR_CONF

pytestmark = pytest.mark.slow

STOCK = """
import sys
import numpy as np
import espnet2_ext
assert "espnet2.tasks.enh" not in sys.modules  # registration waits for ESPnet
from espnet2.bin.enh_inference import SeparateSpeech
config, weights, mix, out = sys.argv[1:]
separate = SeparateSpeech(config, weights, normalize_output_wav=False)
np.save(out, np.stack(separate(np.load(mix), fs=44100)))
"""


def test_stock_separate_speech_loads_a_config_our_training_wrote(tmp_path):
    separator_conf = {**TINY_SEPARATOR_CONF, "drop_last_frame": True}
    scps = make_run(tmp_path, max_epoch=1, separator_conf=separator_conf)
    proc = train(tmp_path, scps)
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = tmp_path / "exp"
    config = yaml.safe_load((exp / "config.yaml").read_text())
    assert config["multichannel_loss"] == "per_channel"
    assert "loss_over_channels" not in config["model_conf"]

    g = np.random.default_rng(0)
    mix = (0.1 * g.standard_normal((1, int(0.4 * FS), 2))).astype(np.float32)
    np.save(tmp_path / "mix.npy", mix)
    stock = subprocess.run(
        [sys.executable, "-c", STOCK, str(exp / "config.yaml"),
         str(exp / "1epoch.pth"), str(tmp_path / "mix.npy"), str(tmp_path / "out.npy")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert stock.returncode == 0, stock.stderr[-3000:]
    theirs = np.load(tmp_path / "out.npy")  # [N, B, L, C]

    model, _ = load_model(exp / "config.yaml", exp / "1epoch.pth")
    assert model.separator.drop_last_frame
    with torch.no_grad():
        ours = model.forward_enhance(
            torch.from_numpy(mix), torch.tensor([mix.shape[1]])
        )
    ours = torch.stack(ours[0]).numpy()
    assert theirs.shape == ours.shape == (2, 1, mix.shape[1], 2)
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)
