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
    # our model option stays out of model_conf, which ESPnet's own model class takes
    assert args.multichannel_loss == "folded"
    assert "multichannel_loss" not in args.model_conf
    assert "loss_over_channels" not in args.model_conf


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


@pytest.mark.parametrize("mode", ["per_channel", "folded", "ref_channel"])
def test_time_domain_loss_sees_the_second_channel(mode):
    """ESPnet keeps only ref_channel for time-domain losses on stereo signals
    (force_1ch); our model keeps both channels unless told otherwise."""
    torch.manual_seed(0)
    config = tiny_config(criterion="thres_snr")
    config["multichannel_loss"] = mode
    model = EnhancementTask.build_model(_args(config))
    assert model.multichannel_loss == mode
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
    if mode == "ref_channel":
        assert torch.isclose(base, changed, rtol=1e-5)
    else:
        assert not torch.isclose(base, changed, rtol=1e-4)


@pytest.mark.parametrize("criterion", ["thres_snr", "thres_snr_zeroref"])
def test_per_channel_loss_is_the_mean_of_two_mono_losses(criterion):
    """The authors' stereo loss: each channel on its own (activity decided per
    channel), averaged. A silent right channel in one stem makes the difference
    between per-channel and folded activity decisions."""
    torch.manual_seed(1)
    config = tiny_config(criterion=criterion)
    config["criterions"][0]["wrapper"] = "fixed_order_mix"
    config["multichannel_loss"] = "per_channel"
    model = EnhancementTask.build_model(_args(config))
    n = int(0.2 * FS)
    refs = [0.1 * torch.randn(2, n, 2) for _ in range(2)]
    refs[1][..., 1] = 0.0  # stem 2 is inactive in the right channel only
    mix = refs[0] + refs[1]
    model.eval()  # the same estimates in both computations (no dropout anyway)
    loss = _loss(model, mix, refs)
    lengths = torch.full((2,), n, dtype=torch.long)
    with torch.no_grad():
        est = model.forward_enhance(mix, lengths)[0]
    crit = model.loss_wrappers[0].criterion
    mono = []
    for ch in (0, 1):
        ref_ch = [r[..., ch] for r in refs]
        extra = {"mixture": sum(ref_ch)} if criterion == "thres_snr_zeroref" else {}
        per_stem = [crit(r, e[..., ch], **extra).mean() for r, e in zip(ref_ch, est)]
        mono.append(sum(per_stem) / len(refs))
    expected = (mono[0] + mono[1]) / 2
    torch.testing.assert_close(loss.reshape(()), expected, rtol=1e-5, atol=1e-5)
    # the folded form is a different number on this input
    config["multichannel_loss"] = "folded"
    folded = EnhancementTask.build_model(_args(config))
    folded.load_state_dict(model.state_dict())
    assert not torch.isclose(_loss(folded, mix, refs), loss, rtol=1e-3)


def test_per_channel_needs_criteria_that_take_channels():
    config = tiny_config(criterion="snr")
    config["multichannel_loss"] = "per_channel"
    with pytest.raises(ValueError, match="takes \\[B, T\\] only"):
        EnhancementTask.build_model(_args(config))


def test_old_model_conf_key_still_loads_and_moves_out_of_model_conf():
    """Configs written before the option left model_conf load, and the args that
    ESPnet writes to config.yaml no longer hold the key ESPnet's model refuses."""
    config = tiny_config()
    config["model_conf"] = {"loss_over_channels": False}
    args = _args(config)
    model = EnhancementTask.build_model(args)
    assert model.multichannel_loss == "ref_channel"
    assert "loss_over_channels" not in args.model_conf
    assert args.multichannel_loss == "ref_channel"
    config = tiny_config()
    config.update(model_conf={"loss_over_channels": True})
    config["multichannel_loss"] = "per_channel"
    with pytest.raises(ValueError, match="remove model_conf.loss_over_channels"):
        EnhancementTask.build_model(_args(config))


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
