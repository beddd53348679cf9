"""The diffusion source prior as an ESPnet model, and its sampling-time denoiser.

:class:`DiffusionPriorModel` trains an ε-prediction network on single-source waveforms
with the DDPM loss (Ho et al. 2020) inside ESPnet's Trainer: ``forward`` returns
``(loss, stats, weight)``. It keeps an exponential moving average of the network's
weights as buffers (``ema.shadow.*`` in the state dict), updated after every optimizer
step by a hook that :class:`~espnet2_ext.tasks.diffusion.DiffusionPriorTask` installs on
its optimizers; validation runs the averaged weights, so ESPnet's "best valid loss"
picks the checkpoints whose averaged prior is best.

:class:`PriorDenoiser` is what the separation sampler consumes: a frozen network (the
averaged weights by default), the schedule and the step → network-time mapping.
"""

from __future__ import annotations

import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from espnet2.train.abs_espnet_model import AbsESPnetModel
from torch import nn

from espnet2_ext.diffusion.abs_prior_network import AbsPriorNetwork
from espnet2_ext.diffusion.ema import ExponentialMovingAverage
from espnet2_ext.diffusion.schedule import DDPMSchedule


class PriorDenoiser(nn.Module):
    """A frozen ε-predictor with its schedule, called by the samplers.

    Args:
        network: the ε-prediction network (its weights are used as they are).
        schedule: the DDPM schedule it was trained with.
        time_scale: network time = step index × time_scale.
        cfg_scale: classifier-free guidance weight w for class-conditional networks:
            ``ε = ε(∅) + w (ε(c) − ε(∅))``; 1 uses the conditional prediction alone
            (one network call), other values cost two calls.
        class_names: names of the class labels 0 … num_classes − 1 (may be empty).
    """

    def __init__(
        self,
        network: AbsPriorNetwork,
        schedule: DDPMSchedule,
        time_scale: float,
        cfg_scale: float = 1.0,
        class_names: Sequence[str] = (),
    ):
        super().__init__()
        if class_names and len(class_names) != network.num_classes:
            raise ValueError(
                f"{len(class_names)} class names for a network of "
                f"{network.num_classes} classes"
            )
        self.class_names = list(class_names)
        self.network = network
        self.schedule = schedule
        self.time_scale = float(time_scale)
        self.cfg_scale = float(cfg_scale)
        self.requires_grad_(False)
        self.eval()

    @property
    def num_classes(self) -> int:
        return self.network.num_classes

    def evaluations_per_call(self, category: Optional[torch.Tensor]) -> int:
        """Network evaluations that one :meth:`forward` costs."""
        return 2 if (category is not None and self.cfg_scale != 1.0) else 1

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        category: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """ε̂ for x_t [B, T] at steps t [B] (long), classes [B] or None → [B, T]."""
        time = t.to(torch.float32) * self.time_scale
        if category is None or self.cfg_scale == 1.0:
            return self.network(x_t, time, category)
        null = torch.full_like(category, self.network.num_classes)
        both = self.network(
            torch.cat([x_t, x_t]), torch.cat([time, time]), torch.cat([category, null])
        )
        cond, uncond = both.chunk(2)
        return uncond + self.cfg_scale * (cond - uncond)


