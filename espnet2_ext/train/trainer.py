"""ESPnet's trainer, made to fail loudly and to keep its checkpoints whole.

:class:`GuardedTrainer` is ESPnet's :class:`~espnet2.train.trainer.Trainer` (our task
sets it as ``EnhancementTask.trainer``); it reuses ESPnet's training loop and changes
four things through the loop's extension points:

* **Non-finite loss or gradient stops the run.** ESPnet logs "The grad norm is nan.
  Skipping updating the model." and goes on; a run whose every step is skipped stops
  with exit status 0 and still writes ``valid.loss.best.pth``. Here the model is called
  through :class:`FiniteGuard`, which raises :class:`NonFiniteLossError` (training or
  validation loss) or :class:`NonFiniteGradientError` naming the epoch, the iteration
  and the utterances, before anything of that step is saved; our entry point turns it
  into one error line and exit status 1. With ``use_amp`` the gradient check is left to
  the ``GradScaler`` (overflowing fp16 gradients are part of its normal operation); a
  non-finite loss still stops the run.
* **No validation checkpoint without a finite validation loss:** a non-finite
  validation loss stops the run the same way, so ``valid.*.pth`` only ever points at
  epochs whose validation loss was finite.
* **Atomic checkpoints.** ESPnet's loop writes ``checkpoint.pth`` and ``Nepoch.pth``
  in place with ``torch.save``; a kill during the write leaves a truncated file. While
  :meth:`GuardedTrainer.run` runs, ``torch.save`` to a path writes a temporary file in
  the same folder, flushes it to disk and renames it over the target
  (:func:`atomic_torch_save`).
* **Resume falls back.** With ``--resume true`` an unreadable ``checkpoint.pth`` is
  not fatal: training continues from the newest loadable ``Nepoch.pth`` with a warning
  that says what could not be restored, and the unreadable file is kept (renamed)
  rather than overwritten. When nothing loads, :class:`CheckpointError` says so and
  nothing is changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import re
import warnings
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from espnet2.schedulers.abs_scheduler import (
    AbsBatchStepScheduler,
    AbsEpochStepScheduler,
    AbsValEpochStepScheduler,
)
from espnet2.torch_utils.safe_torch_load import safe_torch_load
from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass

logger = logging.getLogger(__name__)

#: Temporary files of :func:`atomic_torch_save`: ``.<name>.partial-<pid>``.
_PARTIAL = re.compile(r"^\..+\.partial-\d+$")
_EPOCH_FILE = re.compile(r"^(\d+)epoch\.pth$")


class TrainingFault(RuntimeError):
    """A training run cannot go on; the message says why and what to do."""


class NonFiniteLossError(TrainingFault):
    """The training or validation loss is NaN or infinite."""


class NonFiniteGradientError(TrainingFault):
    """A gradient is NaN or infinite (the loss was finite)."""


class CheckpointError(TrainingFault):
    """No checkpoint to resume from can be read."""


def fault_message(error: BaseException) -> Optional[str]:
    """The message of a :class:`TrainingFault`, also one raised in a worker process.

    ESPnet's multi-GPU launcher re-raises a worker's exception in the parent as
    ``torch.multiprocessing.ProcessRaisedException`` holding the worker's traceback
    text; the fault's line is found in it. None for any other exception.
    """
    if isinstance(error, TrainingFault):
        return str(error)
    faults = (
        TrainingFault,
        NonFiniteLossError,
        NonFiniteGradientError,
        CheckpointError,
    )
    names = "|".join(cls.__name__ for cls in faults)
    match = re.search(rf"(?:^|\.)(?:{names}): (.+)$", str(error), re.MULTILINE)
    return None if match is None else match.group(1)


# ------------------------------------------------------------------ atomic saving
def _atomic_save(original, obj, f, *args, **kwargs):
    """``original(obj, f)`` through a temporary file and a rename, for paths ``f``."""
    if not isinstance(f, (str, os.PathLike)):
        return original(obj, f, *args, **kwargs)
    path = Path(f)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            original(obj, handle, *args, **kwargs)
            handle.flush()
            os.fsync(handle.fileno())
        _keep_unreadable(path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_torch_save() -> Iterator[None]:
    """Within the block, ``torch.save(obj, path)`` replaces ``path`` atomically.

    ESPnet's training loop calls ``torch.save`` inline (no hook); the function is
    swapped for the duration of the block and restored afterwards. Saving to file
    objects is unchanged.
    """
    original = torch.save

    def save(obj, f, *args, **kwargs):
        return _atomic_save(original, obj, f, *args, **kwargs)

    torch.save = save
    try:
        yield
    finally:
        torch.save = original


#: checkpoint files found unreadable at resume: kept, renamed, when first replaced
_unreadable: List[Path] = []


def _keep_unreadable(path: Path) -> None:
    """Rename an unreadable checkpoint that is about to be replaced (never delete it)."""
    if path not in _unreadable or not path.exists():
        return
    n = 0
    while True:
        kept = path.with_name(f"{path.name}.unreadable" + (f".{n}" if n else ""))
        if not kept.exists():
            break
        n += 1
    os.replace(path, kept)
    _unreadable.remove(path)
    logger.warning("kept the unreadable %s as %s", path, kept)


# ------------------------------------------------------------------ the guard
def _is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _on_ranks(ranks: List[int]) -> str:
    """`` on rank 1`` in distributed training, else nothing."""
    return f" on rank {', '.join(map(str, ranks))}" if _is_distributed() else ""


def _collective_device() -> torch.device:
    """Where flags must live for the process group's backend (NCCL: the GPU)."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class FiniteGuard(torch.nn.Module):
    """Calls the model and raises when its loss (or the last gradient) is not finite.

    Wraps the model (or its ``DistributedDataParallel``) for one epoch of training or
    validation. The gradient check runs as a post-accumulate-grad hook on every
    trainable parameter (no host synchronisation); its flag is read at the next call,
    after the optimizer step of that iteration was skipped by ESPnet, and by
    :meth:`check_last_gradients` after the last iteration. In distributed training
    the flags of all ranks are combined at every call, so every rank stops at the
    same iteration (no rank is left waiting in a collective).

    Args:
        module: what ESPnet's loop calls.
        phase: ``"training"`` or ``"validation"`` (for messages).
        epoch: the epoch number (for messages).
        check_gradients: hook the gradients (False under ``use_amp``, validation).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        phase: str,
        epoch: Optional[int],
        check_gradients: bool,
    ):
        super().__init__()
        self.module = module
        self.phase = phase
        self.epoch = epoch
        self.iteration = 0
        self._grad_flags: List[Tuple[str, torch.Tensor]] = []
        self._hooks = []
        if check_gradients:
            for name, param in module.named_parameters():
                if param.requires_grad:
                    self._hooks.append(
                        param.register_post_accumulate_grad_hook(
                            self._grad_hook(name.removeprefix("module."))
                        )
                    )

    def _grad_hook(self, name: str):
        def hook(param: torch.Tensor) -> None:
            if param.grad is not None:
                self._grad_flags.append((name, ~torch.isfinite(param.grad).all()))

        return hook

    def remove_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    def _where(self, iteration: int) -> str:
        epoch = f"epoch {self.epoch}, " if self.epoch is not None else ""
        return f"{epoch}{self.phase} iteration {iteration}"

    def _bad_gradients(self) -> Tuple[torch.Tensor, List[str]]:
        """(flag tensor, names); names are read only when the flag is raised."""
        flags = self._grad_flags
        self._grad_flags = []
        if not flags:
            return torch.tensor(False), []
        flag = torch.stack([f for _, f in flags]).any()
        names = [n for n, f in flags if bool(f)] if bool(flag) else []
        return flag, names

    def _combine(
        self, loss_bad: torch.Tensor, grad_bad: torch.Tensor
    ) -> Tuple[List[int], List[int]]:
        """Ranks whose loss / gradient is not finite (``[0]`` without distribution)."""
        if not _is_distributed():
            return ([0] if bool(loss_bad) else []), ([0] if bool(grad_bad) else [])
        world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
        flags = torch.zeros(2, world, device=_collective_device())
        flags[0, rank] = loss_bad.float().to(flags.device)
        flags[1, rank] = grad_bad.float().to(flags.device)
        torch.distributed.all_reduce(flags)
        return (
            flags[0].nonzero().flatten().tolist(),
            flags[1].nonzero().flatten().tolist(),
        )

    def _raise(
        self,
        loss: torch.Tensor,
        loss_ranks: List[int],
        grad_ranks: List[int],
        grad_names: List[str],
        batch: Dict,
    ) -> None:
        if grad_ranks:
            names = ", ".join(grad_names[:5]) + ("…" if len(grad_names) > 5 else "")
            raise NonFiniteGradientError(
                f"training stopped: a non-finite (NaN or inf) gradient at "
                f"{self._where(self.iteration - 1)}{_on_ranks(grad_ranks)}"
                + (f" (parameters {names})" if names else "")
                + "; the loss was finite. The update diverged: lower the learning "
                "rate (optim_conf.lr), keep grad_clip, and check the scheduler's "
                "peak. Nothing of this step was saved."
            )
        if loss_ranks:
            where = f"{self._where(self.iteration)}{_on_ranks(loss_ranks)}"
            value = float(loss.reshape(-1)[0]) if loss.numel() else float("nan")
            if math.isfinite(value):  # distributed: another rank's loss
                raise NonFiniteLossError(
                    f"training stopped: the {self.phase} loss is not finite at "
                    f"{where} (this rank's loss and inputs are finite; the log of "
                    "that rank names the cause). Nothing of this step was saved."
                )
            bad_inputs = _non_finite_inputs(batch)
            if bad_inputs:
                raise NonFiniteLossError(
                    f"training stopped: the {self.phase} loss is {value} at {where}: "
                    f"the data hold NaN or inf samples ({bad_inputs}). Fix or remove "
                    "these files. Nothing of this step was saved."
                )
            raise NonFiniteLossError(
                f"training stopped: the {self.phase} loss is {value} at {where}, "
                "on finite inputs"
                + (f" ({_utterances(batch)})" if _utterances(batch) else "")
                + ": the model diverged. Lower the learning rate (optim_conf.lr, the "
                "scheduler's peak) and keep grad_clip. Nothing of this step was "
                "saved."
            )

    def forward(self, **batch):
        self.iteration += 1
        retval = self.module(**batch)
        loss = retval["loss"] if isinstance(retval, dict) else retval[0]
        loss_bad = ~torch.isfinite(loss.detach()).all()
        grad_bad, grad_names = self._bad_gradients()  # of the previous iteration
        loss_ranks, grad_ranks = self._combine(loss_bad, grad_bad)
        self._raise(loss.detach(), loss_ranks, grad_ranks, grad_names, batch)
        return retval

    def check_last_gradients(self) -> None:
        """Raise if the gradients of the last iteration were not finite."""
        self.iteration += 1  # the message names the previous iteration
        grad_bad, names = self._bad_gradients()
        _, grad_ranks = self._combine(torch.tensor(False), grad_bad)
        self._raise(torch.tensor(0.0), [], grad_ranks, names, {})


def _utterances(batch: Dict, limit: int = 8) -> str:
    ids = list(batch.get("utt_id") or [])
    if not ids:
        return ""
    return (
        "utterances "
        + ", ".join(map(str, ids[:limit]))
        + ("…" if len(ids) > limit else "")
    )


def _non_finite_inputs(batch: Dict, limit: int = 8) -> str:
    """``"speech_mix of utt1; speech_ref2 of utt3"``: which inputs hold NaN or inf."""
    ids = list(batch.get("utt_id") or [])
    found = []
    for key, value in batch.items():
        if not torch.is_tensor(value) or not value.is_floating_point():
            continue
        if value.dim() == 0:
            value = value.reshape(1)
        bad = ~torch.isfinite(value.reshape(value.shape[0], -1)).all(dim=1)
        for index in bad.nonzero().flatten().tolist():
            who = ids[index] if index < len(ids) else f"item {index}"
            found.append(f"{key} of {who}")
    return "; ".join(found[:limit]) + ("…" if len(found) > limit else "")


# ------------------------------------------------------------------ the trainer
@dataclasses.dataclass
class GuardedTrainerOptions(TrainerOptions):
    """ESPnet's options plus what a fallback resume needs to move the schedule."""

    num_iters_per_epoch: Optional[int] = None


