"""Separation with one diffusion prior per source (seeds/001), beside the trained
separators.

* :class:`DiffusionSeparator` / :func:`load_diffusion_separator`: separate a waveform
  or an audio file from Python (re-exported by :mod:`espnet2_ext.api`);
* :func:`separate_scp`: separate the mixtures of a wav.scp into ESPnet-style output
  lists (``python -m espnet2_ext.bin.diffusion_separate`` and
  ``python -m espnet2_ext.bin.enh_inference --diffusion_prior_train_config …`` run it).

Both build their sampler with
:func:`~espnet2_ext.diffusion.loading.build_sampler_from_files`, so the same files, seed
and sampler options give the same estimates.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from espnet2.fileio.sound_scp import SoundScpReader
from espnet2.utils.types import str_or_none

from espnet2_ext.diffusion.loading import build_sampler_from_files
from espnet2_ext.separation.audio import AudioArray, convert_audio, read_audio
from espnet2_ext.utils.atomic import atomic_write_text
from espnet2_ext.utils.audio_io import (
    check_sound_scps,
    write_audio_atomic,
    write_scp_atomic,
)

logger = logging.getLogger(__name__)


class DiffusionSeparator:
    """Unsupervised separation with one diffusion prior per source (seeds/001).

    Made by :func:`load_diffusion_separator`. The priors are mono: input channels are
    averaged and other sampling rates resampled to :attr:`sample_rate` (each conversion
    logged, as for :class:`espnet2_ext.api.Separator`). Only the mixture reaches the
    sampler.

    Args:
        sampler: the :class:`~espnet2_ext.diffusion.sampling.DiffusionPriorSampler`.
        sample_rate: the rate the priors were trained at.
        names: one name per source (default ``source1`` …).
        device: where the mixture is sent.
    """

    num_channels = 1

    def __init__(
        self,
        sampler,
        sample_rate: int,
        names: Optional[Sequence[str]] = None,
        device: str = "cpu",
    ):
        names = (
            list(names)
            if names
            else [f"source{n + 1}" for n in range(sampler.num_sources)]
        )
        if len(names) != sampler.num_sources:
            raise ValueError(
                f"{len(names)} names for {sampler.num_sources} priors: give one per "
                "source"
            )
        self.sampler = sampler
        self.sample_rate = int(sample_rate)
        self.stems = names
        self.device = device
        self.last_info: Optional[Dict] = None

    def __repr__(self) -> str:
        return (
            f"DiffusionSeparator(sources={self.stems}, rate={self.sample_rate}, "
            f"steps={len(self.sampler.reverse)})"
        )

    def separate(
        self,
        audio: AudioArray,
        sample_rate: int,
        *,
        seed: int = 0,
        categories: Optional[Sequence[Optional[Union[int, str]]]] = None,
        progress: bool = False,
    ) -> Dict[str, AudioArray]:
        """Separate one mixture ([T] or [C, T], channels first).

        Args:
            seed: seeds the initial state and the ancestral noise (same seed, same
                result).
            categories: per-source class labels of conditional priors for this
                mixture (None: those given when loading).

        Returns:
            ``{name: waveform [1, T']}`` at :attr:`sample_rate`, of the input's type.
            The sampler's record of the run (``nfe``, per-step loss) is kept in
            :attr:`last_info`.
        """
        as_numpy = isinstance(audio, np.ndarray)
        mix = torch.as_tensor(np.asarray(audio) if as_numpy else audio).detach().cpu()
        if mix.dim() == 1:
            mix = mix[None]
        if mix.dim() != 2:
            raise ValueError(
                f"audio must be [T] or [C, T] (channels first), got {tuple(mix.shape)}"
            )
        if mix.shape[0] > 16 and mix.shape[1] <= 16:
            raise ValueError(
                f"audio of shape {tuple(mix.shape)} looks like [T, C]; pass channels "
                "first, e.g. audio.T"
            )
        mix, notes = convert_audio(mix[None], sample_rate, 1, self.sample_rate)
        for note in notes:
            logger.info(note)
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        estimates, info = self.sampler.separate(
            mix[0, 0].to(self.device),
            generator=generator,
            progress=progress,
            categories=categories,
        )
        self.last_info = info
        out = {}
        for n, name in enumerate(self.stems):
            wave = estimates[n][None].detach().float().cpu()
            out[name] = wave.numpy() if as_numpy else wave
        return out

    def separate_file(
        self, path: Union[str, Path], **kwargs
    ) -> Dict[str, torch.Tensor]:
        """Decode an audio file and separate it (keyword arguments of :meth:`separate`).

        Raises:
            AudioDecodeError: the file cannot be decoded.
        """
        mix, rate = read_audio(path)
        return self.separate(mix, rate, **kwargs)


def load_diffusion_separator(
    prior_train_configs: Sequence[Union[str, Path]],
    prior_model_files: Sequence[Optional[Union[str, Path]]],
    *,
    sample_rate: int,
    categories: Optional[Sequence[Optional[Union[int, str]]]] = None,
    names: Optional[Sequence[str]] = None,
    sampler_conf: Optional[dict] = None,
    device: str = "cpu",
    use_ema: bool = True,
    cfg_scale: float = 1.0,
) -> DiffusionSeparator:
    """Load one trained diffusion prior per source into a :class:`DiffusionSeparator`.

    The same arguments as ``python -m espnet2_ext.bin.enh_inference
    --diffusion_prior_train_config … --diffusion_prior_model_file …`` (a pair given
    for several sources is loaded once).

    Args:
        prior_train_configs: the priors' ``config.yaml``, one per source.
        prior_model_files: their checkpoints, one per source.
        sample_rate: the rate the priors were trained at (their configs do not record
            it; the recipes train at 16 kHz).
        categories: per source, a class name or index of a conditional prior, or None.
        names: names of the sources in the returned dict.
        sampler_conf: keyword arguments of
            :class:`~espnet2_ext.diffusion.sampling.DiffusionPriorSampler`.
    """
    sampler = build_sampler_from_files(
        prior_train_configs,
        prior_model_files,
        categories=categories,
        device=device,
        use_ema=use_ema,
        cfg_scale=cfg_scale,
        sampler_conf=sampler_conf,
    )
    separator = DiffusionSeparator(sampler, sample_rate, names=names, device=device)
    logger.info("loaded %r", separator)
    return separator


def _read_keys(key_file: Optional[str]) -> Optional[List[str]]:
    if key_file is None:
        return None
    with open(key_file, encoding="utf-8") as f:
        return [line.split(maxsplit=1)[0] for line in f if line.strip()]


def separate_scp(
    data_path_and_name_and_type: Sequence[Sequence[str]],
    output_dir: str,
    prior_train_config: Sequence[str],
    prior_model_file: Sequence[str],
    categories: Optional[Sequence[str]] = None,
    categories_file: Optional[str] = None,
    sampler_conf: Optional[dict] = None,
    use_ema: bool = True,
    cfg_scale: float = 1.0,
    key_file: Optional[str] = None,
    fs: Optional[int] = None,
    device: str = "cpu",
    seed: int = 0,
    output_subtype: Optional[str] = "FLOAT",
    output_format: str = "wav",
    log_level: str = "INFO",
) -> None:
    """Separate every mixture of the ``speech_mix`` scp into one wav list per source.

    Outputs are written as ESPnet's ``enh_inference`` writes them:
    ``<output_dir>/wavs/<n>/<key>.wav`` and ``<output_dir>/spk<n>.scp`` for source
    n = 1 … N (in the order of the priors), each file under a temporary name renamed
    when complete, and ``sampler_info.json``: per mixture the network evaluations, the
    final loss, the number of steps, the path-scaling setting
    (:attr:`~espnet2_ext.diffusion.sampling.DiffusionPriorSampler.path_scaling_label`),
    the guidance path per source and the CPU seconds of the sampling. Only the mixture
    is read; the sampler is given nothing else. The mixture on line i of the scp
    (from 0) is sampled with the seed ``seed + i``, whichever keys ``key_file`` lists:
    a run split into jobs gives what one run gives.

    Args:
        data_path_and_name_and_type: ``[(wav.scp, "speech_mix", "sound")]``.
        prior_train_config, prior_model_file: one pair per source ('none' as a model
            file keeps the initial weights).
        categories: per source, a class name or index of a conditional prior, or
            'none'.
        categories_file: per-mixture labels, ``<key> <label 1> <label 2> ...``;
            overrides ``categories`` for the keys it lists.
        sampler_conf: keyword arguments of
            :class:`~espnet2_ext.diffusion.sampling.DiffusionPriorSampler`.
        key_file: separate only the keys it lists (first column), in its order.
        fs: the expected sampling rate; a mixture at another rate is an error.
        output_subtype: soundfile subtype of WAV outputs.
        log_level: level of :func:`logging.basicConfig` (the commands that call this
            pass theirs).
        Others: as :func:`load_diffusion_separator`.
    """
    logging.basicConfig(
        level=log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    scps = [p for p, name, _ in data_path_and_name_and_type if name == "speech_mix"]
    if len(scps) != 1:
        raise ValueError(
            "give exactly one --data_path_and_name_and_type <wav.scp>,speech_mix,sound"
        )
    model_files = [None if str_or_none(m) is None else m for m in prior_model_file]
    sampler = build_sampler_from_files(
        prior_train_config,
        model_files,
        categories=categories or None,
        device=device,
        use_ema=use_ema,
        cfg_scale=cfg_scale,
        sampler_conf=sampler_conf,
    )
    per_key = {}
    if categories_file is not None:
        with open(categories_file, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    key, *labels = line.split()
                    per_key[key] = labels
    reader = SoundScpReader(scps[0], dtype="float32")
    keys = _read_keys(key_file) or list(reader.keys())
    check_sound_scps([scps[0]], fs, max_channels=1, keys=keys)
    out = Path(output_dir).expanduser().resolve()
    scp_entries: List[List[Tuple[str, Path]]] = [[] for _ in range(sampler.num_sources)]
    info_log = {}
    line_of = {key: i for i, key in enumerate(reader.keys())}
    for done, key in enumerate(keys, start=1):
        rate, wave = reader[key]
        if fs is not None and rate != fs:
            raise ValueError(
                f"{key}: sampled at {rate} Hz but --fs {fs}; resample the data to the "
                "rate the priors were trained on"
            )
        if wave.ndim == 2:
            if wave.shape[1] > 1:
                raise ValueError(
                    f"{key}: {wave.shape[1]} channels; the priors are mono"
                )
            wave = wave[:, 0]
        # One generator per mixture, seeded by its line in the scp: results do not
        # depend on which other mixtures are processed in the same run (or job).
        generator = torch.Generator(device=device).manual_seed(seed + line_of[key])
        mixture = torch.from_numpy(np.asarray(wave, dtype=np.float32)).to(device)
        cpu_start = time.process_time()
        estimates, info = sampler.separate(
            mixture, generator=generator, categories=per_key.get(key)
        )
        cpu_seconds = time.process_time() - cpu_start
        for n in range(sampler.num_sources):
            path = out / "wavs" / str(n + 1) / f"{key}.{output_format}"
            wave_n = estimates[n].cpu().numpy()
            write_audio_atomic(path, wave_n, rate, output_format, output_subtype)
            scp_entries[n].append((key, path))
        info_log[key] = {
            "nfe": info["nfe"],
            "final_loss": float(info["loss"][-1]),
            "steps": len(info["steps"]),
            "path_scaling": info["path_scaling"],
            "guidance_path": info["guidance_path"].tolist(),
            "cpu_seconds": cpu_seconds,
        }
        logging.info(f"[{done}/{len(keys)}] {key}: nfe={info['nfe']}")
    for n, entries in enumerate(scp_entries):
        write_scp_atomic(out / f"spk{n + 1}.scp", entries)
    atomic_write_text(out / "sampler_info.json", json.dumps(info_log, indent=1))


@dataclass(frozen=True)
class DiffusionPriorOptions:
    """The ``--diffusion_*`` options of ``enh_inference``: separate with one trained
    diffusion prior per source instead of a trained separator.

    Field names are the option names without the ``diffusion_`` prefix
    (:meth:`add_arguments`); see :func:`separate_scp` for their meaning.
    """

    prior_train_config: Optional[Sequence[str]] = None
    prior_model_file: Optional[Sequence[str]] = None
    categories: Optional[Sequence[str]] = None
    categories_file: Optional[str] = None
    sampler_conf: Optional[dict] = None
    use_ema: bool = True
    cfg_scale: float = 1.0

    PREFIX = "diffusion_"

    @property
    def enabled(self) -> bool:
        return bool(self.prior_train_config or self.prior_model_file)

    @classmethod
    def add_arguments(cls, parser) -> None:
        from espnet2.utils.nested_dict_action import NestedDictAction

        from espnet2_ext.utils.cli import str2bool, str_or_none

        p = cls.PREFIX
        group = parser.add_argument_group(
            "diffusion-prior separation (seeds/001), instead of "
            "--train_config/--model_file"
        )
        group.add_argument(
            f"--{p}prior_train_config",
            action="append",
            default=None,
            help="config.yaml of a trained diffusion prior, once per source",
        )
        group.add_argument(
            f"--{p}prior_model_file",
            action="append",
            default=None,
            help="checkpoint of that prior, once per source ('none': initial weights)",
        )
        group.add_argument(
            f"--{p}categories",
            nargs="*",
            default=None,
            help="per source: a class name or index of a conditional prior, or 'none'",
        )
        group.add_argument(
            f"--{p}categories_file",
            type=str_or_none,
            default=None,
            help="per-mixture labels: '<key> <label of source 1> ...'",
        )
        group.add_argument(
            f"--{p}sampler_conf",
            action=NestedDictAction,
            default={},
            help="keyword arguments of DiffusionPriorSampler (num_steps, step_rule, "
            "step_rule_conf, path_scaling, init, init_conf, loss_conf, clamp_x0, "
            "mixture_rms_db, start_t)",
        )
        group.add_argument(f"--{p}use_ema", type=str2bool, default=True)
        group.add_argument(f"--{p}cfg_scale", type=float, default=1.0)

    @classmethod
    def pop_arguments(cls, options: Dict) -> "DiffusionPriorOptions":
        """Build from parsed options (``vars(args)``), removing the ``diffusion_*``
        keys."""
        return cls(
            **{
                f.name: options.pop(cls.PREFIX + f.name)
                for f in fields(cls)
                if cls.PREFIX + f.name in options
            }
        )
