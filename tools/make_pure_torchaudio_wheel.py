"""Repack a PyPI torchaudio wheel without its native (CUDA-linked) libraries.

The torchaudio wheels on PyPI for Linux x86_64 are CUDA builds: beside a CPU-only torch
their ``lib/*.so`` files fail to load (``libc10_cuda.so`` is missing) and ``import
torchaudio`` raises, which breaks ``espnet2.enh`` (it imports torchaudio at module level).

torchaudio itself supports running without its extension: ``torchaudio._extension._load_lib``
returns ``False`` when no library file is present (the layout of a pex deployment), and the
pure-PyTorch parts that ESPnet's enh task uses (``functional.resample``, PSD, MVDR helpers)
keep working. This script writes a wheel with exactly that layout, under a local version
label (``2.11.0+purepy``), with a consistent ``RECORD`` so that pip installs, checks and
uninstalls it like any other wheel.

Usage: python make_pure_torchaudio_wheel.py SOURCE_WHEEL OUT_DIR
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
import zipfile
from pathlib import Path

LOCAL_LABEL = "purepy"


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def repack(src: Path, out_dir: Path) -> Path:
    m = re.match(r"torchaudio-([^-]+)-(.+)\.whl$", src.name)
    if m is None:
        raise ValueError(f"{src.name} is not a torchaudio wheel file name")
    version, tags = m.groups()
    base_version = version.split("+")[0]
    new_version = f"{base_version}+{LOCAL_LABEL}"
    old_info = f"torchaudio-{version}.dist-info"
    new_info = f"torchaudio-{new_version}.dist-info"
    out = out_dir / f"torchaudio-{new_version}-{tags}.whl"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")

    records = []
    with (
        zipfile.ZipFile(src) as zin,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout,
    ):
        for item in zin.infolist():
            name = item.filename
            if name.startswith("torchaudio/lib/") and name.endswith(".so"):
                continue  # the CUDA-linked native extension: left out on purpose
            if name == f"{old_info}/RECORD":
                continue
            data = zin.read(name)
            if name.startswith(old_info + "/"):
                name = new_info + name[len(old_info) :]
                if name.endswith("/METADATA"):
                    data = re.sub(
                        rb"^Version: .*$",
                        f"Version: {new_version}".encode(),
                        data,
                        count=1,
                        flags=re.M,
                    )
            if name == "torchaudio/version.py":
                data = re.sub(
                    rb"\+[A-Za-z0-9.]+(?=['\"])", f"+{LOCAL_LABEL}".encode(), data
                )
            zout.writestr(name, data)
            records.append(f"{name},{_record_hash(data)},{len(data)}")
        records.append(f"{new_info}/RECORD,,")
        zout.writestr(f"{new_info}/RECORD", "\n".join(records) + "\n")
    tmp.replace(out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(repack(Path(sys.argv[1]), Path(sys.argv[2])))
