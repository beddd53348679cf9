"""Prior model: DDPM loss, gradients, EMA in the state dict, denoiser for sampling."""

import argparse
import io

import pytest
import torch

from espnet2_ext.diffusion.ema import ExponentialMovingAverage
from espnet2_ext.diffusion.prior_model import DiffusionPriorModel
from espnet2_ext.diffusion.tf_unet import TFAttentionUNet
from espnet2_ext.tasks.diffusion import DiffusionPriorTask

from diffusion_helpers import TINY_NET_CONF, _one_thread  # noqa: F401


def _model(num_classes=0, **conf):
    torch.manual_seed(0)
    return DiffusionPriorModel(
        TFAttentionUNet(num_classes=num_classes, **TINY_NET_CONF), **conf
    )


def test_loss_is_finite_and_reaches_every_parameter():
    model = _model(num_classes=3, class_dropout=0.0)
    batch = dict(
        speech_ref1=0.05 * torch.randn(3, 900),
        speech_ref1_lengths=torch.tensor([900, 900, 700]),
        category=torch.tensor([[0], [1], [2]]),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    # adaLN-Zero gates start at 0, which blocks the gradient of what they gate; one
    # optimizer step opens them, as in real training.
    for _ in range(2):
        optimizer.zero_grad()
        loss, stats, weight = model(**batch)
        assert torch.isfinite(loss) and loss.item() > 0
        loss.backward()
        optimizer.step()
    assert set(stats) == {"loss"} and int(weight) == 3
    no_grad = [
        n
        for n, p in model.named_parameters()
        if p.grad is None or not p.grad.abs().sum()
    ]
    assert no_grad == []
    assert not any(n.startswith("ema.") for n, _ in model.named_parameters())


def test_padding_does_not_count_in_the_loss():
    model = _model().eval()
    x = 0.05 * torch.randn(2, 900)
    lengths = torch.tensor([900, 500])
    loss_masked, _, _ = model(x, lengths)
    # the same draws with the padding of item 2 excluded by hand
    g = torch.Generator().manual_seed(model.valid_seed)
    t = torch.randint(0, 200, (2,), generator=g)
    noise = torch.randn(x.shape, generator=g)
    eps = model.ema.shadow(
        model.schedule.q_sample(x, t, noise), t.float() * model.time_scale
    )
    err = (eps - noise) ** 2
    expected = (err[0].sum() + err[1, :500].sum()) / 1400
    assert loss_masked.item() == pytest.approx(expected.item(), rel=1e-5)


def test_validation_is_deterministic_and_uses_the_average():
    model = _model(ema_decay=0.5)
    x = 0.05 * torch.randn(2, 900)
    model.eval()
    first, _, _ = model(x)
    second, _, _ = model(x)
    assert first.item() == second.item()
    with torch.no_grad():
        for p in model.network.parameters():
            p.add_(0.1)
    # the raw network changed, the average did not: the validation loss is unchanged
    assert model(x)[0].item() == first.item()


def test_ema_update_rule():
    net = torch.nn.Linear(3, 2)
    ema = ExponentialMovingAverage(net, decay=0.9, warmup=False)
    before = ema.shadow.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    assert torch.allclose(ema.shadow.weight, 0.9 * before + 0.1 * net.weight)
    assert int(ema.num_updates) == 1 and list(ema.parameters()) == []
    warm = ExponentialMovingAverage(net, decay=0.9999)
    assert warm.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)


def test_optimizer_steps_update_the_average_through_the_task_hook():
    model = _model(ema_decay=0.9, ema_warmup=False)
    args = argparse.Namespace(
        optim="adam",
        optim_conf={"lr": 1e-2},
        sharded_ddp=False,
        exclude_weight_decay=False,
    )
    (optimizer,) = DiffusionPriorTask.build_optimizers(args, model)
    name = "stages.0.0.freq.attn.qkv.weight"
    shadow_before = model.ema.shadow.get_buffer(name).clone()
    loss, _, _ = model(0.05 * torch.randn(2, 600))
    loss.backward()
    optimizer.step()
    param = model.network.get_parameter(name)
    assert int(model.ema.num_updates) == 1
    assert torch.allclose(
        model.ema.shadow.get_buffer(name), 0.9 * shadow_before + 0.1 * param
    )


def test_state_dict_carries_the_average_and_reloads_to_the_same_denoiser():
    model = _model(ema_decay=0.5)
    with torch.no_grad():
        for p in model.network.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.update_ema()
    state = model.state_dict()
    assert any(k.startswith("ema.shadow.stages.") for k in state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    other = _model(ema_decay=0.5)
    other.load_state_dict(torch.load(buffer))
    x, t = 0.1 * torch.randn(1, 700), torch.tensor([42])
    a, b = model.as_denoiser()(x, t), other.as_denoiser()(x, t)
    assert torch.equal(a, b)
    assert not torch.allclose(a, model.as_denoiser(use_ema=False)(x, t))


def test_invalid_inputs_raise():
    model = _model(num_classes=2)
    with pytest.raises(ValueError, match="category labels"):
        model(torch.zeros(1, 500), category=torch.tensor([2]))
    with pytest.raises(ValueError, match="mono"):
        model(torch.zeros(1, 500, 2))
    with pytest.raises(ValueError, match="without EMA"):
        _model(ema_decay=0.0).as_denoiser()
