"""Separation sampler: known-answer priors, step lengths, baselines, mixture only."""

import copy
import inspect
import math

import pytest
import torch

from espnet2_ext.diffusion.evaluation import permutation_si_snr, si_snr
from espnet2_ext.diffusion.sampling import (
    INITIALISATIONS,
    STEP_RULES,
    DiffusionPriorSampler,
    DSGStep,
    HybridStep,
    ReconstructionLoss,
    StepContext,
    YangDSGStep,
    smoothmax,
)
from espnet2_ext.diffusion.schedule import DDPMSchedule

from diffusion_helpers import (  # noqa: F401 (fixtures)
    _one_thread,
    band_noise,
    band_prior,
    oracle_prior,
    schedule,
    tiny_prior,
)

LENGTH = 2000


def _planted():
    s1 = band_noise(LENGTH, 10, 150, rms=0.07, seed=1)
    s2 = band_noise(LENGTH, 200, 700, rms=0.06, seed=2)
    return s1, s2


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("step_rule", STEP_RULES.names())
@pytest.mark.parametrize("init", INITIALISATIONS.names())
def test_oracle_priors_recover_the_planted_sources(oracle_prior, step_rule, init):
    s1, s2 = _planted()
    sampler = DiffusionPriorSampler(
        [oracle_prior(s1), oracle_prior(s2)],
        num_steps=20,
        step_rule=step_rule,
        init=init,
    )
    est, info = sampler.separate(s1 + s2, generator=_gen())
    assert est.shape == (2, LENGTH)
    assert si_snr(est[0], s1) > 25 and si_snr(est[1], s2) > 25
    assert info["nfe"] == 2 * 20 and info["steps"][0] == 199 and info["steps"][-1] == 0


def test_guidance_separates_with_priors_that_only_know_the_bands(band_prior):
    """Priors know each source's band, not its content: the mixture must guide.

    This shows guidance, not separation: the bands are disjoint, so a band-pass filter
    would separate these sources perfectly. Sources that overlap in frequency:
    test_exact_prior_separation.py."""
    s1, s2 = _planted()
    priors = [band_prior(10, 150, 0.07, LENGTH), band_prior(200, 700, 0.06, LENGTH)]
    results = {}
    for rule in ("hybrid", "none"):
        sampler = DiffusionPriorSampler(priors, num_steps=50, step_rule=rule)
        est, info = sampler.separate(s1 + s2, generator=_gen())
        results[rule] = (
            si_snr(est, torch.stack([s1, s2])).mean().item(),
            info["loss"][-1].item(),
        )
    assert results["hybrid"][0] > results["none"][0] + 15
    assert results["hybrid"][1] < 0.7 * results["none"][1]


def test_hybrid_step_has_the_scheduled_length_for_every_source():
    rule = HybridStep()
    ctx = StepContext(index=120, step=120, sigma=0.05, num_samples=3000)
    # ρ = √L · log(e^{k·0.09σ} + e^{k·0.002}) / k, computed directly
    k, a, b = 1000.0, 0.09 * 0.05, 0.002
    rho = math.sqrt(3000) * math.log(math.exp(k * a) + math.exp(k * b)) / k
    assert rule.step_length(ctx) == pytest.approx(rho, rel=1e-9)
    x_prime = torch.randn(2, 3, 3000, dtype=torch.float64)
    grad = (
        torch.randn(2, 3, 3000, dtype=torch.float64)
        * torch.tensor([1e-3, 1.0, 50.0])[:, None]
    )
    moved = x_prime - rule(x_prime, x_prime, grad, ctx)
    assert torch.allclose(
        moved.norm(dim=-1), torch.full((2, 3), rho, dtype=torch.float64)
    )
    # the move is along −g: cosine 1 with the gradient
    assert torch.allclose(
        torch.cosine_similarity(moved, grad, dim=-1), torch.ones(2, 3).double()
    )
    # the floor: at σ = 0 the step is √L · smoothmax(0, 0.002) > √L · 0.002
    ctx0 = StepContext(index=0, step=0, sigma=0.0, num_samples=3000)
    assert rule.step_length(ctx0) == pytest.approx(
        math.sqrt(3000) * smoothmax(0.0, 0.002, 1000)
    )
    assert rule.step_length(ctx0) > math.sqrt(3000) * 0.002


