"""The one separation facade: a trained enh model, ready to separate songs.

Every route that separates with a trained separator goes through :class:`Separator`:
the Python API (:func:`load_model`), the separation command (``espnet2-ext-separate``),
``python -m espnet2_ext.bin.enh_inference`` and the recipes' inference stage.

What it owns:

* strict, weights-only loading (:func:`espnet2_ext.zoo.load_model`);
* the model's rate, channels and stem names;
* input checks (ESPnet layout: refuse another rate or channel count) or conversions
  (the API: resample, up/down-mix, each conversion logged);
* whole-song inference in chunks (:class:`~espnet2_ext.separation.config.ChunkingConfig`,
  fixed stem order, cross-faded overlap-add,
  :func:`~espnet2_ext.enh.inference.chunking.apply_chunked`);
* optional multi-step refinement of every chunk
  (:class:`~espnet2_ext.separation.config.MultiStepConfig`; the runner is built once).

The model itself always runs through
:func:`~espnet2_ext.enh.inference.espnet_adapter.espnet_model_separate_fn` (ESPnet's
variance normalisation, native stereo for our separators, channels folded for stock
mono ones).

Shapes: ``B`` items, ``C`` channels, ``T`` samples, ``N`` stems.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from espnet2_ext.enh.inference.chunking import apply_chunked
from espnet2_ext.enh.inference.espnet_adapter import espnet_model_separate_fn
from espnet2_ext.enh.separator import audio_channels, is_plugin_separator
from espnet2_ext.separation.audio import (
    AudioArray,
    convert_audio,
    read_audio,
    to_float_tensor,
)
from espnet2_ext.separation.config import AUTO, ChunkingConfig, MultiStepConfig
from espnet2_ext.zoo import ModelFiles, describe, loading, resolve_source, stem_names
from espnet2_ext.zoo.files import model_sample_rate

if TYPE_CHECKING:  # pragma: no cover
    from espnet2_ext.enh.inference.multistep import RatioSchedule

logger = logging.getLogger("espnet2_ext.separation")

DTYPES = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64}

PathLike = Union[str, Path]


class Separator:
    """A loaded separation model (make one with :meth:`from_files` or
    :func:`load_model`).

    Args:
        model: an ESPnet enh model (eval mode).
        train_args: its training options (``config.yaml`` as a Namespace).
        device: ``"auto"`` (CUDA, else Apple's MPS, else the CPU), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        dtype: ``"float32"`` (default), ``"float16"`` or ``"float64"``.
        chunking: how whole songs are cut; ``ChunkingConfig(segment=None)`` separates
            the whole input at once.
        multistep: multi-step refinement (``None`` or not enabled: one step).
        bf16: run the network under bf16 autocast (GPU only; STFTs and norms stay fp32).
        files: where the model came from (for messages).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        train_args: Any,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        chunking: ChunkingConfig = ChunkingConfig(),
        multistep: Optional[MultiStepConfig] = None,
        bf16: bool = False,
        files: Optional[ModelFiles] = None,
    ):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.device = check_device(resolve_device(device), bf16)
        self.dtype = DTYPES[dtype]
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.train_args = train_args
        self.files = files
        #: the model's name: separated stems go to ``<out>/<name>/<track>/``
        self.name = "model" if files is None else files.name
        self.chunking = chunking
        self.bf16 = bool(bf16)
        self.num_spk = int(self.model.num_spk)
        self.stems: Tuple[str, ...] = stem_names(train_args, self.num_spk)
        #: the rate the config declares (``None``: it declares none)
        self.declared_rate: Optional[int] = (
            int(getattr(train_args, "sample_rate", None) or 0) or None
        )
        self.sample_rate = model_sample_rate(train_args)
        self.num_channels = audio_channels(self.model.separator)
        self._min_length = int(getattr(self.model.encoder, "n_fft", 0) or 0)
        _check_segment(chunking, self.sample_rate, self._min_length)
        self._separate_fn = espnet_model_separate_fn(self.model)
        self.multistep = (
            multistep if multistep is not None and multistep.enabled else None
        )
        self._runner = None
        if self.multistep is not None:
            self._runner = self.multistep.build(self._separate_fn)
            schedule = self._runner.schedule
            if schedule is not None and schedule.num_sources != self.num_spk:
                raise ValueError(
                    f"the multi-step schedule has weights for {schedule.num_sources} "
                    f"sources but the model has {self.num_spk} outputs"
                )
        #: summary of the last multi-step run (label, forward passes, metric trace)
        self.last_multistep_summary: Optional[Dict[str, Any]] = None

    @classmethod
    def from_files(
        cls,
        train_config: PathLike,
        model_file: Optional[PathLike] = None,
        **options: Any,
    ) -> "Separator":
        """Load ``config.yaml`` and its weights strictly, then build the separator
        (keyword options of the constructor)."""
        model, train_args = loading.load_model(train_config, model_file)
        return cls(model, train_args, **options)

    # ------------------------------------------------------------------ description
    @property
    def needs_reference(self) -> bool:
        """True when multi-step selects with an oracle metric (references needed)."""
        return self.multistep is not None and self.multistep.needs_reference

    @property
    def multistep_label(self) -> Optional[str]:
        return None if self._runner is None else self._runner.label

    def __repr__(self) -> str:
        source = "model" if self.files is None else describe(self.files)
        steps = "" if self._runner is None else f", {self._runner.label}"
        return (
            f"Separator({source}: {self.num_spk} stems {list(self.stems)}, "
            f"{self.sample_rate} Hz, {self.num_channels} ch, {self.chunking.describe()}, "
            f"{self.device}{', bf16' if self.bf16 else ''}{steps})"
        )

    # ------------------------------------------------------------------ core
    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    @torch.no_grad()
    def separate_tensor(
        self,
        mix: torch.Tensor,
        reference: Optional[torch.Tensor] = None,
        *,
        progress: bool = False,
    ) -> torch.Tensor:
        """Separate audio already at the model's rate and channels.

        Args:
            mix: [B, C, T].
            reference: the true stems [B, N, C, T], only for oracle multi-step.
            progress: a progress bar over the chunks.

        Returns:
            [B, N, C, T] in the model's stem order, on the model's device and dtype.
        """
        run, aligned = self._separate_fn, ()
        if self._runner is not None:
            run = self._runner
            self._runner.reset()
            if self.needs_reference:
                if reference is None:
                    raise ValueError(
                        f"multi-step with the metric {self.multistep.selection_metric!r} is an "
                        "oracle: it needs the reference stems; give them, or a "
                        "schedule file for the deployable mode"
                    )
                aligned = (reference.to(self.device, self.dtype),)
        mix = mix.to(self.device, self.dtype)
        with self._autocast():
            sizes = self.chunking.samples(self.sample_rate)
            if sizes is None:
                out = run(mix, *aligned)
            else:
                out = apply_chunked(
                    run,
                    mix,
                    chunk_size=sizes[0],
                    hop_size=sizes[1],
                    window=self.chunking.window,
                    aligned=aligned,
                    progress=progress,
                )
        if self._runner is not None:
            self.last_multistep_summary = self._runner.summary()
        return out

    # ------------------------------------------------------------------ Python API
    def prepare(
        self, mix: torch.Tensor, sample_rate: int
    ) -> Tuple[torch.Tensor, List[str]]:
        """Convert [B, C, T] audio to the model's rate and channels.

        Returns:
            (float32 [B, M, T'] at :attr:`sample_rate`, one note per conversion)
        """
        return convert_audio(mix, sample_rate, self.num_channels, self.sample_rate)

    def separate(
        self, audio: AudioArray, sample_rate: int, *, progress: bool = False
    ) -> Dict[str, AudioArray]:
        """Separate a waveform of any rate and channel count (converted and logged).

        Args:
            audio: channels first: [T] (mono), [C, T] or [B, C, T]; a torch tensor or
                a numpy array. Float samples are taken as they are; integer PCM is
                scaled by its type's full scale (int16 by 2^15 …); complex, boolean
                and 64-bit integer arrays are refused (``TypeError``).
            sample_rate: its sampling rate.
            progress: a progress bar over the chunks.

        Returns:
            ``{stem: waveform}`` in :attr:`stems` order; each waveform is [M, T'] (or
            [B, M, T'] for a batch) at :attr:`sample_rate` with the model's M
            channels, float32, of the input's type (tensor or numpy).
        """
        if self.needs_reference:
            raise ValueError(
                f"multi-step metric {self.multistep.selection_metric!r} is an oracle metric: it "
                "needs the true stems, which a song to separate does not have. Use a "
                "schedule (calibrate_schedule on a validation set) or a non-intrusive "
                "metric registered with register_metric(..., requires_reference=False)"
            )
        as_numpy = isinstance(audio, np.ndarray)
        mix = to_float_tensor(audio)
        if mix.dim() == 1:
            mix = mix[None]
        single = mix.dim() == 2
        if single:
            mix = mix[None]
        if mix.dim() != 3:
            raise ValueError(
                f"audio must be [T], [C, T] or [B, C, T] (channels first), got shape "
                f"{tuple(mix.shape)}"
            )
        if mix.shape[1] > 16 and mix.shape[2] <= 16:
            raise ValueError(
                f"audio of shape {tuple(mix.shape)} looks like [T, C]; pass channels "
                "first, e.g. audio.T"
            )
        mix, notes = self.prepare(mix, sample_rate)
        for note in notes:
            logger.info(note)
        length = mix.shape[-1]
        if length < self._min_length:
            # the STFT's reflection padding needs at least n_fft / 2 + 1 samples
            mix = torch.nn.functional.pad(mix, (0, self._min_length - length))
        est = self.separate_tensor(mix, progress=progress)[..., :length].float().cpu()
        stems = {}
        for n, name in enumerate(self.stems):
            wave = est[:, n]
            wave = wave[0] if single else wave
            stems[name] = wave.numpy() if as_numpy else wave
        return stems

    def separate_file(
        self, path: PathLike, *, progress: bool = False
    ) -> Dict[str, torch.Tensor]:
        """Decode an audio file and separate it.

        Returns:
            ``{stem: float32 tensor [M, T']}`` at :attr:`sample_rate`.

        Raises:
            AudioDecodeError: the path is a folder, or the file cannot be decoded
                (or is truncated).
        """
        mix, rate = read_audio(path)
        return self.separate(mix, rate, progress=progress)

    # ------------------------------------------------------------------ ESPnet layout
    def check_espnet_input(self, mix: torch.Tensor, fs: Optional[int]) -> None:
        """Refuse [B, T] / [B, T, C] input that the model does not take as it is."""
        if self.declared_rate is not None and fs is not None:
            if int(fs) != self.declared_rate:
                raise ValueError(
                    f"the input is sampled at {fs} Hz but the model was trained at "
                    f"{self.declared_rate} Hz; resample the input first (e.g. sox "
                    f"in.wav -r {self.declared_rate} out.wav)"
                )
        n_fft = getattr(self.model.encoder, "n_fft", None)
        if n_fft is not None and mix.shape[1] <= n_fft // 2:
            # ESPnet's STFT pads by n_fft // 2 on each side (reflection), which needs
            # more samples than that; torch would fail with a bare padding error.
            raise ValueError(
                f"the input has {mix.shape[1]} samples, too short for the model's STFT "
                f"(n_fft {n_fft}): give at least {n_fft // 2 + 1} samples "
                f"({(n_fft // 2 + 1) / self.sample_rate * 1000:.0f} ms)"
            )
        got = 1 if mix.dim() == 2 else mix.shape[-1]
        if is_plugin_separator(self.model.separator) and got != self.num_channels:
            raise ValueError(
                f"the model separates {self.num_channels}-channel audio but the input "
                f"has {got} channel(s); convert it first (e.g. sox in.wav -c "
                f"{self.num_channels} out.wav)"
            )

    @torch.no_grad()
    def __call__(
        self,
        speech_mix: Union[torch.Tensor, np.ndarray],
        fs: Optional[int] = None,
        speech_ref: Optional[Sequence[Union[torch.Tensor, np.ndarray]]] = None,
        *,
        normalize_output_wav: bool = False,
        progress: bool = False,
    ) -> List[np.ndarray]:
        """Separate ESPnet-layout mixtures (as ESPnet's ``SeparateSpeech`` does).

        Args:
            speech_mix: [B, T] (mono) or [B, T, C] mixtures.
            fs: their sampling rate (checked against the model's).
            speech_ref: the N reference stems, each like ``speech_mix`` (only for
                oracle multi-step inference).
            normalize_output_wav: peak-normalise every output to 0.9 (off: wrong for
                music stems).

        Returns:
            ``num_spk`` arrays of shape [B, T] or [B, T, C], like the input.
        """
        mix = torch.as_tensor(speech_mix)
        if mix.dim() not in (2, 3):
            raise ValueError(
                f"speech_mix must be [B, T] or [B, T, C], got {tuple(mix.shape)}"
            )
        self.check_espnet_input(mix, fs)
        x = mix.unsqueeze(1) if mix.dim() == 2 else mix.transpose(1, 2)  # [B, C, T]
        ref = None
        if speech_ref is not None:
            refs = [torch.as_tensor(r) for r in speech_ref]
            ref = torch.stack(
                [r.unsqueeze(1) if r.dim() == 2 else r.transpose(1, 2) for r in refs], 1
            )  # [B, N, C, T]
        est = self.separate_tensor(x, ref, progress=progress).float().cpu()
        outs = []
        for n in range(est.shape[1]):
            e = est[:, n]  # [B, C, T]
            e = e[:, 0] if mix.dim() == 2 else e.transpose(1, 2)
            if normalize_output_wav:
                peak = e.abs().flatten(1).amax(1).clamp_min(1e-8)
                e = e / peak.view(-1, *([1] * (e.dim() - 1))) * 0.9
            outs.append(e.numpy())
        return outs