class GuardedTrainer(Trainer):
    """ESPnet's trainer with the guards of this module (see the module docstring)."""

    #: the options of the running :meth:`run` (ESPnet's ``resume`` does not get them)
    _options: Optional[GuardedTrainerOptions] = None

    @classmethod
    def build_options(cls, args) -> GuardedTrainerOptions:
        return build_dataclass(GuardedTrainerOptions, args)

    @classmethod
    def run(cls, *, trainer_options, distributed_option, **kwargs) -> None:
        output_dir = Path(trainer_options.output_dir)
        if not distributed_option.distributed or distributed_option.dist_rank == 0:
            _remove_own_partials(output_dir)
        cls._options = trainer_options
        try:
            with atomic_torch_save():
                super().run(
                    trainer_options=trainer_options,
                    distributed_option=distributed_option,
                    **kwargs,
                )
        finally:
            cls._options = None

    @classmethod
    def train_one_epoch(
        cls, *, model, scaler, reporter, options, distributed_option, **kwargs
    ) -> bool:
        guard = FiniteGuard(
            model,
            phase="training",
            epoch=getattr(reporter, "epoch", None),
            check_gradients=scaler is None,
        )
        try:
            all_steps_are_invalid = super().train_one_epoch(
                model=guard,
                scaler=scaler,
                reporter=reporter,
                options=options,
                distributed_option=distributed_option,
                **kwargs,
            )
            guard.check_last_gradients()
        finally:
            guard.remove_hooks()
        return all_steps_are_invalid

    @classmethod
    def validate_one_epoch(
        cls, *, model, reporter, options, distributed_option, **kwargs
    ) -> None:
        guard = FiniteGuard(
            model,
            phase="validation",
            epoch=getattr(reporter, "epoch", None),
            check_gradients=False,
        )
        super().validate_one_epoch(
            model=guard,
            reporter=reporter,
            options=options,
            distributed_option=distributed_option,
            **kwargs,
        )

    @classmethod
    def resume(
        cls,
        checkpoint,
        model,
        reporter,
        optimizers,
        schedulers,
        scaler,
        ngpu: int = 0,
        strict: bool = True,
    ) -> None:
        checkpoint = Path(checkpoint)
        problem = _unreadable_reason(checkpoint)
        if problem is None:
            return super().resume(
                checkpoint=checkpoint,
                model=model,
                reporter=reporter,
                optimizers=optimizers,
                schedulers=schedulers,
                scaler=scaler,
                ngpu=ngpu,
                strict=strict,
            )
        epoch_file, epoch, tried = _newest_loadable_epoch(checkpoint.parent, model)
        if epoch_file is None:
            raise CheckpointError(
                f"cannot resume: {checkpoint} cannot be read ({problem}) and no "
                f"<N>epoch.pth in {checkpoint.parent} loads"
                + (f" (tried {', '.join(tried)})" if tried else "")
                + ". Nothing was changed. Move the folder away to start afresh, or "
                "re-run with --resume false to train from scratch into it (that "
                "overwrites its checkpoints)."
            )
        reporter.set_epoch(epoch)
        moved = _move_schedulers(schedulers, epoch, cls._options)
        _unreadable.append(checkpoint)
        logger.warning(
            "%s cannot be read (%s); resuming from %s instead: the model weights of "
            "epoch %d are restored, the optimizer state starts afresh, %s, and the "
            "validation history of epochs 1-%d is lost (best-model selection and "
            "averaging see later epochs only). The unreadable file is kept as "
            "%s.unreadable when the next checkpoint is written.",
            checkpoint,
            problem,
            epoch_file.name,
            epoch,
            moved,
            epoch,
            checkpoint.name,
        )


