#!/usr/bin/env python3
"""Separate with a trained model: ESPnet's ``enh_inference`` with the plugin's classes.

Accepts every option of ``python -m espnet2.bin.enh_inference``. Two things differ, both
because ESPnet's defaults are wrong for music:

* ``--segment_size``/``--hop_size`` (seconds) run fixed-order overlap-add with a
  cross-fade window (:func:`espnet2_ext.enh.inference.chunking.apply_chunked`). ESPnet's
  own segment mode re-orders every segment by PIT and averages overlaps without a window,
  which swaps stems between segments of a song.
* outputs are never peak-normalised unless ``--normalize_output_wav true`` is given.

Two inference methods of the plugin run through the same command:

* ``--multistep_enable true`` refines a trained separator training-free (seeds/000,
  :mod:`espnet2_ext.enh.inference.multistep`);
* ``--diffusion_prior_train_config``/``--diffusion_prior_model_file`` (once per source)
  separate with diffusion source priors instead of a trained separator (seeds/001,
  :mod:`espnet2_ext.diffusion.sampler`; the same as
  :mod:`espnet2_ext.bin.diffusion_separate`).

Outputs are written like ESPnet's: ``<output_dir>/wavs/<n>/<uid>.wav`` and
``<output_dir>/spk<n>.scp``; each file is written under a temporary name and renamed when
complete, so an interrupted run leaves no truncated audio behind.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import yaml
from espnet2.bin import enh_inference as espnet_enh_inference
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed
from espnet2.legacy.utils.cli_utils import get_commandline_args

from espnet2_ext.enh.inference.chunking import apply_chunked
from espnet2_ext.enh.inference.metrics_registry import get_metric
from espnet2_ext.enh.inference.espnet_adapter import espnet_model_separate_fn
from espnet2_ext.enh.inference.multistep import MultiStepSeparator
from espnet2_ext.tasks.enh import EnhancementTask
from espnet2_ext.zoo.loading import load_model
from espnet2_ext.utils.audio_io import (
    check_sound_scps,
    write_audio_atomic,
    write_scp_atomic,
)
from espnet2_ext.utils.atomic import atomic_write_text, json_default

_DTYPES = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64}


class MusicSeparator:
    """Separate mixtures with a trained enh model (the Python API of this entry point).

    Args:
        train_config: ``config.yaml`` written by training.
        model_file: the ``.pth`` weights.
        device: ``"cpu"`` or ``"cuda"``.
        dtype: ``"float32"`` (default), ``"float16"`` or ``"float64"``.
        segment_size: chunk length in seconds for whole-song inference (``None``: the whole
            input at once).
        hop_size: hop between chunks in seconds (default: half the chunk).
        window: cross-fade window of the overlap-add.
        show_progressbar: progress bar over the chunks.
        normalize_output_wav: peak-normalise every output (off: wrong for music stems).
        multistep: keyword arguments of
            :class:`~espnet2_ext.enh.inference.multistep.MultiStepSeparator` (``steps``,
            ``candidates``, ``grid``, ``metric``, ``schedule``, ``candidate_batch`` …) to
            refine every chunk with training-free multi-step inference; ``None``: one
            step. With a metric that needs references (``snr``, ``si_sdr``) the results
            are **oracle** results: pass ``speech_ref`` to :meth:`__call__`.
    """

    def __init__(
        self,
        train_config: Union[str, Path],
        model_file: Optional[Union[str, Path]] = None,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        segment_size: Optional[float] = None,
        hop_size: Optional[float] = None,
        window: str = "hann",
        show_progressbar: bool = False,
        normalize_output_wav: bool = False,
        multistep: Optional[Dict] = None,
    ):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        model, args = load_model(train_config, model_file, device)
        self.model = model.to(dtype=_DTYPES[dtype])
        self.train_args = args
        self.device = device
        self.dtype = _DTYPES[dtype]
        self.fs = int(getattr(args, "sample_rate", None) or 0) or None
        if hop_size is not None and segment_size is None:
            raise ValueError("--hop_size needs --segment_size")
        if segment_size is not None and segment_size <= 0:
            raise ValueError(f"segment_size must be > 0 seconds, got {segment_size}")
        self.segment_size = segment_size
        self.hop_size = hop_size if hop_size is not None else (
            segment_size / 2 if segment_size is not None else None
        )
        self.window = window
        self.show_progressbar = show_progressbar
        self.normalize_output_wav = normalize_output_wav
        self.multistep = dict(multistep) if multistep is not None else None
        if self.multistep is not None:
            MultiStepSeparator(lambda x: x, **self.multistep)  # validate the options now
        #: summary of the last multi-step run (label, forward passes, metric trace)
        self.last_multistep_summary: Optional[Dict] = None

    @property
    def multistep_needs_reference(self) -> bool:
        if self.multistep is None or self.multistep.get("schedule") is not None:
            return False
        return get_metric(self.multistep.get("metric", "snr")).requires_reference
    @property
    def num_spk(self) -> int:
        return self.model.num_spk

    @property
    def num_channels(self) -> Optional[int]:
        """Audio channels the model takes natively (``None``: not declared).

        Only this plugin's separators declare it: in ESPnet's (e.g. BSRNN)
        ``num_channels`` is a hidden width, not a count of audio channels.
        """
        separator = self.model.separator
        if type(separator).__module__.startswith("espnet2_ext."):
            return getattr(separator, "num_channels", None)
        return None

    def _check_input(self, mix: torch.Tensor, fs: Optional[int]) -> None:
        if self.fs is not None and fs is not None and int(fs) != self.fs:
            raise ValueError(
                f"the input is sampled at {fs} Hz but the model was trained at "
                f"{self.fs} Hz; resample the input first (e.g. sox in.wav -r {self.fs} "
                "out.wav)"
            )
        n_fft = getattr(self.model.encoder, "n_fft", None)
        if n_fft is not None and mix.shape[1] <= n_fft // 2:
            # ESPnet's STFT pads by n_fft // 2 on each side (reflection), which needs
            # more samples than that; torch would fail with a bare padding error.
            raise ValueError(
                f"the input has {mix.shape[1]} samples, too short for the model's STFT "
                f"(n_fft {n_fft}): give at least {n_fft // 2 + 1} samples "
                f"({(n_fft // 2 + 1) / (self.fs or 44100) * 1000:.0f} ms)"
            )
        expected = self.num_channels
        got = 1 if mix.dim() == 2 else mix.shape[-1]
        if expected is not None and got != expected:
            raise ValueError(
                f"the model separates {expected}-channel audio but the input has {got} "
                f"channel(s); convert it first (e.g. sox in.wav -c {expected} out.wav)"
            )

    def separate_tensor(
        self, mix: torch.Tensor, reference: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """[B, C, T] (and references [B, N, C, T] for oracle multi-step) → [B, N, C, T].

        Sources come in the model's fixed order.
        """
        # The same adapter as multi-step inference and its calibration: ESPnet's
        # variance normalisation when the model was trained with it, native stereo for
        # our separators, channels folded into the batch for stock mono separators.
        run = espnet_model_separate_fn(self.model)
        mix = mix.to(self.device, self.dtype)
        separate_fn, aligned = run, ()
        if self.multistep is not None:
            if self.multistep_needs_reference and reference is None:
                raise ValueError(
                    f"multi-step with the metric {self.multistep.get('metric', 'snr')!r} "
                    "is an oracle: it needs the reference stems (speech_ref1 …); give "
                    "them, or a schedule file for the deployable mode"
                )
            separate_fn = MultiStepSeparator(run, **self.multistep)
            if reference is not None and self.multistep_needs_reference:
                aligned = (reference.to(self.device, self.dtype),)
        if self.segment_size is None:
            out = separate_fn(mix, *aligned)
        else:
            fs = self.fs or 44100
            out = apply_chunked(
                separate_fn,
                mix,
                chunk_size=int(round(self.segment_size * fs)),
                hop_size=int(round(self.hop_size * fs)),
                window=self.window,
                aligned=aligned,
                progress=self.show_progressbar,
            )
        if self.multistep is not None:
            self.last_multistep_summary = separate_fn.summary()
        return out

    @torch.no_grad()
    def __call__(
        self,
        speech_mix: Union[torch.Tensor, np.ndarray],
        fs: Optional[int] = None,
        speech_ref: Optional[Sequence[Union[torch.Tensor, np.ndarray]]] = None,
    ) -> List[np.ndarray]:
        """Separate ESPnet-layout mixtures.

        Args:
            speech_mix: [B, T] (mono) or [B, T, C] mixtures.
            fs: their sampling rate (checked against the model's).
            speech_ref: the N reference stems, each like ``speech_mix`` (only for
                oracle multi-step inference).

        Returns:
            ``num_spk`` arrays of shape [B, T] or [B, T, C], like the input.
        """
        mix = torch.as_tensor(speech_mix)
        if mix.dim() not in (2, 3):
            raise ValueError(f"speech_mix must be [B, T] or [B, T, C], got {tuple(mix.shape)}")
        self._check_input(mix, fs)
        x = mix.unsqueeze(1) if mix.dim() == 2 else mix.transpose(1, 2)  # [B, C, T]
        ref = None
        if speech_ref is not None:
            refs = [torch.as_tensor(r) for r in speech_ref]
            ref = torch.stack(
                [r.unsqueeze(1) if r.dim() == 2 else r.transpose(1, 2) for r in refs], 1
            )  # [B, N, C, T]
        est = self.separate_tensor(x, ref).float().cpu()  # [B, N, C, T]
        outs = []
        for n in range(est.shape[1]):
            e = est[:, n]
            e = e[:, 0] if mix.dim() == 2 else e.transpose(1, 2)
            if self.normalize_output_wav:
                peak = e.abs().flatten(1).amax(1).clamp_min(1e-8)
                e = e / peak.view(-1, *([1] * (e.dim() - 1))) * 0.9
            outs.append(e.numpy())
        return outs


def inference(
    output_dir: str,
    batch_size: int,
    dtype: str,
    fs: Optional[int],
    ngpu: int,
    seed: int,
    num_workers: int,
    log_level: Union[int, str],
    data_path_and_name_and_type: Sequence[Tuple[str, str, str]],
    key_file: Optional[str],
    train_config: Optional[str],
    model_file: Optional[str],
    model_tag: Optional[str],
    inference_config: Optional[str],
    allow_variable_data_keys: bool,
    segment_size: Optional[float],
    hop_size: Optional[float],
    normalize_segment_scale: bool,
    show_progressbar: bool,
    ref_channel: Optional[int],
    output_format: str,
    normalize_output_wav: bool,
    enh_s2t_task: bool,
    window: str = "hann",
    multistep_enable: bool = False,
    multistep_steps: Optional[int] = None,
    multistep_candidates: Optional[int] = None,
    multistep_grid: str = "uniform",
    multistep_metric: str = "snr",
    multistep_schedule: Optional[str] = None,
    multistep_candidate_batch: Optional[int] = None,
    diffusion_prior_train_config: Optional[Sequence[str]] = None,
    diffusion_prior_model_file: Optional[Sequence[str]] = None,
    diffusion_categories: Optional[Sequence[str]] = None,
    diffusion_categories_file: Optional[str] = None,
    diffusion_sampler_conf: Optional[dict] = None,
    diffusion_use_ema: bool = True,
    diffusion_cfg_scale: float = 1.0,
):
    logging.basicConfig(
        level=log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    if diffusion_prior_train_config or diffusion_prior_model_file:
        if train_config is not None or model_file is not None:
            raise ValueError(
                "give either a trained separator (--train_config/--model_file) or "
                "diffusion priors (--diffusion_prior_train_config/"
                "--diffusion_prior_model_file), not both"
            )
        if multistep_enable:
            raise ValueError(
                "--multistep_enable refines a trained separator; it does not apply to "
                "diffusion-prior separation"
            )
        if segment_size is not None:
            raise ValueError(
                "--segment_size does not apply to diffusion-prior separation: the "
                "sampler separates each mixture whole"
            )
        if batch_size != 1 or ngpu > 1:
            raise ValueError("diffusion-prior separation runs --batch_size 1, --ngpu 0/1")
        from espnet2_ext.separation.diffusion import separate_scp as diffusion_separate

        diffusion_separate(
            data_path_and_name_and_type,
            output_dir,
            prior_train_config=list(diffusion_prior_train_config or []),
            prior_model_file=list(diffusion_prior_model_file or []),
            categories=diffusion_categories,
            categories_file=diffusion_categories_file,
            sampler_conf=diffusion_sampler_conf,
            use_ema=diffusion_use_ema,
            cfg_scale=diffusion_cfg_scale,
            key_file=key_file,
            fs=fs,
            device="cuda" if ngpu >= 1 else "cpu",
            seed=seed,
            output_format=output_format,
            log_level=log_level,
        )
        return
    if train_config is None and model_file is None:
        raise ValueError(
            "nothing to separate with: give --train_config and --model_file of a "
            "trained separator, or diffusion priors with --diffusion_prior_train_config "
            "and --diffusion_prior_model_file (once per source)"
        )
    if batch_size != 1:
        raise ValueError("only --batch_size 1 is supported (songs differ in length)")
    if ngpu > 1:
        raise ValueError("only single-GPU inference is supported (--ngpu 0 or 1)")
    if enh_s2t_task:
        raise ValueError("--enh_s2t_task is not supported by espnet2_ext's inference")
    if model_tag is not None:
        raise ValueError(
            "--model_tag is not supported here; unpack the model and pass "
            "--train_config and --model_file"
        )
    if inference_config is not None:
        raise ValueError("--inference_config is not supported by espnet2_ext's inference")
    if ref_channel is not None:
        logging.warning("--ref_channel is ignored: all channels are separated")
    if segment_size is not None and normalize_segment_scale:
        logging.info(
            "--normalize_segment_scale does not apply: overlap-add keeps each chunk's "
            "scale and a fixed stem order"
        )
    set_all_random_seed(seed)
    device = "cuda" if ngpu >= 1 else "cpu"
    multistep = None
    if multistep_enable:
        multistep = dict(
            grid=multistep_grid,
            metric=multistep_metric,
            candidate_batch=multistep_candidate_batch,
        )
        if multistep_schedule is not None:
            multistep["schedule"] = multistep_schedule
        else:
            multistep.update(steps=multistep_steps, candidates=multistep_candidates)
    separator = MusicSeparator(
        train_config,
        model_file,
        device=device,
        dtype=dtype,
        segment_size=segment_size,
        hop_size=hop_size,
        window=window,
        show_progressbar=show_progressbar,
        normalize_output_wav=normalize_output_wav,
        multistep=multistep,
    )
    if separator.multistep_needs_reference:
        given = {name for _, name, _ in data_path_and_name_and_type}
        missing = [
            f"speech_ref{n}"
            for n in range(1, separator.num_spk + 1)
            if f"speech_ref{n}" not in given
        ]
        if missing:
            raise ValueError(
                f"--multistep_metric {multistep_metric} is an oracle metric: give the "
                "references with --data_path_and_name_and_type data/<set>/spk<n>.scp,"
                f"speech_ref<n>,sound (missing {missing}) and "
                "--allow_variable_data_keys true, or use --multistep_schedule"
            )
    loader = EnhancementTask.build_streaming_iterator(
        data_path_and_name_and_type,
        dtype=dtype,
        batch_size=1,
        key_file=key_file,
        num_workers=num_workers,
        preprocess_fn=None,
        collate_fn=EnhancementTask.build_collate_fn(separator.train_args, False),
        allow_variable_data_keys=allow_variable_data_keys,
        inference=True,
    )
    rate = fs or separator.fs
    check_sound_scps(
        [path for path, _, kind in data_path_and_name_and_type if kind == "sound"], rate
    )
    out = Path(output_dir).expanduser().resolve()
    scp_entries: Dict[int, List[Tuple[str, Path]]] = {
        n: [] for n in range(separator.num_spk)
    }
    import tqdm

    summaries = {}
    for keys, batch in tqdm.tqdm(loader, desc="separating", unit="utt"):
        mix = batch["speech_mix"]
        refs = None
        if separator.multistep_needs_reference:
            refs = [batch[f"speech_ref{n}"] for n in range(1, separator.num_spk + 1)]
        waves = separator(mix, fs=rate, speech_ref=refs)
        if separator.last_multistep_summary is not None:
            summaries[keys[0]] = separator.last_multistep_summary
        for n, w in enumerate(waves):
            path = out / "wavs" / str(n + 1) / f"{keys[0]}.{output_format}"
            write_audio_atomic(path, w[0], rate, output_format)
            scp_entries[n].append((keys[0], path))
    for n, entries in scp_entries.items():
        write_scp_atomic(out / f"spk{n + 1}.scp", entries)
    if summaries:
        text = json.dumps(summaries, indent=1, default=json_default)
        atomic_write_text(out / "multistep_summary.json", text)
        label = next(iter(summaries.values())).get("label")
        logging.info(f"multi-step inference: {label}")


def get_parser():
    parser = espnet_enh_inference.get_parser()
    parser.description = "Separation inference (espnet2_ext)"
    # ESPnet defaults --fs to 8000; here the rate defaults to the model's sample_rate.
    parser.set_defaults(fs=None)
    group = parser.add_argument_group("espnet2_ext overlap-add")
    group.add_argument(
        "--window",
        type=str,
        default="hann",
        choices=["hann", "triangular", "rectangular"],
        help="Cross-fade window of the fixed-order overlap-add (with --segment_size)",
    )
    from espnet2.utils.types import int_or_none, str2bool, str_or_none

    group = parser.add_argument_group("espnet2_ext multi-step inference (seeds/000)")
    group.add_argument(
        "--multistep_enable",
        type=str2bool,
        default=False,
        help="Refine every chunk with training-free multi-step inference",
    )
    group.add_argument(
        "--multistep_steps", type=int_or_none, default=None, help="T (default 20)"
    )
    group.add_argument(
        "--multistep_candidates",
        type=int_or_none,
        default=None,
        help="K blending ratios per step (default 10)",
    )
    group.add_argument(
        "--multistep_grid", type=str, default="uniform", choices=["uniform", "narrowing"]
    )
    group.add_argument(
        "--multistep_metric",
        type=str,
        default="snr",
        help="Metric to maximise: snr and si_sdr are oracle metrics (they need "
        "speech_ref<n> data); a registered non-intrusive metric runs blind",
    )
    group.add_argument(
        "--multistep_schedule",
        type=str_or_none,
        default=None,
        help="Ratio schedule chosen on a validation set (deployable mode)",
    )
    group.add_argument(
        "--multistep_candidate_batch",
        type=int_or_none,
        default=None,
        help="Candidates per forward call (None: all K at once; 1: one by one)",
    )
    from espnet2.utils.nested_dict_action import NestedDictAction

    group = parser.add_argument_group(
        "espnet2_ext diffusion-prior separation (seeds/001), instead of "
        "--train_config/--model_file"
    )
    group.add_argument(
        "--diffusion_prior_train_config",
        action="append",
        default=None,
        help="config.yaml of a trained diffusion prior, once per source",
    )
    group.add_argument(
        "--diffusion_prior_model_file",
        action="append",
        default=None,
        help="checkpoint of that prior, once per source ('none': initial weights)",
    )
    group.add_argument(
        "--diffusion_categories",
        nargs="*",
        default=None,
        help="per source: a class name or index of a conditional prior, or 'none'",
    )
    group.add_argument(
        "--diffusion_categories_file",
        type=str_or_none,
        default=None,
        help="per-mixture labels: '<key> <label of source 1> ...'",
    )
    group.add_argument(
        "--diffusion_sampler_conf",
        action=NestedDictAction,
        default={},
        help="keyword arguments of DiffusionPriorSampler (num_steps, step_rule, "
        "step_rule_conf, init, init_conf, loss_conf, clamp_x0, mixture_rms_db, start_t)",
    )
    group.add_argument("--diffusion_use_ema", type=str2bool, default=True)
    group.add_argument("--diffusion_cfg_scale", type=float, default=1.0)
    return parser


def main(cmd=None):
    print(get_commandline_args(), file=sys.stderr)
    args = get_parser().parse_args(cmd)
    kwargs = vars(args)
    kwargs.pop("config", None)
    inference(**kwargs)


if __name__ == "__main__":
    main()
