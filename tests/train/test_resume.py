"""Resume after a hard kill (issue 12): training killed with SIGKILL after its first
epoch and re-run with ``--resume true`` ends with the same weights as a run that was
never interrupted (the learning-rate schedule included)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import torch
from train_helpers import files, make_run, train, train_command

pytestmark = pytest.mark.slow

#: a schedule that changes the learning rate at every step of the 4 epochs (2 steps
#: each), so a resume that lost the scheduler's position would end elsewhere
SCHEDULE = dict(
    scheduler="warmupstaircaselr",
    scheduler_conf=dict(
        warmup_steps=3, decay_start_step=4, decay_stop_step=7, step_size=1, gamma=0.7
    ),
    max_epoch=4,
)


def _kill_after_first_epoch(root, scps, exp):
    proc = subprocess.Popen(
        train_command(root, scps, exp=exp),
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 300
    try:
        while not (root / exp / "1epoch.pth").exists():
            assert proc.poll() is None, "training ended before its first epoch"
            assert time.monotonic() < deadline, "no first epoch after 300 s"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    done = files(root / exp)
    assert "4epoch.pth" not in done, "the kill came after the end of training"
    return done


def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path):
    scps = make_run(tmp_path, **SCHEDULE)
    # the uninterrupted run goes on beside the one that is killed (two cores)
    reference = subprocess.Popen(
        train_command(tmp_path, scps, exp="uninterrupted"),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        _kill_after_first_epoch(tmp_path, scps, "killed")
    finally:
        _, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err[-3000:]
    resumed = train(tmp_path, scps, "--resume", "true", exp="killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "The training was resumed using" in resumed.stderr
    assert "1/4epoch started" not in resumed.stderr

    a = torch.load(tmp_path / "uninterrupted" / "checkpoint.pth", weights_only=True)
    b = torch.load(tmp_path / "killed" / "checkpoint.pth", weights_only=True)
    assert a["reporter"]["epoch"] == b["reporter"]["epoch"] == 4
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=0, atol=0)
    assert a["schedulers"] == b["schedulers"]
    lr = b["optimizers"][0]["param_groups"][0]["lr"]
    assert lr == pytest.approx(1e-3 * 0.7**3)  # held since step 7
