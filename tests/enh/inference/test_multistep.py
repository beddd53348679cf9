"""Tests of training-free multi-step inference (espnet2_ext.enh.inference.multistep)."""

from __future__ import annotations

import math

import pytest
import torch
from espnet2.tasks.enh import EnhancementTask

from espnet2_ext.enh.inference.chunking import apply_chunked, chunk_starts
from espnet2_ext.enh.inference.espnet_adapter import espnet_model_separate_fn
from espnet2_ext.enh.inference.metrics_registry import (
    available_metrics,
    get_metric,
    register_metric,
    unregister_metric,
)
from espnet2_ext.enh.inference.multistep import (
    DEFAULT_CANDIDATES,
    DEFAULT_STEPS,
    MultiStepSeparator,
    RatioSchedule,
    calibrate_schedule,
    candidate_ratios,
)

torch.set_num_threads(1)


class TinySeparator(torch.nn.Module):
    """A random nonlinear separator [b, C, L] -> [b, N, C, L] (conv, tanh, conv)."""

    def __init__(self, n_src: int, n_chan: int, seed: int, hidden: int = 8):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.n_src, self.n_chan = n_src, n_chan
        self.conv1 = torch.nn.Conv1d(n_chan, hidden, 5, padding=2)
        self.conv2 = torch.nn.Conv1d(hidden, n_src * n_chan, 5, padding=2)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(torch.tanh(self.conv1(x)))
        return out.reshape(x.shape[0], self.n_src, self.n_chan, x.shape[-1])


def sign_separator(x: torch.Tensor) -> torch.Tensor:
    """Perfect for sources s1 >= 0, s2 <= 0 of disjoint support, for any blend."""
    return torch.stack([torch.relu(x), -torch.relu(-x)], dim=1)


def sign_sources(batch: int, n_chan: int, length: int, seed: int) -> torch.Tensor:
    noise = torch.randn(
        batch, n_chan, length, generator=torch.Generator().manual_seed(seed)
    )
    return sign_separator(noise)  # [B, 2, C, L]


def random_problem(seed: int, batch=2, n_src=3, n_chan=2, length=400, dtype=None):
    gen = torch.Generator().manual_seed(1000 + seed)
    ref = torch.randn(batch, n_src, n_chan, length, generator=gen, dtype=dtype)
    mix = ref.sum(dim=1)
    return mix, ref


# ------------------------------------------------------------------------- grids
def test_candidate_ratio_grids():
    uniform = candidate_ratios(7, steps=20, candidates=10, grid="uniform")
    assert uniform == pytest.approx([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    assert candidate_ratios(1, steps=20, candidates=10, grid="narrowing") == uniform
    # step 11 of 20: the weight on the estimate starts at 0.5 (authors' speech scripts)
    narrow = candidate_ratios(11, steps=20, candidates=10, grid="narrowing")
    assert narrow == pytest.approx([0.5 * r for r in uniform])
    with pytest.raises(ValueError, match="grid"):
        candidate_ratios(1, steps=2, candidates=2, grid="log")
    # the authors' grid keeps the 0.1 spacing for any K (K = 5: {1.0 … 0.6}), not K/K
    five = candidate_ratios(3, steps=5, candidates=5, grid="uniform")
    assert five == [1.0, 0.9, 0.8, 0.7, 0.6]
    assert candidate_ratios(1, steps=5, candidates=1, grid="uniform") == [1.0]
    with pytest.raises(ValueError, match="at most 10"):
        candidate_ratios(1, steps=5, candidates=11, grid="uniform")
    # the narrowing grid is K/K … 1/K scaled (K = 4 at step 2 of 2: half of it)
    assert candidate_ratios(2, steps=2, candidates=4, grid="narrowing") == (
        pytest.approx([0.5, 0.375, 0.25, 0.125])
    )
    ms = MultiStepSeparator(sign_separator)
    assert (ms.steps, ms.candidates) == (DEFAULT_STEPS, DEFAULT_CANDIDATES) == (20, 10)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(steps=-1),
        dict(candidates=0),
        dict(grid="random"),
        dict(ratios=[0.5, 1.5]),
        dict(ratios=[0.5], candidates=3),
        dict(candidate_batch=0),
        dict(metric="SNR"),
    ],
)
def test_invalid_configuration_raises(kwargs):
    with pytest.raises(ValueError):
        MultiStepSeparator(sign_separator, **kwargs)


