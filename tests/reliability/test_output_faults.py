"""Reliability of the stems written (issue 16): a track's stems are a set (all new or
the old set kept, also with --overwrite); SIGINT and SIGTERM leave no temporary file;
a full disk is reported as "disk full" with the path and nothing is half written."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, Iterator

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.bin import separate as separate_cli
from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.utils import atomic

from conftest import FS, pack_model_dir, tiny_model_dir

REPO = Path(__file__).resolve().parents[2]
FRAMES = int(0.3 * FS)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tiny_model_dir(tmp_path_factory.mktemp("outputs") / "enh_tiny", 4)
    return pack_model_dir(root, root.parent / "packed.zip")


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("songs")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        sf.write(folder / f"{name}.wav", 0.1 * rng.standard_normal((FRAMES, 2)), FS)
    return folder


def _snapshot(folder: Path) -> Dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _old_set(folder: Path) -> Dict[str, str]:
    """A complete earlier set of stems (small 16-bit files)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem in MUSDB_STEMS:
        sf.write(folder / f"{stem}.wav", np.full((100, 2), 0.25), FS, subtype="PCM_16")
    return _snapshot(folder)


def _args(packed, out, *inputs, extra=()):
    return ["-m", str(packed), "-o", str(out), "-q", *extra, *map(str, inputs)]


# --------------------------------------------------------------------------- sets
def test_overwrite_keeps_the_old_set_when_a_stem_cannot_be_written(
    packed, songs, tmp_path, capsys
):
    """--overwrite where one stem's path is a folder: no stem of the set changes."""
    track = tmp_path / "out" / "enh_tiny" / "a"
    _old_set(track)
    (track / "vocals.wav").unlink()
    (track / "vocals.wav").mkdir()  # cannot become a file
    before = _snapshot(track)
    status = separate_cli.main(
        _args(packed, tmp_path / "out", songs / "a.wav", extra=["--overwrite"])
    )
    assert status == 1
    assert "is not a file; nothing of this set was written" in capsys.readouterr().out
    assert _snapshot(track) == before


@pytest.mark.parametrize("fail_at", ["write", "rename"])
def test_a_failure_inside_the_set_restores_the_old_stems(
    packed, songs, tmp_path, monkeypatch, fail_at
):
    """An I/O error on the third temporary file, or on the second rename into place:
    the old set is back, no temporary or backup file is left."""
    track = tmp_path / "out" / "enh_tiny" / "a"
    before = _old_set(track)
    calls = {"n": 0}
    if fail_at == "write":
        real = atomic._write_temp

        def failing(path, data, created):
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(errno.EIO, "Input/output error", str(path))
            return real(path, data, created)

        monkeypatch.setattr(atomic, "_write_temp", failing)
    else:
        real_replace = os.replace

        def failing_replace(src, dst):
            if str(src).endswith(".partial"):
                calls["n"] += 1
                if calls["n"] == 2:
                    raise OSError(errno.EIO, "Input/output error", str(dst))
            return real_replace(src, dst)

        monkeypatch.setattr(atomic.os, "replace", failing_replace)
    status = separate_cli.main(
        _args(packed, tmp_path / "out", songs / "a.wav", extra=["--overwrite"])
    )
    monkeypatch.undo()
    assert status == 1 and calls["n"] >= 2
    assert _snapshot(track) == before


# --------------------------------------------------------------------------- disk full
@contextlib.contextmanager
def _small_disk(folder: Path, size: str, monkeypatch) -> Iterator[str]:
    """A size-limited tmpfs at ``folder`` where the machine allows mounting one (root
    with CAP_SYS_ADMIN); else a writer that fails with ENOSPC past the same budget.
    Yields which one was used."""
    folder.mkdir(parents=True)
    mounted = False
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
        )
        mounted = proc.returncode == 0
    try:
        if mounted:
            yield "tmpfs"
        else:
            budget = {"left": int(size.rstrip("k")) * 1024}
            real_fdopen = os.fdopen

            class Limited:
                def __init__(self, handle):
                    self.handle = handle

                def write(self, data):
                    budget["left"] -= len(data)
                    if budget["left"] < 0:
                        raise OSError(errno.ENOSPC, "No space left on device")
                    return self.handle.write(data)

                def __getattr__(self, name):
                    return getattr(self.handle, name)

                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    self.handle.close()

            monkeypatch.setattr(
                atomic.os, "fdopen", lambda *a, **k: Limited(real_fdopen(*a, **k))
            )
            yield "patched writer"
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


def test_disk_full_is_reported_with_the_path_and_the_old_set_kept(
    packed, songs, tmp_path, monkeypatch, capsys
):
    """Float WAV stems of a 0.3 s song take 4 × 106 kB; the disk holds 256 kB: the
    third stem does not fit. Nothing of the set is written, the old set stays, the
    next track is not started, and the message says "disk full" with the path."""
    disk = tmp_path / "disk"
    with _small_disk(disk, "256k", monkeypatch) as how:
        track = disk / "enh_tiny" / "a"
        before = _old_set(track)
        status = separate_cli.main(
            _args(packed, disk, songs / "a.wav", songs / "b.wav",
                  extra=["--overwrite", "--bits", "float"])
        )  # fmt: skip
        printed = capsys.readouterr().out
        after = _snapshot(disk)
    assert status == 1, how
    assert f"disk full: no space left to write {track}" in printed, (how, printed)
    assert "b: not started: the disk is full" in printed
    assert after == {f"enh_tiny/a/{k}": v for k, v in before.items()}, how


# --------------------------------------------------------------------------- signals
SLOW_DISK = textwrap.dedent("""
    import os, signal, sys, time

    # a terminal's Ctrl-C: SIGINT raises KeyboardInterrupt even if the test runner
    # started this process with SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    real_fsync = os.fsync

    def slow_fsync(fd):  # a slow disk: every file takes a second to reach it
        time.sleep(1.0)
        return real_fsync(fd)

    os.fsync = slow_fsync
    from espnet2_ext.bin.separate import main

    sys.exit(main(sys.argv[1:]))
    """)


def _wait_for(predicate, proc, timeout=300.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None or time.monotonic() > end:
            out, err = proc.communicate(timeout=5)
            raise AssertionError(f"the separation ended first:\n{out}\n{err}")
        time.sleep(0.02)


def _partials(folder: Path):
    return sorted(folder.rglob("*.partial")) + sorted(folder.rglob("*.old"))


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_signal_during_a_stem_write_leaves_no_temporary_file(
    packed, songs, tmp_path, signum
):
    """The signal arrives while track b's stems are being written (a temporary file
    exists): track a stays complete, track b has no stem, no temporary file is left,
    and the exit status is 128 + the signal."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_DISK, *_args(packed, out, songs / "a.wav",
                                                 songs / "b.wav")],
        cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    folder_b = out / "enh_tiny" / "b"
    try:
        _wait_for(lambda: list(folder_b.glob(".*.partial")), proc)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    assert f"interrupted (signal {int(signum)})" in err
    assert _partials(out) == []
    assert not folder_b.exists() or list(folder_b.iterdir()) == []
    for stem in MUSDB_STEMS:
        assert sf.info(out / "enh_tiny" / "a" / f"{stem}.wav").frames == FRAMES


def test_terminate_raises_turns_sigterm_into_an_interrupt():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt) as e:
        with atomic.terminate_raises():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode
    assert isinstance(e.value, atomic.Terminated) and e.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before