def test_dsg_step_is_the_authors_branch():
    """The authors' DSG: from the ancestral sample, √L · 0.09 · σ along −g, every source
    the same distance whatever its gradient's size; no floor (σ = 0 → no move)."""
    ctx = StepContext(index=50, step=50, sigma=0.03, num_samples=1000)
    mean = torch.randn(1, 3, 1000, dtype=torch.float64)
    x_prime = mean + 0.03 * torch.randn_like(mean)
    grad = torch.randn_like(mean) * torch.tensor([1e-4, 1.0, 30.0])[:, None]
    out = DSGStep()(x_prime, mean, grad, ctx)
    radius = math.sqrt(1000) * 0.09 * 0.03
    assert DSGStep().step_length(ctx) == pytest.approx(radius, rel=1e-12)
    assert torch.allclose(
        (x_prime - out).norm(dim=-1), torch.full((1, 3), radius).double()
    )
    assert torch.allclose(
        torch.cosine_similarity(x_prime - out, grad, dim=-1), torch.ones(1, 3).double()
    )
    # the move does not depend on the posterior mean (it starts from x')
    assert torch.equal(DSGStep()(x_prime, torch.zeros_like(mean), grad, ctx), out)
    # the path scale multiplies it; at σ = 0 it does not move (the hybrid rule's floor
    # is what keeps guiding there)
    scaled = StepContext(
        index=50, step=50, sigma=0.03, num_samples=1000, path_scale=2.5
    )
    moved = (x_prime - DSGStep()(x_prime, mean, grad, scaled)).norm(dim=-1)
    assert torch.allclose(moved, torch.full((1, 3), 2.5 * radius).double())
    last = StepContext(index=0, step=0, sigma=0.0, num_samples=1000)
    assert torch.equal(DSGStep()(x_prime, mean, grad, last), x_prime)
    assert HybridStep().step_length(last) > 0


def test_dsg_yang_step_stays_on_the_sphere_around_the_mean():
    """Yang et al.'s DSG: the next state is √L σ from the posterior mean; at rate 1 the
    direction from the mean is −g; the default rate is 0.2."""
    ctx = StepContext(index=50, step=50, sigma=0.03, num_samples=1000)
    mean = torch.randn(1, 2, 1000, dtype=torch.float64)
    x_prime = mean + 0.03 * torch.randn(1, 2, 1000, dtype=torch.float64)
    out = YangDSGStep(guidance_rate=0.3)(x_prime, mean, torch.randn_like(mean), ctx)
    radius = math.sqrt(1000) * 0.03
    assert torch.allclose(
        (out - mean).norm(dim=-1), torch.full((1, 2), radius).double()
    )
    full = YangDSGStep(guidance_rate=1.0)(
        x_prime, mean, grad := torch.randn_like(mean), ctx
    )
    assert torch.allclose(
        torch.cosine_similarity(full - mean, -grad, dim=-1), torch.ones(1, 2).double()
    )
    assert YangDSGStep().guidance_rate == 0.2
    # with a planted gradient along the ancestral noise, rate 0.2 keeps the direction
    noise = x_prime - mean
    same = YangDSGStep()(x_prime, mean, -noise, ctx)
    expected = mean + radius * noise / noise.norm(dim=-1, keepdim=True)
    assert torch.allclose(same, expected)


def test_output_depends_on_the_mixture_only(oracle_prior, tiny_prior):
    assert list(inspect.signature(DiffusionPriorSampler.separate).parameters) == [
        "self",
        "mixture",
        "generator",
        "progress",
        "categories",
    ]

    # two different source splits with the same sum give the same separation; on a
    # grid of 2^-20 every sum below is exact in float32, so the two mixtures are equal
    # to the bit (float rounding of s1 + s2 alone would differ, and the sampler's
    # normalised steps amplify such differences)
    def grid(x):
        return torch.round(x * 2.0**20) / 2.0**20

    s1, s2 = (grid(s) for s in _planted())
    d = grid(band_noise(LENGTH, 10, 700, rms=0.03, seed=9))
    m1, m2 = s1 + s2, (s1 + d) + (s2 - d)
    assert torch.equal(m1, m2) and not torch.equal(s1, s1 + d)
    prior = tiny_prior()
    sampler = DiffusionPriorSampler([prior, prior], num_steps=3)
    a, _ = sampler.separate(m1, generator=_gen())
    b, _ = sampler.separate(m2, generator=_gen())
    assert torch.equal(a, b)


def test_two_steps_keep_shapes(tiny_prior):
    sampler = DiffusionPriorSampler(
        [tiny_prior(0), tiny_prior(1), tiny_prior(2)], num_steps=2
    )
    mixture = 0.1 * torch.randn(2, 1234)
    est, info = sampler.separate(mixture, generator=_gen())
    assert est.shape == (2, 3, 1234) and torch.isfinite(est).all()
    assert info["nfe"] == 6 and info["loss"].shape == (2, 2)
    single, _ = sampler.separate(mixture[0], generator=_gen())
    assert single.shape == (3, 1234)


