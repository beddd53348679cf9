"""DDPM schedule: ᾱ, q(x_t | x_0), x̂0, and the respaced reverse process."""

import math

import pytest
import torch

from espnet2_ext.diffusion.schedule import DDPMSchedule, ReverseSchedule

from diffusion_helpers import _one_thread  # noqa: F401


def test_alphas_cumprod_match_closed_form():
    sched = DDPMSchedule(num_steps=200, beta_start=1e-4, beta_end=0.02)
    for t in (0, 1, 57, 149, 199):
        # β_s = β_0 + s (β_1 − β_0) / (T − 1);  ᾱ_t = exp Σ_{s≤t} log(1 − β_s)
        log_abar = sum(
            math.log(1 - (1e-4 + s * (0.02 - 1e-4) / 199)) for s in range(t + 1)
        )
        assert sched.alphas_cumprod[t].item() == pytest.approx(
            math.exp(log_abar), rel=1e-12
        )
    assert sched.betas[0].item() == pytest.approx(1e-4)
    assert sched.betas[-1].item() == pytest.approx(0.02)
    assert bool((sched.alphas_cumprod.diff() < 0).all())


def test_q_sample_statistics():
    sched = DDPMSchedule()
    t = 120
    x0 = torch.full((4, 50_000), 0.3)
    xt = sched.q_sample(
        x0, torch.full((4,), t), generator=torch.Generator().manual_seed(0)
    )
    abar = sched.alphas_cumprod[t].item()
    assert xt.mean().item() == pytest.approx(math.sqrt(abar) * 0.3, abs=4e-3)
    assert xt.std().item() == pytest.approx(math.sqrt(1 - abar), rel=4e-3)


def test_predict_x0_inverts_q_sample():
    sched = DDPMSchedule()
    x0 = torch.randn(3, 100, dtype=torch.float64)
    noise = torch.randn(3, 100, dtype=torch.float64)
    t = torch.tensor([0, 99, 199])
    xt = sched.q_sample(x0, t, noise)
    assert torch.allclose(sched.predict_x0(xt, t, noise), x0, atol=1e-10)


def test_full_reverse_schedule_gives_back_the_training_betas():
    sched = DDPMSchedule()
    rev = sched.sampling_steps()
    assert len(rev) == 200
    assert torch.allclose(rev.betas, sched.betas, rtol=1e-9)
    assert rev.posterior_variance[0].item() == 0.0
    # μ̃ coefficients of the standard posterior at an inner step
    t = 100
    abar, abar_prev, beta = (
        sched.alphas_cumprod[t],
        sched.alphas_cumprod[t - 1],
        sched.betas[t],
    )
    assert rev.posterior_mean_coef_x0[t].item() == pytest.approx(
        (abar_prev.sqrt() * beta / (1 - abar)).item()
    )


def test_respaced_schedule():
    sched = DDPMSchedule()
    rev = sched.sampling_steps(2)
    assert rev.steps.tolist() == [0, 199]
    assert rev.alphas_cumprod_prev[1].item() == pytest.approx(
        sched.alphas_cumprod[0].item()
    )
    rev = sched.sampling_steps(50, start_t=149)
    assert rev.steps[0] == 0 and rev.steps[-1] == 149 and len(rev) == 50


@pytest.mark.parametrize(
    "call",
    [
        lambda: DDPMSchedule(num_steps=1),
        lambda: DDPMSchedule(beta_start=0.03, beta_end=0.02),
        lambda: DDPMSchedule().sampling_steps(1),
        lambda: DDPMSchedule().sampling_steps(10, start_t=200),
        lambda: DDPMSchedule().q_sample(torch.zeros(1, 4), torch.tensor([200])),
        lambda: ReverseSchedule.from_steps(DDPMSchedule(), [3, 3]),
    ],
)
def test_invalid_settings_raise(call):
    with pytest.raises(ValueError):
        call()