# ------------------------------------------------------------------------- properties
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize(
    "grid,metric,per_channel",
    [
        ("uniform", "snr", True),
        ("narrowing", "si_sdr", True),
        ("uniform", "snr", False),
    ],
)
def test_optimised_metric_never_decreases(seed, grid, metric, per_channel):
    model = TinySeparator(n_src=3, n_chan=2, seed=seed).eval()
    mix, ref = random_problem(seed)
    ms = MultiStepSeparator(
        model, steps=4, candidates=4, grid=grid, metric=metric, per_channel=per_channel
    )
    est, info = ms.separate(mix, ref)
    trace = info["trace"]  # [T + 1, B, N, C']
    assert trace.shape == (5, 2, 3, 2 if per_channel else 1)
    assert bool((trace[1:] >= trace[:-1]).all())
    # the trace is the metric of the estimates it describes
    final = get_metric(metric)(est, ref, mix)
    if not per_channel:
        final = final.mean(dim=-1, keepdim=True)
    torch.testing.assert_close(final, trace[-1], rtol=0, atol=1e-4)
    # random models are bad separators: the search must find something better
    assert float(trace[-1].mean()) > float(trace[0].mean())
    assert info["mode"] == "oracle" and "oracle" in info["label"]


def test_perfect_separator_stays_perfect():
    ref = sign_sources(batch=2, n_chan=2, length=300, seed=0)
    mix = ref.sum(dim=1)
    for grid in ("uniform", "narrowing"):
        est, info = MultiStepSeparator(sign_separator, steps=5, grid=grid).separate(
            mix, ref
        )
        assert torch.equal(est, ref)
        assert bool((info["trace"] > 100).all())  # dB: exact up to the eps floor
        assert bool(torch.isnan(info["chosen_ratio"]).all())  # ties keep y_{t-1}


def test_one_candidate_at_ratio_one_is_one_step():
    model = TinySeparator(n_src=2, n_chan=2, seed=5).eval()
    mix, ref = random_problem(5, n_src=2)
    with torch.no_grad():
        one_step = model(mix)
    est, info = MultiStepSeparator(model, steps=6, candidates=1).separate(mix, ref)
    assert info["candidate_ratios"] == [[1.0]] * 6
    assert torch.equal(est, one_step)
    assert info["forward_passes"] == 2  # y0 only: r = 1 reuses it
    est, info = MultiStepSeparator(
        model, steps=6, ratios=[1.0], reuse_mixture_pass=False, skip_converged=False
    ).separate(mix, ref)
    torch.testing.assert_close(est, one_step, rtol=1e-5, atol=1e-6)
    assert info["passes_per_item"] == 1 + 6 * 1 * 2  # 1 + T·K·N


