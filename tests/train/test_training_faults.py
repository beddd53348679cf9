"""Training under faults, through the real entry point (issue 16): a non-finite loss
stops the run with exit status 1 and one message; no validation checkpoint of a run
without a finite validation loss; resume from an unreadable checkpoint falls back or
says so, and nothing is overwritten."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from train_helpers import files, make_run, train

from espnet2_ext.train.trainer import (
    FiniteGuard,
    NonFiniteGradientError,
    NonFiniteLossError,
    atomic_torch_save,
)

pytestmark = pytest.mark.slow


def _error_line(proc):
    lines = [
        ln for ln in proc.stderr.splitlines() if ln.startswith("enh_train: error:")
    ]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[0]


def test_nan_in_the_data_stops_training_and_names_the_file(tmp_path):
    scps = make_run(tmp_path)
    uid, path = scps["wav"].read_text().splitlines()[1].split()
    audio, fs = sf.read(path, dtype="float32")
    audio[100, 0] = np.nan
    sf.write(path, audio, fs, subtype="FLOAT")
    proc = train(tmp_path, scps)
    assert proc.returncode == 1
    line = _error_line(proc)
    assert "loss is nan at epoch 1, training iteration 1" in line
    assert f"speech_mix of {uid}" in line
    # nothing but the config: no checkpoint, no epoch file, no valid.*.pth
    assert files(tmp_path / "exp") == ["config.yaml"]


def test_divergence_stops_training_and_says_so(tmp_path):
    scps = make_run(tmp_path, optim_conf=dict(lr=1.0e8))
    proc = train(tmp_path, scps)
    assert proc.returncode == 1
    line = _error_line(proc)
    assert "on finite inputs" in line and "diverged" in line
    assert "iteration 2" in line  # the first update was taken, then the loss blew up
    assert files(tmp_path / "exp") == ["config.yaml"]


def test_non_finite_validation_loss_writes_no_valid_checkpoint(tmp_path):
    scps = make_run(tmp_path)
    # a NaN only in the validation data: training steps are finite
    valid = tmp_path / "valid_wav.scp"
    lines = scps["wav"].read_text().splitlines()
    uid, path = lines[0].split()
    audio, fs = sf.read(path, dtype="float32")
    audio[5, 1] = np.inf
    bad = tmp_path / "bad_mix.wav"
    sf.write(bad, audio, fs, subtype="FLOAT")
    valid.write_text("\n".join([f"{uid} {bad}", *lines[1:]]) + "\n")
    proc = train(tmp_path, scps, valid={"wav": valid})
    assert proc.returncode == 1, proc.stderr[-2000:]
    line = _error_line(proc)
    assert "validation loss" in line and f"speech_mix of {uid}" in line
    assert not [f for f in files(tmp_path / "exp") if f.startswith("valid.")]
    assert "checkpoint.pth" not in files(tmp_path / "exp")


#: a schedule that moves at every update (2 per epoch)
SCHEDULE = dict(
    scheduler="warmupstaircaselr",
    scheduler_conf=dict(
        warmup_steps=2, decay_start_step=2, decay_stop_step=100, step_size=1, gamma=0.5
    ),
)


@pytest.fixture(scope="module")
def trained_twice(tmp_path_factory):
    """Two epochs, written by our trainer (kept as a template: tests copy it)."""
    root = tmp_path_factory.mktemp("resume")
    scps = make_run(root, max_epoch=2, num_iters_per_epoch=2, **SCHEDULE)
    proc = train(root, scps)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, scps


def _copy(trained, tmp_path):
    root, scps = trained
    shutil.copytree(root / "exp", tmp_path / "exp", symlinks=True)
    shutil.copy(root / "train.yaml", tmp_path / "train.yaml")
    return scps


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_checkpoints_are_written_whole(trained_twice):
    root, _ = trained_twice
    exp = root / "exp"
    assert not [f for f in files(exp) if ".partial" in f]
    states = torch.load(exp / "checkpoint.pth", weights_only=True)
    assert states["reporter"]["epoch"] == 2
    for name in ("1epoch.pth", "2epoch.pth", "valid.loss.best.pth"):
        torch.load(exp / name, weights_only=True)


def test_resume_from_a_truncated_checkpoint_falls_back_to_the_last_epoch(
    trained_twice, tmp_path
):
    scps = _copy(trained_twice, tmp_path)
    exp = tmp_path / "exp"
    _truncate(exp / "checkpoint.pth")
    broken = (exp / "checkpoint.pth").read_bytes()
    proc = train(tmp_path, scps, "--resume", "true", "--max_epoch", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cannot be read" in proc.stderr and "resuming from 2epoch.pth" in proc.stderr
    assert "3/3epoch started" in proc.stderr and "1/3epoch started" not in proc.stderr
    # the schedule continues where epoch 2 ended (update 4), not from the start
    assert "WarmupStaircaseLR is moved to step 4" in proc.stderr
    # the unreadable file is kept, not overwritten; a new whole checkpoint is written
    assert (exp / "checkpoint.pth.unreadable").read_bytes() == broken
    states = torch.load(exp / "checkpoint.pth", weights_only=True)
    assert states["reporter"]["epoch"] == 3
    lr = states["optimizers"][0]["param_groups"][0]["lr"]
    assert lr == pytest.approx(1e-3 * 0.5**4)  # after 6 updates: 0.5^(6 - 2)


def test_resume_with_nothing_readable_is_a_clear_error_and_changes_nothing(
    trained_twice, tmp_path
):
    scps = _copy(trained_twice, tmp_path)
    exp = tmp_path / "exp"
    for name in ("checkpoint.pth", "1epoch.pth", "2epoch.pth"):
        _truncate(exp / name)
    before = {p.name: p.read_bytes() for p in exp.iterdir() if p.is_file()}
    proc = train(tmp_path, scps, "--resume", "true", "--max_epoch", "3")
    assert proc.returncode == 1
    line = _error_line(proc)
    assert "cannot resume" in line and "Nothing was changed" in line
    assert "2epoch.pth, 1epoch.pth" in line
    after = {p.name: p.read_bytes() for p in exp.iterdir() if p.is_file()}
    # config.yaml is rewritten by ESPnet before training starts (same content)
    assert {k: v for k, v in after.items() if k != "config.yaml"} == {
        k: v for k, v in before.items() if k != "config.yaml"
    }


# ------------------------------------------------------------------ unit level
class _SqrtLoss(torch.nn.Module):
    """loss = sqrt(w·x): finite value, infinite gradient at w·x = 0."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([1.0]))

    def forward(self, x, utt_id=None):
        loss = torch.sqrt(self.w * x).sum()
        return loss, {"loss": loss.detach()}, torch.tensor(1.0)


