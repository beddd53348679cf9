"""ESPnet-style inference over an scp list (``python -m espnet2_ext.bin.enh_inference``).

Reads ``wav.scp`` (and, for oracle multi-step, the references) with ESPnet's streaming
iterator and writes ``<output_dir>/wavs/<n>/<uid>.wav`` and ``<output_dir>/spk<n>.scp``,
as ESPnet's own ``enh_inference`` does; each file is written under a temporary name and
renamed when complete. Separation goes through :class:`~espnet2_ext.separation.Separator`
(or, with diffusion priors, :func:`~espnet2_ext.separation.diffusion.separate_scp`).

Two things differ from ESPnet's ``enh_inference``, both because its defaults are wrong
for music: ``--segment_size``/``--hop_size`` run the fixed-order cross-faded overlap-add
(ESPnet's segment mode re-orders every segment by PIT and averages overlaps without a
window, which swaps stems between segments of a song), and outputs are never
peak-normalised unless asked.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from espnet2.torch_utils.set_all_random_seed import set_all_random_seed

from espnet2_ext.separation.config import ChunkingConfig, MultiStepConfig
from espnet2_ext.separation.diffusion import DiffusionPriorOptions, separate_scp
from espnet2_ext.separation.separator import Separator
from espnet2_ext.tasks.enh import EnhancementTask
from espnet2_ext.utils.atomic import atomic_write_text, json_default
from espnet2_ext.utils.audio_io import (
    check_sound_scps,
    write_audio_atomic,
    write_scp_atomic,
)


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
    multistep: Optional[MultiStepConfig] = None,
    diffusion: Optional[DiffusionPriorOptions] = None,
) -> None:
    """ESPnet's ``enh_inference`` arguments, plus the plugin's ``window``, multi-step and
    diffusion-prior options (typed)."""
    logging.basicConfig(
        level=log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    multistep = multistep if multistep is not None else MultiStepConfig()
    if diffusion is not None and diffusion.enabled:
        _separate_with_priors(
            diffusion,
            multistep,
            output_dir=output_dir,
            data_path_and_name_and_type=data_path_and_name_and_type,
            key_file=key_file,
            train_config=train_config,
            model_file=model_file,
            segment_size=segment_size,
            batch_size=batch_size,
            ngpu=ngpu,
            fs=fs,
            seed=seed,
            output_format=output_format,
            log_level=log_level,
        )
        return
    if train_config is None and model_file is None:
        raise ValueError(
            "nothing to separate with: give --train_config and --model_file of a "
            "trained separator, or diffusion priors with "
            "--diffusion_prior_train_config and --diffusion_prior_model_file (once per "
            "source)"
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
        raise ValueError(
            "--inference_config is not supported by espnet2_ext's inference"
        )
    if ref_channel is not None:
        logging.warning("--ref_channel is ignored: all channels are separated")
    if segment_size is not None and normalize_segment_scale:
        logging.info(
            "--normalize_segment_scale does not apply: overlap-add keeps each chunk's "
            "scale and a fixed stem order"
        )
    if hop_size is not None and segment_size is None:
        raise ValueError("--hop_size needs --segment_size")
    chunking = ChunkingConfig(segment=segment_size, hop=hop_size, window=window)
    set_all_random_seed(seed)
    separator = Separator.from_files(
        train_config,
        model_file,
        device="cuda" if ngpu >= 1 else "cpu",
        dtype=dtype,
        chunking=chunking,
        multistep=multistep,
    )
    references = _reference_names(separator, data_path_and_name_and_type)
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
    rate = fs or separator.declared_rate
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
        refs = [batch[name] for name in references] if references else None
        waves = separator(
            batch["speech_mix"],
            fs=rate,
            speech_ref=refs,
            normalize_output_wav=normalize_output_wav,
            progress=show_progressbar,
        )
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
        logging.info(f"multi-step inference: {separator.multistep_label}")


def _reference_names(
    separator: Separator, data_path_and_name_and_type: Sequence[Tuple[str, str, str]]
) -> List[str]:
    """The reference data names oracle multi-step needs (``[]`` otherwise)."""
    if not separator.needs_reference:
        return []
    names = [f"speech_ref{n}" for n in range(1, separator.num_spk + 1)]
    given = {name for _, name, _ in data_path_and_name_and_type}
    missing = [name for name in names if name not in given]
    if missing:
        raise ValueError(
            f"--multistep_metric {separator.multistep.selection_metric} is an oracle "
            "metric: give the references with --data_path_and_name_and_type "
            "data/<set>/spk<n>.scp,speech_ref<n>,sound (missing "
            f"{missing}) and --allow_variable_data_keys true, or use "
            "--multistep_schedule"
        )
    return names


def _separate_with_priors(
    diffusion: DiffusionPriorOptions,
    multistep: MultiStepConfig,
    *,
    train_config: Optional[str],
    model_file: Optional[str],
    segment_size: Optional[float],
    batch_size: int,
    ngpu: int,
    **options,
) -> None:
    if train_config is not None or model_file is not None:
        raise ValueError(
            "give either a trained separator (--train_config/--model_file) or "
            "diffusion priors (--diffusion_prior_train_config/"
            "--diffusion_prior_model_file), not both"
        )
    if multistep.enabled:
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
    separate_scp(
        prior_train_config=list(diffusion.prior_train_config or []),
        prior_model_file=list(diffusion.prior_model_file or []),
        categories=diffusion.categories,
        categories_file=diffusion.categories_file,
        sampler_conf=diffusion.sampler_conf,
        use_ema=diffusion.use_ema,
        cfg_scale=diffusion.cfg_scale,
        device="cuda" if ngpu >= 1 else "cpu",
        **options,
    )