@pytest.mark.parametrize("step_rule", STEP_RULES.names())
@pytest.mark.parametrize("init", INITIALISATIONS.names())
def test_every_option_runs_a_step(tiny_prior, step_rule, init):
    conf = dict(t=20, shared_noise=False) if init == "augmented_mixture" else None
    sampler = DiffusionPriorSampler(
        [tiny_prior(), tiny_prior(1)],
        num_steps=2,
        start_t=30,
        step_rule=step_rule,
        init=init,
        init_conf=conf,
        loss_conf=dict(num_segments=7, weight_spectral=0.5, n_fft=64, hop_length=16),
        clamp_x0=False,
    )
    est, info = sampler.separate(0.1 * torch.randn(1, 800), generator=_gen())
    assert est.shape == (1, 2, 800) and torch.isfinite(est).all()
    assert info["steps"] == [30, 0]


def test_class_conditional_priors_with_guidance_weight(tiny_prior):
    prior = tiny_prior(num_classes=3, cfg_scale=2.0)
    sampler = DiffusionPriorSampler([prior, prior], categories=[2, None], num_steps=2)
    est, info = sampler.separate(0.1 * torch.randn(1, 700), generator=_gen())
    assert est.shape == (1, 2, 700)
    assert info["nfe"] == 2 * 2 * 2  # two steps, two sources, two evaluations each
    # labels per call override the sampler's, by index or class name
    prior.class_names = ["a", "b", "c"]
    mixture = 0.1 * torch.randn(1, 700)
    again, _ = sampler.separate(mixture, _gen(), categories=["c", "none"])
    assert again.shape == (1, 2, 700)
    with pytest.raises(ValueError, match="not a class"):
        sampler.separate(torch.zeros(1, 700), categories=["d", None])
    with pytest.raises(ValueError, match="outside"):
        DiffusionPriorSampler([prior], categories=[3])
    with pytest.raises(ValueError, match="unconditional"):
        DiffusionPriorSampler([tiny_prior()], categories=[0])


def test_shared_prior_object_equals_separate_copies(tiny_prior):
    prior = tiny_prior()
    mixture = 0.1 * torch.randn(2, 900)
    shared, _ = DiffusionPriorSampler([prior, prior], num_steps=3).separate(
        mixture, _gen()
    )
    copies, _ = DiffusionPriorSampler(
        [prior, copy.deepcopy(prior)], num_steps=3
    ).separate(mixture, _gen())
    assert torch.allclose(shared, copies, atol=1e-5)


def test_mixture_level_option_is_scale_equivariant(tiny_prior):
    prior = tiny_prior()
    sampler = DiffusionPriorSampler([prior, prior], num_steps=3, mixture_rms_db=-20.0)
    mixture = 0.05 * torch.randn(1, 900)
    a, _ = sampler.separate(mixture, _gen())
    b, _ = sampler.separate(10.0 * mixture, _gen())
    assert torch.allclose(10.0 * a, b, rtol=1e-4, atol=1e-5)  # float32, |b| ≤ 5


def test_reconstruction_loss_terms():
    loss = ReconstructionLoss(weight_segments=0.05, num_segments=4, weight_spectral=0.1)
    y = torch.randn(2, 1024)
    assert torch.allclose(loss(y, y), torch.zeros(2), atol=1e-6)
    est = torch.randn(2, 1024)
    r = y - est
    seg = sum(c.norm(dim=-1) for c in torch.chunk(r, 4, dim=-1))
    window = torch.hann_window(512)
    mag = lambda x: torch.stft(x, 512, 256, window=window, return_complex=True).abs()
    spec = (mag(est) - mag(y)).flatten(1).norm(dim=-1)
    expected = r.norm(dim=-1) + 0.05 * seg + 0.1 * spec
    assert torch.allclose(loss(est, y), expected, rtol=1e-5)


def test_permutation_si_snr_finds_the_order():
    s1, s2 = _planted()
    refs = torch.stack([s1, s2])
    values, perm = permutation_si_snr(torch.stack([3 * s2, 0.5 * s1]), refs)
    assert perm == (1, 0) and (values > 100).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(step_rule="adam"), "unknown step rule"),
        (dict(init="zeros"), "unknown initialisation"),
        (dict(categories=[None]), "categories for 2 priors"),
        (dict(num_steps=1), "num_steps"),
        (dict(step_rule_conf=dict(scale=-1.0)), "scale >= 0"),
    ],
)
def test_invalid_settings_raise(oracle_prior, kwargs, message):
    s1, s2 = _planted()
    with pytest.raises(ValueError, match=message):
        DiffusionPriorSampler([oracle_prior(s1), oracle_prior(s2)], **kwargs)


def test_priors_must_share_the_schedule(oracle_prior):
    s1, s2 = _planted()
    other = oracle_prior(s2)
    other.schedule = DDPMSchedule(num_steps=100)
    with pytest.raises(ValueError, match="share one noise schedule"):
        DiffusionPriorSampler([oracle_prior(s1), other])