@pytest.mark.parametrize("grid", ["uniform", "narrowing"])
def test_batched_candidates_equal_unbatched_loop(grid):
    model = TinySeparator(n_src=3, n_chan=2, seed=7).double().eval()
    mix, ref = random_problem(7, dtype=torch.float64)
    runs = {}
    for batch in (None, 3, 1):
        ms = MultiStepSeparator(
            model,
            steps=3,
            candidates=5,
            grid=grid,
            candidate_batch=batch,
            skip_converged=False,
        )
        runs[batch] = ms.separate(mix, ref)
    est, info = runs[None]
    for batch in (3, 1):
        other, other_info = runs[batch]
        torch.testing.assert_close(other, est, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(
            other_info["chosen_ratio"], info["chosen_ratio"], equal_nan=True
        )
        assert other_info["forward_passes"] == info["forward_passes"]
    # 1 call for y0, then per step one call for all candidates that need a pass
    runs_per_step = [
        sum(r != 1.0 for r in rs) for rs in info["candidate_ratios"]
    ]  # uniform: 4 each; narrowing: 4, then 5
    assert info["separator_calls"] == 1 + sum(n > 0 for n in runs_per_step)
    assert runs[1][1]["separator_calls"] == 1 + sum(runs_per_step)


def test_forward_pass_accounting():
    model = TinySeparator(n_src=3, n_chan=1, seed=1).eval()
    mix, ref = random_problem(1, batch=2, n_chan=1)
    t, k, n, b = 3, 4, 3, 2
    full = dict(steps=t, candidates=k, skip_converged=False)
    _, info = MultiStepSeparator(model, **full).separate(mix, ref)
    assert info["forward_passes"] == b * (1 + t * (k - 1) * n)
    _, info = MultiStepSeparator(model, reuse_mixture_pass=False, **full).separate(
        mix, ref
    )
    assert info["forward_passes"] == b * (1 + t * k * n)
    # the narrowing grid changes the weights every step: nothing is ever skipped
    _, info = MultiStepSeparator(
        model, steps=t, candidates=k, grid="narrowing"
    ).separate(mix, ref)
    assert info["forward_passes"] == b * (1 + (k - 1) * n + (t - 1) * k * n)
    assert info["seconds"] > 0


# ------------------------------------------------------------------------- metrics
def test_oracle_metric_needs_reference_and_is_labelled():
    model = TinySeparator(n_src=2, n_chan=2, seed=0).eval()
    mix, ref = random_problem(0, n_src=2)
    ms = MultiStepSeparator(model, steps=1, metric="si_sdr")
    assert ms.mode == "oracle" and ms.label.startswith("multi-step oracle si_sdr")
    with pytest.raises(ValueError, match="oracle"):
        ms.separate(mix)
    with pytest.raises(ValueError, match="shape"):
        ms.separate(mix, ref[:, :1])


def test_metric_registry_guards():
    assert {"snr", "si_sdr"} <= set(available_metrics())
    assert (
        get_metric("snr").requires_reference and get_metric("snr").label == "oracle snr"
    )
    fn = lambda est, ref, mix: -est.pow(2).mean(-1)  # noqa: E731
    with pytest.raises(ValueError, match="lower case"):
        register_metric("Energy", fn)
    with pytest.raises(ValueError, match="already registered"):
        register_metric("snr", fn)
    with pytest.raises(ValueError, match="built in"):
        unregister_metric("snr")
    with pytest.raises(TypeError):
        register_metric("not_callable_metric", 3)
    with pytest.raises(ValueError, match="unknown metric"):
        get_metric("no_such_metric")
    register_metric("bad_shape_metric", lambda est, ref, mix: est.mean())
    try:
        ms = MultiStepSeparator(sign_separator, steps=1, metric="bad_shape_metric")
        with pytest.raises(ValueError, match="must return"):
            ms.separate(torch.randn(1, 2, 50))
    finally:
        unregister_metric("bad_shape_metric")
    assert "bad_shape_metric" not in available_metrics()


def test_user_nonintrusive_metric_runs_blind():
    # a non-intrusive "quality predictor": prefer estimates whose per-source sum stays
    # close to the mixture, scored per item and source ([B, N]: shared by channels)
    def consistency(est, ref, mix):
        assert ref is None  # never sees the references
        err = (est.sum(dim=1, keepdim=True) - mix[:, None]).pow(2).mean(dim=(2, 3))
        return (-err).expand(-1, est.shape[1]) - 0.01 * est.pow(2).mean(dim=(2, 3))

    register_metric("test_consistency", consistency)
    try:
        model = TinySeparator(n_src=2, n_chan=2, seed=3).eval()
        mix, ref = random_problem(3, n_src=2)
        ms = MultiStepSeparator(model, steps=3, candidates=3, metric="test_consistency")
        assert ms.mode == "blind" and "oracle" not in ms.label
        est, info = ms.separate(mix)  # no references anywhere
        trace = info["trace"]
        assert trace.shape == (
            4,
            2,
            2,
            1,
        )  # [B, N] metric: one choice for both channels
        assert bool((trace[1:] >= trace[:-1]).all())
        chosen = info["chosen_ratio"]
        assert chosen.shape == (3, 2, 2, 1)
    finally:
        unregister_metric("test_consistency")


# ------------------------------------------------------------------------- schedule
def _schedule() -> RatioSchedule:
    return RatioSchedule(
        ratios=[[0.9, 1.0, None], [0.1 * 3, None, 0.7]],
        metric="snr",
        oracle=True,
        sources=["vocals", "bass", "drums"],
        validation_scores=[[1.0, 2.0, 3.0], [1.5, 2.5, 3.0], [1.7, 2.5, 3.25]],
        search={"grid": "uniform", "candidates": 10, "per_source": True},
    )


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_schedule_file_round_trips(tmp_path, suffix):
    schedule = _schedule()
    path = schedule.save(tmp_path / f"schedule{suffix}")
    loaded = RatioSchedule.load(path)
    assert loaded == schedule
    assert loaded.ratios[1][0] == 0.1 * 3  # floats survive exactly
    assert "deployable" in loaded.label and "oracle snr" in loaded.label


@pytest.mark.parametrize(
    "change",
    [
        dict(ratios=[[0.5, 1.5, None], [0.2, 0.3, 0.4]]),
        dict(ratios=[[0.5, 0.5], [0.2, 0.3, 0.4]]),
        dict(sources=["vocals"]),
        dict(validation_scores=[[1.0, 2.0, 3.0]]),
    ],
)
def test_invalid_schedule_raises(change):
    data = {**_schedule().to_dict(), **change}
    with pytest.raises(ValueError):
        RatioSchedule.from_dict(data)
    with pytest.raises(ValueError, match="format"):
        RatioSchedule.from_dict({**_schedule().to_dict(), "format": "other"})


def test_calibrated_schedule_applies_without_references(tmp_path):
    model = TinySeparator(n_src=3, n_chan=2, seed=11).eval()
    validation = [random_problem(s, batch=2) for s in (20, 21)]
    schedule = calibrate_schedule(
        model, validation, steps=4, candidates=5, sources=["a", "b", "c"]
    )
    assert schedule.steps == 4 and schedule.num_sources == 3 and schedule.oracle
    scores = torch.tensor(schedule.validation_scores)  # [T + 1, N]
    assert bool((scores[1:] >= scores[:-1]).all())
    assert float(scores[-1].mean()) > float(scores[0].mean())

    path = schedule.save(tmp_path / "schedule.yaml")
    ms = MultiStepSeparator(model, schedule=path)
    assert ms.mode == "schedule" and "deployable" in ms.label

    # on the validation items (references only to trace) it reproduces its own numbers
    traced = []
    for mix, ref in validation:
        _, info = ms.separate(mix, ref)
        traced.append(info["trace"])  # [T + 1, b, N, C]
    mean = torch.cat(traced, dim=1).mean(dim=(1, 3))
    torch.testing.assert_close(mean, scores.float(), rtol=1e-4, atol=1e-4)

    # a new song: no references, no metric, one pass per scheduled source and step
    mix, _ = random_problem(99, batch=1)
    est, info = ms.separate(mix)
    assert est.shape == (1, 3, 2, 400) and info["trace"] is None
    scheduled = sum(r is not None and r != 1.0 for row in schedule.ratios for r in row)
    assert info["forward_passes"] == 1 + scheduled
    with pytest.raises(ValueError, match="steps"):
        MultiStepSeparator(model, schedule=schedule, steps=2)


def test_shared_schedule_uses_one_ratio_for_all_sources():
    model = TinySeparator(n_src=2, n_chan=1, seed=4).eval()
    schedule = calibrate_schedule(
        model,
        [random_problem(4, n_src=2, n_chan=1)],
        steps=3,
        candidates=4,
        per_source=False,
    )
    for row in schedule.ratios:
        assert len(set(row)) == 1


# ------------------------------------------------------------------------- chunking
def test_composes_with_chunked_inference():
    length, chunk, hop = 1000, 400, 200
    ref = sign_sources(batch=2, n_chan=2, length=length, seed=1)
    mix = ref.sum(dim=1)
    ms = MultiStepSeparator(sign_separator, steps=3, candidates=3, skip_converged=False)
    out = apply_chunked(
        ms, mix, chunk_size=chunk, hop_size=hop, aligned=(ref,), batch_chunks=2
    )
    torch.testing.assert_close(out, ref)
    n_chunks = len(chunk_starts(length, chunk, hop))
    summary = ms.summary()
    assert summary["calls"] == math.ceil(n_chunks / 2)
    assert summary["forward_passes"] == n_chunks * 2 * (1 + 3 * 2 * 2)

    # a real (random) separator: the references reach every chunk's selection
    model = TinySeparator(n_src=2, n_chan=2, seed=2).eval()
    mix, ref = random_problem(2, n_src=2, length=length)
    ms = MultiStepSeparator(model, steps=2, candidates=3)
    out = apply_chunked(ms, mix, chunk_size=chunk, hop_size=hop, aligned=(ref,))
    assert out.shape == ref.shape
    assert len(ms.records) == n_chunks
    for start, record in zip(chunk_starts(length, chunk, hop), ms.records):
        trace = record["trace"]
        assert bool((trace[1:] >= trace[:-1]).all())
        _, direct = MultiStepSeparator(model, steps=2, candidates=3).separate(
            mix[..., start : start + chunk], ref[..., start : start + chunk]
        )
        torch.testing.assert_close(trace, direct["trace"])
    mean_trace = ms.summary()["mean_trace"]
    assert mean_trace.shape == (3,) and bool((mean_trace[1:] >= mean_trace[:-1]).all())

    # the deployable schedule composes the same way, without references
    schedule = RatioSchedule(
        ratios=[[0.5, None], [0.8, 0.6]], metric="snr", oracle=True
    )
    fixed = MultiStepSeparator(model, schedule=schedule)
    out = apply_chunked(fixed, mix, chunk_size=chunk, hop_size=hop)
    assert out.shape == ref.shape and torch.isfinite(out).all()


# ------------------------------------------------------------------------- ESPnet
def _build(args):
    return EnhancementTask.build_model(
        EnhancementTask.get_parser().parse_args(args)
    ).eval()


STOCK = {
    "conv_tasnet": [
        "--encoder", "conv", "--encoder_conf", '{"channel": 16, "kernel_size": 8, "stride": 4}',
        "--decoder", "conv", "--decoder_conf", '{"channel": 16, "kernel_size": 8, "stride": 4}',
        "--separator", "tcn", "--separator_conf",
        '{"num_spk": 2, "layer": 2, "stack": 1, "bottleneck_dim": 8, "hidden_dim": 16, '
        '"kernel": 3}',
    ],
    "bsrnn": [
        "--encoder", "stft", "--encoder_conf", '{"n_fft": 64, "hop_length": 16}',
        "--decoder", "stft", "--decoder_conf", '{"n_fft": 64, "hop_length": 16}',
        "--separator", "bsrnn", "--separator_conf",
        '{"num_spk": 2, "num_channels": 2, "num_layers": 1, "target_fs": 8000, '
        '"subbands": [[0, 7], [8, 15], [16, 23], [24, 32]]}',
    ],
    "tfgridnet": [
        "--encoder", "same", "--decoder", "same", "--separator", "tfgridnet",
        "--separator_conf",
        '{"n_srcs": 2, "n_fft": 32, "stride": 16, "n_layers": 1, "lstm_hidden_units": 8, '
        '"attn_n_head": 1, "attn_approx_qk_dim": 8, "emb_dim": 8, "emb_ks": 2, '
        '"emb_hs": 1}',
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(STOCK))
def test_stock_espnet_separators(name):
    torch.manual_seed(0)
    model = _build(STOCK[name])
    fn = espnet_model_separate_fn(model)
    mix, ref = random_problem(0, batch=2, n_src=2, n_chan=2, length=800)
    est = fn(mix)
    assert est.shape == (2, 2, 2, 800)
    # stereo of a mono model: every channel separated as its own item
    lengths = torch.full((2,), 800)
    with torch.no_grad():
        for c in range(2):
            direct = model.forward_enhance(mix[:, c], lengths, {}, fs=None)[0]
            torch.testing.assert_close(
                est[:, :, c], torch.stack(direct, 1), atol=1e-5, rtol=1e-4
            )
    out, info = MultiStepSeparator(fn, steps=2, candidates=3).separate(mix, ref)
    assert out.shape == est.shape
    assert bool((info["trace"][1:] >= info["trace"][:-1]).all())
    one, _ = MultiStepSeparator(fn, steps=2, candidates=1).separate(mix, ref)
    assert torch.equal(one, est)


def test_espnet_adapter_applies_variance_normalisation():
    # BSRNN (unlike Conv-TasNet and TF-GridNet here) is not scale-equivariant by itself
    args = STOCK["bsrnn"] + ["--model_conf", '{"normalize_variance": true}']
    mix, _ = random_problem(1, batch=1, n_src=2, n_chan=1, length=800)
    torch.manual_seed(0)
    plain = espnet_model_separate_fn(_build(STOCK["bsrnn"]))
    assert not torch.allclose(plain(3.0 * mix), 3.0 * plain(mix), rtol=1e-3, atol=1e-3)
    torch.manual_seed(0)
    fn = espnet_model_separate_fn(_build(args))
    # the network sees x / std(x) and its output is scaled back, as in SeparateSpeech
    torch.testing.assert_close(fn(3.0 * mix), 3.0 * fn(mix), rtol=1e-4, atol=1e-5)


def test_native_stereo_separator_of_the_plugin():
    from espnet2_ext.tasks.enh import EnhancementTask as PluginTask

    torch.manual_seed(0)
    args = PluginTask.get_parser().parse_args(
        [
            "--encoder", "stft", "--encoder_conf", '{"n_fft": 64, "hop_length": 16}',
            "--decoder", "stft", "--decoder_conf", '{"n_fft": 64, "hop_length": 16}',
            "--separator", "bs_locoformer", "--separator_conf",
            '{"num_spk": 2, "num_channels": 2, "bands": [8, 8, 8, 9], "n_layers": 1, '
            '"emb_dim": 8, "ffn_hidden_dim": 8, "n_heads": 2, "norm_groups": 2}',
        ]
    )  # fmt: skip
    model = PluginTask.build_model(args).eval()
    mix, ref = random_problem(0, batch=2, n_src=2, n_chan=2, length=800)
    fn = espnet_model_separate_fn(model)  # auto: native [b, L, C] layout
    with torch.no_grad():
        direct = model.forward_enhance(
            mix.transpose(1, 2), torch.full((2,), 800), {}, fs=None
        )[0]
    torch.testing.assert_close(fn(mix), torch.stack(direct, 1).transpose(2, 3))
    # folding would separate each channel as a mono item: the model refuses mono input
    with pytest.raises(ValueError):
        espnet_model_separate_fn(model, channel_mode="fold")(mix)
    with pytest.raises(ValueError, match="channel_mode"):
        espnet_model_separate_fn(model, channel_mode="stereo")
    _, info = MultiStepSeparator(fn, steps=2, candidates=2).separate(mix, ref)
    assert bool((info["trace"][1:] >= info["trace"][:-1]).all())


# ------------------------------------------------------- mixture consistency (joint)
def test_mixture_consistency_is_reference_free_and_prefers_a_consistent_estimate():
    metric = get_metric("mixture_consistency")
    assert not metric.requires_reference and metric.joint and metric.builtin
    assert metric.label == "mixture_consistency"  # no "oracle" in its results
    gen = torch.Generator().manual_seed(0)
    sources = torch.randn(2, 3, 2, 300, generator=gen)  # [B, N, C, L]
    mix = sources.sum(dim=1)
    # planted: the current estimate lost half of source 2
    current = sources.clone()
    current[:, 2] *= 0.5
    consistent = current.clone()
    consistent[:, 2] = sources[:, 2]  # the candidate that restores it
    worse = current.clone()
    worse[:, 2] = 0.25 * sources[:, 2]
    s_good = metric(consistent, None, mix, current)
    s_same = metric(current, None, mix, current)
    s_bad = metric(worse, None, mix, current)
    assert bool((s_good[:, 2] > s_same[:, 2]).all())
    assert bool((s_same[:, 2] > s_bad[:, 2]).all())
    assert bool((s_good[:, 2] > 60).all())  # explains the mixture (float32 rounding)
    # a source's score is its candidate with the others' current estimates
    torch.testing.assert_close(s_good[:, 0], s_same[:, 0])
    # without a context the estimate is scored as a whole set: one score for all
    whole = metric(current, None, mix)
    torch.testing.assert_close(whole, whole[:, :1].expand_as(whole))
    # reference-free: a reference changes nothing (it is never passed on)
    junk = torch.randn(sources.shape, generator=gen)
    torch.testing.assert_close(metric(worse, junk, mix, current), s_bad)
    with pytest.raises(ValueError, match="current"):
        metric(worse, None, mix, current[:, :2])


def test_joint_search_updates_sources_in_turn():
    """One step of the blind search equals a hand-written Gauss-Seidel selection."""
    model = TinySeparator(n_src=3, n_chan=2, seed=8).double().eval()
    mix, ref = random_problem(8, dtype=torch.float64)
    ratios = [1.0, 0.9, 0.8, 0.7]
    est, info = MultiStepSeparator(
        model, steps=1, ratios=ratios, metric="mixture_consistency"
    ).separate(mix)
    assert info["mode"] == "blind" and "oracle" not in info["label"]

    metric = get_metric("mixture_consistency")
    with torch.no_grad():
        y0 = model(mix)
        candidates = []
        for r in ratios:  # per-source blends: output n of f(r x + (1 - r) y0_n)
            blends = torch.lerp(y0, mix[:, None], r)  # [B, N, C, L]
            outs = [model(blends[:, n])[:, n] for n in range(3)]
            candidates.append(torch.stack(outs, dim=1))
    best = y0.clone()
    for n in range(3):  # source n with sources < n already updated
        keep = metric(best, None, mix, best)[:, n]
        for cand in candidates:
            score = metric(cand, None, mix, best)[:, n]
            better = score > keep
            best[:, n] = torch.where(better[..., None], cand[:, n], best[:, n])
            keep = torch.where(better, score, keep)
    torch.testing.assert_close(est, best, rtol=1e-9, atol=1e-10)
    assert not torch.equal(est, y0)  # the toy does change something


@pytest.mark.parametrize("seed", [0, 1])
def test_joint_search_never_decreases_consistency_and_ignores_references(seed):
    model = TinySeparator(n_src=3, n_chan=2, seed=seed).double().eval()
    mix, ref = random_problem(seed, dtype=torch.float64)
    ms = MultiStepSeparator(
        model,
        steps=4,
        candidates=5,
        metric="mixture_consistency",
        trace_metrics=["snr"],
    )
    est, info = ms.separate(mix)
    trace = info["trace"]  # the whole set's consistency after each step
    assert bool((trace[1:] >= trace[:-1] - 1e-9).all())
    assert info["traces"] == {}  # no references: nothing to measure
    est_ref, info_ref = ms.separate(mix, ref)  # references only measure
    assert torch.equal(est_ref, est)
    assert info_ref["traces"]["snr"].shape == (5, 2, 3, 2)


# ------------------------------------------------------------ converged sources
@pytest.mark.parametrize("metric", ["snr", "mixture_consistency"])
@pytest.mark.parametrize("seed", [0, 3])
def test_skipping_converged_sources_gives_the_full_search(metric, seed):
    model = TinySeparator(n_src=3, n_chan=2, seed=seed).double().eval()
    mix, ref = random_problem(seed, batch=1, dtype=torch.float64)
    runs = {
        skip: MultiStepSeparator(
            model, steps=8, candidates=4, metric=metric, skip_converged=skip
        ).separate(mix, ref)
        for skip in (False, True)
    }
    (full, full_info), (fast, fast_info) = runs[False], runs[True]
    torch.testing.assert_close(fast, full, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(
        fast_info["chosen_ratio"], full_info["chosen_ratio"], equal_nan=True
    )
    torch.testing.assert_close(fast_info["trace"], full_info["trace"])
    assert full_info["forward_passes"] == 1 + 8 * 3 * 3
    # the passes skipped are exactly those of sources (joint: items) that had kept
    kept = torch.isnan(full_info["chosen_ratio"][:, 0]).all(dim=-1)  # [T, N]
    if metric == "snr":
        skipped = int(kept[:-1].sum()) * 3
    else:
        skipped = int(kept[:-1].all(dim=1).sum()) * 3 * 3
    assert fast_info["forward_passes"] == full_info["forward_passes"] - skipped


def test_converged_search_stops_recomputing():
    # the sign separator is exact: after step 1 every source keeps, so steps 2..T
    # cost nothing (the full search would run (K - 1) N passes per step)
    ref = sign_sources(batch=1, n_chan=2, length=200, seed=4)
    est, info = MultiStepSeparator(sign_separator, steps=6, candidates=3).separate(
        ref.sum(dim=1), ref
    )
    torch.testing.assert_close(est, ref)
    assert info["forward_passes"] == 1 + (3 - 1) * 2


def test_trace_metrics_measure_every_mode():
    model = TinySeparator(n_src=2, n_chan=2, seed=6).eval()
    mix, ref = random_problem(6, n_src=2)
    ms = MultiStepSeparator(
        model, steps=2, candidates=3, trace_metrics=["snr", "si_sdr"]
    )
    _, info = ms(mix, ref), ms.records[-1]
    assert set(info["traces"]) == {"snr", "si_sdr"}
    torch.testing.assert_close(info["traces"]["snr"], info["trace"])  # selection = snr
    summary = ms.summary()
    assert summary["mean_traces_per_source"]["si_sdr"].shape == (3, 2)
    schedule = RatioSchedule(ratios=[[0.5, None]], metric="snr", oracle=True)
    ms = MultiStepSeparator(model, schedule=schedule, trace_metrics=["si_sdr"])
    _, info = ms.separate(mix, ref)
    assert info["traces"]["si_sdr"].shape == (2, 2, 2, 2)
    with pytest.raises(ValueError, match="joint"):
        MultiStepSeparator(model, trace_metrics=["mixture_consistency"])


# --------------------------------------------------------- calibration, constant form
def test_constant_schedule_holds_one_weight_and_replays_its_numbers():
    from espnet2_ext.enh.inference.multistep.calibration import trace_schedule

    model = TinySeparator(n_src=3, n_chan=2, seed=12).eval()
    validation = [random_problem(s, batch=2) for s in (30, 31)]
    schedule = calibrate_schedule(
        model, validation, steps=5, candidates=4, form="constant"
    )
    assert schedule.search["form"] == "constant"
    held = schedule.search["held_steps"]
    for n in range(3):  # weight r_n at steps 1..t_n, keep afterwards
        column = [row[n] for row in schedule.ratios]
        assert column[held[n] :] == [None] * (5 - held[n])
        assert len(set(column[: held[n]])) <= 1
    scores = torch.tensor(schedule.validation_scores)  # [T + 1, N]
    assert bool((scores[-1] >= scores[0]).all())  # keep is one of the choices
    replay = torch.tensor(trace_schedule(model, schedule, validation, ["snr"])["snr"])
    torch.testing.assert_close(replay, scores, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="narrowing"):
        calibrate_schedule(
            model, validation, steps=2, grid="narrowing", form="constant"
        )


def test_greedy_calibration_skips_converged_sources():
    model = TinySeparator(n_src=3, n_chan=2, seed=13).eval()
    validation = [random_problem(s, batch=1) for s in (40, 41)]
    schedules = {}
    for skip in (False, True):
        counter = {"rows": 0}

        def counted(x, counter=counter):
            counter["rows"] += x.shape[0]
            return model(x)

        schedules[skip] = (
            calibrate_schedule(
                counted, validation, steps=6, candidates=4, skip_converged=skip
            ),
            counter["rows"],
        )
    (full, full_rows), (fast, fast_rows) = schedules[False], schedules[True]
    assert fast.ratios == full.ratios
    torch.testing.assert_close(
        torch.tensor(fast.validation_scores), torch.tensor(full.validation_scores)
    )
    kept = [[r is None for r in row] for row in full.ratios]
    skipped = 2 * 3 * sum(sum(row) for row in kept[:-1])  # items × blends × kept
    assert fast_rows == full_rows - skipped


def test_probe_scores_every_candidate_of_step_one():
    model = TinySeparator(n_src=3, n_chan=2, seed=9).double().eval()
    mix, ref = random_problem(9, dtype=torch.float64)
    ms = MultiStepSeparator(
        model, steps=3, candidates=4, probe_metrics=["snr", "mixture_consistency"]
    )
    _, info = ms.separate(mix, ref)
    probe = info["probe"]
    assert probe["ratios"] == [1.0, 0.9, 0.8, 0.7]
    cand, keep = probe["candidates"]["snr"], probe["keep"]["snr"]
    assert cand.shape == (4, 2, 3, 2) and keep.shape == (2, 3, 2)
    torch.testing.assert_close(cand[0], keep)  # r = 1 is the one-step estimate
    # the oracle's step-1 choice is the best of "keep" and the probed candidates
    best = torch.maximum(keep, cand.max(dim=0).values)
    torch.testing.assert_close(info["trace"][1], best)
    # without references only the reference-free probe is scored
    blind = MultiStepSeparator(
        model, steps=1, candidates=4, metric="mixture_consistency",
        probe_metrics=["snr", "mixture_consistency"],
    )  # fmt: skip
    _, info = blind.separate(mix)
    assert set(info["probe"]["candidates"]) == {"mixture_consistency"}
    # the one-step estimate scored with itself as the other sources
    metric = get_metric("mixture_consistency")
    with torch.no_grad():
        y0 = model(mix)
    torch.testing.assert_close(
        info["probe"]["keep"]["mixture_consistency"], metric(y0, None, mix, y0)
    )
