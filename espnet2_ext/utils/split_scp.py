"""Split an scp (or any ``uid …`` list) into N key files of near-equal size.

Usage: python -m espnet2_ext.utils.split_scp IN_SCP OUT_1 [OUT_2 …]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Sequence


def split_scp(scp: Path, outputs: Sequence[Path]) -> List[List[str]]:
    lines = [
        ln for ln in Path(scp).read_text(encoding="utf-8").splitlines() if ln.strip()
    ]
    if len(outputs) > len(lines):
        raise ValueError(
            f"cannot split {len(lines)} entries of {scp} into {len(outputs)} parts; "
            "use fewer jobs (--nj)"
        )
    parts = [lines[i :: len(outputs)] for i in range(len(outputs))]
    for out, part in zip(outputs, parts):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("".join(p + "\n" for p in part), encoding="utf-8")
    return parts


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    split_scp(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
