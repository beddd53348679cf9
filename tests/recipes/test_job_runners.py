"""The recipes' job runners (utils/run_local.sh, utils/slurm.sh) and option parsing.

slurm.sh runs against stand-in sbatch/scancel (recipe_helpers.fake_slurm) that record
their arguments and run the job script here, as sbatch --wait would.
"""

import signal
import subprocess
import time
from pathlib import Path

import pytest
from recipe_helpers import MUSDB_RECIPE, TEMPLATE, fake_slurm

UTILS = TEMPLATE / "utils"
SLURM_CONF = MUSDB_RECIPE / "conf" / "slurm.conf"


def _run(args, cwd, env=None, check=True):
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    """A folder with conf/slurm.conf, the stand-ins on PATH; returns (folder, calls)."""
    calls = tmp_path / "calls.txt"
    work = tmp_path / "work"
    (work / "conf").mkdir(parents=True)
    (work / "conf" / "slurm.conf").write_text(SLURM_CONF.read_text())
    monkeypatch.setenv("PATH", f"{fake_slurm(tmp_path / 'bin', calls)}:/usr/bin:/bin")
    return work, calls


def test_run_local_runs_an_array_and_names_the_failing_job(tmp_path):
    proc = _run(
        [UTILS / "run_local.sh", "--gpu", "0", "--mem", "2G", "--max_jobs_run", "2",
         "JOB=1:3", "logs/job.JOB.log", "sh", "-c", "echo task JOB; [ JOB != 2 ]"],
        tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "job failed, see logs/job.2.log" in proc.stderr
    for job in (1, 2, 3):
        assert f"task {job}" in (tmp_path / f"logs/job.{job}.log").read_text()
    two = _run(
        [UTILS / "run_local.sh", "--num_nodes", "2", "x.log", "true"],
        tmp_path, check=False,
    )  # fmt: skip
    assert two.returncode != 0 and "utils/slurm.sh" in two.stderr


def test_slurm_translates_the_options_through_slurm_conf(slurm):
    work, calls = slurm
    _run(
        [UTILS / "slurm.sh", "--gpu", "2", "--mem", "8G", "--time", "4:00:00",
         "JOB=1:2", "exp/logs/score.JOB.log", "echo", "job JOB of a b", "two words"],
        work,
    )  # fmt: skip
    (call,) = calls.read_text().splitlines()
    assert call.startswith("sbatch --export=PATH --ntasks-per-node=1 ")
    for option in ("-p gpu", "--gres=gpu:2", "--mem 8G", "--time 4:00:00",
                   "--array=1-2", "--wait"):  # fmt: skip
        assert option in call, option
    for job in (1, 2):
        log = (work / f"exp/logs/score.{job}.log").read_text()
        assert f"job {job} of a b two words" in log  # arguments keep their spaces
        assert log.rstrip().endswith("with status 0")
    # the default gpu=0 line: the CPU partition, no gres
    _run([UTILS / "slurm.sh", "one.log", "true"], work)
    last = calls.read_text().splitlines()[-1]
    assert "-p cpu" in last and "gres" not in last and "--array" not in last


def test_slurm_refuses_an_option_the_table_does_not_describe(slurm):
    work, calls = slurm
    proc = _run(
        [UTILS / "slurm.sh", "--licence", "x", "one.log", "true"], work, check=False
    )
    assert proc.returncode != 0
    assert "--licence x is not described in conf/slurm.conf" in proc.stderr
    assert not calls.exists()


def test_slurm_names_a_failing_job_and_a_refused_submission(slurm):
    work, calls = slurm
    proc = _run(
        [UTILS / "slurm.sh", "JOB=1:2", "l/j.JOB.log", "sh", "-c", "exit $((JOB - 1))"],
        work, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "job failed, see l/j.2.log" in proc.stderr
    assert "l/j.1.log" not in proc.stderr
    (work / "keep.log").write_text("an earlier run\n")
    proc = subprocess.run(
        [UTILS / "slurm.sh", "keep.log", "touch", "ran"], cwd=work, text=True,
        capture_output=True, timeout=60,
        env={"PATH": str(Path(calls).parent / "bin") + ":/usr/bin:/bin",
             "FAKE_SBATCH_ERROR": "Invalid account or account/partition combination"},
    )  # fmt: skip
    assert proc.returncode != 0
    assert "sbatch did not accept the job" in proc.stderr
    assert "Invalid account" in proc.stderr and "nothing ran" in proc.stderr
    assert (work / "keep.log").read_text() == "an earlier run\n"
    assert not (work / "ran").exists()


def test_parse_options_accepts_old_names_with_one_deprecation_line(tmp_path):
    script = tmp_path / "driver.sh"
    script.write_text(
        "#!/usr/bin/env bash\n"
        "enh_config=a; enh_tag=b\n"
        "declare -A option_aliases=([train_config]=enh_config [tag]=enh_tag)\n"
        f". {UTILS / 'parse_options.sh'}\n"
        'echo "$enh_config $enh_tag $*"\n'
    )
    proc = _run(
        ["bash", script, "--train_config", "x.yaml", "--train-config=y.yaml",
         "--tag", "t", "pos"],
        tmp_path,
    )  # fmt: skip
    assert proc.stdout.strip() == "y.yaml t pos"
    assert proc.stderr.count("--train_config is deprecated, use --enh_config") == 1
    assert proc.stderr.count("--tag is deprecated, use --enh_tag") == 1
    typo = _run(["bash", script, "--enh_cofig", "x"], tmp_path, check=False)
    assert typo.returncode != 0 and "unknown option --enh_cofig" in typo.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_an_interrupted_run_local_stops_its_jobs(tmp_path, sig):
    runner = subprocess.Popen(
        [UTILS / "run_local.sh", "JOB=1:2", "l.JOB.log", "sh", "-c",
         "echo $$ > pid.JOB; exec sleep 60"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for _ in range(100):  # both jobs started
        if all((tmp_path / f"pid.{j}").exists() for j in (1, 2)):
            break
        time.sleep(0.1)
    pids = [int((tmp_path / f"pid.{j}").read_text()) for j in (1, 2)]
    runner.send_signal(sig)  # SIGINT: what Ctrl-C sends
    assert runner.wait(timeout=10) != 0
    assert "interrupted; stopped 2 job(s)" in runner.stderr.read()
    time.sleep(0.5)
    for pid in pids:  # the sleeping jobs ended with the runner
        assert not Path(f"/proc/{pid}").exists() or "Z" in (
            Path(f"/proc/{pid}/stat").read_text().split()[2]
        )
