"""A new user's first run, end to end: the built wheel installed into a fresh
environment, M4A and MP3 songs separated into MP3 stems with a packed model, and the
same pack loaded by ESPnet's own ``SeparateSpeech``.

The fresh environment is a new virtual environment (its own interpreter, its own
site-packages, no access to this checkout) into which ``pip install --no-index`` puts
the wheel; the wheel's dependencies are the project's locked ones, this test's own
environment, made visible through a ``.pth`` file that lists a folder of links to every
installed distribution except espnet2_ext. Installing them from the index instead,
as tools/setup_venv.sh does (torch from its local wheel, ESPnet without dependencies,
then the lock), took 969 s on the project's 2-core machine at load average 9.5
(torch 268 s, ESPnet and the lock 684 s, the wheel 17 s), most of the suite's 20-minute
budget; this test took 109 s under the same load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet2_ext.constants import MUSDB_STEMS
from espnet2_ext.tasks.enh import EnhancementTask
from espnet2_ext.zoo import full_train_config, pack, publish, write_model_dir

from conftest import FS, tiny_config

SECONDS = 0.5


def _run(*cmd, cwd, env, timeout=600) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _fresh_env(root: Path) -> Path:
    """A new virtual environment that sees the locked dependencies but not the
    plugin; returns its python."""
    base = getattr(sys, "_base_executable", sys.executable)
    # no pip of its own: its bundled setuptools would shadow the locked one; pip comes
    # with the locked dependencies
    _run(base, "-m", "venv", "--without-pip", root / "env", cwd=root, env=None)
    python = root / "env" / "bin" / "python"
    deps = root / "deps"
    deps.mkdir()
    for source in site.getsitepackages():
        for entry in Path(source).iterdir():
            name = entry.name
            if (
                name.startswith(("espnet2_ext", "__editable__", "_distutils_hack"))
                or name.endswith(".pth")
                or name == "__pycache__"
                or (deps / name).exists()
            ):
                continue
            if name == "espnet_model_zoo":  # it unpacks models into its own folder
                shutil.copytree(entry, deps / name)
            else:
                (deps / name).symlink_to(entry)
    purelib = _run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        cwd=root, env=None,
    ).stdout.strip()  # fmt: skip
    (Path(purelib) / "locked_dependencies.pth").write_text(f"{deps}\n")
    return python


@pytest.mark.slow
def test_new_user_installs_the_wheel_separates_m4a_and_mp3_and_loads_in_espnet(
    tmp_path,
):
    # the model, packed as the recipe packs it
    exp = tmp_path / "exp" / "enh_tiny"
    torch.manual_seed(0)
    config = tiny_config(num_spk=4)
    model = EnhancementTask.build_model(
        argparse.Namespace(**full_train_config(config, exp))
    )
    write_model_dir(config, model.state_dict(), exp)
    cwd = os.getcwd()
    os.chdir(exp)
    try:
        packed = pack("config.yaml", "model.pth", exp / "packed.zip")
    finally:
        os.chdir(cwd)

    # the user's songs: AAC in M4A, and MP3
    songs = tmp_path / "songs"
    songs.mkdir()
    rng = np.random.default_rng(0)
    sf.write(songs / "src.wav", 0.1 * rng.standard_normal((int(SECONDS * FS), 2)), FS)
    for name, codec in (("one.m4a", "aac"), ("two.mp3", "libmp3lame")):
        _run("ffmpeg", "-nostdin", "-v", "error", "-i", songs / "src.wav",
             "-c:a", codec, songs / name, cwd=songs, env=None)  # fmt: skip
    (songs / "src.wav").unlink()

    # python -m build, then a fresh environment with the wheel (no index, no checkout)
    wheel = publish.build_wheel(tmp_path / "dist")
    python = _fresh_env(tmp_path)
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env.update(OMP_NUM_THREADS="1", HOME=str(tmp_path / "home"))
    _run(python, "-m", "pip", "install", "--no-index", "--disable-pip-version-check",
         "-q", wheel, cwd=tmp_path, env=env)  # fmt: skip
    where = _run(
        python, "-c", "import espnet2_ext; print(espnet2_ext.__file__)",
        cwd=tmp_path, env=env,
    ).stdout.strip()  # fmt: skip
    assert str(tmp_path / "env") in where, where  # the wheel's copy, not the checkout

    # the console script the wheel installs
    out = tmp_path / "separated"
    proc = _run(
        tmp_path / "env" / "bin" / "espnet2-ext-separate", "-m", packed,
        "-o", out, "--format", "mp3", songs / "one.m4a", songs / "two.mp3",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert "Summary: 2 separated, 0 skipped, 0 failed" in proc.stdout, proc.stdout
    assert "Flash Attention" not in proc.stderr
    for track in ("one", "two"):
        for stem in MUSDB_STEMS:
            info = sf.info(out / "enh_tiny" / track / f"{stem}.mp3")
            assert info.format == "MP3" and info.channels == 2
            assert info.frames >= int(SECONDS * FS) - 1152, (track, stem)

    # the same pack through ESPnet's own inference class
    script = textwrap.dedent(f"""
        import numpy as np
        import espnet2_ext  # noqa: F401  (adds the plugin's classes to ESPnet)
        from espnet2.bin.enh_inference import SeparateSpeech

        separate = SeparateSpeech.from_pretrained({str(packed)!r})
        mix = 0.1 * np.random.default_rng(1).standard_normal((1, {FS // 2}, 2))
        stems = separate(mix.astype("float32"), fs={FS})
        print([tuple(s.shape) for s in stems])
        """)
    proc = _run(python, "-c", script, cwd=tmp_path, env=env)
    assert proc.stdout.strip() == str([(1, FS // 2, 2)] * 4), proc.stdout