def resolve_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` when CUDA is available, else ``"mps"`` when Apple's
    Metal backend is, else ``"cpu"``; any other value is returned as it is."""
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _check_segment(chunking: ChunkingConfig, sample_rate: int, frame: int) -> None:
    """Refuse chunks shorter than one STFT frame of the model (``frame`` samples)."""
    sizes = chunking.samples(sample_rate)
    if sizes is None or not frame or sizes[0] >= frame:
        return
    need = math.ceil(frame / sample_rate * 1000) / 1000  # seconds, rounded up
    raise ValueError(
        f"segment {chunking.segment:g} s is {sizes[0]} samples at {sample_rate} Hz, "
        f"shorter than one STFT frame of the model ({frame} samples): give a segment "
        f"of at least {need:g} s, or 0 to separate the whole input at once"
    )


def check_device(device: str, bf16: bool = False) -> torch.device:
    """The torch device for ``device`` (after :func:`resolve_device`).

    Raises:
        ValueError: an unknown device, CUDA or MPS asked for where it is not
            available, or bf16 off CUDA.
    """
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(
            f"device must be auto, cpu, cuda[:N] or mps, got {device!r}"
        ) from e
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be auto, cpu, cuda[:N] or mps, got {device!r}")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(
                f"device {device!r} asked for, but Apple's MPS backend is not "
                "available here; use device='cpu' (or 'auto')"
            )
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} asked for, but CUDA is not available here; use "
            "device='cpu'"
        )
    if bf16 and dev.type != "cuda":
        raise ValueError(
            "bf16 autocast is for GPUs (device='cuda'); on the CPU separate in float32"
        )
    return dev


def load_model(
    source: PathLike,
    *,
    model_file: Optional[PathLike] = None,
    device: str = "cpu",
    segment: Union[None, float, str] = AUTO,
    overlap: Union[float, str] = AUTO,
    window: str = AUTO,
    chunking: Optional[ChunkingConfig] = None,
    bf16: bool = False,
    cache_dir: Optional[PathLike] = None,
    hub_cache_dir: Optional[PathLike] = None,
    revision: Optional[str] = None,
    local_files_only: bool = False,
    multistep: Optional[MultiStepConfig] = None,
    multistep_schedule: Union[None, str, Path, "RatioSchedule"] = None,
    multistep_metric: Optional[str] = None,
    multistep_steps: Optional[int] = None,
    multistep_candidates: Optional[int] = None,
) -> Separator:
    """Load a separation model from a pack, a folder or a hub repository.

    Args:
        source: pack ``.zip``, folder, or hub id ``user/name`` (``user/name@rev``,
            ``hf://user/name``). A source that looks like a local path is never
            looked up on the hub.
        model_file: which ``.pth`` of a folder to load, when it has several.
        device: ``"cpu"`` (default), ``"auto"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
        segment, overlap, window: chunk length in seconds (``None`` or 0: the whole
            input at once), overlap as a fraction of a chunk, cross-fade window;
            ``"auto"`` (default): the setting the pack records (the one its recipe
            evaluated with), else 12 s, 0.5, Hann. A chunk must hold at least one
            STFT frame.
        chunking: a :class:`ChunkingConfig`; when given it replaces the three above.
        cache_dir: where packs are unpacked (default ``~/.cache/espnet2_ext``).
        hub_cache_dir: the hub client's cache (default: its own).
        revision: hub branch, tag or commit.
        local_files_only: use only the hub cache (also ``HF_HUB_OFFLINE=1``).
        multistep: a :class:`MultiStepConfig`; or the shortcuts
            ``multistep_schedule`` (a schedule file: deployable multi-step) /
            ``multistep_metric`` (a registered non-intrusive metric) with
            ``multistep_steps`` and ``multistep_candidates``.

    Raises:
        FileNotFoundError: the model or one of its files is missing.
        DamagedPackError: the pack cannot be read (CRC error, truncated) or does not
            hold the files its ``meta.yaml`` lists.
        IncompatiblePackError: the pack was made by an incompatible espnet2_ext.
        UnsafeArchiveError: the pack has entries that escape its folder.
        RuntimeError: the weights are corrupt or do not fit the config.
        ValueError: invalid options.
    """
    if chunking is None:  # checked before anything is downloaded or unpacked
        ChunkingConfig.resolve(None, segment=segment, overlap=overlap, window=window)
    multistep = _multistep_shortcuts(
        multistep,
        multistep_schedule,
        multistep_metric,
        multistep_steps,
        multistep_candidates,
    )
    files = resolve_source(
        source,
        model_file=model_file,
        cache_dir=cache_dir,
        hub_cache_dir=hub_cache_dir,
        revision=revision,
        local_files_only=local_files_only,
    )
    if chunking is None:
        chunking = ChunkingConfig.resolve(
            files.chunking, segment=segment, overlap=overlap, window=window
        )
    separator = Separator.from_files(
        files.train_config,
        files.model_file,
        device=device,
        chunking=chunking,
        multistep=multistep,
        bf16=bf16,
        files=files,
    )
    if separator.needs_reference:
        raise ValueError(
            f"multi-step metric {separator.multistep.selection_metric!r} is an oracle "
            "metric: it "
            "needs the true stems, which a song to separate does not have. Use a "
            "schedule (calibrate_schedule on a validation set) or a non-intrusive "
            "metric registered with register_metric(..., requires_reference=False)"
        )
    logger.info("loaded %r", separator)
    return separator


def _multistep_shortcuts(
    multistep: Optional[MultiStepConfig],
    schedule: Union[None, str, Path, "RatioSchedule"],
    metric: Optional[str],
    steps: Optional[int],
    candidates: Optional[int],
) -> Optional[MultiStepConfig]:
    shortcuts = (schedule, metric, steps, candidates)
    if multistep is not None:
        if any(v is not None for v in shortcuts):
            raise ValueError(
                "give either multistep (a MultiStepConfig) or the multistep_* "
                "shortcuts, not both"
            )
        return multistep
    if schedule is None and metric is None:
        if steps is not None or candidates is not None:
            raise ValueError(
                "multistep_steps/candidates need multistep_metric (or a schedule)"
            )
        return None
    if schedule is not None and metric is not None:
        raise ValueError(
            "give either a multi-step schedule or a multi-step metric, not both"
        )
    return MultiStepConfig(
        enable=True,
        schedule=schedule,
        metric=metric,
        steps=steps,
        candidates=candidates,
    )