class DiffusionPriorModel(AbsESPnetModel):
    """DDPM source prior trained through ESPnet (seeds/001, §6 of DESIGN.md).

    Args:
        network: the ε-prediction network.
        num_steps: diffusion steps T (paper: 200).
        beta_start: first β of the linear schedule (paper: 1e-4).
        beta_end: last β (paper: 0.02).
        time_scale: the network sees ``step × time_scale``; None uses 1000 / T, as the
            authors (a 1000-step time axis whatever T is).
        class_dropout: probability of replacing a training label by "no class", so the
            network also learns the unconditional prior (classifier-free guidance).
        ema_decay: decay of the moving average of the weights; 0 disables it.
        ema_warmup: use the (1 + n) / (10 + n) warm-up of the decay.
        validate_with_ema: compute the validation loss with the averaged weights.
        valid_seed: seed of the steps and noise drawn in validation, so the validation
            loss of different epochs is measured on the same draws.
    """

    def __init__(
        self,
        network: AbsPriorNetwork,
        num_steps: int = 200,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        time_scale: Optional[float] = None,
        class_dropout: float = 0.1,
        ema_decay: float = 0.9999,
        ema_warmup: bool = True,
        validate_with_ema: bool = True,
        valid_seed: int = 0,
    ):
        super().__init__()
        if not 0.0 <= class_dropout <= 1.0:
            raise ValueError(f"class_dropout={class_dropout} must lie in [0, 1]")
        self.network = network
        self.schedule = DDPMSchedule(num_steps, beta_start, beta_end)
        if time_scale is None:
            time_scale = 1000.0 / num_steps
        self.time_scale = float(time_scale)
        self.class_dropout = float(class_dropout)
        self.ema = (
            ExponentialMovingAverage(network, decay=ema_decay, warmup=ema_warmup)
            if ema_decay > 0
            else None
        )
        self.validate_with_ema = bool(validate_with_ema)
        self.valid_seed = int(valid_seed)

    @property
    def num_classes(self) -> int:
        return self.network.num_classes

    @torch.no_grad()
    def update_ema(self) -> None:
        """Average the current weights in (called after each optimizer step)."""
        if self.ema is not None:
            self.ema.update(self.network)

    def _check_batch(
        self,
        speech: torch.Tensor,
        lengths: Optional[torch.Tensor],
        category: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        if speech.dim() == 3 and speech.shape[-1] == 1:
            speech = speech[..., 0]
        if speech.dim() != 2:
            raise ValueError(
                f"speech_ref1 must be mono waveforms [B, T] (or [B, T, 1]), got "
                f"{tuple(speech.shape)}; down-mix in the preprocessor (downmix: true)"
            )
        if lengths is None:
            lengths = torch.full(
                (speech.shape[0],),
                speech.shape[1],
                dtype=torch.long,
                device=speech.device,
            )
        if category is not None:
            category = category.reshape(-1).long()
            if self.num_classes == 0:
                category = None  # an unconditional prior ignores labels in the data
            elif int(category.min()) < 0 or int(category.max()) >= self.num_classes:
                raise ValueError(
                    f"category labels must lie in [0, {self.num_classes - 1}] "
                    f"(network_conf.num_classes={self.num_classes}), got "
                    f"[{int(category.min())}, {int(category.max())}]"
                )
        return speech, lengths, category

    def forward(
        self,
        speech_ref1: torch.Tensor,
        speech_ref1_lengths: Optional[torch.Tensor] = None,
        category: Optional[torch.Tensor] = None,
        utt_id: Optional[List[str]] = None,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """DDPM ε-prediction loss on a batch of single-source waveforms.

        Args:
            speech_ref1: waveforms [B, T].
            speech_ref1_lengths: valid samples [B]; the loss ignores the padding.
            category: class labels [B] (or [B, 1]) for a class-conditional prior.
            utt_id: utterance ids (ESPnet's Trainer passes them; unused).
        Returns:
            loss (scalar), stats {"loss"}, weight (batch size).
        """
        x0, lengths, category = self._check_batch(
            speech_ref1, speech_ref1_lengths, category
        )
        batch, num_samples = x0.shape
        generator = None
        if not self.training:
            generator = torch.Generator(device=x0.device).manual_seed(self.valid_seed)
        t = torch.randint(
            0, self.schedule.num_steps, (batch,), generator=generator, device=x0.device
        )
        noise = torch.randn(
            x0.shape, generator=generator, device=x0.device, dtype=x0.dtype
        )
        x_t = self.schedule.q_sample(x0, t, noise)

        if category is not None and self.training and self.class_dropout > 0:
            drop = torch.rand(batch, device=x0.device) < self.class_dropout
            null = torch.full_like(category, self.num_classes)
            category = torch.where(drop, null, category)

        network = self.network
        if not self.training and self.validate_with_ema and self.ema is not None:
            network = self.ema.shadow
        eps = network(x_t, t.float() * self.time_scale, category)

        mask = (
            torch.arange(num_samples, device=x0.device)[None, :] < lengths[:, None]
        ).to(eps.dtype)
        squared = (eps.float() - noise.float()) ** 2 * mask
        loss = squared.sum() / mask.sum().clamp(min=1)
        stats = {"loss": loss.detach()}
        weight = torch.tensor(batch, device=x0.device)
        return loss, stats, weight

    def collect_feats(
        self,
        speech_ref1: torch.Tensor,
        speech_ref1_lengths: Optional[torch.Tensor] = None,
        category: Optional[torch.Tensor] = None,
        utt_id: Optional[List[str]] = None,
    ) -> Dict[str, torch.Tensor]:
        x0, lengths, _ = self._check_batch(speech_ref1, speech_ref1_lengths, None)
        return {"feats": x0, "feats_lengths": lengths}

    def as_denoiser(
        self,
        use_ema: bool = True,
        cfg_scale: float = 1.0,
        class_names: Sequence[str] = (),
    ) -> PriorDenoiser:
        """A frozen copy for sampling (the averaged weights unless use_ema=False)."""
        if use_ema and self.ema is None:
            raise ValueError(
                "this prior was trained without EMA (ema_decay: 0); pass use_ema=False"
            )
        network = self.ema.shadow if use_ema else self.network
        network = copy.deepcopy(network)
        return PriorDenoiser(
            network,
            self.schedule,
            self.time_scale,
            cfg_scale=cfg_scale,
            class_names=class_names,
        )
