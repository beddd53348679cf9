"""Python API: load a trained separation model and separate songs.

::

    from espnet2_ext.api import load_model

    separator = load_model("exp/enh_x/packed.zip")   # or a folder, or "user/name"
    stems = separator.separate_file("song.mp3")      # {"vocals": [C, T], ...}
    stems = separator.separate(waveform, 48000)      # [C, T] or [B, C, T] in, same out

``load_model`` accepts a pack (zip of :mod:`espnet2_ext.bin.pack`), a folder (an
unpacked pack, or ``config.yaml`` with one ``.pth``) or a Hugging Face hub id (fetched
into the hub client's cache; a second load reads the cache, also offline). See
:mod:`espnet2_ext.model_zoo` for the rules (safety, plugin version).

Separation runs :class:`espnet2_ext.bin.enh_inference.MusicSeparator` (strict,
weights-only loading; fixed-order chunked overlap-add), or, with a multi-step schedule
or a non-intrusive metric,
:class:`espnet2_ext.enh.inference.multistep.MultiStepSeparator` inside the same
overlap-add. The command ``espnet2-ext-separate``
(:mod:`espnet2_ext.bin.separate`) calls this API, so both give the same stems.

Inputs the model does not take natively are converted, and each conversion is logged
(logger ``espnet2_ext.api``, level INFO): other sampling rates are resampled
(``torchaudio.functional.resample``) to the model's, mono input for a stereo model is
duplicated to both channels, multi-channel input for a mono model is averaged, more
channels than a stereo model takes are cut to the first two. Stems come back at the
model's sampling rate with the model's number of channels.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from espnet2_ext.separation.audio import (
    AudioArray,
    AudioDecodeError,
    convert_audio,
    read_audio,
)
from espnet2_ext.separation.diffusion import (
    DiffusionSeparator,
    load_diffusion_separator,
)
from espnet2_ext.zoo import ModelFiles, describe, resolve_source, stem_names

if TYPE_CHECKING:  # pragma: no cover
    from espnet2_ext.enh.inference.multistep import RatioSchedule

logger = logging.getLogger(__name__)

#: Chunk length (seconds) and overlap (fraction of a chunk) of whole-song inference:
#: 12 s chunks every 6 s, the setting of the MUSDB18-HQ recipe (seeds/002).
DEFAULT_SEGMENT = 12.0
DEFAULT_OVERLAP = 0.5

#: Sampling rate assumed when a config records none.
FALLBACK_SAMPLE_RATE = 44100


class Separator:
    """A loaded separation model (use :func:`load_model` to make one).

    Args:
        files: the model's files (:func:`espnet2_ext.model_zoo.resolve_source`).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        segment: chunk length in seconds for whole-song inference; ``None`` separates
            the whole input at once.
        overlap: overlap of consecutive chunks, a fraction of ``segment`` in [0, 1)
            (hop = segment × (1 − overlap)).
        window: cross-fade window of the overlap-add (``hann``, ``triangular``,
            ``rectangular``).
        bf16: run the network under bf16 autocast (GPU only; STFTs and norms stay fp32).
        multistep_schedule: a multi-step ratio schedule (file or
            :class:`~espnet2_ext.enh.inference.multistep.RatioSchedule`) for deployable
            multi-step refinement.
        multistep_metric: or a registered *non-intrusive* metric to select candidates
            with (oracle metrics need references, which a user's song does not have).
        multistep_steps: steps T with ``multistep_metric`` (default: the module's).
        multistep_candidates: candidates K per step with ``multistep_metric``.
    """

    def __init__(
        self,
        files: ModelFiles,
        *,
        device: str = "cpu",
        segment: Optional[float] = DEFAULT_SEGMENT,
        overlap: float = DEFAULT_OVERLAP,
        window: str = "hann",
        bf16: bool = False,
        multistep_schedule: Union[None, str, Path, "RatioSchedule"] = None,
        multistep_metric: Optional[str] = None,
        multistep_steps: Optional[int] = None,
        multistep_candidates: Optional[int] = None,
    ):
        from espnet2_ext.bin.enh_inference import MusicSeparator
        from espnet2_ext.enh.inference.chunking import WINDOWS

        if window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")
        if segment is not None and segment <= 0:
            raise ValueError(
                f"segment must be > 0 seconds (or None for no chunking), got {segment}"
            )
        if not 0.0 <= overlap < 1.0:
            raise ValueError(
                f"overlap must be a fraction of the chunk in [0, 1), got {overlap}"
            )
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} asked for, but CUDA is not available here; use "
                "device='cpu'"
            )
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda[:N], got {device!r}")
        if bf16 and self.device.type != "cuda":
            raise ValueError(
                "bf16 autocast is for GPUs (device='cuda'); on the CPU separate in "
                "float32"
            )
        self.files = files
        self.segment = segment
        self.overlap = float(overlap)
        self.window = window
        self.bf16 = bool(bf16)
        self._music = MusicSeparator(
            files.train_config,
            files.model_file,
            device=str(self.device),
            segment_size=segment,
            hop_size=None if segment is None else segment * (1.0 - overlap),
            window=window,
        )
        self.model = self._music.model
        self.train_args = self._music.train_args
        self.num_spk = int(self.model.num_spk)
        self.stems: Tuple[str, ...] = stem_names(self.train_args, self.num_spk)
        rate = getattr(self.train_args, "sample_rate", None)
        if rate is None:
            logger.warning(
                "the config records no sample_rate; assuming %d Hz",
                FALLBACK_SAMPLE_RATE,
            )
        self.sample_rate = int(rate or FALLBACK_SAMPLE_RATE)
        stft_rate = (getattr(self.train_args, "encoder_conf", None) or {}).get(
            "default_fs"
        )
        if stft_rate is not None and int(stft_rate) != self.sample_rate:
            # ESPnet's parser defaults sample_rate to 8000 when a config omits it
            logger.warning(
                "the config says sample_rate %d but its STFT was set up for %s Hz "
                "(encoder_conf.default_fs); separating at %d Hz",
                self.sample_rate,
                stft_rate,
                self.sample_rate,
            )
        separator = self.model.separator
        ours = type(separator).__module__.startswith("espnet2_ext.")
        # stock ESPnet separators take mono input; `num_channels` means other things
        # in some of them (a hidden width in BSRNN)
        self.num_channels = int(getattr(separator, "num_channels", 1)) if ours else 1
        encoder = self.model.encoder
        self._min_length = int(getattr(encoder, "n_fft", 0) or 0)
        self.multistep = self._build_multistep(
            multistep_schedule, multistep_metric, multistep_steps, multistep_candidates
        )

    # ------------------------------------------------------------------ setup
    def _build_multistep(self, schedule, metric, steps, candidates):
        if schedule is None and metric is None:
            if steps is not None or candidates is not None:
                raise ValueError(
                    "multistep_steps/candidates need multistep_metric (or a schedule)"
                )
            return None
        from espnet2_ext.enh.inference.metrics_registry import get_metric
        from espnet2_ext.enh.inference.espnet_adapter import espnet_model_separate_fn
        from espnet2_ext.enh.inference.multistep import MultiStepSeparator

        if schedule is not None and metric is not None:
            raise ValueError(
                "give either a multi-step schedule or a multi-step metric, not both"
            )
        if metric is not None and get_metric(metric).requires_reference:
            raise ValueError(
                f"multi-step metric {metric!r} is an oracle metric: it needs the true "
                "stems, which a song to separate does not have. Use a schedule "
                "(calibrate_schedule on a validation set) or a non-intrusive metric "
                "registered with register_metric(..., requires_reference=False)"
            )
        runner = MultiStepSeparator(
            espnet_model_separate_fn(self.model),
            schedule=schedule,
            metric="snr" if metric is None else metric,
            steps=steps,
            candidates=candidates,
        )
        if runner.schedule is not None and runner.schedule.num_sources != self.num_spk:
            raise ValueError(
                f"the multi-step schedule has weights for "
                f"{runner.schedule.num_sources} sources but the model has "
                f"{self.num_spk} outputs"
            )
        return runner

    def __repr__(self) -> str:
        chunks = (
            "whole input"
            if self.segment is None
            else f"{self.segment:g} s chunks, overlap {self.overlap:g}"
        )
        steps = "" if self.multistep is None else f", {self.multistep.label}"
        return (
            f"Separator({describe(self.files)}: {self.num_spk} stems "
            f"{list(self.stems)}, {self.sample_rate} Hz, {self.num_channels} ch, "
            f"{chunks}, {self.device}{', bf16' if self.bf16 else ''}{steps})"
        )

    # ------------------------------------------------------------------ conversion
    def prepare(
        self, mix: torch.Tensor, sample_rate: int
    ) -> Tuple[torch.Tensor, List[str]]:
        """Convert [B, C, T] audio to the model's rate and channels.

        Returns:
            (float32 [B, M, T'] at :attr:`sample_rate`, one note per conversion)
        """
        return convert_audio(mix, sample_rate, self.num_channels, self.sample_rate)

    # ------------------------------------------------------------------ separation
    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    @torch.no_grad()
    def separate_prepared(
        self, mix: torch.Tensor, *, progress: bool = False
    ) -> torch.Tensor:
        """Separate audio already at the model's rate and channels.

        Args:
            mix: [B, M, T] float32.
            progress: show a progress bar over the chunks.

        Returns:
            [B, N, M, T] float32 on the CPU, stems in :attr:`stems` order.
        """
        from espnet2_ext.enh.inference.chunking import apply_chunked

        length = mix.shape[-1]
        if length < self._min_length:
            # the STFT's reflection padding needs at least n_fft / 2 + 1 samples
            mix = torch.nn.functional.pad(mix, (0, self._min_length - length))
        with self._autocast():
            if self.multistep is None:
                self._music.show_progressbar = progress
                est = self._music.separate_tensor(mix)
            else:
                mix = mix.to(self.device)
                if self.segment is None:
                    est = self.multistep(mix)
                else:
                    # the chunk and hop of MusicSeparator (its hop_size in seconds)
                    hop_seconds = self.segment * (1.0 - self.overlap)
                    chunk = int(round(self.segment * self.sample_rate))
                    hop = max(1, int(round(hop_seconds * self.sample_rate)))
                    est = apply_chunked(
                        self.multistep,
                        mix,
                        chunk_size=chunk,
                        hop_size=hop,
                        window=self.window,
                        progress=progress,
                    )
        return est[..., :length].float().cpu()

    def separate(
        self, audio: AudioArray, sample_rate: int, *, progress: bool = False
    ) -> Dict[str, AudioArray]:
        """Separate a waveform.

        Args:
            audio: channels first: [T] (mono), [C, T] or [B, C, T]; a torch tensor or
                a numpy array.
            sample_rate: its sampling rate (resampled to :attr:`sample_rate` if it
                differs).
            progress: show a progress bar over the chunks.

        Returns:
            ``{stem: waveform}`` in :attr:`stems` order; each waveform is [M, T'] (or
            [B, M, T'] for a batch) at :attr:`sample_rate` with the model's M
            channels, float32, of the input's type (tensor or numpy).
        """
        as_numpy = isinstance(audio, np.ndarray)
        mix = torch.as_tensor(np.asarray(audio) if as_numpy else audio).detach().cpu()
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
        est = self.separate_prepared(mix, progress=progress)
        stems = {}
        for n, name in enumerate(self.stems):
            wave = est[:, n]
            wave = wave[0] if single else wave
            stems[name] = wave.numpy() if as_numpy else wave
        return stems

    def separate_file(
        self, path: Union[str, Path], *, progress: bool = False
    ) -> Dict[str, torch.Tensor]:
        """Decode an audio file and separate it.

        Returns:
            ``{stem: float32 tensor [M, T']}`` at :attr:`sample_rate`.

        Raises:
            AudioDecodeError: the file cannot be decoded.
        """
        mix, rate = read_audio(path)
        return self.separate(mix, rate, progress=progress)


def load_model(
    source: Union[str, Path],
    *,
    model_file: Optional[Union[str, Path]] = None,
    device: str = "cpu",
    segment: Optional[float] = DEFAULT_SEGMENT,
    overlap: float = DEFAULT_OVERLAP,
    window: str = "hann",
    bf16: bool = False,
    cache_dir: Optional[Union[str, Path]] = None,
    hub_cache_dir: Optional[Union[str, Path]] = None,
    revision: Optional[str] = None,
    local_files_only: bool = False,
    multistep_schedule: Union[None, str, Path, "RatioSchedule"] = None,
    multistep_metric: Optional[str] = None,
    multistep_steps: Optional[int] = None,
    multistep_candidates: Optional[int] = None,
) -> Separator:
    """Load a separation model from a pack, a folder or a hub repository.

    Args:
        source: pack ``.zip``, folder, or hub id ``user/name`` (``user/name@rev``).
        model_file: which ``.pth`` of a folder to load, when it has several.
        cache_dir: where packs are unpacked (default ``~/.cache/espnet2_ext``).
        hub_cache_dir: the hub client's cache (default: its own).
        revision: hub branch, tag or commit.
        local_files_only: use only the hub cache (also ``HF_HUB_OFFLINE=1``).
        Others: see :class:`Separator`.

    Raises:
        FileNotFoundError: the model or one of its files is missing.
        IncompatiblePackError: the pack was made by an incompatible espnet2_ext.
        UnsafeArchiveError: the pack has entries that escape its folder.
        RuntimeError: the weights are corrupt or do not fit the config.
    """
    files = resolve_source(
        source,
        model_file=model_file,
        cache_dir=cache_dir,
        hub_cache_dir=hub_cache_dir,
        revision=revision,
        local_files_only=local_files_only,
    )
    separator = Separator(
        files,
        device=device,
        segment=segment,
        overlap=overlap,
        window=window,
        bf16=bf16,
        multistep_schedule=multistep_schedule,
        multistep_metric=multistep_metric,
        multistep_steps=multistep_steps,
        multistep_candidates=multistep_candidates,
    )
    logger.info("loaded %r", separator)
    return separator


__all__: Sequence[str] = (
    "AudioDecodeError",
    "DEFAULT_OVERLAP",
    "DEFAULT_SEGMENT",
    "DiffusionSeparator",
    "Separator",
    "convert_audio",
    "load_diffusion_separator",
    "load_model",
    "read_audio",
)
