#!/usr/bin/env python3
"""Score separated sources: SI-SNR and its improvement (permutation search by default).

    pyscripts/score.py --mix data/test/wav.scp --ref data/test/spk1.scp data/test/spk2.scp \
        --est exp/sep/spk1.scp exp/sep/spk2.scp --out exp/sep/scoring --name paper
writes <out>/scores.json (per mixture) and <out>/summary.json; prints a Markdown row.
"""

import argparse
from pathlib import Path

from espnet2.utils.types import str2bool

from espnet2_ext.diffusion.evaluation import results_row, write_scores


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mix", required=True)
    p.add_argument("--ref", nargs="+", required=True)
    p.add_argument("--est", nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", default="")
    p.add_argument("--permutation", type=str2bool, default=True)
    args = p.parse_args()
    summary = write_scores(
        args.mix, args.ref, args.est, args.out, permutation=args.permutation
    )
    print(results_row(args.name, summary, len(args.ref)))


if __name__ == "__main__":
    main()