def test_guard_stops_on_an_infinite_gradient_of_a_finite_loss():
    guard = FiniteGuard(_SqrtLoss(), phase="training", epoch=4, check_gradients=True)
    loss, _, _ = guard(x=torch.tensor([1.0]), utt_id=["a"])
    loss.backward()  # finite gradient
    loss, _, _ = guard(x=torch.tensor([0.0]), utt_id=["b"])
    assert torch.isfinite(loss)
    loss.backward()  # d sqrt(w x) / dw at x = 0: inf
    with pytest.raises(NonFiniteGradientError, match="epoch 4, training iteration 2"):
        guard(x=torch.tensor([1.0]), utt_id=["c"])
    # and after the last iteration of an epoch
    guard = FiniteGuard(_SqrtLoss(), phase="training", epoch=1, check_gradients=True)
    guard(x=torch.tensor([0.0]))[0].backward()
    with pytest.raises(NonFiniteGradientError, match="parameters w"):
        guard.check_last_gradients()
    guard.remove_hooks()


def test_guard_names_non_finite_inputs():
    guard = FiniteGuard(_SqrtLoss(), phase="validation", epoch=2, check_gradients=False)
    with pytest.raises(NonFiniteLossError, match="x of u2"):
        guard(x=torch.tensor([1.0, float("nan")]), utt_id=["u1", "u2"])


def test_atomic_save_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "checkpoint.pth"
    torch.save({"a": torch.ones(2)}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot write this")

    with atomic_torch_save():
        with pytest.raises(RuntimeError, match="cannot write this"):
            torch.save({"a": Unpicklable()}, target)
        torch.save({"b": torch.zeros(1)}, tmp_path / "new.pth")
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pth", "new.pth"]