def _remove_own_partials(output_dir: Path) -> None:
    """Temporary files that an interrupted :func:`atomic_torch_save` left behind."""
    if not output_dir.is_dir():
        return
    for path in output_dir.iterdir():
        if _PARTIAL.match(path.name) and path.is_file():
            logger.info("removing %s, left by an interrupted save", path)
            path.unlink()


def _unreadable_reason(checkpoint: Path) -> Optional[str]:
    """Why ``checkpoint`` cannot be resumed from, or None when it loads.

    Read with ``weights_only=True`` first; a file that only that refuses (it holds
    Python objects) is left to ESPnet's ``safe_torch_load`` as before.
    """
    try:
        states = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure is a reason
        if "weights_only" in str(e) or "Weights only" in str(e):
            try:
                states = safe_torch_load(checkpoint, map_location="cpu")
            except Exception as e2:  # noqa: BLE001
                return f"{type(e2).__name__}: {str(e2).splitlines()[0][:200]}"
        else:
            return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    missing = {"model", "reporter", "optimizers", "schedulers"} - set(states)
    if not isinstance(states, dict) or missing:
        return f"not an ESPnet training checkpoint (missing {sorted(missing)})"
    return None


def _newest_loadable_epoch(
    folder: Path, model: torch.nn.Module
) -> Tuple[Optional[Path], int, List[str]]:
    """The newest ``<N>epoch.pth`` that loads strictly into ``model`` (loaded)."""
    found: Dict[int, Path] = {}
    for path in folder.iterdir():
        match = _EPOCH_FILE.match(path.name)
        if match is not None and path.is_file():
            found[int(match.group(1))] = path
    tried = []
    for epoch in sorted(found, reverse=True):
        path = found[epoch]
        tried.append(path.name)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        except Exception as e:  # noqa: BLE001
            logger.warning("%s does not load either (%s)", path, e)
            continue
        return path, epoch, tried
    return None, 0, tried


def _move_schedulers(
    schedulers: Sequence, epoch: int, options: Optional[GuardedTrainerOptions]
) -> str:
    """Step the schedulers to the end of ``epoch`` where that position is known."""
    notes = []
    for scheduler in schedulers:
        if scheduler is None:
            continue
        if isinstance(scheduler, AbsValEpochStepScheduler):
            notes.append(f"{type(scheduler).__name__} starts afresh")
            continue
        if isinstance(scheduler, AbsEpochStepScheduler):
            steps = epoch
        elif isinstance(scheduler, AbsBatchStepScheduler):
            per_epoch = getattr(options, "num_iters_per_epoch", None)
            if not per_epoch:
                notes.append(
                    f"{type(scheduler).__name__} starts afresh (its position needs "
                    "num_iters_per_epoch)"
                )
                continue
            steps = epoch * per_epoch // max(1, options.accum_grad)
        else:
            notes.append(f"{type(scheduler).__name__} starts afresh")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "step() before optimizer.step()"
            for _ in range(steps):
                scheduler.step()
        notes.append(f"{type(scheduler).__name__} is moved to step {steps}")
    return "; ".join(notes) or "there is no learning-rate scheduler"
