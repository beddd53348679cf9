#!/usr/bin/env python3
"""Score separated sources: SI-SNR and its improvement (permutation search by default).

    pyscripts/score.py --mix data/test/wav.scp --ref data/test/spk1.scp data/test/spk2.scp \
        --est exp/sep/spk1.scp exp/sep/spk2.scp --out exp/sep/scoring --name paper \
        --sampler_info exp/sep/sampler_info.json
writes <out>/scores.json (per mixture) and <out>/summary.json; prints a Markdown row
(mean ± sd over mixtures), with the sampler's steps and path-scaling setting read from
the sampler_info.json of the separation when given.
"""

import argparse
import json
from pathlib import Path

from espnet2.utils.types import str2bool

from espnet2_ext.diffusion.evaluation import results_row, write_scores


def sampler_columns(path: Path) -> list:
    """[steps, path scaling] of a separation run (every distinct value, joined)."""
    info = json.loads(path.read_text())
    cells = []
    for field in ("steps", "path_scaling"):
        values = sorted({str(v.get(field, "?")) for v in info.values()})
        cells.append(", ".join(values) if values else "?")
    return cells


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mix", required=True)
    p.add_argument("--ref", nargs="+", required=True)
    p.add_argument("--est", nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", default="")
    p.add_argument("--permutation", type=str2bool, default=True)
    p.add_argument("--sampler_info", type=Path, default=None)
    args = p.parse_args()
    summary = write_scores(
        args.mix, args.ref, args.est, args.out, permutation=args.permutation
    )
    columns = sampler_columns(args.sampler_info) if args.sampler_info else []
    print(results_row(args.name, summary, len(args.ref), columns))


if __name__ == "__main__":
    main()
