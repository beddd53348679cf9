"""The separation facade with a stock ESPnet separator gives what ESPnet's own inference gives."""

import numpy as np
import pytest
import torch
import yaml
from espnet2.bin.enh_inference import SeparateSpeech

from espnet2_ext.separation import ChunkingConfig, Separator
from espnet2_ext.tasks.enh import EnhancementTask

# BSRNN is not scale-equivariant by itself, so a missing variance normalisation shows
BSRNN = [
    "--encoder", "stft", "--encoder_conf", '{"n_fft": 64, "hop_length": 16}',
    "--decoder", "stft", "--decoder_conf", '{"n_fft": 64, "hop_length": 16}',
    "--separator", "bsrnn", "--separator_conf",
    '{"num_spk": 2, "num_channels": 2, "num_layers": 1, "target_fs": 8000, '
    '"subbands": [[0, 7], [8, 15], [16, 23], [24, 32]]}',
    "--model_conf", '{"normalize_variance": true}',
]  # fmt: skip

#: MusicSeparator's old default: the whole input in one pass
WHOLE = ChunkingConfig(segment=None)


@pytest.fixture(scope="module")
def stock_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stock")
    args = EnhancementTask.get_parser().parse_args(BSRNN)
    torch.manual_seed(0)
    model = EnhancementTask.build_model(args)
    plain = (str, int, float, bool, list, dict, type(None))
    config = {k: v for k, v in vars(args).items() if isinstance(v, plain)}
    # one config for both: our options stay outside model_conf, so ESPnet's own task
    # builds its model class from the config our task wrote
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(model.state_dict(), tmp / "model.pth")
    return tmp / "config.yaml", tmp / "model.pth"


def test_same_output_as_espnet_separate_speech(stock_model):
    config, weights = stock_model
    mix = (
        0.3 * torch.randn(1, 1200, generator=torch.Generator().manual_seed(1))
    ).numpy()
    ours = Separator.from_files(config, weights, chunking=WHOLE)(mix)
    espnet = SeparateSpeech(
        str(config),
        str(weights),
        normalize_output_wav=False,
    )
    # fs = the STFT encoder's default_fs: ESPnet rescales its window for any other rate,
    # while ours passes no rate and checks it against the config instead
    theirs = espnet(mix, fs=16000)
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # and the variance normalisation is what makes them equal: the model is not
    # scale-equivariant, the pipeline is
    louder = Separator.from_files(config, weights, chunking=WHOLE)(4.0 * mix)
    np.testing.assert_allclose(louder[0], 4.0 * ours[0], rtol=1e-3, atol=1e-5)


def test_stereo_input_to_a_stock_mono_model_is_separated_per_channel(stock_model):
    config, weights = stock_model
    separator = Separator.from_files(config, weights, chunking=WHOLE)
    stereo = 0.3 * torch.randn(1, 1200, 2, generator=torch.Generator().manual_seed(2))
    out = separator(stereo.numpy())
    assert out[0].shape == (1, 1200, 2)
    for c in range(2):
        mono = separator(stereo[..., c].numpy())
        for n in range(2):
            np.testing.assert_allclose(out[n][..., c], mono[n], rtol=1e-4, atol=1e-6)
