"""Our EnhancementTask: parser, model class, and losses over both stereo channels."""

import argparse

import pytest
import torch
from espnet2.enh.espnet_model import ESPnetEnhancementModel
from espnet2.tasks.enh import EnhancementTask as EspnetEnhancementTask

from espnet2_ext.enh.espnet_model import MultiChannelLossEnhancementModel
from espnet2_ext.tasks.enh import EnhancementTask

from conftest import FS, tiny_config


def _args(config):
    parser = EnhancementTask.get_parser()
    args = parser.parse_args(["--output_dir", "unused"])
    for key, value in config.items():
        setattr(args, key, value)
    return args


def test_parser_accepts_our_separator_and_every_stock_option():
    parser = EnhancementTask.get_parser()
    args = parser.parse_args(
        [
            "--separator",
            "bs_locoformer",
            "--separator_conf",
            "n_layers=2",
            "--encoder",
            "stft",
            "--sample_rate",
            "44100",
            "--output_dir",
            "x",
        ]
    )
    assert args.separator == "bs_locoformer"
    assert args.separator_conf == {"n_layers": 2}
    stock = {a.dest for a in EspnetEnhancementTask.get_parser()._actions}
    ours = {a.dest for a in parser._actions}
    assert stock <= ours
    assert args.model_conf["loss_over_channels"] is True


def test_unknown_separator_is_rejected():
    with pytest.raises(SystemExit):
        EnhancementTask.get_parser().parse_args(
            ["--separator", "no_such_separator", "--output_dir", "x"]
        )


def test_build_model_gives_our_model_class():
    model = EnhancementTask.build_model(_args(tiny_config()))
    assert type(model) is MultiChannelLossEnhancementModel
    assert model.num_spk == 2


def _loss(model, mix, refs):
    model.train()
    lengths = torch.full((mix.shape[0],), mix.shape[1], dtype=torch.long)
    kwargs = {f"speech_ref{i + 1}": r for i, r in enumerate(refs)}
    loss, stats, _ = model(mix, lengths, **kwargs)
    return loss


@pytest.mark.parametrize("loss_over_channels", [True, False])
def test_time_domain_loss_sees_the_second_channel(loss_over_channels):
    """ESPnet keeps only ref_channel for time-domain losses on stereo signals
    (force_1ch); our model keeps both channels unless told otherwise."""
    torch.manual_seed(0)
    config = tiny_config()
    config["model_conf"] = {"loss_over_channels": loss_over_channels}
    model = EnhancementTask.build_model(_args(config))
    n = int(0.2 * FS)
    refs = [0.1 * torch.randn(1, n, 2) for _ in range(2)]
    mix = refs[0] + refs[1]
    base = _loss(model, mix, refs)
    # Corrupt only the right channel of the references: a loss over both channels
    # must change, a loss on channel 0 alone cannot.
    corrupted = [r.clone() for r in refs]
    for r in corrupted:
        r[..., 1] = 0.1 * torch.randn(1, n)
    changed = _loss(model, mix, corrupted)
    if loss_over_channels:
        assert not torch.isclose(base, changed, rtol=1e-4)
    else:
        assert torch.isclose(base, changed, rtol=1e-5)


def test_stock_espnet_model_ignores_the_second_channel():
    """The behaviour our model fixes, checked on ESPnet's own class."""
    torch.manual_seed(0)
    ours = EnhancementTask.build_model(_args(tiny_config()))
    stock = ESPnetEnhancementModel(
        encoder=ours.encoder,
        separator=ours.separator,
        decoder=ours.decoder,
        mask_module=None,
        loss_wrappers=list(ours.loss_wrappers),
    )
    n = int(0.2 * FS)
    refs = [0.1 * torch.randn(1, n, 2) for _ in range(2)]
    mix = refs[0] + refs[1]
    corrupted = [r.clone() for r in refs]
    for r in corrupted:
        r[..., 1] = 0.0
    assert torch.isclose(_loss(stock, mix, refs), _loss(stock, mix, corrupted))


def test_fold_is_snr_over_both_channels():
    """The folded reference/estimate give the SNR of the stereo signal as a whole."""
    model = EnhancementTask.build_model(_args(tiny_config()))
    ref = torch.randn(3, 100, 2)
    est = ref + 0.1 * torch.randn(3, 100, 2)
    (r,), (e,) = model._align_ref_pre_channels([ref], [est], ch_dim=2, force_1ch=True)
    assert r.shape == (3, 200)
    expected = 10 * torch.log10(ref.pow(2).sum((1, 2)) / (ref - est).pow(2).sum((1, 2)))
    got = 10 * torch.log10(r.pow(2).sum(1) / (r - e).pow(2).sum(1))
    torch.testing.assert_close(got, expected)
