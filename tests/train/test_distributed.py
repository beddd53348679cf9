"""Distributed training without a GPU (issue 12): two processes on this CPU with the
gloo backend, started by ``torchrun`` with ``--dist_init_method env://``, train the
tiny model through our entry point. Both ranks run, their gradients are averaged (the
weights equal those of one process with the same global batch), and the checkpoint
loads."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from train_helpers import make_run, train_command

from espnet2_ext.zoo import load_model

from conftest import FS

pytestmark = pytest.mark.slow

#: ESPnet's options for processes started by a launcher (torchrun sets RANK,
#: WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT)
DISTRIBUTED = [
    "--multiprocessing_distributed", "false",
    "--dist_backend", "gloo",
    "--dist_init_method", "env://",
]  # fmt: skip


def _rank_logs(log_dir):
    """{rank: stderr text} from torchrun's per-worker log files."""
    logs = {}
    for path in log_dir.rglob("stderr.log"):
        logs[int(path.parent.name)] = path.read_text()
    return logs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    # 4 clips, global batch 2: 2 updates per epoch; each rank gets 1 clip per update
    scps = make_run(root, max_epoch=2, batch_size=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.Popen(
        train_command(root, scps, exp="single"),
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    launcher = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc-per-node", "2", "--log-dir", str(root / "logs"), "--redirects", "3",
    ]  # fmt: skip
    ddp_command = train_command(root, scps, *DISTRIBUTED, exp="ddp")
    ddp = subprocess.run(
        launcher + ddp_command[1:],  # torchrun runs "-m espnet2_ext.bin.enh_train …"
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    _, single_err = single.communicate(timeout=600)
    assert single.returncode == 0, single_err[-3000:]
    logs = _rank_logs(root / "logs")
    assert ddp.returncode == 0, ddp.stderr[-2000:] + logs.get(0, "")[-2000:]
    return root, logs


def test_both_ranks_ran(runs):
    _, logs = runs
    assert sorted(logs) == [0, 1]
    for rank, text in logs.items():
        assert "espnet2_ext/bin/enh_train.py --config" in text, rank  # ESPnet echoes
        assert "Traceback" not in text, text[-2000:]
    # rank 0 logs as one of two processes, through the whole schedule
    assert ":0/2]" in logs[0] and "2/2epoch started" in logs[0]


def test_gradients_are_averaged_like_one_process_with_the_global_batch(runs):
    root, _ = runs
    single = torch.load(root / "single" / "checkpoint.pth", weights_only=True)
    ddp = torch.load(root / "ddp" / "checkpoint.pth", weights_only=True)
    assert single["reporter"]["epoch"] == ddp["reporter"]["epoch"] == 2
    initial = torch.load(root / "single" / "1epoch.pth", weights_only=True)
    moved = max(float((single["model"][k] - initial[k]).abs().max()) for k in initial)
    assert moved > 1e-4  # the second epoch changed the weights
    for key, value in single["model"].items():
        torch.testing.assert_close(ddp["model"][key], value, rtol=1e-4, atol=1e-6)


def test_the_distributed_checkpoint_loads(runs):
    root, _ = runs
    exp = root / "ddp"
    model, _ = load_model(exp / "config.yaml", exp / "valid.loss.best.pth")
    mix = 0.1 * torch.randn(1, int(0.2 * FS), 2)
    with torch.no_grad():
        est = model.forward_enhance(mix, torch.tensor([mix.shape[1]]))[0]
    assert len(est) == 2 and all(torch.isfinite(e).all() for e in est)


def test_a_nan_on_one_rank_stops_every_rank(tmp_path):
    """No rank is left waiting in a collective: both stop at the same iteration with
    exit status 1; the rank with the bad clip names it, the other names that rank."""
    scps = make_run(tmp_path)
    uid, path = scps["wav"].read_text().splitlines()[1].split()  # rank 1's clip
    audio, fs = sf.read(path, dtype="float32")
    audio[10, 0] = np.nan
    sf.write(path, audio, fs, subtype="FLOAT")
    launcher = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc-per-node", "2", "--log-dir", str(tmp_path / "logs"), "--redirects", "3",
    ]  # fmt: skip
    command = train_command(tmp_path, scps, *DISTRIBUTED, exp="ddp")
    proc = subprocess.run(
        launcher + command[1:], cwd=tmp_path, capture_output=True, text=True,
        timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode != 0
    errors = {
        rank: [ln for ln in text.splitlines() if ln.startswith("enh_train: error:")]
        for rank, text in _rank_logs(tmp_path / "logs").items()
    }
    assert f"speech_mix of {uid}" in errors[1][0]
    assert "iteration 1 on rank 1" in errors[0][0] and "rank's loss" in errors[0][0]
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["config.yaml"]
